"""The encoders as TensorFlow functions, written as SavedModel, ONNX or LiteRT.

The package docstring (`keras_3t.export`) says why every format is written
from TensorFlow functions; this module builds them and writes the files.
"""

import contextlib
import functools
import logging
import tempfile

import numpy as np

from keras_3t.combination import MAIN_PATH
from keras_3t.combination import combine_paths
from keras_3t.combination import paths_needed
from keras_3t.extras import require
from keras_3t.image_converter import resize_and_center_crop
from keras_3t.image_converter import to_unit_range
from keras_3t.version import __version__

# Run by every onnxruntime of recent years; Erf is in ONNX from opset 9.
ONNX_OPSET = 17


class TensorFlowEncoders:
    """A model's image and text encoders as TensorFlow functions, and their files.

    Each encoder returns `{"embeddings": (batch, dim)}`: the L2-normalised
    embeddings of the paths `weights` needs, each times √weight, side by
    side, as `keras_3t.combination.combine_paths` writes them (the scale of
    each column comes from that function itself). The encoders run and
    export on the TensorFlow backend only; `specs` and `paths` read the
    model on any backend.

    Args:
        model: a `ThreeTowerModel`.
        weights: dict path name → weight (`keras_3t.combination.path_weights`).

    Example:
    >>> import keras_3t
    >>> model = keras_3t.presets.load("3t_tiny")
    >>> encoders = TensorFlowEncoders(model, {"main": 0.5, "third": 0.5})
    >>> encoders.paths, tuple(encoders.specs()["images"].shape)
    (('main', 'third'), (None, 56, 56, 3))
    """

    def __init__(self, model, weights):
        self.model = model
        self.weights = weights
        self.paths = paths_needed(weights)
        self.image_size = model.image_converter.image_size
        self.channels = model.image_converter.channels
        self.sequence_length = model.text_tower.sequence_length
        if model.preprocessor is not None and not model.preprocessor.built:
            model.preprocessor.build(None)

    def _combined(self, embeddings):
        import tensorflow as tf

        ones = {name: np.ones((1, embeddings[name].shape[-1]), "float32") for name in self.paths}
        scale = combine_paths(ones, self.weights)
        return {"embeddings": tf.concat([embeddings[n] for n in self.paths], axis=-1) * scale}

    def _embed_images(self, images):
        # The model's per-path embeddings (`encode_image_paths` without its
        # checks and NumPy conversion, which do not trace into a graph).
        return self._combined(self.model._image_paths(images, self.paths))

    def images_at_size(self, images):
        """uint8 images `(batch, height, width, channels)` at the towers' size."""
        return self._embed_images(to_unit_range(images))

    def images_of_any_size(self, images):
        """uint8 images of any size, converted as `model.image_converter` does."""
        import tensorflow as tf

        images = to_unit_range(images)
        if self.image_size is None:
            return self._embed_images(images)
        # The converter leaves images already at the size untouched.
        images = tf.cond(
            tf.reduce_all(tf.shape(images)[1:3] == tf.constant(self.image_size)),
            lambda: images,
            lambda: resize_and_center_crop(images, self.image_size),
        )
        return self._embed_images(tf.ensure_shape(images, (None, *self.image_size, self.channels)))

    def tokens(self, token_ids, padding_mask):
        """int32 token ids and a bool padding mask, `(batch, sequence_length)`."""
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        return self._combined(self.model._text_paths(inputs, self.paths))

    def captions(self, captions):
        """Caption strings `(batch,)`, tokenized by the model's preprocessor."""
        batch = self.model.preprocessor(captions)
        return self.tokens(batch["token_ids"], batch["padding_mask"])

    def specs(self):
        """The inputs' `tf.TensorSpec`s; `"images"` at the towers' size."""
        import tensorflow as tf

        length, channels = self.sequence_length, self.channels
        size = self.image_size or (None, None)
        return {
            "images": tf.TensorSpec((None, *size, channels), "uint8", "images"),
            "any_images": tf.TensorSpec((None, None, None, channels), "uint8", "images"),
            "token_ids": tf.TensorSpec((None, length), "int32", "token_ids"),
            "padding_mask": tf.TensorSpec((None, length), "bool", "padding_mask"),
            "captions": tf.TensorSpec((None,), "string", "captions"),
        }

    def _archive(self, image, endpoints):
        """A Keras `ExportArchive` of the layers one encoder runs, and no others."""
        import keras

        model = self.model
        frozen = [name for name in self.paths if name != MAIN_PATH]
        if image:
            layers = [model.image_tower] + [model.third_towers[name] for name in frozen]
        else:
            layers = [model.text_tower] + [model.text_adaptors[name] for name in frozen]
            layers += [model.preprocessor] if model.preprocessor is not None else []
        archive = keras.export.ExportArchive()
        for layer in layers:
            archive.track(layer)
        # The first endpoint is also the SavedModel's "serving_default".
        for name, function, specs in endpoints:
            archive.add_endpoint(name, function, input_signature=specs)
        return archive

    def write_saved_models(self, image_path, text_path):
        """Image encoder: `serve`, images of any size. Text encoder: `serve`,
        captions (with a preprocessor), and `serve_tokens`."""
        spec = self.specs()
        text = [("serve_tokens", self.tokens, [spec["token_ids"], spec["padding_mask"]])]
        if self.model.preprocessor is not None:
            text.insert(0, ("serve", self.captions, [spec["captions"]]))
        image = [("serve", self.images_of_any_size, [spec["any_images"]])]
        self._archive(True, image).write_out(image_path, verbose=False)
        self._archive(False, text).write_out(text_path, verbose=False)

    def write_fixed_size(self, image_path, text_path, format):
        """ONNX or LiteRT: images at the towers' size; token ids and mask."""
        import tensorflow as tf

        spec = self.specs()
        encoders = (
            (image_path, True, self.images_at_size, [spec["images"]]),
            (text_path, False, self.tokens, [spec["token_ids"], spec["padding_mask"]]),
        )
        for path, image, function, specs in encoders:
            if format == "onnx":
                with _quiet_tensorflow_warnings():
                    _write_onnx(tf.function(function), specs, path)
                continue
            with tempfile.TemporaryDirectory() as saved_model, _quiet_tensorflow_warnings():
                archive = self._archive(image, [("serve", function, specs)])
                archive.write_out(saved_model, verbose=False)
                converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
                # Built-in ops only: no TensorFlow ("Flex") ops, which the
                # LiteRT runtime alone cannot run.
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                with open(path, "wb") as file:
                    file.write(converter.convert())

    def manifest(self, format, image_file, text_file):
        """What the exported files take and return, as a JSON-able dict."""
        spec = self.specs()
        image_input = spec["any_images" if format == "tf_saved_model" else "images"]
        if format == "tf_saved_model" and self.model.preprocessor is not None:
            text_inputs = [spec["captions"]]
        else:
            text_inputs = [spec["token_ids"], spec["padding_mask"]]
        length = self.sequence_length
        probe = self.tokens(np.zeros((1, length), "int32"), np.ones((1, length), bool))
        return {
            "keras_3t_version": __version__,
            "format": format,
            "path_weights": self.weights,
            "embedding_dim": int(probe["embeddings"].shape[-1]),
            "image_size": list(self.image_size) if self.image_size else None,
            "channels": self.channels,
            "image_encoder": {"file": image_file, "inputs": [_describe(image_input)]},
            "text_encoder": {"file": text_file, "inputs": [_describe(s) for s in text_inputs]},
            "output": "embeddings",
        }


