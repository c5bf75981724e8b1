"""Embedding a collection (image files, img2dataset shards, a caption file), and searching it."""

from keras_3t.collection.reader import EmbeddedCollection
from keras_3t.collection.reader import read_collection
from keras_3t.collection.reader import search_collection
from keras_3t.collection.writer import BadItemError
from keras_3t.collection.writer import embed_collection
