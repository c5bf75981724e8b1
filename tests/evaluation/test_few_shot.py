"""keras_3t.evaluation.few_shot: the ridge linear probe."""

import numpy as np
import pytest

from keras_3t.evaluation import few_shot_linear_probe
from keras_3t.evaluation.few_shot import DEFAULT_L2_GRID
from keras_3t.evaluation.few_shot import choose_l2_regularization
from keras_3t.evaluation.few_shot import leave_one_out_errors
from keras_3t.evaluation.few_shot import ridge_regression_predict


def reference_ridge_scores(train, targets, test, l2):
    """The same estimator in float64 NumPy, written in the primal form."""
    train, targets, test = (np.asarray(a, np.float64) for a in (train, targets, test))
    mean, scale = train.mean(0), np.sqrt(train.var(0).sum()) + 1e-6
    x = (train - mean) / scale
    y_mean = targets.mean(0)
    w = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ (targets - y_mean))
    return ((test - mean) / scale) @ w + y_mean


@pytest.mark.parametrize("num_examples, dim", [(40, 6), (6, 40)], ids=["primal", "dual"])
def test_ridge_scores_match_float64_reference(num_examples, dim):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(num_examples, dim)).astype("float32")
    targets = 2.0 * np.eye(3)[rng.integers(0, 3, num_examples)] - 1.0
    test = rng.normal(size=(10, dim)).astype("float32")
    got = ridge_regression_predict(train, targets, test, 1.0)
    np.testing.assert_allclose(
        got, reference_ridge_scores(train, targets, test, 1.0), rtol=2e-3, atol=2e-3
    )


def _clusters(seed, num_classes=4, per_class=30, dim=16, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    return centres[labels] + noise * rng.normal(size=(len(labels), dim)), labels


def test_probe_matches_a_reference_on_the_same_draws():
    train, train_labels = _clusters(1, noise=1.5)
    test, test_labels = _clusters(1, noise=1.5)
    result = few_shot_linear_probe(
        train,
        train_labels,
        test,
        test_labels,
        shots=(2, 5),
        num_draws=2,
        seed=7,
        l2_regularization=1.0,
    )
    classes = np.arange(4)
    targets = 2.0 * np.eye(4)[train_labels] - 1.0
    for k in (2, 5):
        accuracies = []
        for draw in range(2):
            rng = np.random.default_rng(7 + draw)
            chosen = np.concatenate(
                [rng.choice(np.nonzero(train_labels == c)[0], k, replace=False) for c in classes]
            )
            scores = reference_ridge_scores(train[chosen], targets[chosen], test, 1.0)
            accuracies.append(np.mean(scores.argmax(1) == test_labels))
        assert result[f"few_shot_{k}"] == pytest.approx(np.mean(accuracies))
        assert result[f"few_shot_{k}_std"] == pytest.approx(np.std(accuracies))


def test_separable_data_is_learned_and_random_labels_are_not():
    train, train_labels = _clusters(2)
    separable = few_shot_linear_probe(train, train_labels, train, train_labels, shots=(5, 10))
    assert separable["few_shot_5"] > 0.95 and separable["few_shot_10"] > 0.95
    rng = np.random.default_rng(4)
    random = few_shot_linear_probe(
        train,
        rng.permutation(train_labels),
        train,
        rng.permutation(train_labels),
        shots=(5,),
        num_draws=5,
    )
    assert random["few_shot_5"] < 0.5  # chance is 0.25


def test_draws_are_seeded():
    data = (*_clusters(5, noise=2.0), *_clusters(6, noise=2.0))
    first = few_shot_linear_probe(*data, shots=(1,), num_draws=4, seed=0)
    assert first == few_shot_linear_probe(*data, shots=(1,), num_draws=4, seed=0)
    assert first != few_shot_linear_probe(*data, shots=(1,), num_draws=4, seed=100)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(train_labels=np.zeros(5, int)), "one label per embedding"),
        (dict(test_embeddings=np.ones((8, 3))), "different sizes"),
        (dict(train_embeddings=np.ones(120)), "must be 2-D"),
        (dict(shots=(40,)), "Class 0 has 30 training example"),
        (dict(shots=()), "shots must be positive"),
        (dict(shots=(0,)), "shots must be positive"),
        (dict(train_labels=np.zeros(120)), "integers"),
        (dict(l2_regularization="auto"), "'cv' or a positive number"),
        (dict(l2_regularization=0.0), "'cv' or a positive number"),
        (dict(l2_grid=(1.0, -1.0)), "l2_grid must be positive"),
    ],
)
def test_bad_input_raises_value_error(change, message):
    train, train_labels = _clusters(0)
    arguments = dict(
        train_embeddings=train,
        train_labels=train_labels,
        test_embeddings=train[:8],
        test_labels=train_labels[:8],
    )
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        few_shot_linear_probe(**arguments)


