"""What `embed_collection` reads: a folder of image files, img2dataset shards, or a caption file.

A collection is a list of streams of items, each item an id, the image's
bytes or the caption, and where it was read (for error messages). The
streams are read in a fixed order, so the n-th item of a stream is the
same item every time the same collection is read: that is what lets a
killed `embed_collection` skip what it has written and go on.

- A folder of image files: every `.jpg`, `.jpeg`, `.png`, `.gif`, `.bmp`
  and `.webp` file under it (subfolders too; names starting with a dot
  are left out), sorted by path; an item's id is its path relative to the
  folder. One stream.
- img2dataset's shards (a folder holding `.tar`, `.tfrecord` or
  `.parquet` files, a pattern such as `shards/{00000..00099}.tar`, or one
  shard file): one stream per shard; an item's id is its key, and it
  keeps its caption.
- A caption file: `.txt` (one caption per line), or `.csv`, `.tsv` and
  `.jsonl` with a caption column (and an id column, if given). An item's
  id is the id column's value, or `"line N"`. One stream.
"""

import hashlib
import os

from keras_3t.data.shards import RECORDS
from keras_3t.data.shards import expand_shards
from keras_3t.data.shards import shard_format
from keras_3t.data.sources import read_caption_records

IMAGE_FILE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
SHARD_EXTENSIONS = (".tar", ".tfrecord", ".parquet")
CAPTION_FILE_EXTENSIONS = (".txt", ".csv", ".tsv", ".jsonl")


class Item:
    """One image or caption of a collection.

    Attributes:
        id: a string naming it in the collection.
        image: the image's encoded bytes, or None for a caption.
        caption: the caption, or None (an image without one).
        where: where it was read, for messages (`"shards/00000.tar, key 000000012"`).
        missing: True for an image file that went missing after the listing.
    """

    def __init__(self, id, image=None, caption=None, where=None, missing=False):
        self.id = id
        self.image = image
        self.caption = caption
        self.where = where or id
        self.missing = missing


class Collection:
    """A collection's streams, as `embed_collection` reads them.

    Attributes:
        kind: `"images"` or `"captions"`.
        source: the absolute path (or pattern) it was read from.
        streams: a list of `(name, read)`: `read()` yields the stream's
            `Item`s, always in the same order. It raises
            `UnreadableShardError` where a shard is damaged.
        total: the number of items, or None where it is not known before
            reading (shards).
        fingerprint: a SHA-256 of the listing (file names and sizes, or the
            caption file's bytes), to tell whether a folder of embeddings
            was started on this collection.
    """

    def __init__(self, kind, source, streams, total, fingerprint):
        self.kind = kind
        self.source = source
        self.streams = streams
        self.total = total
        self.fingerprint = fingerprint


def image_collection(path):
    """The images of a folder of image files, or of img2dataset's shards.

    Args:
        path: a folder of image files (searched recursively); a folder of
            shards (it holds `.tar`, `.tfrecord` or `.parquet` files at its
            top level); a shard pattern or file.

    Returns:
        A `Collection` of kind `"images"`.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.collection.items import image_collection
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "b"))
    >>> for name in ("b/2.png", "1.jpg", "notes.txt"):
    ...     open(os.path.join(folder, name), "wb").close()
    >>> collection = image_collection(folder)
    >>> collection.total, [item.id for _, read in collection.streams for item in read()]
    (2, ['1.jpg', 'b/2.png'])
    """
    if os.path.isdir(path):
        top = os.listdir(path)
        if not any(name.endswith(SHARD_EXTENSIONS) for name in top):
            return _image_folder(path)
    elif not glob_like(path) and not os.path.exists(path):
        raise FileNotFoundError(f"No folder, image shard or shard pattern at {path}.")
    return _shards(path)


def glob_like(path):
    """Whether `path` is a pattern (glob wildcards or brace ranges) rather than a name."""
    return any(character in path for character in "*?[{")


