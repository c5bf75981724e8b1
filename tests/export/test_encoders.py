"""keras_3t.export.encoders: `export_encoders` and `keras-3t export`.

Each format's encoders, run by their runtime, give the embeddings of
`encode_image` / `encode_text`: here in the suite's environment, and (slow)
in a fresh virtual environment that holds only the runtime, where the
retrieval recall on the main job's test scenes is the model's too.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_3t import presets
from keras_3t.demo.toy import toy_batch
from keras_3t.export import FORMATS
from keras_3t.export import export_encoders
from tests.export import runtime_embeddings
from tests.helpers import EMBEDDING_DIM
from tests.helpers import IMAGE_SIZE
from tests.helpers import ROOT
from tests.helpers import TINY_PRESETS
from tests.helpers import package_venv
from tests.helpers import pinned
from tests.helpers import run_python
from tests.helpers import tiny_model
from tests.helpers import toy_preprocessor
from tests.helpers import two_frozen_towers

on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="written in this process on TensorFlow; on the other backends by a TensorFlow "
    "process: test_a_model_trained_on_this_backend_exports_through_tensorflow (JAX) and "
    "export_encoders' example (PyTorch)",
)
CAPTIONS = ["a red square", "blue circle", "a green circle"]
# Each format's runtime environment for tests/export/runtime_embeddings.py:
# (name, packages, packages removed afterwards: tensorflow installs keras).
RUNTIMES = {
    "tf_saved_model": ("tensorflow", pinned("tensorflow", "tensorflow-text"), ("keras",)),
    "onnx": ("onnxruntime", pinned("onnxruntime", "numpy"), ()),
    "litert": ("ai-edge-litert", pinned("ai-edge-litert", "numpy"), ()),
}
DEPLOY_PAGE = os.path.join(ROOT, "docs", "deploy.md")


def model_inputs(model, captions, image_size, seed=0):
    """uint8 images at the towers' size and at another, captions and their tokens."""
    rng = np.random.default_rng(seed)
    tokens = model.preprocessor(captions)
    return {
        "images": rng.integers(0, 256, (4, image_size, image_size, 3), dtype=np.uint8),
        "any_size_images": rng.integers(0, 256, (3, image_size + 9, image_size + 3, 3), "uint8"),
        "captions": np.array(captions),
        "token_ids": np.asarray(tokens["token_ids"], "int32"),
        "padding_mask": np.asarray(tokens["padding_mask"]),
    }


def for_format(inputs, format):
    """What `format`'s encoders take: only a SavedModel resizes and tokenizes."""
    if format == "tf_saved_model":
        return inputs
    return {k: v for k, v in inputs.items() if k not in ("any_size_images", "captions")}


def expected_embeddings(model, inputs, alpha):
    tokens = {name: inputs[name] for name in ("token_ids", "padding_mask")}
    expected = {"tokens": model.encode_text(tokens, alpha)}
    for name in ("images", "any_size_images"):
        if name in inputs:
            expected[name] = model.encode_image(inputs[name], alpha)
    if "captions" in inputs:
        expected["captions"] = model.encode_text(list(inputs["captions"]), alpha)
    return expected


def max_differences(outputs, expected):
    assert sorted(outputs) == sorted(expected)
    return {name: float(np.abs(outputs[name] - expected[name]).max()) for name in expected}


@on_tensorflow
@pytest.mark.parametrize("format", list(FORMATS))
def test_each_format_embeds_as_encode_image_and_encode_text(format, tmp_path):
    model = tiny_model("3t", preprocessor=toy_preprocessor())
    folder = export_encoders(model, tmp_path / "encoders", format=format, alpha=0.5)
    image_file, text_file = FORMATS[format]
    assert {image_file, text_file, "README.md", "export.json", "vocabulary.txt"} <= set(
        os.listdir(folder)
    )
    manifest = json.load(open(os.path.join(folder, "export.json")))
    assert manifest["path_weights"] == {"main": 0.5, "third": 0.5}
    assert manifest["embedding_dim"] == 2 * EMBEDDING_DIM
    with open(os.path.join(folder, "vocabulary.txt")) as file:
        assert file.read().split() == model.preprocessor.tokenizer.get_vocabulary()
    inputs = for_format(model_inputs(model, CAPTIONS, IMAGE_SIZE), format)
    differences = max_differences(
        runtime_embeddings.embed(folder, inputs), expected_embeddings(model, inputs, 0.5)
    )
    assert max(differences.values()) < 1e-5, differences


