"""keras_3t.console: native log lines are dropped, Python's kept."""

import pytest

from keras_3t import console
from tests.helpers import native_lines
from tests.helpers import run_python
from tests.helpers import write_digit_scene_captions


def test_native_log_lines_are_recognised():
    assert console.is_native_log_line(
        b"E0000 00:00:1796219048.967378   29479 cuda_platform.cc:52] failed call to cuInit: "
        b"INTERNAL: CUDA error"
    )
    assert console.is_native_log_line(
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    )
    for line in (b"Epoch 1/2", b"UserWarning: something", b"E0000 is not a date", b""):
        assert not console.is_native_log_line(line)


# TensorFlow's own logging, whatever the backend.
@pytest.mark.one_backend
def test_quiet_native_logs_drops_tensorflows_lines_and_keeps_pythons(tmp_path):
    code = """
from keras_3t.console import quiet_native_logs
quiet_native_logs()
import sys
import keras
import tensorflow as tf
keras.ops.convert_to_numpy(keras.ops.ones(2) + 1)
float(tf.reduce_sum(tf.ones(3)))
print("python's own line", file=sys.stderr)
"""
    returncode, _, quiet = run_python(code, cwd=str(tmp_path))
    assert returncode == 0, quiet
    assert native_lines(quiet) == []
    assert "python's own line" in quiet
    # KERAS_3T_VERBOSE=1 keeps everything the libraries write.
    _, _, verbose = run_python(code, cwd=str(tmp_path), KERAS_3T_VERBOSE="1")
    assert "python's own line" in verbose


USER_SCRIPT = """
import keras_3t
model = keras_3t.presets.load("3t_tiny")
model.encode_text(["a 3 above a 7"])
examples = keras_3t.data.from_caption_file("captions.csv", image_root=".")
dataset = keras_3t.data.make_dataset(examples, model.preprocessor, 56, 8, seed=0)
model.compile(learning_rate=1e-4)
model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
"""


def test_a_users_script_writes_nothing_to_stderr(tmp_path, monkeypatch):
    # Presets, encoding, data and fit, as a user's script calls them, with
    # no log level set: not one native line, and no warning Keras gives for
    # `fit`'s default `shuffle=True` on a data set.
    write_digit_scene_captions(str(tmp_path), 8)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    returncode, _, stderr = run_python(USER_SCRIPT, cwd=str(tmp_path))
    assert returncode == 0, stderr
    assert stderr == ""


# TensorFlow's own logging, whatever the backend.
@pytest.mark.one_backend
def test_a_log_level_the_user_sets_is_left_to_tensorflow(tmp_path):
    # TensorFlow's level 0 shows its start-up lines: keras-3t drops none.
    code = 'import keras_3t; keras_3t.presets.load("3t_tiny").encode_text(["a 3"])'
    returncode, _, stderr = run_python(code, cwd=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="0")
    assert returncode == 0, stderr
    assert native_lines(stderr)
