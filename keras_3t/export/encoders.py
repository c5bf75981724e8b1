"""`export_encoders`: the export folder, written here or by a TensorFlow child process."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

from keras_3t.atomic_files import check_replaceable
from keras_3t.atomic_files import staged_folder
from keras_3t.combination import path_weights
from keras_3t.export.tensorflow_graphs import TensorFlowEncoders

# Format -> the image and text encoders' file names.
FORMATS = {
    "tf_saved_model": ("image_encoder", "text_encoder"),
    "onnx": ("image_encoder.onnx", "text_encoder.onnx"),
    "litert": ("image_encoder.tflite", "text_encoder.tflite"),
}
MANIFEST_FILE = "export.json"
VOCABULARY_FILE = "vocabulary.txt"
TOKENIZER_FILE = "tokenizer.json"
# A keras-hub tokenizer's config keys that are not tokenization settings.
NOT_SETTINGS = ("name", "trainable", "dtype", "vocabulary", "config_file", "sequence_length")


def export_encoders(model, path, format="tf_saved_model", alpha=1.0, overwrite=False):
    """Writes the image and text encoders for serving without Keras.

    `ThreeTowerModel.export_encoders`. Both encoders return `"embeddings"`,
    float32 `(batch, dim)`: the unit embeddings of `encode_image` /
    `encode_text` at `alpha`. The folder also holds `export.json` (inputs,
    output, path weights), a README and, for a model with a preprocessor,
    its vocabulary (`vocabulary.txt`) and tokenizer settings
    (`tokenizer.json`).

    - `"tf_saved_model"`: `image_encoder/` takes uint8 images of any size,
      converted inside as `image_converter` does; `text_encoder/` takes
      caption strings (`serve`, tokenized inside: load it after
      `import tensorflow_text`) or token ids and a padding mask
      (`serve_tokens`).
    - `"onnx"`, `"litert"`: the image encoder takes uint8 images at the
      towers' size (the README says how to convert others); the text
      encoder `token_ids` (int32) and `padding_mask` (bool).

    On JAX or PyTorch the model is saved as a preset and exported on
    TensorFlow by `keras-3t export` in a child process, so its custom
    layers (if any) must be importable there.

    Args:
        model: a `ThreeTowerModel` (the method's `self`).
        path: the folder to write.
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        alpha: as `encode_image` takes it: a float in [0, 1] (below 1 for
            3T models only) or a dict of weights by path.
        overwrite: bool. Replace a non-empty folder; otherwise that is a
            `FileExistsError`.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile, numpy as np, onnxruntime, keras_3t
    >>> model = keras_3t.presets.load("clip_tiny")
    >>> folder = model.export_encoders(os.path.join(tempfile.mkdtemp(), "onnx"), "onnx")
    >>> sorted(os.listdir(folder))  # doctest: +NORMALIZE_WHITESPACE
    ['README.md', 'export.json', 'image_encoder.onnx', 'text_encoder.onnx',
     'tokenizer.json', 'vocabulary.txt']
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    >>> encoder = onnxruntime.InferenceSession(os.path.join(folder, "image_encoder.onnx"))
    >>> [embeddings] = encoder.run(["embeddings"], {"images": images})
    >>> bool(np.abs(embeddings - model.encode_image(images)).max() < 1e-5)
    True
    """
    import keras

    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {sorted(FORMATS)}.")
    # Raises on an α the model cannot take (below 1 without a frozen tower).
    weights = path_weights(model.path_names, alpha)
    path = os.fspath(path)
    check_replaceable(path, overwrite, option="keras-3t export --overwrite")
    if keras.backend.backend() == "tensorflow":
        with staged_folder(path, ".exporting-") as folder:
            _write_folder(model, folder, format, weights)
    else:
        _export_in_tensorflow_process(model, path, format, weights, overwrite)
    return path


def _export_in_tensorflow_process(model, path, format, weights, overwrite):
    """`keras-3t export` on the TensorFlow backend, of `model` saved as a preset."""
    with tempfile.TemporaryDirectory(prefix="keras-3t-export-") as scratch:
        preset = model.save_to_preset(os.path.join(scratch, "preset"))
        command = [sys.executable, "-m", "keras_3t", "export", preset, path, "--format", format]
        command += ["--alpha", json.dumps(weights)] + (["--overwrite"] if overwrite else [])
        # The child imports this keras_3t, installed or not.
        package_root = str(pathlib.Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": python_path}
        process = subprocess.run(command, env=environment, capture_output=True, text=True)
    if process.returncode:
        raise RuntimeError(
            "Exporting on the TensorFlow backend (keras-3t export, in a child process) "
            f"failed:\n{process.stderr[-3000:]}"
        )


def _write_folder(model, folder, format, weights):
    """The encoders in `format`, then the manifest, tokenizer files and README."""
    encoders = TensorFlowEncoders(model, weights)
    image_name, text_name = FORMATS[format]
    image_path, text_path = os.path.join(folder, image_name), os.path.join(folder, text_name)
    if format == "tf_saved_model":
        encoders.write_saved_models(image_path, text_path)
    else:
        encoders.write_fixed_size(image_path, text_path, format)
    manifest = encoders.manifest(format, image_name, text_name)
    if model.preprocessor is not None:
        with open(os.path.join(folder, VOCABULARY_FILE), "w", encoding="utf-8") as file:
            file.writelines(f"{token}\n" for token in model.preprocessor.tokenizer.get_vocabulary())
        manifest["tokenizer"] = tokenizer_settings(model.preprocessor)
        _write_json(os.path.join(folder, TOKENIZER_FILE), manifest["tokenizer"])
    _write_json(os.path.join(folder, MANIFEST_FILE), manifest)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as file:
        file.write(_readme(manifest))


def tokenizer_settings(preprocessor):
    """A preprocessor's tokenizer settings and packing, to tokenize outside Keras.

    Args:
        preprocessor: a `keras_3t.ThreeTowerPreprocessor`.

    Returns:
        A JSON-able dict: the tokenizer's class and keras-hub settings
        (lower-casing, splitting, the unknown token...), `sequence_length`,
        `pad_id` and how ids are packed.

    Example:
    >>> from keras_3t.preprocessing import ThreeTowerPreprocessor, caption_tokenizer
    >>> preprocessor = ThreeTowerPreprocessor(caption_tokenizer(["[PAD]", "[UNK]", "a"]), 8)
    >>> settings = tokenizer_settings(preprocessor)
    >>> settings["class"], settings["lowercase"], settings["sequence_length"], settings["pad_id"]
    ('WordPieceTokenizer', True, 8, 0)
    """
    if not preprocessor.built:
        preprocessor.build(None)
    tokenizer = preprocessor.tokenizer
    config = tokenizer.get_config()
    return {
        "class": type(tokenizer).__name__,
        "vocabulary_file": VOCABULARY_FILE,
        **{key: value for key, value in config.items() if key not in NOT_SETTINGS},
        "sequence_length": preprocessor.sequence_length,
        "pad_id": int(preprocessor.packer.pad_value),
        "packing": "no start or end token; ids cut at sequence_length, then padded on "
        "the right with pad_id; padding_mask is true on tokens, false on padding",
    }


def _readme(manifest):
    """The README beside the encoders: what they take and return."""
    format, size = manifest["format"], manifest["image_size"]
    image, text = manifest["image_encoder"], manifest["text_encoder"]
    side = "×".join(map(str, size or ()))
    weights = ", ".join(f"{name} {weight:g}" for name, weight in manifest["path_weights"].items())
    lines = [
        f"# Encoders exported by keras-3t {manifest['keras_3t_version']} ({format})",
        "",
        f"`{image['file']}` embeds images and `{text['file']}` captions. Both return "
        f"`embeddings`, float32 (batch, {manifest['embedding_dim']}), unit vectors whose dot "
        f"product scores an image against a caption. Path weights (α): {weights}.",
        "",
        "Inputs:",
        "",
        *(
            f"- `{spec['name']}`: {spec['dtype']} ({', '.join(_dimension_names(spec['shape']))})"
            for spec in image["inputs"] + text["inputs"]
        ),
        "",
        f"Images: uint8 {'RGB' if manifest['channels'] == 3 else 'gray'} values 0-255, "
        "scaled to [0, 1] inside.",
    ]
    if size is None:
        lines += ["Any size: the towers take every size.", ""]
    else:
        inside = format == "tf_saved_model"
        lines += [
            f"Any size: resized and cropped inside to {side}, as below."
            if inside
            else f"They must be {side}.",
            f"keras-3t resizes an image to {side} keeping its aspect ratio until it covers",
            "the size (scaled sides rounded up; bilinear with antialiasing, as",
            "`tf.image.resize(..., antialias=True)`), then crops the centre",
            "(`tf.image.resize_with_crop_or_pad`); an image already at the size is left as it is.",
            "",
        ]
    if "tokenizer" not in manifest:
        lines.append("Captions: the model had no preprocessor; pass its token ids and mask.")
    elif format == "tf_saved_model":
        lines += [
            "Captions: `serve` (the default signature) takes strings and tokenizes them",
            "inside, with TensorFlow's text ops: `import tensorflow_text` before loading.",
            "`serve_tokens` takes token ids and a padding mask, as ONNX and LiteRT do.",
        ]
    else:
        settings = {k: v for k, v in manifest["tokenizer"].items() if k != "packing"}
        lines += [
            f"Captions: tokenize them outside with `{VOCABULARY_FILE}` (a token per line, its",
            f"id the line number from 0) and the settings in `{TOKENIZER_FILE}`:",
            f"{json.dumps(settings)}.",
            manifest["tokenizer"]["packing"].capitalize() + ".",
        ]
    return "\n".join(lines) + "\n"


def _dimension_names(shape):
    """`[None, None, 56, 3]` → batch, any, 56, 3."""
    return ["batch"] + ["any" if side is None else str(side) for side in shape[1:]]


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
        file.write("\n")
