"""Image-caption data: sources (TFDS, caption files, TFRecords, img2dataset shards) and
the tf.data pipeline."""

from keras_3t.data.bad_data import BadDataCounter
from keras_3t.data.bad_data import BadDataReport
from keras_3t.data.feature_shards import FeatureShards
from keras_3t.data.feature_shards import load_feature_shards
from keras_3t.data.feature_shards import write_feature_shards
from keras_3t.data.pipeline import make_dataset
from keras_3t.data.pipeline import retrieval_task
from keras_3t.data.records import from_tfrecords
from keras_3t.data.records import write_tfrecords
from keras_3t.data.shards import from_img2dataset
from keras_3t.data.sources import from_caption_file
from keras_3t.data.sources import from_tfds
from keras_3t.data.sources import read_caption_file
from keras_3t.data.third_tower_cache import ThirdTowerCache
from keras_3t.data.third_tower_cache import load_third_tower_cache
from keras_3t.data.third_tower_cache import write_third_tower_cache
