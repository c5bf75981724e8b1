"""keras_3t.evaluation.retrieval: recall@k against a brute-force reference."""

import keras
import numpy as np
import pytest

from keras_3t.evaluation import retrieval_metrics
from keras_3t.evaluation import top_k_matches


def brute_force_retrieval(images, texts, text_to_image, ks, tie_tolerance=1e-5):
    """The definition, written plainly over the full float64 score matrix."""
    images = np.asarray(images, np.float64)
    texts = np.asarray(texts, np.float64)
    scores = texts @ images.T
    norms_t = np.linalg.norm(texts, axis=1)
    norms_i = np.linalg.norm(images, axis=1)
    text_ranks = []
    for j, i in enumerate(text_to_image):
        threshold = scores[j, i] - tie_tolerance * norms_t[j] * norms_i[i]
        wrong = [scores[j, other] for other in range(len(images)) if other != i]
        text_ranks.append(sum(s >= threshold for s in wrong))
    image_ranks = []
    for i in range(len(images)):
        own = [j for j, owner in enumerate(text_to_image) if owner == i]
        if not own:
            continue
        best = max(scores[j, i] for j in own)
        tolerance = max(
            tie_tolerance * norms_t[j] * norms_i[i] for j in own if scores[j, i] == best
        )
        wrong = [scores[j, i] for j in range(len(texts)) if j not in own]
        image_ranks.append(sum(s >= best - tolerance for s in wrong))
    metrics = {f"image_to_text_r{k}": float(np.mean(np.array(image_ranks) < k)) for k in ks}
    metrics.update({f"text_to_image_r{k}": float(np.mean(np.array(text_ranks) < k)) for k in ks})
    return metrics


def _normalized(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def _multi_caption_problem(seed, num_images=40, dim=16):
    """Images with 0–3 noisy captions each, shuffled."""
    rng = np.random.default_rng(seed)
    images = _normalized(rng, num_images, dim)
    counts = rng.integers(0, 4, num_images)
    text_to_image = rng.permutation(np.repeat(np.arange(num_images), counts))
    noisy = images[text_to_image] + 0.9 * rng.normal(size=(len(text_to_image), dim))
    texts = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype("float32")
    return images, texts, text_to_image


KS = (1, 5, 10, 100)  # 100 > every set: always a hit


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("block_size", [7, 10, 4096])
def test_matches_brute_force_on_multi_caption_random_data(seed, block_size):
    images, texts, text_to_image = _multi_caption_problem(seed)
    got = retrieval_metrics(images, texts, text_to_image, ks=KS, block_size=block_size)
    assert got == brute_force_retrieval(images, texts, text_to_image, KS)
    assert got["image_to_text_r100"] == got["text_to_image_r100"] == 1.0
    assert 0.0 < got["text_to_image_r1"] < got["text_to_image_r10"]


@pytest.mark.parametrize("tie_tolerance", [0.0, 1e-5])
@pytest.mark.parametrize("block_size", [4, 5, 64])
def test_matches_brute_force_with_exact_ties(tie_tolerance, block_size):
    # Small integer embeddings: every score is exact, and many tie.
    rng = np.random.default_rng(3)
    images = rng.integers(-1, 2, (20, 3)).astype("float32")
    text_to_image = rng.integers(0, 20, 30)
    texts = rng.integers(-1, 2, (30, 3)).astype("float32")
    got = retrieval_metrics(
        images,
        texts,
        text_to_image,
        ks=KS,
        block_size=block_size,
        tie_tolerance=tie_tolerance,
    )
    assert got == brute_force_retrieval(images, texts, text_to_image, KS, tie_tolerance)


def test_a_tie_with_a_wrong_item_counts_against():
    images = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")  # identical images
    texts = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    metrics = retrieval_metrics(images, texts, [0, 1], ks=(1, 2))
    # Caption 0 ties its image with image 1: not a hit at 1, a hit at 2.
    assert metrics["text_to_image_r1"] == 0.0
    assert metrics["text_to_image_r2"] == 1.0


def test_any_caption_of_an_image_is_a_hit():
    images = np.eye(2, dtype="float32")
    texts = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1]], "float32")
    # Image 0 owns captions 0 (a poor one) and 1 (a perfect one).
    metrics = retrieval_metrics(images, texts, [0, 0, 1], ks=(1,))
    assert metrics["image_to_text_r1"] == 0.5  # image 1's caption 2 loses to caption 1
    # Only caption 1 has its own image nearest.
    assert metrics["text_to_image_r1"] == pytest.approx(1 / 3)


def test_accepts_backend_tensors_and_memmaps(tmp_path):
    images, texts, text_to_image = _multi_caption_problem(5)
    expected = retrieval_metrics(images, texts, text_to_image)
    mapped = np.memmap(tmp_path / "images.f32", "float32", "w+", shape=images.shape)
    mapped[:] = images
    assert retrieval_metrics(mapped, keras.ops.convert_to_tensor(texts), text_to_image) == expected


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.ones((3, 4)), np.ones((2, 5)), [0, 1]), "different sizes"),
        ((np.ones((3, 4)), np.ones((2, 4)), [0, 1, 2]), r"expected shape \(2,\)"),
        ((np.ones((3, 4)), np.ones((2, 4)), [0, 3]), r"text_to_image\[1\] = 3"),
        ((np.ones((3, 4)), np.ones((2, 4)), [-1, 0]), r"text_to_image\[0\] = -1"),
        ((np.ones((3, 4)), np.ones((2, 4)), [0.0, 1.0]), "integer"),
        ((np.ones((0, 4)), np.ones((2, 4)), [0, 1]), "non-empty 2-D"),
        ((np.ones(4), np.ones((2, 4)), [0, 1]), "non-empty 2-D"),
    ],
    ids=["dims", "lengths", "index-high", "index-negative", "float-index", "empty", "rank"],
)
def test_bad_input_raises_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(*args)


def test_bad_ks_and_block_size():
    with pytest.raises(ValueError, match="ks must be positive"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], ks=(0,))
    with pytest.raises(ValueError, match="block_size"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], block_size=0)


def test_top_k_matches_in_blocks_are_the_best_rows_with_ties_to_the_earlier_row():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 8)).astype("float32")
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[[10, 31]] = rows[3]  # exact ties with row 3, the best match of itself
    queries = np.concatenate([rows[[3]], rng.normal(size=(4, 8)).astype("float32")])
    expected = np.argsort(-(queries @ rows.T), axis=1, kind="stable")[:, :7]
    for block_size in (1, 6, 50, 4096):
        scores, indices = top_k_matches(queries, rows, k=7, block_size=block_size)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(
            scores, np.take_along_axis(queries @ rows.T, expected, 1), rtol=1e-5
        )
    assert indices[0, :3].tolist() == [3, 10, 31]
    # k beyond the rows gives every row.
    scores, indices = top_k_matches(queries[:1], rows[:4], k=10, block_size=3)
    assert indices.tolist() == [[3, 0, 1, 2]] or indices[0, 0] == 3
    assert sorted(indices[0].tolist()) == [0, 1, 2, 3]


def test_top_k_matches_refuses_bad_shapes_and_k():
    rows = np.eye(3, dtype="float32")
    with pytest.raises(ValueError, match="Query and collection"):
        top_k_matches(np.ones((1, 2), "float32"), rows)
    with pytest.raises(ValueError, match="k must be positive"):
        top_k_matches(rows, rows, k=0)
    with pytest.raises(ValueError, match="embeddings must be a non-empty 2-D array"):
        top_k_matches(rows, np.zeros((0, 3), "float32"))
