"""keras_3t.losses: the contrastive losses against float64 references."""

import numpy as np
import pytest
from scipy.special import log_expit
from scipy.special import logsumexp

from keras_3t.demo.toy import toy_batch
from keras_3t.losses import contrastive_loss
from keras_3t.losses import l2_normalize
from keras_3t.losses import sigmoid_contrastive_loss
from tests.helpers import tiny_model
from tests.helpers import to_numpy


def _normalized(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_softmax_loss(a, b, scale):
    logits = scale * a @ b.T
    n = len(a)
    rows = -np.mean([logits[i, i] - logsumexp(logits[i]) for i in range(n)])
    cols = -np.mean([logits[i, i] - logsumexp(logits[:, i]) for i in range(n)])
    return 0.5 * (rows + cols)


def reference_sigmoid_loss(a, b, scale, bias):
    n = len(a)
    total = 0.0
    for i in range(n):
        for j in range(n):
            label = 1.0 if i == j else -1.0
            total -= log_expit(label * (scale * a[i] @ b[j] + bias))
    return total / n


@pytest.mark.parametrize("n, d, scale", [(2, 3, 1.0), (7, 16, 10.0), (32, 8, 100.0)])
def test_softmax_loss_matches_float64_reference(n, d, scale):
    rng = np.random.default_rng(n)
    a, b = _normalized(rng, n, d), _normalized(rng, n, d)
    got = to_numpy(contrastive_loss(a.astype("float32"), b.astype("float32"), scale))
    np.testing.assert_allclose(got, reference_softmax_loss(a, b, scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "n, d, scale, bias", [(2, 3, 1.0, 0.0), (7, 16, 10.0, -10.0), (32, 8, 100.0, -5.0)]
)
def test_sigmoid_loss_matches_float64_reference(n, d, scale, bias):
    rng = np.random.default_rng(n)
    a, b = _normalized(rng, n, d), _normalized(rng, n, d)
    got = to_numpy(sigmoid_contrastive_loss(a.astype("float32"), b.astype("float32"), scale, bias))
    np.testing.assert_allclose(got, reference_sigmoid_loss(a, b, scale, bias), rtol=1e-5, atol=1e-5)


def test_softmax_loss_is_small_for_aligned_pairs_and_log_n_for_uniform():
    rng = np.random.default_rng(0)
    a = _normalized(rng, 8, 32).astype("float32")
    assert to_numpy(contrastive_loss(a, a, 100.0)) < 1e-3
    # With a zero scale every logit is equal: the loss is exactly log(n).
    np.testing.assert_allclose(to_numpy(contrastive_loss(a, a, 0.0)), np.log(8), rtol=1e-6)


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows_finite():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype="float32")
    np.testing.assert_allclose(to_numpy(l2_normalize(x)), [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_losses_reject_mismatched_and_single_row_batches():
    a = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="same number of rows"):
        contrastive_loss(a, a[:2], 10.0)
    with pytest.raises(ValueError, match="at least 2"):
        sigmoid_contrastive_loss(a[:1], a[:1], 10.0, -10.0)
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        contrastive_loss(a[0], a[0], 10.0)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_3t_loss_is_the_weighted_sum_of_its_pairs(loss):
    weights = (0.5, 0.2, 0.3)
    model = tiny_model(pair_weights=weights, loss=loss)
    values = model.compute_objective(toy_batch(8, seed=3))
    pairs = [
        to_numpy(values[k]) for k in ("loss_image_text", "loss_image_third", "loss_text_third")
    ]
    np.testing.assert_allclose(to_numpy(values["loss"]), np.dot(weights, pairs), rtol=1e-6)
    assert all(p > 0 for p in pairs)


def test_pair_loss_uses_the_pair_logit_scale_and_bias():
    model = tiny_model(loss="sigmoid")
    batch = toy_batch(6, seed=4)
    model.logit_scales["_image_text"].assign(np.log(20.0))
    model.logit_biases["_image_text"].assign(-3.0)
    values = model.compute_objective(batch)
    f = to_numpy(model.encode_image(batch["images"])).astype("float64")
    g = to_numpy(model.encode_text(batch)).astype("float64")
    np.testing.assert_allclose(
        to_numpy(values["loss_image_text"]),
        reference_sigmoid_loss(f, g, 20.0, -3.0),
        rtol=1e-4,
    )
