"""Keras callbacks of keras-3t."""

import keras

from keras_3t.checkpoint import CheckpointError  # noqa: F401 (exported here)
from keras_3t.checkpoint import NonFiniteLossError  # noqa: F401
from keras_3t.checkpoint import TrainingCheckpoint  # noqa: F401
from keras_3t.evaluation.evaluate import check_tasks
from keras_3t.evaluation.evaluate import evaluate_model


class EvaluationCallback(keras.callbacks.Callback):
    """Runs evaluations every N epochs of `fit` and adds them to `logs`.

    The metrics join the epoch's logs under `prefix + name` (e.g.
    `val_image_to_text_r1`), so History, `CSVLogger` and `TensorBoard`
    record them: list this callback before those in `callbacks=[...]`.

    Args:
        retrieval, zero_shot, few_shot: task dicts, as
            `keras_3t.evaluation.evaluate_model` takes.
        every_n_epochs: evaluate after every N-th epoch (and the last one
            is not forced).
        alpha: the convex-combination weight.
        prefix: prepended to every metric name.
        batch_size: examples embedded per batch.
        verbose: 1 shows progress bars.

    Example:
    >>> from keras_3t.callbacks import EvaluationCallback
    >>> from keras_3t.demo import toy
    >>> from keras_3t.demo.toy import toy_batch
    >>> held_out = toy_batch(16, seed=1)
    >>> callback = EvaluationCallback(retrieval={"images": held_out["images"],
    ...     "texts": {k: held_out[k] for k in ("token_ids", "padding_mask")},
    ...     "text_to_image": list(range(16))})
    >>> model = toy.build_model("clip")
    >>> model.compile()
    >>> history = model.fit(toy_batch(32, seed=0), epochs=1, verbose=0,
    ...                     callbacks=[callback])
    >>> "val_text_to_image_r1" in history.history
    True
    """

    def __init__(
        self,
        retrieval=None,
        zero_shot=None,
        few_shot=None,
        every_n_epochs=1,
        alpha=1.0,
        prefix="val_",
        batch_size=256,
        verbose=0,
    ):
        super().__init__()
        check_tasks(retrieval=retrieval, zero_shot=zero_shot, few_shot=few_shot)
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1; got {every_n_epochs}.")
        self.tasks = {"retrieval": retrieval, "zero_shot": zero_shot, "few_shot": few_shot}
        self.every_n_epochs = every_n_epochs
        self.alpha = alpha
        self.prefix = prefix
        self.batch_size = batch_size
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        metrics = evaluate_model(
            self.model,
            alpha=self.alpha,
            batch_size=self.batch_size,
            verbose=self.verbose,
            **self.tasks,
        )
        if logs is not None:
            logs.update({self.prefix + name: value for name, value in metrics.items()})
