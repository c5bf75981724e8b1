"""Files and folders written whole or not at all.

Everything keras-3t writes for a user to keep (presets, checkpoints, feature
shards, caches, exported encoders, embedded collections) is written under a
hidden temporary name beside its target and renamed to it once complete, so
a run killed mid-write leaves the earlier version, or nothing, never half a
file.
"""

import contextlib
import os
import shutil
import tempfile


def write_atomically(target, write):
    """`write(file)` into a hidden temporary file beside `target`, then renamed to it.

    The file gets the permissions of one `open` creates (0666 less the
    umask), not a temporary file's 0600. If `write` raises, `target` is
    left as it was.

    Args:
        target: the file to write.
        write: called with the temporary file, open for binary writing.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.atomic_files import write_atomically
    >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> write_atomically(target, lambda file: file.write(b"kept"))
    >>> open(target).read()
    'kept'
    """
    staging = tempfile.NamedTemporaryFile(
        dir=os.path.dirname(target), prefix=".", suffix=".tmp", delete=False
    )
    try:
        with staging:
            write(staging)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging.name, 0o666 & ~umask)
        os.replace(staging.name, target)
    except BaseException:
        os.remove(staging.name)
        raise


def check_replaceable(path, overwrite, option=None):
    """Refuses to write a folder where a file is, or a non-empty folder without `overwrite`.

    Args:
        path: the folder about to be written.
        overwrite: whether a non-empty folder may be replaced.
        option: the command-line option that sets `overwrite`, for the message.

    Example:
    >>> import tempfile
    >>> from keras_3t.atomic_files import check_replaceable
    >>> folder = tempfile.mkdtemp()
    >>> check_replaceable(folder, overwrite=False)
    >>> _ = open(folder + "/weights.h5", "w")
    >>> check_replaceable(folder, overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    FileExistsError: /... is not empty; pass overwrite=True to replace it, or choose another folder.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} exists and is not a folder.")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        how = "overwrite=True" + (f" ({option})" if option else "")
        raise FileExistsError(
            f"{path} is not empty; pass {how} to replace it, or choose another folder."
        )


@contextlib.contextmanager
def staged_folder(path, prefix, durable=False):
    """A fresh folder beside `path` for the block to write, moved to `path` if it succeeds.

    The move is one rename (an earlier folder at `path` is renamed aside
    first, then deleted), so a failed write leaves whatever was at `path`
    as it was.

    Args:
        path: the folder to write.
        prefix: the staging folder's name prefix (`".saving-"`); the folder
            an earlier `path` is renamed into gets it too.
        durable: also flush every file written, the folder and its parent
            to disk (`fsync`) before and after the move, so the folder
            survives a power cut once the block has exited.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.atomic_files import staged_folder
    >>> path = os.path.join(tempfile.mkdtemp(), "preset")
    >>> with staged_folder(path, ".saving-") as staging:
    ...     _ = open(os.path.join(staging, "config.json"), "w").write("{}")
    >>> os.listdir(path)
    ['config.json']
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield staging
        if durable:
            for root, _, names in os.walk(staging):
                for name in names:
                    _fsync(os.path.join(root, name))
                _fsync(root)
        if os.path.isdir(path):
            replaced = tempfile.mkdtemp(prefix=prefix, dir=parent)
            os.rename(path, os.path.join(replaced, "old"))
            os.rename(staging, path)
            shutil.rmtree(replaced)
        else:
            os.rename(staging, path)
        if durable:
            _fsync(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
