"""Few-shot linear probe: closed-form ridge regression on frozen embeddings."""

import numpy as np
from keras import ops

from keras_3t.evaluation.checks import check_same_dim
from keras_3t.evaluation.checks import positive_integers

DEFAULT_SHOTS = (1, 5, 10, 25)


def _check_embeddings_and_labels(embeddings, labels, name):
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    if embeddings.ndim != 2:
        raise ValueError(f"{name}_embeddings must be 2-D (count, dim); got shape {embeddings.shape}.")
    if labels.shape != (len(embeddings),):
        raise ValueError(
            f"{name}_labels must have one label per embedding: expected shape "
            f"({len(embeddings)},), got {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}_labels must be integers; got dtype {labels.dtype}.")
    return embeddings, labels


def ridge_regression_predict(train_features, train_targets, test_features, l2_regularization):
    """Least squares with an L2 penalty, solved in closed form; test scores.

    Features are centred and scaled by the training statistics and the
    targets centred (so the bias is the targets' mean). The system solved is
    the smaller of the primal `(XᵀX + λI) W = XᵀY` (n ≥ d) and the dual
    `(XXᵀ + λI) A = Y, W = XᵀA` (n < d), which give the same W.
    """
    x = ops.convert_to_tensor(train_features, "float32")
    y = ops.convert_to_tensor(train_targets, "float32")
    mean = ops.mean(x, axis=0)
    scale = ops.std(x, axis=0) + 1e-6
    x = (x - mean) / scale
    target_mean = ops.mean(y, axis=0)
    y = y - target_mean
    num_examples, dim = train_features.shape
    if num_examples >= dim:
        gram = ops.matmul(ops.transpose(x), x) + l2_regularization * ops.eye(dim)
        weights = ops.solve(gram, ops.matmul(ops.transpose(x), y))
    else:
        gram = ops.matmul(x, ops.transpose(x)) + l2_regularization * ops.eye(num_examples)
        weights = ops.matmul(ops.transpose(x), ops.solve(gram, y))
    test = (ops.convert_to_tensor(test_features, "float32") - mean) / scale
    return ops.convert_to_numpy(ops.matmul(test, weights) + target_mean)


def few_shot_linear_probe(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    shots=DEFAULT_SHOTS,
    num_draws=3,
    l2_regularization=1.0,
    seed=0,
):
    """Few-shot accuracy of a linear classifier on frozen embeddings.

    As big_vision's few-shot evaluator: for each shot count k, draw k
    training examples of every class, fit a least-squares linear classifier
    to ±1 one-hot targets with an L2 penalty in closed form, and classify
    the test set by the highest score. The accuracy is averaged over
    `num_draws` seeded draws of the k-shot training sets.

    Args:
        train_embeddings: `(N, dim)` embeddings to draw the shots from.
        train_labels: `(N,)` integer labels; every class of the test set
            needs at least `max(shots)` examples here.
        test_embeddings: `(M, dim)` embeddings to classify.
        test_labels: `(M,)` integer labels.
        shots: the shot counts k.
        num_draws: draws of the k-shot sets per k.
        l2_regularization: the ridge penalty λ (features are standardised
            first, so λ is relative to unit-variance features).
        seed: the draws use `numpy.random.default_rng(seed + draw)`.

    Returns:
        `{"few_shot_<k>": mean accuracy, "few_shot_<k>_std": its standard
        deviation over draws}` for each k.

    Example:
    >>> import numpy as np
    >>> from keras_3t.evaluation import few_shot_linear_probe
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(3, 8))
    >>> labels = np.tile([0, 1, 2], 20)
    >>> embeddings = centres[labels] + 0.1 * rng.normal(size=(60, 8))
    >>> result = few_shot_linear_probe(embeddings[:30], labels[:30],
    ...     embeddings[30:], labels[30:], shots=(1, 5))
    >>> result["few_shot_5"]
    1.0
    """
    train, train_labels = _check_embeddings_and_labels(train_embeddings, train_labels, "train")
    test, test_labels = _check_embeddings_and_labels(test_embeddings, test_labels, "test")
    check_same_dim(train, test, "Train and test")
    shots = positive_integers(shots, "shots")
    classes = np.unique(np.concatenate([train_labels, test_labels]))
    members = {c: np.nonzero(train_labels == c)[0] for c in classes}
    for c, indices in members.items():
        if len(indices) < max(shots):
            raise ValueError(
                f"Class {c} has {len(indices)} training example(s), fewer than "
                f"the {max(shots)} shots asked for."
            )
    targets = 2.0 * (train_labels[:, None] == classes[None, :]) - 1.0
    results = {}
    for k in shots:
        accuracies = []
        for draw in range(num_draws):
            rng = np.random.default_rng(seed + draw)
            chosen = np.concatenate(
                [rng.choice(members[c], size=k, replace=False) for c in classes]
            )
            scores = ridge_regression_predict(
                train[chosen], targets[chosen], test, l2_regularization
            )
            predicted = classes[np.argmax(scores, axis=1)]
            accuracies.append(np.mean(predicted == test_labels))
        results[f"few_shot_{k}"] = float(np.mean(accuracies))
        results[f"few_shot_{k}_std"] = float(np.std(accuracies))
    return results
