"""Contrastive losses of paired embeddings, written once with `keras.ops`.

Both losses take two batches of L2-normalised embeddings `a` and `b` of shape
`(batch, dim)` where row `i` of `a` and row `i` of `b` come from the same
example (a positive pair) and every other row is a negative.

Under data parallelism (`replicas`, see `keras_3t.distributed.Replicas`) each
replica holds a slice of the global batch, and the negatives are still the
whole global batch: each replica gathers every replica's embeddings (with
gradient) before forming the logits. The value each replica returns
estimates the global loss, and the replicas' values average to it exactly:

- global (default): every replica computes the full global loss;
- `local=True` (open_clip's `local_loss`): each replica computes only its own
  rows' terms, its rows against the gathered columns, with its labels offset
  by `index * rows`; memory per replica is `rows × global batch` logits
  instead of `global batch²`, and the value and gradient of the average are
  those of the global loss.
"""

from keras import ops

from keras_3t.distributed import Replicas

# big_vision normalises with z / (||z|| + 1e-8): finite for an all-zero row.
_NORM_EPSILON = 1e-8


def l2_normalize(x, axis=-1):
    """Scales `x` to unit L2 norm along `axis` (zero rows stay zero)."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / (norm + _NORM_EPSILON)


def normalized_embedding(embedding):
    """A tower's embedding, unit-normalised in float32.

    The losses are computed in float32 under any dtype policy
    (`mixed_bfloat16` included).
    """
    return l2_normalize(ops.cast(embedding, "float32"))


def _check_pair(a, b, replicas):
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(
            "Contrastive losses take two batches of embeddings of shape "
            f"(batch, dim); got shapes {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.shape[0] is not None and b.shape[0] is not None:
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                "The two embedding batches must have the same number of rows "
                f"(row i of each is a positive pair); got {a.shape[0]} and "
                f"{b.shape[0]}."
            )
        if a.shape[0] * replicas.count < 2:
            raise ValueError(
                "A contrastive loss needs a batch of at least 2 examples (the "
                f"other rows are the negatives); got a batch of {a.shape[0]}."
            )


def _positive_columns(rows, replicas):
    """The gathered column of each local row's positive: `index * rows + row`."""
    return ops.arange(rows) + replicas.index * rows


def _positive_logits(logits, replicas):
    """The logit of each local row's positive."""
    columns = _positive_columns(ops.shape(logits)[0], replicas)
    return ops.take_along_axis(logits, ops.expand_dims(columns, 1), axis=1)[:, 0]


def contrastive_loss(a, b, logit_scale, replicas=None, local=False):
    """Symmetric softmax (CLIP / InfoNCE) loss of two embedding batches.

    `logits = logit_scale * a @ b.T`; the loss is the mean of the
    cross-entropies of rows (a→b) and of columns (b→a), each with the diagonal
    as the target, averaged over the batch.

    Args:
        a: float tensor `(batch, dim)`, L2-normalised rows.
        b: float tensor `(batch, dim)`, L2-normalised rows.
        logit_scale: scalar multiplier of the cosine similarities (the inverse
            temperature, `exp(s)` for a log-parameter `s`).
        replicas: the `keras_3t.distributed.Replicas` of a data-parallel step, in
            which `a` and `b` are this replica's slices; `None` for one device.
        local: bool. Compute only this replica's rows (see the module
            docstring); same average value and gradient, less memory.

    Returns:
        A scalar tensor.

    Example:
    >>> import numpy as np
    >>> from keras_3t.losses import contrastive_loss, l2_normalize
    >>> a = l2_normalize(np.random.rand(4, 8).astype("float32"))
    >>> float(contrastive_loss(a, a, 100.0)) < 0.01
    True
    """
    replicas = replicas or Replicas()
    _check_pair(a, b, replicas)
    all_a, all_b = replicas.gather(a), replicas.gather(b)
    if not local:
        logits = logit_scale * ops.matmul(all_a, ops.transpose(all_b))
        positives = ops.diagonal(logits)
        loss_a_to_b = ops.logsumexp(logits, axis=1) - positives
        loss_b_to_a = ops.logsumexp(logits, axis=0) - positives
        return 0.5 * (ops.mean(loss_a_to_b) + ops.mean(loss_b_to_a))
    # Rows of a against all of b, and rows of b against all of a (the
    # columns of the global logits that belong to this replica).
    logits_a = logit_scale * ops.matmul(a, ops.transpose(all_b))
    logits_b = logit_scale * ops.matmul(b, ops.transpose(all_a))
    loss_a_to_b = ops.logsumexp(logits_a, axis=1) - _positive_logits(logits_a, replicas)
    loss_b_to_a = ops.logsumexp(logits_b, axis=1) - _positive_logits(logits_b, replicas)
    return 0.5 * (ops.mean(loss_a_to_b) + ops.mean(loss_b_to_a))


def sigmoid_contrastive_loss(a, b, logit_scale, logit_bias, replicas=None, local=False):
    """SigLIP pairwise sigmoid loss of two embedding batches.

    Every pair (i, j) is an independent binary problem, positive when i == j:
    `logits = logit_scale * a @ b.T + logit_bias`, and the loss is
    `-sum(log_sigmoid(labels * logits)) / batch` with labels +1 on the diagonal
    and -1 elsewhere (Zhai et al., 2023: normalised per example).

    Args:
        a: float tensor `(batch, dim)`, L2-normalised rows.
        b: float tensor `(batch, dim)`, L2-normalised rows.
        logit_scale: scalar multiplier of the cosine similarities.
        logit_bias: scalar added to every logit (SigLIP initialises it at -10
            so that the many negatives start with a small loss).
        replicas: the `keras_3t.distributed.Replicas` of a data-parallel step, in
            which `a` and `b` are this replica's slices; `None` for one device.
        local: bool. Compute only this replica's rows against all columns;
            same average value and gradient, less memory.

    Returns:
        A scalar tensor.

    Example:
    >>> import numpy as np
    >>> from keras_3t.losses import sigmoid_contrastive_loss, l2_normalize
    >>> a = l2_normalize(np.random.rand(4, 8).astype("float32"))
    >>> float(sigmoid_contrastive_loss(a, a, 10.0, -10.0)) > 0
    True
    """
    replicas = replicas or Replicas()
    _check_pair(a, b, replicas)
    all_b = replicas.gather(b)
    rows_a = a if local else replicas.gather(a)
    logits = logit_scale * ops.matmul(rows_a, ops.transpose(all_b)) + logit_bias
    rows, columns = ops.shape(logits)[0], ops.shape(logits)[1]
    positive = _positive_columns(rows, replicas) if local else ops.arange(rows)
    labels = 2.0 * ops.one_hot(positive, columns, dtype=logits.dtype) - 1.0
    total = -ops.sum(ops.log_sigmoid(labels * logits))
    return total / ops.cast(rows, logits.dtype)
