"""The running means of the training objective's values, as one metric."""

import keras
from keras import ops


class ObjectiveMeans(keras.metrics.Metric):
    """Running means of several named scalars updated together, in one vector.

    Each value's mean is what a `keras.metrics.Mean` of that value alone
    would report (the same sums; the division equal to float32 rounding, as
    XLA may divide a vector by multiplying by the reciprocal), but an update
    is one assignment to a vector of totals and one to a shared count,
    instead of two assignments per value. A training step reports up to
    seven values (the loss, each pair's loss, each logit scale and bias).
    On eager PyTorch every assignment is a separate host operation at every
    step, and a reset (each epoch, each `train_on_batch`) assigns every
    variable eagerly on every backend.

    Args:
        names: list of str, the values tracked: `update_state` takes a dict
            with these keys and `result` returns one.
        name: str, the metric's name.
        dtype: the dtype of the totals (default: the float type).

    Example:
    >>> from keras_3t.objective_metrics import ObjectiveMeans
    >>> means = ObjectiveMeans(["loss", "loss_image_text"])
    >>> means.update_state({"loss": 1.0, "loss_image_text": 2.0})
    >>> means.update_state({"loss": 3.0, "loss_image_text": 2.0})
    >>> {name: float(value) for name, value in means.result().items()}
    {'loss': 2.0, 'loss_image_text': 2.0}
    """

    def __init__(self, names, name="objective", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.names = list(names)
        if not self.names:
            raise ValueError("ObjectiveMeans needs at least one value name.")
        self.totals = self.add_variable(
            shape=(len(self.names),),
            initializer=keras.initializers.Zeros(),
            dtype=self.dtype,
            name="totals",
        )
        self.count = self.add_variable(
            shape=(),
            initializer=keras.initializers.Zeros(),
            dtype=self.dtype,
            name="count",
        )

    def update_state(self, values):
        """Adds one step's values: a dict with a scalar for every name."""
        missing = [name for name in self.names if name not in values]
        if missing:
            raise ValueError(f"ObjectiveMeans.update_state is missing values for {missing}.")
        self.totals.assign_add(
            ops.stack([ops.cast(values[name], self.dtype) for name in self.names])
        )
        self.count.assign_add(ops.cast(1, self.dtype))

    def reset_state(self):
        self.totals.assign(ops.zeros((len(self.names),), dtype=self.dtype))
        self.count.assign(ops.cast(0, self.dtype))

    def result(self):
        """A dict mapping each name to its mean over the updates so far."""
        means = ops.divide_no_nan(self.totals, self.count)
        # One split instead of an indexing op per name: this runs every step.
        return dict(zip(self.names, ops.unstack(means)))

    def get_config(self):
        return {**super().get_config(), "names": self.names}
