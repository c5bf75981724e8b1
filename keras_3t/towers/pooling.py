"""Pooling of backbone outputs to one vector per example."""

from keras import ops

IMAGE_POOLINGS = ("auto", "token", "mean", "none")
TEXT_POOLINGS = ("first", "last", "mean")

# How keras-hub pools each family's `(batch, tokens, dim)` output (its
# ImageClassifier, or, without one, the model's own pooled embedding): the
# class token, or the mean of the tokens where there is none (Swin).
TOKEN_SEQUENCE_POOLING = {
    "ViTBackbone": "token",
    "DeiTBackbone": "token",
    "DINOV2Backbone": "token",
    "DINOV3Backbone": "token",
    "CLIPVisionEncoder": "token",
    "SwinTransformerBackbone": "mean",
}


def backbone_input_key(backbone):
    """The key of a backbone that takes a one-entry dict of images, or None."""
    try:
        inputs = backbone.input
    except (AttributeError, ValueError):
        return None
    if isinstance(inputs, dict) and len(inputs) == 1:
        return next(iter(inputs))
    return None


def backbone_stage(backbone):
    """The output a dict-returning backbone is pooled from, or None.

    keras-hub's feature-pyramid backbones (HGNetV2, for one) return a dict of
    stages; their classifiers read the last, `stage_names[-1]`. The dict's
    order differs between backends, so the name is what counts.
    """
    output = _symbolic_output(backbone)
    if not isinstance(output, dict):
        return None
    stage_names = list(getattr(backbone, "stage_names", None) or ())
    if not stage_names or stage_names[-1] not in output:
        raise ValueError(
            f"{type(backbone).__name__} returns a dict of outputs {sorted(output)} "
            "and names no stage_names to pool the last of: wrap it in a keras.Model "
            "that returns the one (batch, ..., channels) tensor to pool."
        )
    return stage_names[-1]


def backbone_output_shape(backbone):
    """The shape of what is pooled: the output, or `backbone_stage`'s."""
    output = _symbolic_output(backbone)
    if isinstance(output, dict):
        return tuple(output[backbone_stage(backbone)].shape)
    return tuple(backbone.output_shape)


def resolve_image_pooling(backbone, pooling):
    """The pooling `pool_image_features` applies to this backbone's output.

    `"auto"` follows keras-hub's own classifier for the family: `"none"` for
    a pooled `(batch, dim)` output, `"mean"` over a `(batch, height, width,
    dim)` feature map, and for `(batch, tokens, dim)` token sequences
    `TOKEN_SEQUENCE_POOLING`'s entry for the family. An explicit pooling is
    checked against the output's rank. Either way, an output that cannot be
    pooled so is an error that names the `pooling=` to pass.
    """
    if pooling not in IMAGE_POOLINGS:
        raise ValueError(f"Unknown image pooling {pooling!r}; expected one of {IMAGE_POOLINGS}.")
    shape = backbone_output_shape(backbone)
    rank = len(shape)
    name = type(backbone).__name__
    fits = {2: ("none",), 3: ("token", "mean"), 4: ("mean",)}.get(rank, ())
    if pooling == "auto":
        if rank == 3:
            family = next(
                (
                    TOKEN_SEQUENCE_POOLING[cls.__name__]
                    for cls in type(backbone).__mro__
                    if cls.__name__ in TOKEN_SEQUENCE_POOLING
                ),
                None,
            )
            if family is None:
                raise ValueError(
                    f"{name} returns a token sequence {shape}, and keras-3t cannot "
                    "tell whether its first token is a class token: pass "
                    "pooling='token' (take it, as for a ViT) or pooling='mean' "
                    "(average every token, as for a Swin Transformer)."
                )
            return family
        pooling = {2: "none", 4: "mean"}.get(rank, pooling)
    if pooling not in fits:
        if fits:
            hint = "pass " + " or ".join(f"pooling={fit!r}" for fit in fits) + "."
        else:
            hint = (
                "keras-3t pools rank 2, 3 or 4 outputs; wrap the backbone in a "
                "keras.Model that returns one of those."
            )
        raise ValueError(
            f"pooling={pooling!r} cannot pool {name}'s output of shape {shape}: {hint}"
        )
    return pooling


def pool_image_features(features, pooling):
    """Pools an image backbone's output to `(batch, dim)`.

    Args:
        features: `(batch, dim)`, `(batch, tokens, dim)` (a ViT) or
            `(batch, height, width, dim)` (a CNN feature map).
        pooling: `"token"` takes the first token (a ViT's class token),
            `"mean"` averages every axis between batch and channels, `"none"`
            expects the backbone to be pooled already, and `"auto"` picks
            `"none"` or `"mean"` for rank 2 or 4. (A tower resolves `"auto"`
            for its backbone's family first, `resolve_image_pooling`.)
    """
    rank = len(features.shape)
    if pooling == "auto":
        pooling = {2: "none", 4: "mean"}.get(rank)
        if pooling is None:
            raise ValueError(
                "pooling='auto' cannot pool a backbone output of rank "
                f"{rank} (shape {tuple(features.shape)}) without knowing the "
                "backbone: pass pooling='token' or pooling='mean'."
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


def _symbolic_output(backbone):
    """A functional backbone's symbolic output (a tensor or a dict), else None."""
    try:
        return backbone.output
    except (AttributeError, ValueError):
        return None


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
