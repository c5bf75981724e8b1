"""Counting what the input pipeline skips, and reporting it while training."""

import logging
import re

import keras

# unreadable_shard: a damaged shard file (img2dataset sources), whose readable
# records are kept.
BAD_DATA_KINDS = ("missing_file", "undecodable_image", "empty_caption", "unreadable_shard")
# What a source or the pipeline does with a bad example: raise, or drop and count it.
BAD_DATA_MODES = ("raise", "skip")


def check_bad_data_mode(on_bad_data, bad_data=None, counted=True):
    """Refuses an unknown `on_bad_data`, and `"skip"` without a counter.

    Args:
        on_bad_data: `"raise"` or `"skip"` (`BAD_DATA_MODES`).
        bad_data: the `BadDataCounter` that counts what `"skip"` drops, or
            None (allowed with `"raise"` only, unless `counted` is False).
        counted: False where the caller records what it skips itself
            (`embed_collection` lists it in `skipped.jsonl`).

    Example:
    >>> from keras_3t.data.bad_data import check_bad_data_mode
    >>> check_bad_data_mode("raise", None)
    >>> check_bad_data_mode("drop", None)
    Traceback (most recent call last):
        ...
    ValueError: on_bad_data must be one of ('raise', 'skip'); got 'drop'.
    """
    if on_bad_data not in BAD_DATA_MODES:
        raise ValueError(f"on_bad_data must be one of {BAD_DATA_MODES}; got {on_bad_data!r}.")
    if on_bad_data == "skip" and counted and bad_data is None:
        raise ValueError(
            "on_bad_data='skip' needs bad_data=keras_3t.data.BadDataCounter() "
            "to count what it skips (and BadDataReport(counter) to log it)."
        )


# The end of every bad-example message; TensorFlow's assertion prints it C-escaped.
_SKIP_HINT = " - pass on_bad_data='skip' to drop and count such examples."
_ASSERTION = re.compile(
    r"assertion failed: \[(.*?" + re.escape(_SKIP_HINT).replace("'", r"\\?'") + r")\]", re.DOTALL
)


def bad_example_error_message(error):
    """The one-line message of a bad example that stopped a pipeline, or None.

    A bad example in `on_bad_data="raise"` mode stops the `tf.data`
    pipeline with a TensorFlow assertion, whose text wraps the message in
    graph details (and, through a PyTorch DataLoader, a long traceback).
    This returns the message alone, unescaped, for a command line to print.

    Args:
        error: any exception.

    Returns:
        The message (`"Undecodable image ... for image_id 3 in captions.csv,
        line 5: 3.png - pass on_bad_data='skip' ..."`), or None when
        `error` is not about a bad example.

    Example:
    >>> from keras_3t.data.bad_data import bad_example_error_message
    >>> error = ValueError("{{node}} assertion failed: [Empty caption for image_id 7 - "
    ...     "pass on_bad_data='skip' to drop and count such examples.] [[node]]")
    >>> print(bad_example_error_message(error))
    Empty caption for image_id 7 - pass on_bad_data='skip' to drop and count such examples.
    >>> bad_example_error_message(ValueError("something else")) is None
    True
    """
    match = _ASSERTION.search(str(error))
    return match.group(1).replace("\\'", "'") if match else None


def bad_example_message(what, image_id, source):
    """`"<what> for image_id <id> in <source> - pass on_bad_data='skip' ..."`.

    Args:
        what: a string (tensor) saying what is wrong (`"Empty caption"`).
        image_id: the example's `image_id`.
        source: a string tensor saying where the example was read
            (`"captions.csv, line 9: images/x.jpg"`), or None.

    Returns:
        A scalar string tensor.

    Example:
    >>> from keras_3t.data.bad_data import bad_example_message
    >>> message = bad_example_message("Empty caption", 7, "captions.csv, line 9: x.jpg")
    >>> print(message.numpy().decode().split(" - ")[0])
    Empty caption for image_id 7 in captions.csv, line 9: x.jpg
    """
    import tensorflow as tf

    parts = [what, " for image_id ", tf.strings.as_string(image_id)]
    if source is not None:
        parts += [" in ", source]
    parts.append(_SKIP_HINT)
    return tf.strings.join(parts)


def assert_with_lazy_message(condition, message):
    """`tf.debugging.Assert(condition, [message()])`, building the message only if it fails.

    Args:
        condition: a scalar boolean tensor.
        message: a function of no arguments returning the error message, a
            string tensor; called only in the branch where `condition` is
            False.

    Returns:
        The assertion op (a no-op where `condition` holds), for
        `tf.control_dependencies`.

    Example:
    >>> import tensorflow as tf
    >>> from keras_3t.data.bad_data import assert_with_lazy_message
    >>> _ = assert_with_lazy_message(tf.constant(True), lambda: tf.constant("never built"))
    >>> try:
    ...     assert_with_lazy_message(tf.constant(False), lambda: tf.constant("bad example"))
    ... except tf.errors.InvalidArgumentError as error:
    ...     print("bad example" in error.message)
    True
    """
    import tensorflow as tf

    return tf.cond(condition, tf.no_op, lambda: tf.debugging.Assert(False, [message()]))


class BadDataCounter:
    """Counts what was skipped, by kind: missing files, undecodable images, empty captions, shards.

    Each bad item is counted once, however often the pipeline meets it (a
    repeated data set, an image named by several caption rows): the counter
    keeps the keys of the items it has seen (an image's `image_id`, a
    caption's row, a path) in TensorFlow hash tables, which the `tf.data`
    pipeline updates while it runs (on every Keras backend).

    Example:
    >>> from keras_3t.data import BadDataCounter
    >>> counter = BadDataCounter()
    >>> _ = counter.add("empty_caption", ["captions.csv, line 3", "captions.csv, line 9"])
    >>> _ = counter.add("empty_caption", ["captions.csv, line 3"])
    >>> counter.counts()
    {'missing_file': 0, 'undecodable_image': 0, 'empty_caption': 2, 'unreadable_shard': 0}
    """

    def __init__(self):
        import tensorflow as tf

        self._seen = {
            kind: tf.lookup.experimental.MutableHashTable(
                tf.string, tf.int64, default_value=0, name=f"skipped_{kind}"
            )
            for kind in BAD_DATA_KINDS
        }

    def add(self, kind, keys):
        """Counts the items named by `keys` (strings) not counted yet; works in `tf.data`."""
        import tensorflow as tf

        keys = tf.reshape(tf.convert_to_tensor(keys, tf.string), [-1])
        return self._seen[kind].insert(keys, tf.ones_like(keys, tf.int64))

    def discard(self, kind, keys):
        """Uncounts `keys` (an item counted while it was in doubt, and found good)."""
        import tensorflow as tf

        return self._seen[kind].remove(tf.reshape(tf.convert_to_tensor(keys, tf.string), [-1]))

    def counts(self):
        """`{kind: count}` of the distinct items skipped so far."""
        return {kind: int(table.size().numpy()) for kind, table in self._seen.items()}

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
