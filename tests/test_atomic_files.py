"""keras_3t.atomic_files: what a failed write leaves behind."""

import os
import stat

import pytest

from keras_3t.atomic_files import check_replaceable
from keras_3t.atomic_files import staged_folder
from keras_3t.atomic_files import write_atomically

pytestmark = pytest.mark.one_backend


def test_a_failed_file_write_leaves_the_earlier_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("earlier")

    def fail(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(str(target), fail)
    assert target.read_text() == "earlier"
    assert os.listdir(tmp_path) == ["manifest.json"]
    write_atomically(str(target), lambda file: file.write(b"new"))
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_folder_write_leaves_the_earlier_folder_and_a_finished_one_replaces_it(
    tmp_path, durable
):
    path = tmp_path / "preset"
    path.mkdir()
    (path / "config.json").write_text("earlier")
    with pytest.raises(RuntimeError, match="killed"):
        with staged_folder(str(path), ".saving-", durable=durable) as staging:
            (tmp_path / staging / "config.json").write_text("half")
            raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["preset"]
    assert (path / "config.json").read_text() == "earlier"
    with staged_folder(str(path), ".saving-", durable=durable) as staging:
        os.makedirs(os.path.join(staging, "assets"))
        (tmp_path / staging / "assets" / "vocabulary.txt").write_text("a")
    assert sorted(os.listdir(tmp_path)) == ["preset"]
    assert sorted(os.listdir(path)) == ["assets"]
    assert (path / "assets" / "vocabulary.txt").read_text() == "a"


def test_a_folder_is_made_with_its_missing_parents(tmp_path):
    path = tmp_path / "runs" / "L500" / "tower"
    with staged_folder(str(path), ".pretraining-") as staging:
        (tmp_path / staging / "metadata.json").write_text("{}")
    assert os.listdir(path) == ["metadata.json"]


def test_check_replaceable_refuses_a_file_and_names_the_option(tmp_path):
    (tmp_path / "a_file").write_text("the user's")
    with pytest.raises(FileExistsError, match="a_file exists and is not a folder"):
        check_replaceable(str(tmp_path / "a_file"), overwrite=True)
    with pytest.raises(FileExistsError, match=r"pass overwrite=True \(--overwrite\) to replace"):
        check_replaceable(str(tmp_path), overwrite=False, option="--overwrite")
    check_replaceable(str(tmp_path), overwrite=True)
    check_replaceable(str(tmp_path / "new"), overwrite=False)
    assert os.listdir(tmp_path) == ["a_file"]
