"""`embed_collection`: a collection's embeddings, written in parts so that a killed run goes on.

The folder it writes, and how a run resumes: `keras_3t.collection.folder`.
"""

import itertools
import os

import numpy as np

from keras_3t.atomic_files import write_atomically
from keras_3t.collection.encoding import embedding_function
from keras_3t.collection.encoding import model_and_reference
from keras_3t.collection.encoding import model_fingerprint
from keras_3t.collection.folder import PARTS
from keras_3t.collection.folder import join_parts
from keras_3t.collection.folder import part_path
from keras_3t.collection.folder import start_or_resume
from keras_3t.collection.folder import written_parts
from keras_3t.collection.items import caption_collection
from keras_3t.collection.items import image_collection
from keras_3t.collection.reader import read_collection
from keras_3t.combination import path_weights
from keras_3t.data.bad_data import check_bad_data_mode
from keras_3t.data.shards import UnreadableShardError

_SKIP_HINT = "pass on_bad_data='skip' (--on-bad-data skip) to leave such items out"


# How an error names each kind of bad item.
_BAD_ITEMS = {
    "missing_file": "Missing image file",
    "undecodable_image": "Undecodable image",
    "empty_caption": "Empty caption",
}


class BadItemError(ValueError):
    """An item that cannot be embedded (`on_bad_data="raise"`): its message names it."""