def _describe(spec):
    return {"name": spec.name, "dtype": spec.dtype.name, "shape": list(spec.shape)}


@functools.cache
def _register_erfc_for_tf2onnx():
    """tf2onnx has no `Erfc` (in TensorFlow's exact GELU): erfc(x) = 1 − erf(x)."""
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            one = ctx.make_const(utils.make_name("one"), np.array(1.0, np.float32))
            name = utils.make_name(node.name)
            complement = ctx.insert_new_node_on_output("Sub", node.output[0], name=name)
            ctx.replace_inputs(complement, [one.output[0], node.output[0]])


def _write_onnx(function, specs, path):
    """tf2onnx's `from_function`, with only the signature's inputs as inputs:
    `from_function` also makes an input of each constant the function
    captures (keras-hub's ViT position ids), which freezing makes a constant."""
    onnx = require("onnx")
    tf2onnx = require("tf2onnx")
    _register_erfc_for_tf2onnx()
    concrete = function.get_concrete_function(*specs)
    inputs = [tensor.name for tensor in concrete.inputs[: len(specs)]]
    outputs = [tensor.name for tensor in concrete.outputs]
    names = dict(zip(inputs, [spec.name for spec in specs]))
    names.update({tensor.name: key for key, tensor in concrete.structured_outputs.items()})
    model, _ = tf2onnx.convert.from_graph_def(
        tf2onnx.tf_loader.from_function(concrete, inputs, outputs),
        input_names=inputs,
        output_names=outputs,
        tensors_to_rename=names,
        opset=ONNX_OPSET,
        output_path=path,
    )
    # tf2onnx logs an op it cannot convert and goes on: the checker stops there.
    onnx.checker.check_model(model)


@contextlib.contextmanager
def _quiet_tensorflow_warnings():
    """TensorFlow's deprecation notices and tf2onnx's progress, off the console."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "tf2onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