@on_tensorflow
def test_several_frozen_towers_with_weights_by_path(tmp_path):
    model = tiny_model("3t", third_towers=two_frozen_towers(), preprocessor=toy_preprocessor())
    # A path at weight 0 keeps its columns, at zero, as encode_image writes them.
    alpha = {"main": 0.6, "digits": 0.4, "thickness": 0.0}
    folder = export_encoders(model, tmp_path / "onnx", format="onnx", alpha=alpha)
    inputs = for_format(model_inputs(model, CAPTIONS, IMAGE_SIZE), "onnx")
    outputs = runtime_embeddings.embed(folder, inputs)
    assert outputs["images"].shape[-1] == 3 * EMBEDDING_DIM
    differences = max_differences(outputs, expected_embeddings(model, inputs, alpha))
    assert max(differences.values()) < 1e-5, differences


@on_tensorflow
def test_a_model_without_preprocessor_takes_tokens_and_overwrite_replaces(tmp_path):
    model = tiny_model("clip")
    folder = str(tmp_path / "saved_model")
    os.makedirs(folder)
    with open(os.path.join(folder, "notes.txt"), "w") as file:
        file.write("the user's")
    with pytest.raises(FileExistsError, match="is not empty; pass overwrite=True"):
        model.export_encoders(folder)
    assert os.listdir(folder) == ["notes.txt"]
    model.export_encoders(folder, overwrite=True)
    assert "notes.txt" not in os.listdir(folder) and "vocabulary.txt" not in os.listdir(folder)
    batch = toy_batch(3, image_size=IMAGE_SIZE)
    inputs = {
        "images": (batch["images"] * 255).round().astype("uint8"),
        "token_ids": batch["token_ids"],
        "padding_mask": batch["padding_mask"],
    }
    differences = max_differences(
        runtime_embeddings.embed(folder, inputs), expected_embeddings(model, inputs, 1.0)
    )
    assert max(differences.values()) < 1e-5, differences
    assert "had no preprocessor" in open(os.path.join(folder, "README.md")).read()


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="JAX's; TensorFlow exports in its own process, and PyTorch (the backend of the "
    "docstring examples) is checked by export_encoders' example, keras_3t/export/encoders.py",
)
def test_a_model_trained_on_this_backend_exports_through_tensorflow(tmp_path):
    model = tiny_model("3t", preprocessor=toy_preprocessor())
    model.compile()
    model.fit(toy_batch(8, image_size=IMAGE_SIZE), verbose=0)
    folder = model.export_encoders(tmp_path / "saved_model", alpha=0.25)
    inputs = model_inputs(model, CAPTIONS, IMAGE_SIZE)
    differences = max_differences(
        runtime_embeddings.embed(folder, inputs), expected_embeddings(model, inputs, 0.25)
    )
    assert max(differences.values()) < 1e-5, differences


@pytest.mark.one_backend
def test_bad_arguments_name_the_problem_before_writing(tmp_path):
    model = tiny_model("clip")
    with pytest.raises(ValueError, match=r"Unknown export format 'tflite'; choose one of"):
        model.export_encoders(tmp_path / "a", format="tflite")
    with pytest.raises(ValueError, match="which only a '3t' model has"):
        model.export_encoders(tmp_path / "a", alpha=0.5)
    (tmp_path / "a_file").write_text("the user's")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        model.export_encoders(tmp_path / "a_file")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


