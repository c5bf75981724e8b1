"""Feature-shard writing throughput: one process against two.

Writes `--examples` synthetic examples (`write_webdataset_shards` of
input_pipeline_benchmark.py: 256×256 smooth random JPEGs, img2dataset's
default size, with captions) as `--shards` webdataset shards of equal size,
then runs recipes/feature_shards.py on them, as users do:

- **1 process**: `--worker 0 --workers 1`;
- **2 processes**: `--worker 0 --workers 2` and `--worker 1 --workers 2`,
  started together;

each into a fresh features folder. Two times per run:

- **command**: wall-clock from starting the process(es) to the end of the
  last one: what a user waits for, imports and model load included;
- **writing**: the time the recipe prints, from after its model load to its
  last feature shard (for 2 processes, the slower worker's).

examples/s = `--examples` / time; the ratio is 2 processes' examples/s over
1 process's. Two thread settings:

- **pinned**: 2 threads on 2 cores in all: 1 process with 2 threads on both
  cores, or 2 processes with 1 thread on a core each. `OMP_NUM_THREADS`
  (PyTorch), `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS`
  (TensorFlow, which decodes and crops on every backend) and `taskset` (the
  CPUs a process may run on: XLA:CPU sizes its thread pools from them, and
  JAX reads no thread variable);
- **unpinned**: each library's defaults.

Each repeat runs every setting, 1 and 2 processes in alternating order;
the table shows medians over repeats. Every run's feature shards are
compared with the first run's (`np.load`, bitwise).

    KERAS_BACKEND=jax python benchmarks/feature_writing.py --examples 4000 --shards 8 --repeats 3

`--fresh-weights` saves the preset with fresh seeded weights (no download:
the paper-size presets' pretrained tower and tokenizer come from keras-hub)
into a folder and runs the recipe on that folder (ViT-B/16 at 224×224
writes a few examples/s on 2 cores):

    KERAS_BACKEND=jax python benchmarks/feature_writing.py --preset 3t_vitb16 --fresh-weights \\
        --examples 32 --shards 4 --repeats 1 --threads pinned
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# This script's folder is first on sys.path.
from input_pipeline_benchmark import write_webdataset_shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "feature_shards.py")
PROCESS_COUNTS = (1, 2)
THREAD_SETTINGS = ("pinned", "unpinned")
# The recipe's last line: "worker 0 of 2: wrote 4 feature shard(s), found 0 done, in 12.3 s".
RECIPE_REPORT = re.compile(r"wrote (\d+) feature shard\(s\), found \d+ done, in ([\d.]+) s")


def save_fresh_preset(name, folder):
    """The preset with fresh seeded weights saved to `folder`, so every process loads the same."""
    import keras

    import keras_3t

    keras.utils.set_random_seed(0)
    model = keras_3t.presets.load(
        name, weights=False, third_tower_weights=False, preprocessor=False
    )
    model.save_to_preset(folder)


def worker_command(args, output, worker, workers, threads):
    recipe = [sys.executable, RECIPE, *args.preset_flags, "--data", args.data_dir]
    recipe += ["--output", output, "--worker", str(worker), "--workers", str(workers)]
    recipe += ["--batch-size", str(args.batch_size)]
    # This checkout's keras_3t, whatever else is installed.
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    if threads == "unpinned":
        return recipe, environment
    # The 2 cores shared out: all of them to 1 process, one each to 2.
    cores = args.cores if workers == 1 else [args.cores[worker]]
    count = str(len(cores))
    environment.update(
        OMP_NUM_THREADS=count, TF_NUM_INTRAOP_THREADS=count, TF_NUM_INTEROP_THREADS=count
    )
    return ["taskset", "-c", ",".join(map(str, cores)), *recipe], environment


def timed_run(args, output, workers, threads):
    """One run of `workers` processes started together: its times and shards written."""
    # Logs go to files: a process blocked on a full pipe would stall the timing.
    logs = [f"{output}_worker{worker}.log" for worker in range(workers)]
    start = time.perf_counter()
    processes = []
    for worker, log in enumerate(logs):
        command, environment = worker_command(args, output, worker, workers, threads)
        with open(log, "w") as file:
            processes.append(
                subprocess.Popen(command, env=environment, stdout=file, stderr=subprocess.STDOUT)
            )
    for process in processes:
        process.wait()
    command_s = time.perf_counter() - start
    reports = []
    for process, log in zip(processes, logs):
        with open(log) as file:
            text = file.read()
        report = RECIPE_REPORT.search(text)
        if process.returncode or not report:
            raise RuntimeError(f"{' '.join(process.args)} failed:\n{text}")
        reports.append(report)
    return {
        "command_s": command_s,
        "writing_s": max(float(report.group(2)) for report in reports),
        "shards_written": sum(int(report.group(1)) for report in reports),
    }


def max_difference(reference, other):
    """The largest absolute difference between two features folders' features.

    0 when identical; infinite when the shards, keys or images differ.
    """
    names = sorted(name for name in os.listdir(reference) if name.endswith(".npz"))
    if names != sorted(name for name in os.listdir(other) if name.endswith(".npz")):
        return float("inf")
    largest = 0.0
    for name in names:
        with np.load(os.path.join(reference, name)) as first:
            with np.load(os.path.join(other, name)) as second:
                if first.files != second.files:
                    return float("inf")
                for array in first.files:
                    a, b = first[array], second[array]
                    if array in ("keys", "image_hashes") or a.shape != b.shape:
                        if not np.array_equal(a, b):
                            return float("inf")
                    else:
                        largest = max(largest, float(np.max(np.abs(a - b), initial=0)))
    return largest


def run(args):
    """All runs: `{setting: {processes: [run, ...]}}` and the largest difference from the first."""
    runs = {threads: {workers: [] for workers in PROCESS_COUNTS} for threads in args.threads}
    reference, largest = None, 0.0
    for repeat in range(args.repeats):
        for threads in args.threads:
            # Which goes first alternates, so a drift in the machine's load favours neither.
            for workers in PROCESS_COUNTS[:: 1 if repeat % 2 == 0 else -1]:
                output = os.path.join(args.work_dir, f"features_{threads}_{workers}_{repeat}")
                result = timed_run(args, output, workers, threads)
                runs[threads][workers].append(result)
                if reference is None:
                    reference = output
                else:
                    largest = max(largest, max_difference(reference, output))
                    shutil.rmtree(output)
                print(
                    json.dumps(
                        {"repeat": repeat, "threads": threads, "processes": workers, **result}
                    ),
                    flush=True,
                )
    return runs, largest


def summarize(args, runs):
    rows = []
    for threads, by_workers in runs.items():
        for measure in ("command", "writing"):
            seconds = {
                workers: statistics.median(run[f"{measure}_s"] for run in by_workers[workers])
                for workers in PROCESS_COUNTS
            }
            rates = {workers: args.examples / seconds[workers] for workers in PROCESS_COUNTS}
            rows.append(
                {
                    "threads": threads,
                    "measure": measure,
                    "seconds": {str(workers): round(s, 2) for workers, s in seconds.items()},
                    "examples_per_s": {str(workers): round(r, 1) for workers, r in rates.items()},
                    "ratio_2_over_1": round(rates[2] / rates[1], 3),
                }
            )
    return rows


def markdown_table(rows):
    lines = [
        "| threads | measure | 1 process (examples/s, s) | 2 processes (examples/s, s) | 2 / 1 |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row['examples_per_s'][str(workers)]} ({row['seconds'][str(workers)]} s)"
            for workers in PROCESS_COUNTS
        ]
        lines.append(
            f"| {row['threads']} | {row['measure']} | {' | '.join(cells)} | {row['ratio_2_over_1']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="3t_tiny", help="a 3T preset name or folder")
    parser.add_argument(
        "--from-trained", action="store_true", help="the recipe's flag: trained weights"
    )
    parser.add_argument(
        "--fresh-weights",
        action="store_true",
        help="run on the preset saved with fresh seeded weights",
    )
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", nargs="+", choices=THREAD_SETTINGS, default=list(THREAD_SETTINGS)
    )
    args = parser.parse_args(argv)
    args.cores = sorted(os.sched_getaffinity(0))[:2]
    if "pinned" in args.threads and len(args.cores) < 2:
        parser.error("pinned threads need 2 CPUs")
    if args.examples % args.shards:
        parser.error("--examples must split evenly into --shards")

    args.work_dir = tempfile.mkdtemp(prefix="feature_writing_")
    try:
        args.data_dir = os.path.join(args.work_dir, "shards")
        write_webdataset_shards(args.data_dir, args.examples, args.examples // args.shards)
        args.preset_flags = ["--preset", args.preset]
        if args.fresh_weights:
            folder = os.path.join(args.work_dir, "preset")
            save_fresh_preset(args.preset, folder)
            args.preset_flags = ["--preset", folder, "--from-trained"]
        elif args.from_trained:
            args.preset_flags.append("--from-trained")
        runs, largest = run(args)
    finally:
        shutil.rmtree(args.work_dir)
    rows = summarize(args, runs)
    print(markdown_table(rows))
    print(f"Feature shards identical across all runs: {largest == 0} (max |difference| {largest})")
    report = {
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "preset": args.preset,
        "fresh_weights": args.fresh_weights,
        "examples": args.examples,
        "shards": args.shards,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "cores": args.cores,
        "rows": rows,
        "shards_written": {
            threads: {
                str(workers): [run["shards_written"] for run in by_workers[workers]]
                for workers in PROCESS_COUNTS
            }
            for threads, by_workers in runs.items()
        },
        "identical": largest == 0,
        "max_abs_difference": largest,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
