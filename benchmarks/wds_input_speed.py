"""Input pipeline speed on webdataset shards: keras-3t beside open_clip's loader, one run.

Writes `--examples` synthetic examples (256×256 smooth random JPEGs with
short captions, `synthetic_examples` of benchmarks/input_pipeline_benchmark.py)
into webdataset tar shards of `--shard-size` as img2dataset writes them
(`{key:09d}.jpg`, `.txt`, `.json` per example), then times two training
input pipelines on the same shards, each decoding, cropping at random to
224×224 (scale (0.9, 1.0), aspect ratio (3/4, 4/3)), tokenizing and batching:

- **keras-3t**, in this process (`KERAS_BACKEND` from the environment):
  `keras_3t.data.make_dataset(from_img2dataset(shards), preprocessor, 224,
  batch_size, seed=0)` with the preprocessor of `--preset` (default
  `3t_vitb16`, whose keras-hub BERT tokenizer is downloaded once; offline,
  the WordPiece tokenizer that ships with `3t_tiny`, at the paper presets'
  64 tokens, and the report says so). Its tf.data threads are limited to
  the cores (`threading.private_threadpool_size` = cores,
  `max_intra_op_parallelism` = 1);
- **open_clip**, in a subprocess of open_clip's venv (`--open-clip PYTHON`):
  `open_clip_train.data.get_wds_dataset` (webdataset, `wds.WebLoader`) with
  `open_clip.image_transform(224, is_train=True)` (RandomResizedCrop with
  `aug_cfg` scale (0.9, 1.0), its default) and the tokenizer of `ViT-B-16`
  (open_clip's SimpleTokenizer, 77 tokens, shipped in the wheel), `workers`
  = cores and `torch.set_num_threads(1)`.

For each `--cores` value both sides are pinned to that many CPUs (every
thread of the process, and open_clip's DataLoader workers, by
`sched_setaffinity`), so that examples/s per core means what it says. Each
side reads one warm-up batch (tf.data tracing, worker start-up, the
shuffle buffers filling), then `timed batches` more, the full batches of
one pass over the shards less the warm-up one; both sides time the same
number. Each side's speed is measured twice over the timed batches:
examples per second of wall time (and that per core), and examples per
second of CPU time used by the side's process and its workers. On a shared
machine the second is the one that compares the pipelines' work: other
jobs take wall time from both, and a process with more runnable threads
gets a larger share of the CPUs. `--repeats` alternates the sides
(keras-3t first in even repeats, open_clip first in odd ones; a fresh
open_clip process and a fresh keras-3t dataset each time), and the report
gives the medians and the ratios keras-3t / open_clip of the medians, and
the load average at the end. Prints a Markdown table, then one JSON line.

    OPENCLIP_TORCH=full OPENCLIP_ALLOW_DOWNLOAD=1 bash benchmarks/setup_openclip_venv.sh
    printf 'torch==2.14.1\\ntorchvision==0.29.1\\ntimm==1.0.29\\n' > /tmp/openclip_pins.txt
    .venv-openclip/bin/python -m pip install -c /tmp/openclip_pins.txt \
        "open_clip_torch[training]==3.3.0"
    KERAS_BACKEND=torch python benchmarks/wds_input_speed.py --examples 4000 \
        --batch-size 64 --cores 1 2 --repeats 5 --open-clip .venv-openclip/bin/python

(The open_clip_torch wheel ships `open_clip_train`; its `training` extra
brings webdataset (with braceexpand) and pandas, which `open_clip_train.data`
imports; the pins keep the venv's torch, torchvision and timm.)
Without `--open-clip` only keras-3t is timed.

The two sides differ where the libraries do: keras-3t decodes with
`tf.io.decode_image`, resizes the crop bilinearly with antialiasing and
leaves the pixels in [0, 1] (normalizing is the model's image converter's
job); open_clip decodes with PIL, resizes bicubically, and normalizes into a
CHW tensor; their tokenizers differ (see the report). keras-3t's shuffle
buffer (10,000) takes in a whole pass of these shards before its first
batch, open_clip's (5,000, from 1,000 on) its first 1,000 examples per
worker: reading the tars is mostly in the warm-up on one side, partly timed
on the other (it is cheap beside decoding).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
IMAGE_SIZE = 224
CROP_SCALE = (0.9, 1.0)
OPEN_CLIP_MODEL = "ViT-B-16"
# The tokenizer that ships with the package, used when the preset's needs a download.
SHIPPED_TOKENIZER_PRESET = "3t_tiny"


# --- shards -------------------------------------------------------------------


def timed_batches(count, shard_size, batch_size, workers):
    """Full batches of one pass over the shards split between `workers`, less the warm-up one.

    open_clip's loader gives each worker its own shards and drops each
    worker's last partial batch; the shards are assumed to split evenly.
    """
    shards = -(-count // shard_size)
    if shards % workers:
        raise ValueError(f"{shards} shards do not split evenly over {workers} workers.")
    batches = workers * (count // workers // batch_size) - 1
    if batches < 1:
        raise ValueError(
            f"{count} examples give fewer than two full batches of {batch_size} over {workers} "
            "workers: write more examples."
        )
    return batches


# --- cores --------------------------------------------------------------------


def pin_process(cpus):
    """Restricts every thread of this process (and those it starts later) to `cpus`.

    `os.sched_setaffinity(0, ...)` moves only the calling thread; TensorFlow
    started its own threads when it loaded.
    """
    for thread in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(thread), cpus)
        except (ProcessLookupError, OSError):  # a thread that ended meanwhile
            pass


def first_cpus(cores):
    available = sorted(os.sched_getaffinity(0))
    if cores > len(available):
        raise ValueError(f"--cores {cores}: this process may use only {len(available)} CPUs.")
    return set(available[:cores])


def cpu_seconds():
    """CPU time of this process's threads and of its live children (open_clip's workers)."""
    seconds = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as file:
                children = file.read().split()
        except OSError:  # a thread that ended meanwhile
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/stat") as file:
                    # utime and stime, after the command name in parentheses.
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds += (int(fields[11]) + int(fields[12])) / tick
    return seconds


def rate(iterator, batches, batch_size):
    """Speed over `batches` batches of `iterator` after one warm-up batch, and that batch.

    Examples per second of wall time, and per second of CPU time: on a
    shared machine other jobs take CPU time from the benchmark, and a
    process with more runnable threads gets a larger share of it, so the
    CPU-time rate is the one that compares the two pipelines' work.
    """
    first = next(iterator)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    examples = batches * batch_size
    return {"examples_per_s": examples / wall, "examples_per_cpu_s": examples / cpu}, first


# --- keras-3t -------------------------------------------------------------------


def keras_preprocessor(preset):
    """The preset's preprocessor, or the shipped tokenizer when it needs a download.

    Returns the preprocessor and a description of its tokenizer.
    """
    import keras_3t
    from keras_3t.model.three_tower_presets import PAPER_PREPROCESSOR
    from keras_3t.preprocessing import ThreeTowerPreprocessor

    try:
        model = keras_3t.presets.load(preset, weights=False, third_tower_weights=False)
        described = f"{preset}'s own"
    except keras_3t.presets.WeightsUnavailableError as error:
        # Offline: the paper presets' tokenizer comes from keras-hub's servers.
        shipped = keras_3t.presets.load(SHIPPED_TOKENIZER_PRESET).preprocessor
        preprocessor = ThreeTowerPreprocessor(
            shipped.tokenizer, PAPER_PREPROCESSOR["sequence_length"]
        )
        return preprocessor, {
            "tokenizer": f"{SHIPPED_TOKENIZER_PRESET}'s shipped WordPiece tokenizer",
            "vocabulary_size": shipped.tokenizer.vocabulary_size(),
            "sequence_length": preprocessor.sequence_length,
            "instead_of": f"{preset}'s ({str(error).split(' (')[0]})",
        }
    preprocessor = model.preprocessor
    return preprocessor, {
        "tokenizer": f"{described} {type(preprocessor.tokenizer).__name__}",
        "vocabulary_size": preprocessor.tokenizer.vocabulary_size(),
        "sequence_length": preprocessor.sequence_length,
    }


def keras_rate(pattern, preprocessor, batch_size, cores, batches):
    """keras-3t's speed (`rate`) on the shards, its threads and CPUs limited to `cores`."""
    import tensorflow as tf

    from keras_3t import data

    dataset = data.make_dataset(
        data.from_img2dataset(pattern), preprocessor, IMAGE_SIZE, batch_size, seed=0
    )
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    everything = os.sched_getaffinity(0)
    pin_process(first_cpus(cores))
    try:
        iterator = iter(dataset.with_options(options))
        speed, _ = rate(iterator, batches, batch_size)
    finally:
        pin_process(everything)
    return speed


