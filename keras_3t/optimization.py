"""The default optimizer: AdamW with optional warmup + cosine decay; the
logit scales' clamp after each step."""

import weakref

import keras


@keras.saving.register_keras_serializable(package="keras_3t")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` without its temporaries on PyTorch.

    The same arguments, update rule and optimizer variables as Keras's
    AdamW on every backend. Keras's PyTorch update allocates five temporary
    copies of the weights every step; this one runs the same operations into
    two scratch copies kept between steps, with bit-for-bit the same result
    (on a ViT-B/16-sized model the update measured several times faster,
    `benchmarks/optimizer_step.py`). With AMSGrad, or weights of several
    dtypes, it falls back to Keras's generic update (one weight at a time).
    On TensorFlow and JAX the update is Keras's, which XLA compiles.

    Args:
        fused: bool, PyTorch only. Run the update as one fused kernel
            (`torch._fused_adamw_`), faster still and with no scratch
            copies; the same rule, rounded differently (results agree with
            Keras's to float32 rounding, not bit for bit).
        **kwargs: `keras.optimizers.AdamW`'s arguments.

    Example:
    >>> import keras
    >>> from keras_3t.optimization import AdamW
    >>> weights = keras.Variable([[1.0, -1.0]])
    >>> optimizer = AdamW(learning_rate=0.1, weight_decay=0.0)
    >>> optimizer.apply([keras.ops.convert_to_tensor([[1.0, -1.0]])], [weights])
    >>> [round(float(w), 4) for w in keras.ops.convert_to_numpy(weights)[0]]
    [0.9, -0.9]
    """

    def __init__(self, *args, fused=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused = bool(fused)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not torch_adam_update(self, grads, trainable_variables, learning_rate, fused=self.fused):
            super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}


@keras.saving.register_keras_serializable(package="keras_3t")
class MaxValue(keras.constraints.Constraint):
    """Clamps a variable at `max_value`; Keras optimizers apply it after each step.

    `ThreeTowerModel` clamps each log logit scale at `logit_scale_max` with
    it, as open_clip clamps CLIP's logit scale after each optimizer step:
    the forward pass reads the variable as it is, and a value above the
    maximum comes back to it with the next step.

    Args:
        max_value: float, the largest value the variable keeps.

    Example:
    >>> import keras
    >>> from keras_3t.optimization import MaxValue
    >>> variable = keras.Variable(6.0)
    >>> variable.constraint = MaxValue(5.0)
    >>> optimizer = keras.optimizers.SGD(learning_rate=0.5)
    >>> optimizer.apply([keras.ops.convert_to_tensor(-2.0)], [variable])
    >>> float(variable)
    5.0
    """

    def __init__(self, max_value):
        self.max_value = float(max_value)

    def __call__(self, w):
        w = keras.ops.convert_to_tensor(w)
        return keras.ops.minimum(w, keras.ops.cast(self.max_value, w.dtype))

    def get_config(self):
        return {"max_value": self.max_value}


def warmup_cosine_schedule(learning_rate, total_steps, warmup_steps=0):
    """Linear warmup from 0 to `learning_rate`, then cosine decay to 0.

    Args:
        learning_rate: float, the peak learning rate.
        total_steps: int, the step at which the rate reaches 0.
        warmup_steps: int, the length of the linear warmup.

    Example:
    >>> from keras_3t.optimization import warmup_cosine_schedule
    >>> schedule = warmup_cosine_schedule(1e-3, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(10)), 6)
    0.001
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            "warmup_steps must be at least 0 and below total_steps; got "
            f"warmup_steps={warmup_steps}, total_steps={total_steps}."
        )
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def default_optimizer(learning_rate=1e-3, weight_decay=1e-4, warmup_steps=0, total_steps=None):
    """AdamW as CLIP trains it (beta_2 0.98, epsilon 1e-6).

    Args:
        learning_rate: float, the (peak) learning rate.
        weight_decay: float, decoupled weight decay.
        warmup_steps: int, linear warmup steps; needs `total_steps`.
        total_steps: int or None. If set, warmup then cosine decay to 0 at
            `total_steps`; if None, a constant learning rate.
    """
    if total_steps is not None:
        learning_rate = warmup_cosine_schedule(learning_rate, total_steps, warmup_steps)
    elif warmup_steps:
        raise ValueError(
            "warmup_steps needs total_steps (the warmup leads into a cosine "
            "decay that ends at total_steps)."
        )
    return AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_2=0.98,
        epsilon=1e-6,
    )


# Scratch buffers of torch_adam_update, per optimizer: (variable ids, buffers).
_ADAM_SCRATCH = weakref.WeakKeyDictionary()


def torch_adam_update(optimizer, gradients, variables, learning_rate, fused=False):
    """Keras's Adam update of `variables` on PyTorch, without its temporaries.

    Keras's own PyTorch update allocates five temporary copies of the
    weights every step (benchmarks/optimizer_step.py measures the cost).

    Args:
        optimizer: a `keras.optimizers.Adam` or `AdamW` (built).
        gradients: one tensor per variable.
        variables: the Keras variables to update.
        learning_rate: the current learning rate (tensor or float).
        fused: False runs Keras's own sequence of operations, bit for bit,
            into two scratch copies of the weights kept between steps. True
            runs one `torch._fused_adamw_` kernel: the same rule (the bias
            corrections folded into the step size, epsilon added to the
            uncorrected `sqrt(v)`), in a different order of float32 rounding.

    Returns:
        True if it updated the variables; False (nothing done) on another
        backend, with AMSGrad, or for variables of several dtypes or devices.
    """
    if keras.backend.backend() != "torch" or optimizer.amsgrad:
        return False
    import torch

    values = [v.value for v in variables]
    gradients = list(gradients)
    if len({(t.dtype, t.device) for t in values + gradients}) != 1:
        return False
    ops = keras.ops
    dtype = values[0].dtype
    step = ops.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
    # Keras's step size, computed as keras.optimizers.Adam does on PyTorch.
    alpha = (
        ops.cast(learning_rate, dtype)
        * ops.sqrt(1 - ops.power(ops.cast(beta_2, dtype), step))
        / (1 - ops.power(ops.cast(beta_1, dtype), step))
    )
    index = optimizer._get_variable_index
    momentums = [optimizer._momentums[index(v)].value for v in variables]
    velocities = [optimizer._velocities[index(v)].value for v in variables]
    with torch.no_grad():
        if fused:
            # The kernel corrects the moments' bias itself with 1 - beta^step;
            # at this step count beta^step is 0, so it applies `alpha` as given.
            no_bias_correction = torch.full((), 2.0**30, dtype=dtype, device=values[0].device)
            torch._fused_adamw_(
                values,
                gradients,
                momentums,
                velocities,
                [],
                [no_bias_correction] * len(values),
                lr=alpha,
                beta1=beta_1,
                beta2=beta_2,
                weight_decay=0.0,  # Keras has applied the decoupled decay
                eps=optimizer.epsilon,
                amsgrad=False,
                maximize=False,
            )
            return True
        key = tuple(id(v) for v in variables)
        if _ADAM_SCRATCH.get(optimizer, (None,))[0] != key:
            _ADAM_SCRATCH[optimizer] = (
                key,
                [torch.empty_like(t) for t in values],
                [torch.empty_like(t) for t in values],
            )
        _, squares, updates = _ADAM_SCRATCH[optimizer]
        # keras/src/backend/torch/optimizers/torch_adam.py, operation for
        # operation, each result written into a scratch buffer.
        torch._foreach_mul_(momentums, beta_1)
        torch._foreach_add_(momentums, gradients, alpha=1 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_copy_(squares, gradients)
        torch._foreach_mul_(squares, gradients)
        torch._foreach_add_(velocities, squares, alpha=1 - beta_2)
        denominators = squares  # the squares are used up
        torch._foreach_copy_(denominators, velocities)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, optimizer.epsilon)
        torch._foreach_copy_(updates, momentums)
        torch._foreach_mul_(updates, alpha)
        torch._foreach_div_(updates, denominators)
        torch._foreach_add_(values, updates, alpha=-1)
    return True
