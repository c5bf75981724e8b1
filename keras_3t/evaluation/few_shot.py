"""Few-shot linear probe: closed-form ridge regression on frozen embeddings."""

import numpy as np
from keras import ops

from keras_3t.evaluation.checks import check_same_dim
from keras_3t.evaluation.checks import positive_integers

DEFAULT_SHOTS = (1, 5, 10, 25)
# The ridge penalties leave-one-out cross-validation chooses from: 10⁻³ to
# 10⁴ in half-decade steps, for features of unit total variance.
DEFAULT_L2_GRID = tuple(float(10**e) for e in np.arange(-3.0, 4.5, 0.5))


def _check_embeddings_and_labels(embeddings, labels, name):
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    if embeddings.ndim != 2:
        raise ValueError(
            f"{name}_embeddings must be 2-D (count, dim); got shape {embeddings.shape}."
        )
    if labels.shape != (len(embeddings),):
        raise ValueError(
            f"{name}_labels must have one label per embedding: expected shape "
            f"({len(embeddings)},), got {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}_labels must be integers; got dtype {labels.dtype}.")
    return embeddings, labels


def _standardize(train, test):
    """Centres by the training mean and divides by one scalar for all features.

    The scalar is the root of the features' total training variance (the
    RMS distance of the examples from their mean), so the features keep
    their relative scales: a per-feature scaling would undo the √α and
    √(1−α) weights of the α-combination, and give the same probe at every α
    in (0, 1). Features that are constant (the zero half of the combination
    at α = 0) change nothing.
    """
    mean = ops.mean(train, axis=0)
    scale = ops.sqrt(ops.sum(ops.var(train, axis=0))) + 1e-6
    return (train - mean) / scale, (test - mean) / scale


def ridge_regression_predict(train_features, train_targets, test_features, l2_regularization):
    """Least squares with an L2 penalty, solved in closed form; test scores.

    Features are centred and scaled by one scalar from the training
    statistics (`_standardize`) and the targets centred (so the bias is the
    targets' mean). The system solved is the smaller of the primal
    `(XᵀX + λI) W = XᵀY` (n ≥ d) and the dual `(XXᵀ + λI) A = Y, W = XᵀA`
    (n < d), which give the same W.
    """
    x, test = _standardize(
        ops.convert_to_tensor(train_features, "float32"),
        ops.convert_to_tensor(test_features, "float32"),
    )
    y = ops.convert_to_tensor(train_targets, "float32")
    target_mean = ops.mean(y, axis=0)
    y = y - target_mean
    num_examples, dim = train_features.shape
    if num_examples >= dim:
        gram = ops.matmul(ops.transpose(x), x) + l2_regularization * ops.eye(dim)
        weights = ops.solve(gram, ops.matmul(ops.transpose(x), y))
    else:
        gram = ops.matmul(x, ops.transpose(x)) + l2_regularization * ops.eye(num_examples)
        weights = ops.matmul(ops.transpose(x), ops.solve(gram, y))
    return ops.convert_to_numpy(ops.matmul(test, weights) + target_mean)


def leave_one_out_errors(train_features, train_targets, l2_grid):
    """Mean squared leave-one-out error of the ridge probe at each λ of a grid.

    Computed in closed form, without refitting: with the centred, scaled
    features `X` (`_standardize`), the hat matrix of ridge regression with an
    unpenalised bias is `H = 11ᵀ/n + U diag(s / (s + λ)) Uᵀ`, where
    `XXᵀ = U diag(s) Uᵀ`, and the residual of example i left out is
    `(y_i − ŷ_i) / (1 − H_ii)`.

    Returns:
        A NumPy array, one mean squared error per λ.
    """
    x = ops.convert_to_tensor(train_features, "float32")
    x, _ = _standardize(x, x)
    y = ops.convert_to_tensor(train_targets, "float32")
    num_examples = train_features.shape[0]
    eigenvalues, eigenvectors = ops.eigh(ops.matmul(x, ops.transpose(x)))
    eigenvalues = ops.maximum(eigenvalues, 0.0)
    target_mean = ops.mean(y, axis=0)
    projected = ops.matmul(ops.transpose(eigenvectors), y - target_mean)
    errors = []
    for l2 in l2_grid:
        shrink = eigenvalues / (eigenvalues + l2)
        fitted = target_mean + ops.matmul(eigenvectors, shrink[:, None] * projected)
        leverage = 1.0 / num_examples + ops.sum(eigenvectors**2 * shrink[None, :], axis=1)
        residuals = (y - fitted) / ops.maximum(1.0 - leverage, 1e-6)[:, None]
        errors.append(ops.convert_to_numpy(ops.mean(residuals**2)))
    return np.array(errors)


