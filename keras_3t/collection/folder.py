"""The folder `embed_collection` writes: its manifest, its part files, and the finished files.

An embeddings folder holds, once finished:

- `embeddings.npy`: float32 `(count, dim)`, the unit embeddings at the
  run's α, one row per item that embedded;
- `items.jsonl`: one JSON object per row, in the same order: `{"id": ...}`,
  with `"caption"` where the item has one (a caption, or an image from a
  shard);
- `skipped.jsonl`: one object per item left out (`on_bad_data="skip"`),
  with its `"id"`, `"kind"` (`missing_file`, `undecodable_image`,
  `empty_caption`, `unreadable_shard`), `"where"` and `"reason"`;
- `manifest.json`: what was embedded, by which model, how (`settings`),
  whether it is `complete`, and the counts.

While it runs, every `part_size` items of a stream go to a part file in
`.parts/`, written to a temporary file and renamed into place, so a killed
run (even `kill -9`) leaves only whole parts. The same call again reads
the manifest, skips the items its parts hold, and goes on; the parts are
joined into the files above at the end. Batches are cut the same way in
every run, so the finished files are those an uninterrupted run writes.
"""

import json
import os
import re
import shutil

import numpy as np

from keras_3t.atomic_files import write_atomically

FORMAT = "keras-3t embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
ITEMS = "items.jsonl"
SKIPPED = "skipped.jsonl"
PARTS = ".parts"
PART_NAME = re.compile(r"[0-9]{7}-[0-9]{6}\.npz")


def part_path(parts, stream_index, chunk):
    """The part file of a stream's `chunk`-th `part_size` items (`PART_NAME`)."""
    return os.path.join(parts, f"{stream_index:07d}-{chunk:06d}.npz")


def written_parts(parts, stream_index):
    """`(next chunk, items consumed, finished)` of a stream's parts already written."""
    chunk, consumed = 0, 0
    while os.path.exists(part_path(parts, stream_index, chunk)):
        with open_part(part_path(parts, stream_index, chunk)) as part:
            consumed += int(part["consumed"])
            last = bool(part["last"])
        chunk += 1
        if last:
            return chunk, consumed, True
    return chunk, consumed, False


def open_part(path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"The part file {path} is damaged ({error}); delete it and run again: "
            "its items are embedded again."
        ) from None


def start_or_resume(output, settings, overwrite):
    """Checks `output` against `settings`: `"new"`, `"resume"` or `"complete"`."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise FileExistsError(f"{output} is a file, not a folder for embeddings.")
    existing = read_manifest(output) if os.path.isdir(output) else None
    if existing is not None:
        differing = sorted(k for k in settings if existing["settings"].get(k) != settings[k])
        if not differing:
            if existing["complete"]:
                return "complete"
            _remove_staging_files(output)
            return "resume"
        if not overwrite:
            changes = "; ".join(
                _describe_change(k, existing["settings"].get(k), settings[k]) for k in differing
            )
            raise FileExistsError(
                f"{output} holds embeddings made otherwise ({changes}): name another folder, "
                "or pass overwrite=True (--overwrite) to replace them."
            )
    elif os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise FileExistsError(
            f"{output} is not empty and holds no embeddings: name another folder, or pass "
            "overwrite=True (--overwrite) to replace what it holds."
        )
    if os.path.isdir(output):
        shutil.rmtree(output)
    os.makedirs(output)
    write_manifest(output, {"settings": settings, "complete": False})
    return "new"


def _remove_staging_files(output):
    """The temporary files a killed run left (`write_atomically`'s `.*.tmp`)."""
    for folder in (output, os.path.join(output, PARTS)):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.remove(os.path.join(folder, name))


def read_manifest(output):
    path = os.path.join(output, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        try:
            manifest = json.load(file)
        except json.JSONDecodeError:
            return None
    return manifest if manifest.get("format") == FORMAT else None


def write_manifest(output, manifest):
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    text = json.dumps(manifest, indent=1).encode()
    write_atomically(os.path.join(output, MANIFEST), lambda file: file.write(text))


def join_parts(output, settings, dim):
    """The parts, in order, as the finished files; the manifest last."""
    parts = os.path.join(output, PARTS)
    names = sorted(name for name in os.listdir(parts) if PART_NAME.fullmatch(name))
    counts = []
    for name in names:
        with open_part(os.path.join(parts, name)) as part:
            counts.append(len(part["ids"]))
    skipped_counts = {}

    def write_embeddings(file):
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f4", "fortran_order": False, "shape": (sum(counts), dim)}
        )
        for name in names:
            with open_part(os.path.join(parts, name)) as part:
                file.write(np.ascontiguousarray(part["embeddings"], "<f4").tobytes())

    def write_items(file):
        for name in names:
            with open_part(os.path.join(parts, name)) as part:
                for item_id, caption, has in zip(
                    part["ids"], part["captions"], part["has_caption"]
                ):
                    item = {"id": str(item_id), **({"caption": str(caption)} if has else {})}
                    file.write((json.dumps(item, ensure_ascii=False) + "\n").encode())

    def write_skipped(file):
        for name in names:
            with open_part(os.path.join(parts, name)) as part:
                for item_id, kind, where, reason in part["skipped"]:
                    skipped_counts[str(kind)] = skipped_counts.get(str(kind), 0) + 1
                    entry = {"id": str(item_id), "kind": str(kind), "where": str(where)}
                    entry["reason"] = str(reason)
                    file.write((json.dumps(entry, ensure_ascii=False) + "\n").encode())

    write_atomically(os.path.join(output, EMBEDDINGS), write_embeddings)
    write_atomically(os.path.join(output, ITEMS), write_items)
    write_atomically(os.path.join(output, SKIPPED), write_skipped)
    write_manifest(
        output,
        {"settings": settings, "complete": True, "count": sum(counts), "skipped": skipped_counts},
    )
    shutil.rmtree(parts)


# Settings whose values say little to a reader, and what a change of them means.
_CHANGES = {
    "collection_fingerprint": "the collection's files, their sizes or the caption file changed",
    "model_fingerprint": "the model's weights or tokenizer differ",
}


def _describe_change(key, before, now):
    return _CHANGES.get(key) or f"{key} was {before!r}, now {now!r}"
