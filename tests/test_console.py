"""keras_3t.console: native log lines are dropped, Python's kept."""

from keras_3t import console
from tests.helpers import native_lines
from tests.helpers import run_python


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
