"""keras_3t.export.tensorflow_graphs: what the ONNX writer adds to tf2onnx.

The encoders themselves, in each format, are checked against the model in
tests/export/test_encoders.py. These graphs are plain TensorFlow, so they
run alike under any Keras backend.
"""

import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from keras_3t.export import tensorflow_graphs

pytestmark = pytest.mark.one_backend


def onnx_outputs(function, specs, inputs, path):
    tensorflow_graphs._write_onnx(tf.function(function), specs, str(path))
    session = onnxruntime.InferenceSession(str(path))
    return [i.name for i in session.get_inputs()], session.run(None, inputs)


def test_erfc_as_one_minus_erf_matches_tensorflows_gelu(tmp_path):
    x = np.linspace(-12, 12, 2001, dtype="float32")[None]
    spec = tf.TensorSpec((None, x.shape[1]), "float32", "x")
    names, [gelu] = onnx_outputs(
        lambda x: {"gelu": tf.nn.gelu(x, approximate=False)}, [spec], {"x": x}, tmp_path / "g"
    )
    assert names == ["x"]
    np.testing.assert_allclose(gelu, tf.nn.gelu(x, approximate=False).numpy(), atol=1e-6)


def test_a_captured_constant_is_a_constant_not_an_input(tmp_path):
    # As keras-hub's ViT captures its position ids.
    positions = tf.range(4)
    spec = tf.TensorSpec((None, 4), "int32", "ids")
    ids = np.arange(8, dtype="int32").reshape(2, 4)
    names, [summed] = onnx_outputs(
        lambda ids: {"summed": ids + positions}, [spec], {"ids": ids}, tmp_path / "c"
    )
    assert names == ["ids"]
    np.testing.assert_array_equal(summed, ids + np.arange(4))
