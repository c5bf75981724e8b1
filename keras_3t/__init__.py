"""keras-3t: Three Towers (3T) contrastive image-text learning for Keras 3."""

from keras_3t import callbacks
from keras_3t import checkpoint
from keras_3t import data
from keras_3t import datasets
from keras_3t import digit_models
from keras_3t import evaluation
from keras_3t import losses
from keras_3t import objective_metrics
from keras_3t import optimization
from keras_3t import preprocessing
from keras_3t import presets
from keras_3t import saving
from keras_3t import towers
from keras_3t import tuning
from keras_3t.checkpoint import TrainingCheckpoint
from keras_3t.losses import contrastive_loss
from keras_3t.losses import sigmoid_contrastive_loss
from keras_3t.model import ThreeTowerModel
from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.towers import ImageTower
from keras_3t.towers import TextTower
from keras_3t.towers import ThirdTower
from keras_3t.tuning import ThreeTowerHyperModel

__version__ = "0.1.0"
