"""The towers of a 3T model: image (f), text (g) and the frozen third (h)."""

from keras_3t.towers.image_tower import ImageTower
from keras_3t.towers.text_tower import TextTower
from keras_3t.towers.third_tower import ThirdTower