@pytest.mark.one_backend
def test_cli_export_parses_its_options_before_loading_keras():
    code = """
import sys
from keras_3t.__main__ import main, parse_export_args
for argv in (["export", "--help"], ["export", "3t_tiny", "out", "--alpha", "most"],
             ["export", "3t_tiny", "out", "--format", "tflite"]):
    try:
        main(argv)
    except SystemExit as exit:
        print(" ".join(argv), exit.code)
print(parse_export_args(["3t_tiny", "out", "--alpha", '{"main": 0.5, "third": 0.5}']).alpha)
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    returncode, stdout, stderr = run_python(code)
    assert returncode == 0, stderr
    assert "usage: keras-3t export" in stdout and "--overwrite" in stdout
    lines = stdout.strip().splitlines()
    assert {"export --help 0", "export 3t_tiny out --alpha most 2"} <= set(lines)
    assert "'most' is neither a number nor JSON weights by path" in stderr
    assert "invalid choice: 'tflite'" in stderr
    assert lines[-2:] == ["{'main': 0.5, 'third': 0.5}", "False False"]


@pytest.mark.one_backend
def test_every_command_of_the_deploy_page_parses():
    from keras_3t.__main__ import parse_embed_args
    from keras_3t.__main__ import parse_export_args
    from keras_3t.__main__ import parse_search_args

    page = open(DEPLOY_PAGE).read()
    commands = re.findall(r"^keras-3t (export|embed|search) (.+)$", page, re.MULTILINE)
    parsed = {"export": [], "embed": [], "search": []}
    parse = {"export": parse_export_args, "embed": parse_embed_args, "search": parse_search_args}
    for command, arguments in commands:
        parsed[command].append(parse[command](shlex.split(arguments)))
    assert {args.format for args in parsed["export"]} == set(FORMATS)
    assert {bool(args.images) for args in parsed["embed"]} == {True, False}
    assert [args.top_k for args in parsed["search"]] == [3, 3]


def scene_inputs(preprocessor):
    """The main job's quick test scenes as uint8 images, and their captions' tokens."""
    from keras_3t.demo import main_job

    tasks = main_job.evaluation_tasks(preprocessor, main_job.BUDGETS["quick"], seed=0)
    retrieval = tasks["retrieval"]
    images = (np.asarray(retrieval["images"]) * 255).round().astype("uint8")
    return {"images": images, **retrieval["texts"]}, retrieval["text_to_image"]


def run_in_runtime_environment(format, folder, inputs, scratch):
    """runtime_embeddings.py in a fresh environment holding only `format`'s runtime."""
    venv = package_venv(*RUNTIMES[format])
    np.savez(os.path.join(scratch, "inputs.npz"), **inputs)
    # Neither this checkout nor the suite's Keras settings reach the runtime.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS", "PYTHON"))}
    process = subprocess.run(
        [
            os.path.join(venv, "bin", "python"),
            os.path.join(ROOT, "tests", "export", "runtime_embeddings.py"),
            folder,
            os.path.join(scratch, "inputs.npz"),
            os.path.join(scratch, "outputs.npz"),
        ],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    with np.load(os.path.join(scratch, "outputs.npz")) as outputs:
        return dict(outputs)


@pytest.mark.slow
@pytest.mark.parametrize("format", list(FORMATS))
@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_runtime_alone_gives_the_models_embeddings_and_recall(preset, format, tmp_path):
    from keras_3t.evaluation import retrieval_metrics

    model = presets.load(preset)
    alpha = 0.5 if preset.startswith("3t") else 1.0
    folder = model.export_encoders(str(tmp_path / "encoders"), format=format, alpha=alpha)
    scenes, text_to_image = scene_inputs(model.preprocessor)
    others = model_inputs(model, ["a 3 above a 7", "a 1"], model.image_converter.image_size[0])
    inputs = {
        **scenes,
        "any_size_images": others["any_size_images"],
        "captions": others["captions"],
    }
    inputs = for_format(inputs, format)
    outputs = run_in_runtime_environment(format, folder, inputs, str(tmp_path))
    expected = expected_embeddings(model, inputs, alpha)
    differences = max_differences(outputs, expected)
    print(f"{preset} {format}: max |exported - model| {max(differences.values()):.1e}")
    assert max(differences.values()) < 1e-5, differences
    recall = {
        "exported": retrieval_metrics(outputs["images"], outputs["tokens"], text_to_image),
        "model": retrieval_metrics(expected["images"], expected["tokens"], text_to_image),
    }
    assert recall["exported"] == recall["model"], recall


@pytest.mark.slow
@pytest.mark.one_backend
def test_the_deploy_pages_commands_and_code_run_as_written(tmp_path, monkeypatch):
    """Its commands and `py` blocks in the page's order, in one folder; the
    search commands print the output the page shows."""
    blocks = re.findall(r"```(bash|py|text)\n(.*?)```", open(DEPLOY_PAGE).read(), re.DOTALL)
    monkeypatch.chdir(tmp_path)
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    environment = dict(os.environ, PATH=path, PYTHONPATH=ROOT)
    namespace = {"__name__": "__docs__"}
    output = None
    for language, code in blocks:
        if language == "bash":
            result = subprocess.run(
                code, shell=True, executable="bash", env=environment, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr[-3000:]
            output = result.stdout if code.startswith("keras-3t search") else None
        elif language == "py":
            exec(compile(code, "<deploy.md>", "exec"), namespace)
        elif output is not None:
            assert output == code
            output = None
    model = presets.load("3t_tiny")
    # The page's tokenizer is the preprocessor's, unknown words and punctuation too.
    hard = ["A 3 above a 7.", "zebra lefty, 12", " ".join(["a 1"] * 20)]
    tokens = model.preprocessor(hard)
    token_ids, padding_mask = namespace["tokenize"](hard, "encoders_onnx")
    np.testing.assert_array_equal(token_ids, np.asarray(tokens["token_ids"]))
    np.testing.assert_array_equal(padding_mask, np.asarray(tokens["padding_mask"]))
    expected = model.encode_text(namespace["captions"], alpha=0.5)
    np.testing.assert_allclose(namespace["text_embeddings"], expected, atol=1e-5)
