"""Exported encoders run by their runtime alone, without Keras or keras-3t.

The tests import `embed`, and run this file as a script in a virtual
environment that holds only the runtime (tensorflow and tensorflow-text,
onnxruntime or ai-edge-litert), where it first checks that neither Keras
nor keras-3t can be imported:

    python runtime_embeddings.py EXPORT_FOLDER INPUTS.npz OUTPUTS.npz

The inputs may hold `images` (uint8 at the towers' size), and for a
SavedModel `any_size_images` and `captions` (strings), and `token_ids` with
`padding_mask`. The outputs hold each one's embeddings under the same name
(`tokens` for the ids and mask).
"""

import importlib.util
import json
import os
import sys

import numpy as np


def embed(folder, inputs):
    """`{name: embeddings}` of the exported encoders in `folder`."""
    with open(os.path.join(folder, "export.json")) as file:
        manifest = json.load(file)
    image_file = os.path.join(folder, manifest["image_encoder"]["file"])
    text_file = os.path.join(folder, manifest["text_encoder"]["file"])
    runtime = {"tf_saved_model": _saved_model, "onnx": _onnx, "litert": _litert}
    return runtime[manifest["format"]](image_file, text_file, inputs)


def _images(inputs):
    return [name for name in ("images", "any_size_images") if name in inputs]


def load_text_ops(tf):
    """Registers tensorflow-text's ops (the tokenizer's) without importing it.

    `import tensorflow_text` registers them too, but it also builds Keras
    layers, so it needs Keras (installed by pip with tensorflow).
    """
    package = importlib.util.find_spec("tensorflow_text").submodule_search_locations[0]
    folder = os.path.join(package, "python", "ops")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".so"):
            tf.load_op_library(os.path.join(folder, name))


def _saved_model(image_file, text_file, inputs):
    import tensorflow as tf

    if "tensorflow_text" not in sys.modules:  # as in the suite, where keras-hub loaded it
        load_text_ops(tf)
    image = tf.saved_model.load(image_file).signatures["serving_default"]
    text = tf.saved_model.load(text_file).signatures
    outputs = {
        name: image(images=tf.constant(inputs[name]))["embeddings"] for name in _images(inputs)
    }
    if "captions" in inputs:
        captions = tf.constant(inputs["captions"])
        outputs["captions"] = text["serving_default"](captions=captions)["embeddings"]
    if "token_ids" in inputs:
        tokens = {name: tf.constant(inputs[name]) for name in ("token_ids", "padding_mask")}
        outputs["tokens"] = text["serve_tokens"](**tokens)["embeddings"]
    return {name: value.numpy() for name, value in outputs.items()}


def _onnx(image_file, text_file, inputs):
    import onnxruntime

    image = onnxruntime.InferenceSession(image_file)
    text = onnxruntime.InferenceSession(text_file)
    outputs = {
        name: image.run(["embeddings"], {"images": inputs[name]})[0] for name in _images(inputs)
    }
    if "token_ids" in inputs:
        tokens = {name: inputs[name] for name in ("token_ids", "padding_mask")}
        outputs["tokens"] = text.run(None, tokens)[0]
    return outputs


def _litert(image_file, text_file, inputs):
    from ai_edge_litert.interpreter import Interpreter

    image = Interpreter(image_file).get_signature_runner()
    text = Interpreter(text_file).get_signature_runner()
    outputs = {name: image(images=inputs[name])["embeddings"] for name in _images(inputs)}
    if "token_ids" in inputs:
        tokens = {name: inputs[name] for name in ("token_ids", "padding_mask")}
        outputs["tokens"] = text(**tokens)["embeddings"]
    return outputs


if __name__ == "__main__":
    for absent in ("keras", "keras_3t"):
        if importlib.util.find_spec(absent) is not None:
            sys.exit(f"{absent} is importable here; this environment must hold the runtime only")
    folder, inputs_file, outputs_file = sys.argv[1:]
    with np.load(inputs_file) as inputs:
        np.savez(outputs_file, **embed(folder, dict(inputs)))
