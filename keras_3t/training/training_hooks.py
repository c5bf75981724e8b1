"""The Keras hooks of a model that trains with `keras_3t.training`'s steps."""

import keras
from keras.src.trainers.data_adapters import array_data_adapter

from keras_3t.distributed import build_optimizer_in_strategy_scope
from keras_3t.distributed import check_jit_compile
from keras_3t.distributed import synchronize_weights
from keras_3t.optimization import default_optimizer
from keras_3t.training import backend_steps
from keras_3t.training.accumulation import check_accumulation_steps
from keras_3t.training.errors import step_function_with_errors


class TrainingHooks(keras.Model):
    """`compile`, the step functions and the metrics hooks, for every backend.

    A model built on it implements the protocol `keras_3t.training`
    describes and keeps its metrics in `self.objective_means`
    (`keras_3t.objective_metrics.ObjectiveMeans`).
    """

    def compile(
        self,
        optimizer="auto",
        learning_rate=1e-3,
        weight_decay=1e-4,
        warmup_steps=0,
        total_steps=None,
        exclude_from_weight_decay=True,
        accumulation_steps=1,
        **kwargs,
    ):
        """Configures training; `compile()` alone gives sensible defaults.

        Args:
            optimizer: `"auto"` for AdamW (beta_2 0.98, epsilon 1e-6, as CLIP)
                built from the arguments below, or any Keras optimizer.
            learning_rate: peak learning rate of the `"auto"` optimizer.
            weight_decay: decoupled weight decay of the `"auto"` optimizer.
            warmup_steps: linear warmup steps; needs `total_steps`.
            total_steps: if set, the learning rate follows linear warmup then
                cosine decay to zero at `total_steps`; otherwise constant.
            exclude_from_weight_decay: bool. Exempt biases, norms, logit
                scales and biases (every variable of rank < 2) from weight
                decay, as open_clip does.
            accumulation_steps: int. Split each batch into this many
                micro-batches and accumulate their gradients, with the
                negatives of the whole batch (open_clip's feature-cache
                accumulation: every micro-batch is embedded twice, once
                without gradient); the loss and gradients are the whole
                batch's, activation memory one micro-batch's. Needs towers
                without dropout.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`,
                `steps_per_execution`). The loss is set by the model's
                `objective` and `loss` arguments, not here.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "ThreeTowerModel computes its own contrastive loss; choose it "
                "with ThreeTowerModel(objective=..., loss='softmax'|'sigmoid') "
                f"instead of compile(loss=...). Got loss={kwargs['loss']!r}."
            )
        kwargs.pop("loss", None)
        check_jit_compile(self, kwargs.get("jit_compile"))
        check_accumulation_steps(self, accumulation_steps)
        self.accumulation_steps = int(accumulation_steps)
        if optimizer == "auto":
            optimizer = default_optimizer(
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
            )
        else:
            optimizer = keras.optimizers.get(optimizer)
        if exclude_from_weight_decay and optimizer.weight_decay:
            optimizer.exclude_from_weight_decay(
                var_list=[v for v in self.trainable_variables if len(v.shape) < 2]
            )
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["accumulation_steps"] = self.accumulation_steps
        return config

    def compile_from_config(self, config):
        # Keras skips this for models that override compile(); ours accepts
        # the saved arguments, so a loaded model resumes with its optimizer.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, *args, **kwargs):
        # Keras shuffles only arrays; for anything else (keras-3t's tf.data
        # sets, a DataLoader, a generator) its default `shuffle=True` is
        # ignored with a warning the user did not cause. Fit's positional
        # `shuffle` is the eighth after `x`.
        if (
            "shuffle" not in kwargs
            and len(args) < 8
            and not array_data_adapter.can_convert_arrays((x,))
        ):
            kwargs["shuffle"] = False
        return super().fit(x, *args, **kwargs)

    def train_step(self, *args):
        return backend_steps().train_step(self, *args)

    def test_step(self, *args):
        return backend_steps().test_step(self, *args)

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            synchronize_weights(self)
            super().make_train_function(force=True)
            self.train_function = step_function_with_errors(self, self.train_function, "train")
        return self.train_function

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TensorFlow's trainer builds a model under tf.distribute by
        # averaging a first batch over the replicas, which fails on boolean
        # padding masks. This model is built in __init__; only the
        # optimizer is left to build, in the strategy's scope.
        build_optimizer_in_strategy_scope(self)

    def make_test_function(self, force=False):
        if self.test_function is None or force:
            super().make_test_function(force=True)
            self.test_function = step_function_with_errors(self, self.test_function, "test")
        return self.test_function

    @property
    def metrics(self):
        return [self.objective_means]

    def _flatten_metrics_in_order(self, logs):
        # `evaluate(..., return_dict=False)` lists the values in the order
        # they are tracked ("loss" first), not Keras's sorted fallback for
        # a metric that reports a dict.
        return [logs[name] for name in self.objective_means.names]

    def update_objective_metrics(self, values):
        """Adds one batch's objective values to the metrics; returns the logs."""
        self.objective_means.update_state(values)
        return self.objective_means.result()