def embed_collection(
    model,
    output,
    images=None,
    captions=None,
    alpha=1.0,
    batch_size=64,
    part_size=1024,
    on_bad_data="raise",
    caption_column="caption",
    id_column=None,
    overwrite=False,
    verbose=1,
):
    """Embeds every image of a folder or of shards, or every caption of a file, into `output`.

    Run it again with the same arguments after an interruption (a crash,
    `kill -9`) and it goes on from the last whole part; once finished, the
    output equals that of an uninterrupted run. A finished `output` is
    left as it is.

    Args:
        model: a `ThreeTowerModel`, or a preset name or folder (which
            `keras_3t.search_collection` will load again by that name).
        output: the embeddings folder: new, empty, or one this function
            started with the same arguments.
        images: a folder of image files, or img2dataset's shards (a folder,
            a pattern or a file); see `keras_3t.collection.items`.
        captions: a caption file (`.txt`, `.csv`, `.tsv`, `.jsonl`);
            exactly one of `images` and `captions`.
        alpha: the main path's weight in [0, 1], or weights by path, as
            `encode_image` takes it.
        batch_size: items embedded at once.
        part_size: items per part file: at most this many are embedded
            again after an interruption.
        on_bad_data: `"raise"` stops at an image that is missing or does
            not decode, an empty caption or a damaged shard, naming it;
            `"skip"` leaves it out and lists it in `skipped.jsonl`.
        caption_column, id_column: a caption file's columns (`.csv`,
            `.tsv`, `.jsonl`): the captions, and the ids (None: `"line N"`).
        overwrite: replace `output` if it holds anything else (files that
            are not embeddings, or embeddings made otherwise).
        verbose: 1 shows a progress bar.

    Returns:
        The `EmbeddedCollection` in `output`.

    Example:
    >>> import os, tempfile
    >>> from keras_3t import embed_collection
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "captions.txt"), "w") as file:
    ...     _ = file.write("a 3 above a 7\\na 1 left of a 2\\n")
    >>> collection = embed_collection("3t_tiny", os.path.join(folder, "embedded"),
    ...                               captions=os.path.join(folder, "captions.txt"), verbose=0)
    >>> collection.embeddings.shape, collection.ids
    ((2, 64), ['line 1', 'line 2'])
    """
    import keras

    if (images is None) == (captions is None):
        raise ValueError("Pass either images (a folder or shards) or captions (a file).")
    check_bad_data_mode(on_bad_data, counted=False)
    for name, value in (("batch_size", batch_size), ("part_size", part_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if images is not None:
        collection = image_collection(images)
    else:
        collection = caption_collection(captions, caption_column, id_column)
    model, reference = model_and_reference(model)
    weights = path_weights(model.path_names, alpha)
    embed = embedding_function(model, collection.kind, weights, batch_size)
    settings = {
        "kind": collection.kind,
        "source": collection.source,
        "collection_fingerprint": collection.fingerprint,
        "caption_column": caption_column if captions is not None else None,
        "id_column": id_column if captions is not None else None,
        "model": reference,
        "model_fingerprint": model_fingerprint(model),
        "backend": keras.backend.backend(),
        "path_weights": weights,
        "batch_size": batch_size,
        "part_size": part_size,
    }
    if start_or_resume(output, settings, overwrite) == "complete":
        return read_collection(output)
    parts = os.path.join(output, PARTS)
    os.makedirs(parts, exist_ok=True)
    progress = keras.utils.Progbar(
        collection.total, verbose=verbose, unit_name=collection.kind[:-1]
    )
    read_so_far = 0
    for stream_index, (name, read) in enumerate(collection.streams):
        chunk, consumed, finished = written_parts(parts, stream_index)
        read_so_far += consumed
        progress.update(read_so_far)
        if finished:
            continue
        items = _stream(name, read(), on_bad_data)
        for _ in itertools.islice(items, consumed):
            pass
        while True:
            batch_items = list(itertools.islice(items, part_size))
            part = _embed_part(batch_items, embed, batch_size, on_bad_data)
            part["last"] = np.asarray(len(batch_items) < part_size)
            write_atomically(
                part_path(parts, stream_index, chunk), lambda file: np.savez(file, **part)
            )
            read_so_far += len(batch_items)
            progress.update(read_so_far)
            chunk += 1
            if len(batch_items) < part_size:
                break
    join_parts(output, settings, embed.dim)
    return read_collection(output)


def _stream(name, items, on_bad_data):
    """The items of one stream; a damaged shard ends it (`"skip"`) with a marker item."""
    try:
        yield from items
    except UnreadableShardError as error:
        if on_bad_data == "raise":
            raise BadItemError(f"{error} Or {_SKIP_HINT}.") from None
        yield _Unreadable(name, str(error))


class _Unreadable:
    """Where a damaged shard stopped being readable."""

    def __init__(self, name, message):
        self.name = name
        self.message = message


def _embed_part(items, embed, batch_size, on_bad_data):
    """One part's arrays: the rows that embedded, their ids and captions, and what was skipped."""
    rows, ids, captions, skipped = [], [], [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        unreadable = [item for item in batch if isinstance(item, _Unreadable)]
        batch = [item for item in batch if not isinstance(item, _Unreadable)]
        bad = []
        if batch:
            embeddings, bad = embed(batch)
            if embeddings is not None:
                rows.append(np.asarray(embeddings, "float32"))
        if bad and on_bad_data == "raise":
            index, kind, reason = bad[0]
            raise BadItemError(
                f"{_BAD_ITEMS[kind]} ({reason}): {batch[index].where} - {_SKIP_HINT}."
            )
        bad_indices = {index for index, _, _ in bad}
        for index, item in enumerate(batch):
            if index not in bad_indices:
                ids.append(item.id)
                captions.append(item.caption)
        skipped += [(batch[i].id, kind, batch[i].where, reason) for i, kind, reason in bad]
        skipped += [(item.name, "unreadable_shard", item.name, item.message) for item in unreadable]
    return {
        "embeddings": np.concatenate(rows) if rows else np.zeros((0, embed.dim), "float32"),
        "ids": np.asarray(ids, dtype=str),
        "captions": np.asarray([c or "" for c in captions], dtype=str),
        "has_caption": np.asarray([c is not None for c in captions], dtype=bool),
        "skipped": np.asarray(skipped, dtype=str).reshape(-1, 4),
        "consumed": np.asarray(len(items)),
    }