def test_leave_one_out_errors_equal_refitting_without_each_example():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(12, 5)).astype("float32")
    targets = 2.0 * np.eye(3)[rng.integers(0, 3, 12)] - 1.0
    grid = (0.01, 1.0, 100.0)
    # The closed form keeps the features' scaling from all 12 examples and
    # refits the bias (the targets' and features' means) without example i.
    x = (train - train.mean(0)) / np.sqrt(train.var(0).sum())
    expected = []
    for l2 in grid:
        squared = []
        for i in range(12):
            keep = np.arange(12) != i
            mean, y_mean = x[keep].mean(0), targets[keep].mean(0)
            xc = x[keep] - mean
            w = np.linalg.solve(xc.T @ xc + l2 * np.eye(5), xc.T @ (targets[keep] - y_mean))
            squared.append((targets[i] - ((x[i] - mean) @ w + y_mean)) ** 2)
        expected.append(np.mean(squared))
    np.testing.assert_allclose(leave_one_out_errors(train, targets, grid), expected, rtol=1e-3)


def test_cross_validation_picks_a_small_penalty_for_clean_data_and_a_large_one_for_noise():
    train, labels = _clusters(8, per_class=10, dim=4, noise=0.05)
    targets = 2.0 * np.eye(4)[labels] - 1.0
    assert choose_l2_regularization(train, targets) <= 0.1
    rng = np.random.default_rng(9)
    noise = rng.normal(size=(40, 30))
    # Scaled to unit total variance, the noise's Gram eigenvalues are about
    # n / d ≈ 1.3: λ ≥ 10 shrinks its fit at least 8-fold.
    assert choose_l2_regularization(noise, targets) >= 10.0
    assert choose_l2_regularization(noise, targets, l2_grid=(0.5, 2.0)) == 2.0


def test_the_probe_reports_the_chosen_penalty_from_the_grid():
    data = (*_clusters(5, noise=2.0), *_clusters(6, noise=2.0))
    result = few_shot_linear_probe(*data, shots=(1, 5), num_draws=1)
    assert {result["few_shot_1_l2"], result["few_shot_5_l2"]} <= set(DEFAULT_L2_GRID)
    fixed = few_shot_linear_probe(*data, shots=(5,), num_draws=1, l2_regularization=3.0)
    assert fixed["few_shot_5_l2"] == 3.0


def test_the_probe_sees_the_alpha_weights_but_not_a_common_scale():
    """[√α a, √(1−α) b] with a informative and b noise: accuracy rises with α.

    With per-feature standardisation every α in (0, 1) gave the same probe.
    """
    rng = np.random.default_rng(11)
    informative, labels = _clusters(12, num_classes=5, per_class=40, dim=24, noise=1.2)
    noise = 3.0 * rng.normal(size=informative.shape)
    split = np.arange(len(labels)) % 2 == 0

    def probe(alpha, scale=1.0):
        features = scale * np.concatenate(
            [np.sqrt(alpha) * informative, np.sqrt(1 - alpha) * noise], axis=1
        )
        return few_shot_linear_probe(
            features[split],
            labels[split],
            features[~split],
            labels[~split],
            shots=(5,),
            num_draws=3,
        )

    accuracy = {alpha: probe(alpha)["few_shot_5"] for alpha in (0.05, 0.5, 0.95)}
    assert accuracy[0.05] < accuracy[0.5] < accuracy[0.95]
    assert probe(0.5, scale=7.0)["few_shot_5"] == pytest.approx(accuracy[0.5])
