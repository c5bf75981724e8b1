"""benchmarks/wds_input_speed.py: its shards read back, and its keras-3t half reports a speed.

open_clip's half needs its own venv (`--open-clip`); without it only
keras-3t is timed, which is what these tests run.
"""

import json
import os
import tarfile

import pytest

from keras_3t import data
from tests.helpers import load_script


@pytest.fixture(scope="module")
def wds_input_speed():
    return load_script("benchmarks/wds_input_speed.py")


@pytest.mark.one_backend
def test_shards_are_written_as_img2dataset_writes_them(tmp_path):
    input_pipeline_benchmark = load_script("benchmarks/input_pipeline_benchmark.py")
    pattern = input_pipeline_benchmark.write_webdataset_shards(str(tmp_path), count=6, shard_size=4)
    assert pattern == os.path.join(str(tmp_path), "{00000..00001}.tar")
    with tarfile.open(tmp_path / "00001.tar") as tar:
        names = tar.getnames()
        metadata = json.load(tar.extractfile("000000004.json"))
    assert names == [f"00000000{key}.{ext}" for key in (4, 5) for ext in ("jpg", "txt", "json")]
    assert metadata["key"] == "000000004" and metadata["status"] == "success"
    examples = list(data.from_img2dataset(pattern).as_numpy_iterator())
    assert sorted(int(example["image_id"]) for example in examples) == list(range(6))
    assert all(example["caption"] and example["image"][:2] == b"\xff\xd8" for example in examples)


@pytest.mark.one_backend
def test_timed_batches_are_one_pass_less_the_warm_up_batch(wds_input_speed):
    assert wds_input_speed.timed_batches(2000, 250, 64, workers=1) == 30
    # Each worker drops its own last partial batch: 2 × 15 full batches.
    assert wds_input_speed.timed_batches(2000, 250, 64, workers=2) == 29
    with pytest.raises(ValueError, match="split evenly"):
        wds_input_speed.timed_batches(750, 250, 64, workers=2)
    with pytest.raises(ValueError, match="fewer than two full batches"):
        wds_input_speed.timed_batches(8, 4, 8, workers=2)


@pytest.mark.one_backend
def test_keras_half_reports_its_speed_without_open_clip(wds_input_speed, tmp_path, capsys):
    flags = ["--examples", "16", "--shard-size", "4", "--batch-size", "4", "--cores", "1"]
    flags += ["--repeats", "2", "--preset", "3t_tiny", "--workdir", str(tmp_path)]
    report = wds_input_speed.main(flags)
    *_, header, _, table_row, line = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line) == report
    assert header.startswith("| cores | keras-3t ex/s") and table_row.startswith("| 1 |")
    assert report["read_back"] == 16 and report["shards"] == 4
    [row] = report["rows"]
    assert row["cores"] == 1 and row["timed_batches"] == 3
    assert len(row["keras_3t_examples_per_s_runs"]) == 2 and row["keras_3t_examples_per_s"] > 0
    assert row["keras_3t_examples_per_s_per_core"] == row["keras_3t_examples_per_s"]
    # Pinned to one CPU, the pipeline cannot use more than a CPU-second per second.
    assert row["keras_3t_examples_per_cpu_s"] >= 0.9 * row["keras_3t_examples_per_s"]
    assert row["open_clip_examples_per_s_runs"] == [] and row["ratio_examples_per_s"] is None
    assert report["keras_3t_tokenizer"]["sequence_length"] > 0
    # The pipeline's threads get back every CPU afterwards.
    assert thread_cpus() == {frozenset(os.sched_getaffinity(0))}


def thread_cpus():
    """The CPU sets of this process's threads."""
    cpus = set()
    for thread in os.listdir("/proc/self/task"):
        try:
            cpus.add(frozenset(os.sched_getaffinity(int(thread))))
        except OSError:  # a thread that ended meanwhile
            pass
    return cpus