# --- open_clip ----------------------------------------------------------------


def open_clip_rate(python, pattern, count, batch_size, cores, batches, seed=0):
    """open_clip's speed (`rate`) and versions, from a worker process of its venv."""
    request = dict(
        pattern=pattern, count=count, batch_size=batch_size, cores=cores, batches=batches, seed=seed
    )
    done = subprocess.run(
        [python, os.path.abspath(__file__), "--open-clip-worker", json.dumps(request)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"open_clip's worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def open_clip_worker(request):
    """Runs in open_clip's venv: times `get_wds_dataset`'s loader, prints JSON."""
    import importlib.metadata

    pin_process(first_cpus(request["cores"]))  # DataLoader workers inherit it
    import open_clip
    import torch
    import torchvision
    from open_clip_train.data import get_wds_dataset

    torch.set_num_threads(1)
    # The fields of open_clip_train's parsed arguments that get_wds_dataset reads.
    args = argparse.Namespace(
        train_data=request["pattern"],
        val_data=None,
        train_num_samples=request["count"],
        val_num_samples=None,
        batch_size=request["batch_size"],
        workers=request["cores"],
        world_size=1,
        seed=request["seed"],
        dataset_resampled=False,
        train_data_upsampling_factors=None,
    )
    preprocess_img = open_clip.image_transform(
        IMAGE_SIZE, is_train=True, aug_cfg={"scale": CROP_SCALE}
    )
    tokenizer = open_clip.get_tokenizer(OPEN_CLIP_MODEL)
    loader = get_wds_dataset(
        args, preprocess_img, is_train=True, epoch=0, floor=False, tokenizer=tokenizer
    ).dataloader
    speed, (images, texts) = rate(iter(loader), request["batches"], request["batch_size"])
    print(
        json.dumps(
            {
                "speed": speed,
                "batch_shapes": [list(images.shape), list(texts.shape)],
                "tokenizer": f"{OPEN_CLIP_MODEL}'s {type(tokenizer).__name__}",
                "versions": {
                    "open_clip": open_clip.__version__,
                    "webdataset": importlib.metadata.version("webdataset"),
                    "torch": torch.__version__,
                    "torchvision": torchvision.__version__,
                },
            }
        )
    )


# --- the comparison -------------------------------------------------------------


def compare(args, pattern, preprocessor):
    """Per core count: both sides' examples/s in each repeat, alternating."""
    rows = []
    open_clip_info = None
    for cores in args.cores:
        batches = timed_batches(args.examples, args.shard_size, args.batch_size, cores)
        keras_runs, open_clip_runs = [], []
        for repeat in range(args.repeats):
            sides = ["keras-3t", "open_clip"] if args.open_clip else ["keras-3t"]
            # Alternated so that drift on the shared machine favours neither side.
            for side in sides if repeat % 2 == 0 else sides[::-1]:
                if side == "keras-3t":
                    keras_runs.append(
                        keras_rate(pattern, preprocessor, args.batch_size, cores, batches)
                    )
                else:
                    open_clip_info = open_clip_rate(
                        args.open_clip, pattern, args.examples, args.batch_size, cores, batches
                    )
                    open_clip_runs.append(open_clip_info["speed"])
        rows.append(summary_row(cores, batches, keras_runs, open_clip_runs))
    return rows, open_clip_info


def summary_row(cores, batches, keras_runs, open_clip_runs):
    """Medians over the repeats, per core, and keras-3t / open_clip of the medians."""
    row = {"cores": cores, "timed_batches": batches}
    medians = {}
    for side, runs in (("keras_3t", keras_runs), ("open_clip", open_clip_runs)):
        for measure in ("examples_per_s", "examples_per_cpu_s"):
            values = [run[measure] for run in runs]
            medians[side, measure] = statistics.median(values) if values else None
            row[f"{side}_{measure}"] = _rounded(medians[side, measure])
            row[f"{side}_{measure}_runs"] = [round(value, 1) for value in values]
        row[f"{side}_examples_per_s_per_core"] = _rounded(
            medians[side, "examples_per_s"] and medians[side, "examples_per_s"] / cores
        )
    for measure in ("examples_per_s", "examples_per_cpu_s"):
        keras, open_clip = medians["keras_3t", measure], medians["open_clip", measure]
        row[f"ratio_{measure}"] = round(keras / open_clip, 3) if open_clip else None
    return row


def _rounded(value):
    return None if value is None else round(value, 1)


COLUMNS = (
    ("cores", "cores"),
    ("keras_3t_examples_per_s", "keras-3t ex/s"),
    ("keras_3t_examples_per_s_per_core", "keras-3t ex/s/core"),
    ("keras_3t_examples_per_cpu_s", "keras-3t ex/CPU-s"),
    ("open_clip_examples_per_s", "open_clip ex/s"),
    ("open_clip_examples_per_s_per_core", "open_clip ex/s/core"),
    ("open_clip_examples_per_cpu_s", "open_clip ex/CPU-s"),
    ("ratio_examples_per_s", "keras-3t / open_clip (ex/s)"),
    ("ratio_examples_per_cpu_s", "keras-3t / open_clip (ex/CPU-s)"),
)


def markdown_table(rows):
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---:|" * len(COLUMNS),
    ]
    for row in rows:
        cells = ["–" if row[key] is None else f"{row[key]:g}" for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=positive_int, default=2000)
    parser.add_argument("--shard-size", type=positive_int, default=250)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--cores", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--preset", default="3t_vitb16", help="keras-3t's tokenizer comes from it")
    parser.add_argument(
        "--open-clip", help="python of open_clip's venv (omit: keras-3t only)", default=None
    )
    parser.add_argument("--workdir", help="where the shards go (default: a temporary folder)")
    parser.add_argument("--open-clip-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.open_clip_worker:
        return open_clip_worker(json.loads(args.open_clip_worker))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from keras_3t import data
    from keras_3t.data.shards import expand_shards

    sys.path.insert(0, BENCHMARKS)
    from input_pipeline_benchmark import write_webdataset_shards

    workdir = args.workdir or tempfile.mkdtemp(prefix="wds_input_speed_")
    pattern = write_webdataset_shards(
        os.path.join(workdir, "shards"), args.examples, args.shard_size
    )
    read_back = sum(1 for _ in data.from_img2dataset(pattern))
    if read_back != args.examples:
        raise RuntimeError(f"wrote {args.examples} examples, read back {read_back}")
    preprocessor, tokenizer = keras_preprocessor(args.preset)
    rows, open_clip_info = compare(args, pattern, preprocessor)
    # Other jobs on the machine: the 1-, 5- and 15-minute load at the end.
    load = [round(value, 2) for value in os.getloadavg()]
    report = {
        "examples": args.examples,
        "read_back": read_back,
        "shards": len(expand_shards(pattern)),
        "batch_size": args.batch_size,
        "image_size": IMAGE_SIZE,
        "crop_scale": list(CROP_SCALE),
        "repeats": args.repeats,
        "backend": keras.backend.backend(),
        "keras_3t_tokenizer": tokenizer,
        "open_clip_tokenizer": open_clip_info and open_clip_info["tokenizer"],
        "open_clip_batch_shapes": open_clip_info and open_clip_info["batch_shapes"],
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            **(open_clip_info["versions"] if open_clip_info else {}),
        },
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "load_average": load},
        "rows": rows,
    }
    print(markdown_table(rows))
    print(json.dumps(report))
    return report


def cpu_model():
    """The CPU model: examples/s per core differ between CPUs."""
    if not os.path.exists("/proc/cpuinfo"):
        return None
    with open("/proc/cpuinfo") as file:
        return next(
            (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
            None,
        )


if __name__ == "__main__":
    main()
