"""Data sets that ship with the package or are generated: no download."""

from keras_3t.datasets.toy import toy_batch
from keras_3t.datasets import digit_scenes
