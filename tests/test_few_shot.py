import numpy as np
import pytest

from keras_3t.evaluation import few_shot_linear_probe
from keras_3t.evaluation.few_shot import ridge_regression_predict


def reference_ridge_scores(train, targets, test, l2):
    """The same estimator in float64 NumPy, written in the primal form."""
    train, targets, test = (np.asarray(a, np.float64) for a in (train, targets, test))
    mean, scale = train.mean(0), train.std(0) + 1e-6
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
    np.testing.assert_allclose(got, reference_ridge_scores(train, targets, test, 1.0),
                               rtol=2e-3, atol=2e-3)


def _clusters(seed, num_classes=4, per_class=30, dim=16, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    return centres[labels] + noise * rng.normal(size=(len(labels), dim)), labels


def test_probe_matches_a_reference_on_the_same_draws():
    train, train_labels = _clusters(1, noise=1.5)
    test, test_labels = _clusters(1, noise=1.5)
    result = few_shot_linear_probe(train, train_labels, test, test_labels,
                                   shots=(2, 5), num_draws=2, seed=7)
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
    random = few_shot_linear_probe(train, rng.permutation(train_labels), train,
                                   rng.permutation(train_labels), shots=(5,), num_draws=5)
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
    ],
)
def test_bad_input_raises_value_error(change, message):
    train, train_labels = _clusters(0)
    arguments = dict(train_embeddings=train, train_labels=train_labels,
                     test_embeddings=train[:8], test_labels=train_labels[:8])
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        few_shot_linear_probe(**arguments)
