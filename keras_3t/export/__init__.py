"""A model's image and text encoders exported for serving: SavedModel, ONNX, LiteRT.

`export_encoders` (also `ThreeTowerModel.export_encoders` and
`keras-3t export`) writes two encoders that return the unit embeddings of
`encode_image` / `encode_text` at a given α and run without Keras or
keras-3t (docs/deploy.md).

The route: the encoders are always TensorFlow functions of the model on the
TensorFlow backend, one graph for the three formats. Keras 3's own
`model.export` takes a different path on each backend (ONNX through
tf2onnx, jax2onnx or torch.onnx; no LiteRT from JAX), and a SavedModel that
tokenizes captions needs TensorFlow's text ops anyway. Weights do not depend
on the backend, so a model on JAX or PyTorch is saved as a preset and
exported by `keras-3t export` in a child process on TensorFlow. From the
graph, Keras's `ExportArchive` writes the SavedModel; tf2onnx converts the
frozen functions to ONNX (TensorFlow's exact GELU uses `Erfc`, which tf2onnx
lacks: it is registered as 1 − Erf); TensorFlow's converter writes LiteRT
from a SavedModel, with built-in ops only, so ai-edge-litert alone runs it.

- `keras_3t/export/encoders.py`: `export_encoders`, the folder and its files.
- `keras_3t/export/tensorflow_graphs.py`: the encoders as TensorFlow
  functions, and each format's writer.
"""

from keras_3t.export.encoders import FORMATS
from keras_3t.export.encoders import export_encoders
from keras_3t.export.encoders import tokenizer_settings
