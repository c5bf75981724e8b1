"""Pooling of backbone outputs to one vector per example."""

from keras import ops

IMAGE_POOLINGS = ("auto", "token", "mean", "none")
TEXT_POOLINGS = ("first", "last", "mean")


def pool_image_features(features, pooling):
    """Pools an image backbone's output to `(batch, dim)`.

    Args:
        features: `(batch, dim)`, `(batch, tokens, dim)` (a ViT) or
            `(batch, height, width, dim)` (a CNN feature map).
        pooling: `"token"` takes the first token (a ViT's class token),
            `"mean"` averages every axis between batch and channels, `"none"`
            expects the backbone to be pooled already, and `"auto"` picks
            `"none"`, `"token"` or `"mean"` for rank 2, 3 or 4.
    """
    rank = len(features.shape)
    if pooling == "auto":
        pooling = {2: "none", 3: "token", 4: "mean"}.get(rank)
        if pooling is None:
            raise ValueError(
                "Cannot pool a backbone output of rank "
                f"{rank} (shape {tuple(features.shape)}); expected rank 2, 3 or 4."
            )
    if pooling == "none":
        if rank != 2:
            raise ValueError(
                f"pooling='none' needs a pooled (batch, dim) backbone output; "
                f"got shape {tuple(features.shape)}."
            )
        return features
    if pooling == "token":
        if rank != 3:
            raise ValueError(
                "pooling='token' needs a (batch, tokens, dim) backbone output; "
                f"got shape {tuple(features.shape)}."
            )
        return features[:, 0, :]
    if pooling == "mean":
        return ops.mean(features, axis=tuple(range(1, rank - 1)))
    raise ValueError(f"Unknown image pooling {pooling!r}; expected one of {IMAGE_POOLINGS}.")


def pool_text_features(features, padding_mask, pooling):
    """Pools `(batch, length, dim)` token features over the padding mask.

    Args:
        features: `(batch, length, dim)` float tensor.
        padding_mask: `(batch, length)` mask, true for real tokens; sequences
            are right-padded.
        pooling: `"first"` (the first token), `"last"` (the last real token,
            as CLIP's end-of-text token) or `"mean"` (mean of real tokens).
    """
    if pooling == "first":
        return features[:, 0, :]
    mask = ops.cast(padding_mask, features.dtype)
    if pooling == "last":
        last_index = ops.cast(ops.sum(mask, axis=1), "int32") - 1
        weights = ops.one_hot(last_index, ops.shape(features)[1], dtype=features.dtype)
    elif pooling == "mean":
        weights = mask / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
    else:
        raise ValueError(f"Unknown text pooling {pooling!r}; expected one of {TEXT_POOLINGS}.")
    return ops.einsum("bl,bld->bd", weights, features)