def _image_folder(folder):
    folder = os.path.abspath(folder)
    files = []
    for root, directories, names in os.walk(folder):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        files += [
            os.path.join(root, name)
            for name in names
            if name.lower().endswith(IMAGE_FILE_EXTENSIONS) and not name.startswith(".")
        ]
    relative = sorted(os.path.relpath(f, folder).replace(os.sep, "/") for f in files)
    if not relative:
        raise ValueError(
            f"{folder} holds no image files ({', '.join(IMAGE_FILE_EXTENSIONS)}) and no shards."
        )
    digest = hashlib.sha256()
    for name in relative:
        digest.update(f"{name}\t{os.path.getsize(os.path.join(folder, name))}\n".encode())

    def read():
        for name in relative:
            try:
                with open(os.path.join(folder, name), "rb") as file:
                    yield Item(name, image=file.read())
            except FileNotFoundError:
                yield Item(name, image=b"", missing=True)

    return Collection("images", folder, [("files", read)], len(relative), digest.hexdigest())


def _shards(pattern):
    files = [os.path.abspath(f) for f in expand_shards(pattern)]
    records = RECORDS[shard_format(files)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{os.path.basename(path)}\t{os.path.getsize(path)}\n".encode())

    def stream(path):
        name = os.path.basename(path)

        def read():
            for key, image, caption in records(path):
                key = key.decode("utf-8", "replace")
                caption = caption.decode("utf-8", "replace") or None
                yield Item(key, image=image, caption=caption, where=f"{name}, key {key}")

        return name, read

    streams = [stream(f) for f in files]
    return Collection("images", os.path.abspath(pattern), streams, None, digest.hexdigest())


def caption_collection(path, caption_column="caption", id_column=None):
    """The captions of a caption file.

    Args:
        path: a `.txt` file (one caption per line; the id is `"line N"`),
            or a `.csv` / `.tsv` file with a header, or a `.jsonl` file of
            one object per line.
        caption_column: the captions' column (`.csv`, `.tsv`, `.jsonl`).
        id_column: the ids' column, or None for `"line N"`.

    Returns:
        A `Collection` of kind `"captions"`.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.collection.items import caption_collection
    >>> path = os.path.join(tempfile.mkdtemp(), "captions.txt")
    >>> _ = open(path, "w").write("a 3 above a 7\\na 1\\n")
    >>> [(item.id, item.caption) for _, read in caption_collection(path).streams for item in read()]
    [('line 1', 'a 3 above a 7'), ('line 2', 'a 1')]
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No caption file at {path}.")
    if not path.endswith(CAPTION_FILE_EXTENSIONS):
        raise ValueError(f"{path}: caption files must be {', '.join(CAPTION_FILE_EXTENSIONS)}.")
    path = os.path.abspath(path)
    name = os.path.basename(path)
    rows = list(_caption_rows(path, caption_column, id_column))
    seen = set()
    for row_id, line, _ in rows:
        if row_id in seen:
            raise ValueError(f"{path}, line {line}: the id {row_id!r} is taken by an earlier row.")
        seen.add(row_id)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    digest.update(f"\t{caption_column}\t{id_column}".encode())

    def read():
        for row_id, line, caption in rows:
            yield Item(row_id, caption=caption, where=f"{name}, line {line}")

    return Collection("captions", path, [(name, read)], len(rows), digest.hexdigest())


def _caption_rows(path, caption_column, id_column):
    """`(id, line, caption)` of each row of a caption file."""
    if path.endswith(".txt"):
        with open(path, encoding="utf-8") as file:
            for line, text in enumerate(file, start=1):
                yield f"line {line}", line, text.rstrip("\r\n")
        return
    columns = [caption_column] + ([id_column] if id_column else [])
    for line, record in read_caption_records(path, columns, " (--caption-column, --id-column)"):
        row_id = str(record[id_column]) if id_column else f"line {line}"
        yield row_id, line, str(record[caption_column] or "")
