"""Counting what the input pipeline skips, and reporting it while training."""

import logging

import keras

BAD_DATA_KINDS = ("missing_file", "undecodable_image", "empty_caption")


class BadDataCounter:
    """Counts skipped examples by kind: missing files, undecodable images, empty captions.

    The counts live in TensorFlow variables, so the `tf.data` pipeline
    updates them while it runs (on every Keras backend).

    Example:
    >>> from keras_3t.data import BadDataCounter
    >>> counter = BadDataCounter()
    >>> _ = counter.add("empty_caption", 2)
    >>> counter.counts()
    {'missing_file': 0, 'undecodable_image': 0, 'empty_caption': 2}
    """

    def __init__(self):
        import tensorflow as tf

        self._variables = {
            kind: tf.Variable(0, dtype=tf.int64, trainable=False, name=kind)
            for kind in BAD_DATA_KINDS
        }

    def add(self, kind, count=1):
        """Adds `count` skipped examples of `kind`; works inside `tf.data`."""
        return self._variables[kind].assign_add(count)

    def variable(self, kind):
        return self._variables[kind]

    def counts(self):
        """`{kind: count}` of everything skipped so far."""
        return {kind: int(v.numpy()) for kind, v in self._variables.items()}

    def total(self):
        return sum(self.counts().values())


class BadDataReport(keras.callbacks.Callback):
    """Logs what the pipeline skipped at the end of every epoch.

    Adds `skipped_<kind>` to the epoch's logs (so `History` and CSV loggers
    record it) and logs a warning whenever the total grew.

    Args:
        counter: the `BadDataCounter` given to `make_dataset`.
    """

    def __init__(self, counter):
        super().__init__()
        self.counter = counter
        self._reported = 0

    def on_epoch_end(self, epoch, logs=None):
        counts = self.counter.counts()
        if logs is not None:
            logs.update({f"skipped_{kind}": count for kind, count in counts.items()})
        total = sum(counts.values())
        if total > self._reported:
            logging.warning("epoch %d: skipped bad examples so far: %s", epoch + 1, counts)
            self._reported = total