def choose_l2_regularization(train_features, train_targets, l2_grid=DEFAULT_L2_GRID):
    """The λ of the grid with the lowest leave-one-out error on the shots.

    Only the training shots are used. Errors within 0.1 % of the lowest count
    as ties and go to the larger λ: where the error is flat in λ, float
    rounding would otherwise decide.
    """
    errors = leave_one_out_errors(train_features, train_targets, l2_grid)
    best = np.flatnonzero(errors <= errors.min() * (1 + 1e-3))
    return float(l2_grid[best[-1]])


def few_shot_linear_probe(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    shots=DEFAULT_SHOTS,
    num_draws=3,
    l2_regularization="cv",
    l2_grid=DEFAULT_L2_GRID,
    seed=0,
):
    """Few-shot accuracy of a linear classifier on frozen embeddings.

    As big_vision's few-shot evaluator: for each shot count k, draw k
    training examples of every class, fit a least-squares linear classifier
    to ±1 one-hot targets with an L2 penalty in closed form, and classify
    the test set by the highest score. The accuracy is averaged over
    `num_draws` seeded draws of the k-shot training sets.

    The penalty λ is chosen for each draw from `l2_grid` by leave-one-out
    cross-validation on that draw's shots alone (`choose_l2_regularization`),
    never on the test set. Features are centred and divided by one common
    scale, not per feature, so the probe sees the α-combination's weights.

    Args:
        train_embeddings: `(N, dim)` embeddings to draw the shots from.
        train_labels: `(N,)` integer labels; every class of the test set
            needs at least `max(shots)` examples here.
        test_embeddings: `(M, dim)` embeddings to classify.
        test_labels: `(M,)` integer labels.
        shots: the shot counts k.
        num_draws: draws of the k-shot sets per k.
        l2_regularization: `"cv"` to choose λ from `l2_grid`, or a fixed λ
            (relative to features of unit total variance).
        l2_grid: the λ values `"cv"` chooses from; default
            `DEFAULT_L2_GRID`, 10⁻³ to 10⁴ in half-decade steps.
        seed: the draws use `numpy.random.default_rng(seed + draw)`.

    Returns:
        `{"few_shot_<k>": mean accuracy, "few_shot_<k>_std": its standard
        deviation over draws, "few_shot_<k>_l2": the median λ used}` for
        each k.

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
    l2_grid = np.asarray(l2_grid, "float64")
    if l2_regularization == "cv":
        if l2_grid.ndim != 1 or not len(l2_grid) or np.any(l2_grid <= 0):
            raise ValueError(f"l2_grid must be positive values; got {l2_grid.tolist()}.")
    elif isinstance(l2_regularization, str) or not l2_regularization > 0:
        raise ValueError(
            f"l2_regularization must be 'cv' or a positive number; got {l2_regularization!r}."
        )
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
        accuracies, penalties = [], []
        for draw in range(num_draws):
            rng = np.random.default_rng(seed + draw)
            chosen = np.concatenate(
                [rng.choice(members[c], size=k, replace=False) for c in classes]
            )
            l2 = l2_regularization
            if l2 == "cv":
                l2 = choose_l2_regularization(train[chosen], targets[chosen], l2_grid)
            scores = ridge_regression_predict(train[chosen], targets[chosen], test, l2)
            predicted = classes[np.argmax(scores, axis=1)]
            accuracies.append(np.mean(predicted == test_labels))
            penalties.append(l2)
        results[f"few_shot_{k}"] = float(np.mean(accuracies))
        results[f"few_shot_{k}_std"] = float(np.std(accuracies))
        results[f"few_shot_{k}_l2"] = float(np.median(penalties))
    return results
