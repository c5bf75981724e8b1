"""Training throughput of CLIP, LiT and 3T on each backend, beside open_clip.

    python benchmarks/train_step.py --sizes tiny small vitb16_64px \\
        --open-clip .venv-openclip/bin/python --output runs/train_step.json

For each size (a config in benchmarks/configs/, open_clip's format) the script
starts one process per side (open_clip, and keras-3t on each backend), lets
each build and warm up, then times them in lockstep: each timed round runs
one step of every side in turn, one process at a time while the others wait,
in an order drawn afresh each round (`--seed`), so every ratio compares steps
taken moments apart (on a shared CPU machine the speed of separate runs
minutes apart differed by up to 30 %). All the
processes of one size are alive together: mind the memory at large sizes
(`--backends` runs fewer). `--repeats` starts fresh processes again.
`--turn-steps K` makes each side's turn K consecutive steps, timed after
the first as `fit`'s steps follow each other (`timed_turn`); with the
default, one step, each timed step follows another process's.

- keras-3t on each backend, one process per backend and size: `clip`, `lit`
  (the image tower's backbone frozen), `3t` (a frozen third tower of the
  image tower's architecture, live) and `3t_cached` (the third tower's
  features read from the batch, as from a
  `keras_3t.data.write_third_tower_cache` cache), and `third_forward`: one
  inference forward pass of the third tower's backbone on the batch. Each
  round runs one step of every objective (`--process-per-objective`: each
  objective in a process of its own, so that no other model in the process
  shares its caches and memory);
- open_clip 3.3.0's CLIP on the same architecture (`--open-clip`: the python
  of a virtual environment made by `bash benchmarks/setup_openclip_venv.sh`),
  stepped by benchmarks/openclip_lockstep.py with the model, batch and
  optimizer of open_clip's step timer benchmarks/openclip_step.py (or the
  one given with `--open-clip-step`).

Both sides: pre-LN ViT with class-token pooling and a bias-free patch
embedding, causal text transformer pooled at the last token, bias-free
projections, AdamW (lr 5e-4, betas 0.9/0.98, eps 1e-6, weight decay 0.2
without decay on rank < 2 variables), `--threads` intra-op threads, the same
batch. keras-3t times a training step as `model.fit` runs it (the model's
train function; `train_on_batch` on JAX, see `train_step_function`) on one
fixed batch of backend tensors, after `--warmup` untimed steps, so its time
includes Keras's per-step overhead; open_clip's timer times its training
step body.
Samples/s is batch / median step time. Peak memory is the process's peak RSS
(keras-3t: after the objectives up to this one, in `--objectives` order,
were built and warmed up; the first one's is its own).
The optimizer implementation of each side is recorded: keras-3t's
`keras_3t.optimization.AdamW` (Keras's AdamW, the default of
`ThreeTowerModel.compile`; `--fused-adamw`: its one-kernel PyTorch update),
open_clip's torch AdamW (`--open-clip-adamw`: default for-loop, foreach or
fused).

Prints a table and writes every run (with the raw step times) as JSON. Each
target ratio is reported twice: the ratio of the two median step times, and
`paired_…`: the median over rounds of the ratio of the two steps taken in the
same round, with a bootstrap 95 % interval.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
OPENCLIP_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openclip_step.py")
BACKENDS = ("tensorflow", "jax", "torch")
OBJECTIVES = ("clip", "lit", "3t", "3t_cached", "third_forward")
BOOTSTRAP_SAMPLES = 2000
# open_clip's training defaults for ViT models.
LEARNING_RATE = 5e-4
WEIGHT_DECAY = 0.2
BETA_2 = 0.98
EPSILON = 1e-6


def load_config(size):
    path = size if size.endswith(".json") else os.path.join(CONFIGS, f"{size}.json")
    if not os.path.exists(path):
        known = sorted(name[:-5] for name in os.listdir(CONFIGS))
        raise SystemExit(f"Unknown size {size!r}: no {path}. Known sizes: {known}.")
    with open(path) as file:
        return json.load(file)


# --- keras-3t side (runs in a worker process) --------------------------------


def build_model(config, objective):
    """A ThreeTowerModel of open_clip's architecture for this config."""
    import math

    import keras_hub

    from keras_3t import ThreeTowerModel
    from keras_3t.towers import ImageTower
    from keras_3t.towers import TextTower
    from keras_3t.towers import ThirdTower

    vision, text = config["vision"], config["text"]

    def vit():
        return keras_hub.models.ViTBackbone(
            image_shape=(vision["image_size"], vision["image_size"], 3),
            patch_size=vision["patch_size"],
            num_layers=vision["layers"],
            num_heads=vision["heads"],
            hidden_dim=vision["width"],
            mlp_dim=int(vision["width"] * vision.get("mlp_ratio", 4.0)),
            layer_norm_epsilon=1e-5,
            use_patch_bias=False,
        )

    text_tower = TextTower(
        vocabulary_size=text["vocab_size"],
        sequence_length=text["context_length"],
        embedding_dim=config["embed_dim"],
        hidden_dim=text["width"],
        num_layers=text["layers"],
        num_heads=text["heads"],
        intermediate_dim=int(text["width"] * text.get("mlp_ratio", 4.0)),
        pooling="last",
        causal=True,
    )
    three_towers = objective in ("3t", "3t_cached", "third_forward")
    return ThreeTowerModel(
        image_tower=ImageTower(vit(), embedding_dim=config["embed_dim"], frozen=objective == "lit"),
        text_tower=text_tower,
        third_tower=ThirdTower(vit(), embedding_dim=config["embed_dim"]) if three_towers else None,
        objective="3t" if three_towers else objective,
        logit_scale_init=math.log(1 / 0.07),
    )


def make_batch(config, batch_size, model, cached, seed=1):
    import numpy as np

    rng = np.random.default_rng(seed)
    size = config["vision"]["image_size"]
    length = config["text"]["context_length"]
    batch = {
        "images": rng.random((batch_size, size, size, 3), dtype="float32"),
        "token_ids": rng.integers(1, config["text"]["vocab_size"], (batch_size, length)).astype(
            "int32"
        ),
        "padding_mask": np.ones((batch_size, length), bool),
    }
    if cached:
        features = rng.normal(size=(batch_size, model.third_tower.feature_dim))
        batch["third_features"] = features.astype("float32")
    return batch


def run_keras(args):
    """Times every objective of one (backend, size) in this process, interleaved.

    Each objective's model is built and warmed up in turn; then timed steps
    go round-robin over the objectives, so the ratios between objectives
    compare steps taken moments apart. Prints one JSON line per objective.
    """
    import keras
    import numpy as np

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)
    keras.mixed_precision.set_global_policy(args.dtype_policy)
    config = load_config(args.size)
    steps, builds, rss_after_warmup = {}, {}, {}
    for objective in args.objectives:
        keras.utils.set_random_seed(0)
        started = time.perf_counter()
        three_towers = [builds[name][0] for name in ("3t", "3t_cached") if name in builds]
        if objective == "third_forward" and three_towers:
            model = three_towers[0]  # its third tower: no second copy in memory
        else:
            model = build_model(config, "3t" if objective == "third_forward" else objective)
        batch = make_batch(config, args.batch, model, cached=objective == "3t_cached")
        if objective == "third_forward":
            steps[objective] = third_forward_function(model, batch)
        else:
            model.compile(
                optimizer=benchmark_optimizer(fused=args.fused_adamw),
                jit_compile=args.jit,
                accumulation_steps=args.accumulation_steps,
            )
            steps[objective] = train_step_function(model, batch)
        for _ in range(args.warmup):
            steps[objective]()
        builds[objective] = (model, time.perf_counter() - started)
        rss_after_warmup[objective] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    times = {objective: [] for objective in args.objectives}
    # The objectives in a fresh random order each round (no one always first).
    order = random.Random(args.seed)

    def run_round():
        for objective in order.sample(args.objectives, len(args.objectives)):
            times[objective].append(timed_turn(steps[objective], args.turn_steps))

    serve_rounds(run_round)

    for objective in args.objectives:
        model, build_s = builds[objective]
        median = statistics.median(times[objective])
        print(
            json.dumps(
                {
                    "side": "keras_3t",
                    "backend": keras.backend.backend(),
                    "process_id": os.getpid(),
                    "size": args.size,
                    "objective": objective,
                    "batch": args.batch,
                    "threads": args.threads,
                    "jit_compile": None
                    if objective == "third_forward"
                    else bool(model.jit_compile),
                    "accumulation_steps": args.accumulation_steps,
                    "dtype_policy": args.dtype_policy,
                    "turn_steps": args.turn_steps,
                    "median_step_s": median,
                    "samples_per_s": args.batch / median,
                    # Peak RSS of the process once this objective (and those before
                    # it, in --objectives order) had been built and warmed up.
                    "peak_rss_mib": rss_after_warmup[objective],
                    "build_and_warmup_s": build_s,
                    "params": {
                        "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                        "total": int(sum(np.prod(w.shape) for w in model.weights)),
                    },
                    "optimizer": f"keras_3t.optimization.AdamW(fused={args.fused_adamw})",
                    "versions": {"keras": keras.__version__, "backend": backend_version()},
                    "step_times_s": times[objective],
                }
            )
        )


def benchmark_optimizer(fused=False):
    """keras-3t's AdamW with open_clip's training defaults."""
    from keras_3t.optimization import AdamW

    return AdamW(
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        beta_2=BETA_2,
        epsilon=EPSILON,
        fused=fused,
    )


def serve_rounds(run_round):
    """A worker's side of `run_lockstep`: ready, then one round per "step" line.

    Runs `run_round()` for each "step" line on stdin, answering each with a
    JSON line, until stdin closes (or sends anything else).
    """
    print(json.dumps({"ready": True}), flush=True)
    rounds = 0
    for command in sys.stdin:
        if command.strip() != "step":
            break
        run_round()
        rounds += 1
        print(json.dumps({"round": rounds}), flush=True)


def timed_turn(step, turn_steps):
    """One side's turn in a lockstep round; returns its step time in seconds.

    A turn of one step times that step, which follows another process's (or
    objective's) step, with the CPU caches holding that one's data. A turn of
    `turn_steps` > 1 runs that many consecutive steps, as `fit` runs them:
    the first only refills the caches, and the time is the mean of the rest.
    """
    if turn_steps > 1:
        step()
    timed = max(turn_steps - 1, 1)
    started = time.perf_counter()
    for _ in range(timed):
        step()
    return (time.perf_counter() - started) / timed


def train_step_function(model, batch):
    """One training step on `batch` as `fit` takes it, returning once finished.

    `fit` builds the model once and then calls its train function on each
    batch. `train_on_batch` redoes the build at every call (on PyTorch that
    re-registers every variable with torch) and resets the metrics, per-call
    work that is not part of a fit step (at `tiny`, paired against this
    step: 0.6–1.1 ms more on PyTorch, 0.8–1.8 ms on TensorFlow); so on
    TensorFlow and PyTorch the step is the train function, called on the
    batch as `fit`'s iterator hands it over. On JAX it stays
    `train_on_batch`, whose extra work is handing the state to the compiled
    step and back; the fit-style loop that keeps the state between steps
    measured no faster.
    """
    import keras

    tensors = {key: keras.ops.convert_to_tensor(value) for key, value in batch.items()}
    # The first step builds what fit builds before its loop (the optimizer).
    model.train_on_batch(tensors)
    if keras.backend.backend() == "jax":
        return lambda: model.train_on_batch(tensors, return_dict=True)
    data = (tensors, None, None)
    # TensorFlow's train function takes an iterator, PyTorch's a list.
    takes_iterator = keras.backend.backend() == "tensorflow"

    def step():
        logs = model.train_function(iter([data]) if takes_iterator else [data])
        # The logs as NumPy values: the step has finished.
        return keras.tree.map_structure(keras.ops.convert_to_numpy, logs)

    return step


def third_forward_function(model, batch):
    """One inference forward pass of the third tower's backbone on the batch."""
    import keras

    from keras_3t.evaluation.retrieval import compile_function

    tower = model.third_tower
    images = keras.ops.convert_to_tensor(batch["images"])
    if keras.backend.backend() == "jax":
        # A pure function of the weights: jax.jit cannot read variables.
        import jax

        def features(values, images):
            with keras.StatelessScope(state_mapping=list(zip(tower.weights, values))):
                return tower.features(images)

        compiled = jax.jit(features)
        # Read the values at each call: training steps donate old buffers.
        return lambda: keras.ops.convert_to_numpy(
            compiled([w.value for w in tower.weights], images)
        )
    if keras.backend.backend() == "tensorflow":
        compiled = compile_function(tower.features)
        return lambda: keras.ops.convert_to_numpy(compiled(images))
    import torch

    def forward():
        with torch.no_grad():
            return keras.ops.convert_to_numpy(tower.features(images))

    return forward


def resolve_jit(jit):
    import keras

    if jit == "fastest":
        # Keras's "auto" leaves TensorFlow eager on CPUs; XLA measured faster.
        return True if keras.backend.backend() == "tensorflow" else "auto"
    return {"auto": "auto", "true": True, "false": False}[jit]


def backend_version():
    import keras

    name = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
    return __import__(module).__version__


# --- Orchestration -------------------------------------------------------------


class LockstepWorker:
    """A side's process: builds and warms up, then runs a round per request."""

    def __init__(self, label, command, environment):
        self.label, self.command = label, command
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe could fill and block
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=environment,
        )

    def answer(self):
        """The process's next JSON line (other output is skipped)."""
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.fail()

    def step(self):
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        self.answer()

    def results(self):
        """Closes its input; the JSON lines it prints as it ends."""
        self.process.stdin.close()
        lines = [json.loads(line) for line in self.process.stdout if line.startswith("{")]
        if self.process.wait() != 0 or not lines:
            self.fail()
        return lines

    def fail(self):
        self.process.kill()
        self.stderr.seek(0)
        raise RuntimeError(
            f"{self.label} failed (exit {self.process.wait()}): {' '.join(self.command)}\n"
            f"{self.stderr.read()[-3000:]}"
        )


def run_lockstep(workers, steps, seed):
    """Waits for every worker to be ready, then `steps` rounds, one side at a time.

    Each round steps the workers in a fresh random order (seeded), so that
    which process ran just before another (and left the CPU caches holding
    its data) varies from round to round instead of favouring one side.
    """
    order = random.Random(seed)
    try:
        for worker in workers:
            worker.answer()
        for _ in range(steps):
            for worker in order.sample(workers, len(workers)):
                worker.step()
        return {worker.label: worker.results() for worker in workers}
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()


def keras_command(args, size, objectives, seed):
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--size",
        size,
        "--objectives",
        *objectives,
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--jit",
        args.jit,
        "--accumulation-steps",
        str(args.accumulation_steps),
        "--dtype-policy",
        args.dtype_policy,
        "--seed",
        str(seed),
        "--turn-steps",
        str(args.turn_steps),
    ] + (["--fused-adamw"] if args.fused_adamw else [])


def open_clip_command(args, size):
    return [
        args.open_clip,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "openclip_lockstep.py"),
        "--open-clip-step",
        args.open_clip_step,
        "--config",
        json.dumps(load_config(size)),
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--lr",
        str(LEARNING_RATE),
        "--beta2",
        str(BETA_2),
        "--eps",
        str(EPSILON),
        "--wd",
        str(WEIGHT_DECAY),
        "--adamw-impl",
        args.open_clip_adamw,
        "--turn-steps",
        str(args.turn_steps),
    ]


def machine():
    """The CPU model and core count: ratios between sides differ between CPUs."""
    model = None
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as file:
            model = next(
                (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
                None,
            )
    return {"cpu": model, "cores": os.cpu_count()}


def worker_environment(backend, threads):
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    # The same intra-op thread count on every side (torch's is set in-process).
    environment.update(OMP_NUM_THREADS=str(threads), TF_NUM_INTRAOP_THREADS=str(threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
    return environment


def summarize(runs):
    """Median over repeats of each (size, side, backend, objective)."""
    groups = {}
    for run in runs:
        key = (run["size"], run["side"], run.get("backend", "torch"), run.get("objective", "clip"))
        groups.setdefault(key, []).append(run)
    rows = []
    for (size, side, backend, objective), group in groups.items():
        step = statistics.median(run["median_step_s"] for run in group)
        rows.append(
            {
                "size": size,
                "side": side,
                "backend": backend,
                "objective": objective,
                "median_step_s": step,
                "samples_per_s": group[0]["batch"] / step,
                "step_s_over_repeats": [run["median_step_s"] for run in group],
                "peak_rss_mib": max(run["peak_rss_mib"] for run in group),
                "repeats": len(group),
            }
        )
    return rows


def paired_ratio(numerators, denominators, seed=0):
    """Median of per-round ratios, with a bootstrap 95 % interval.

    `numerators[i]` and `denominators[i]` are two step times of the same
    lockstep round, taken moments apart: their ratio cancels the machine's
    drift, which the ratio of two medians over minutes does not.
    """
    values = [n / d for n, d in zip(numerators, denominators)]
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP_SAMPLES)
    )
    tail = int(0.025 * BOOTSTRAP_SAMPLES)
    return {
        "median": statistics.median(values),
        "ci95": [medians[tail], medians[-1 - tail]],
        "rounds": len(values),
    }


def round_times(runs, size, side, backend, objective):
    """Each repeat's step times, in round order: `{repeat: [seconds, ...]}`."""
    return {
        run["repeat"]: run["step_times_s"]
        for run in runs
        if (run["size"], run["side"], run.get("backend", "torch"), run.get("objective", "clip"))
        == (size, side, backend, objective)
    }


def paired(runs, size, numerator, denominator, added=None):
    """`paired_ratio` of two (side, backend, objective)s over every repeat's rounds.

    `added`: a third (side, backend, objective) whose step time in the same
    round is added to the denominator's.

    With several repeats (fresh processes each) it also gives each
    repeat's own `paired_ratio` as `"by_repeat"`: the pooled interval
    resamples rounds only, so it says nothing of how much runs differ.
    """
    tops, bottoms = round_times(runs, size, *numerator), round_times(runs, size, *denominator)
    extras = round_times(runs, size, *added) if added else None
    per_repeat = []
    for repeat, top in tops.items():
        bottom = bottoms[repeat]
        if extras:
            bottom = [seconds + extra for seconds, extra in zip(bottom, extras[repeat])]
        per_repeat.append((top, bottom))
    pooled = paired_ratio(
        [n for top, _ in per_repeat for n in top], [d for _, bottom in per_repeat for d in bottom]
    )
    if len(per_repeat) > 1:
        pooled["by_repeat"] = [paired_ratio(top, bottom) for top, bottom in per_repeat]
    return pooled


def ratios(rows, runs):
    """The issue's targets: best backend vs open_clip, 3T vs CLIP.

    Each target is given twice: as the ratio of the two median step times
    (over repeats), and `paired_…`, the median of the per-round ratios with
    its bootstrap 95 % interval (`paired_ratio`).
    """
    out = []
    for size in dict.fromkeys(row["size"] for row in rows):
        by = {(r["side"], r["backend"], r["objective"]): r for r in rows if r["size"] == size}
        reference = ("open_clip", "torch", "clip")
        for backend in BACKENDS:
            clip = by.get(("keras_3t", backend, "clip"))
            if clip is None:
                continue
            entry = {"size": size, "backend": backend}
            keras_clip = ("keras_3t", backend, "clip")
            if reference in by:
                entry["clip_vs_open_clip_samples_per_s"] = (
                    by[reference]["median_step_s"] / clip["median_step_s"]
                )
                entry["paired_clip_vs_open_clip_samples_per_s"] = paired(
                    runs, size, reference, keras_clip
                )
            for objective in ("lit", "3t", "3t_cached"):
                if ("keras_3t", backend, objective) in by:
                    entry[f"{objective}_over_clip_step_time"] = (
                        by[("keras_3t", backend, objective)]["median_step_s"]
                        / clip["median_step_s"]
                    )
                    entry[f"paired_{objective}_over_clip_step_time"] = paired(
                        runs, size, ("keras_3t", backend, objective), keras_clip
                    )
            forward = by.get(("keras_3t", backend, "third_forward"))
            if forward:
                entry["third_forward_s"] = forward["median_step_s"]
                entry["clip_plus_third_forward_s"] = (
                    clip["median_step_s"] + forward["median_step_s"]
                )
                if ("keras_3t", backend, "3t") in by:
                    entry["3t_step_s"] = by[("keras_3t", backend, "3t")]["median_step_s"]
                    entry["paired_3t_over_clip_plus_third_forward"] = paired(
                        runs,
                        size,
                        ("keras_3t", backend, "3t"),
                        keras_clip,
                        added=("keras_3t", backend, "third_forward"),
                    )
            out.append(entry)
    return out


def _interval(paired_value):
    low, high = paired_value["ci95"]
    return f"{paired_value['median']:.3f} [{low:.3f}, {high:.3f}]"


def print_table(rows, targets):
    print(
        f"{'size':<12} {'side':<9} {'backend':<10} {'objective':<13} {'step ms':>9} {'samples/s':>10} {'peak MiB':>9}"
    )
    for row in sorted(rows, key=lambda r: (r["size"], r["side"], r["backend"], r["objective"])):
        print(
            f"{row['size']:<12} {row['side']:<9} {row['backend']:<10} {row['objective']:<13} "
            f"{1000 * row['median_step_s']:>9.1f} {row['samples_per_s']:>10.1f} {row['peak_rss_mib']:>9.0f}"
        )
    print()
    for entry in targets:
        parts = [f"{key}={value:.3f}" for key, value in entry.items() if isinstance(value, float)]
        parts += [
            f"{key}={_interval(value)}"
            + "".join(
                f"\n        repeat {i}: {_interval(one)}"
                for i, one in enumerate(value.get("by_repeat", []))
            )
            for key, value in entry.items()
            if isinstance(value, dict)
        ]
        print(f"{entry['size']:<12} {entry['backend']:<10} " + "\n    ".join(parts))


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--turn-steps",
        type=positive_int,
        default=1,
        help="consecutive steps per side and turn; above 1 the first refills the caches "
        "and the rest are timed, as fit's steps follow each other (see timed_turn)",
    )
    parser.add_argument(
        "--jit",
        default="fastest",
        choices=("fastest", "auto", "true", "false"),
        help="compile(jit_compile=...): 'fastest' is XLA on TensorFlow and JAX, eager "
        "PyTorch (torch.compile measured no faster); 'auto' is Keras's choice",
    )
    parser.add_argument("--accumulation-steps", type=int, default=1)
    parser.add_argument("--dtype-policy", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument(
        "--process-per-objective",
        action="store_true",
        help="each keras-3t objective in its own process (default: one per backend); "
        "more memory, no model disturbs another's caches",
    )
    parser.add_argument(
        "--fused-adamw",
        action="store_true",
        help="keras-3t's AdamW(fused=True): one torch._fused_adamw_ kernel on PyTorch",
    )
    parser.add_argument(
        "--open-clip", help="python of an open_clip virtual environment (omit: keras-3t only)"
    )
    parser.add_argument(
        "--open-clip-step",
        default=OPENCLIP_STEP,
        help="open_clip's step timer (default: openclip_step.py beside this script)",
    )
    parser.add_argument(
        "--open-clip-adamw", default="foreach", choices=("default", "foreach", "fused")
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds each round's random order of sides and objectives (repeat r: seed + r)",
    )
    parser.add_argument("--output", help="JSON file to write (refuses to overwrite one)")
    # A worker times one configuration in its own process (own backend, own peak RSS).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.jit = resolve_jit(args.jit)
        run_keras(args)
        return
    for size in args.sizes:
        load_config(size)
    if args.output and os.path.exists(args.output):
        raise SystemExit(
            f"{args.output} exists; choose another --output (nothing was overwritten)."
        )
    if args.open_clip and not os.path.exists(args.open_clip_step):
        raise SystemExit(
            f"open_clip's step timer {args.open_clip_step} is missing; pass --open-clip-step."
        )

    runs = []
    for repeat in range(args.repeats):
        for size in args.sizes:
            groups = (
                [[o] for o in args.objectives] if args.process_per_objective else [args.objectives]
            )
            seed = args.seed + repeat
            workers = [
                LockstepWorker(
                    f"{backend} {' '.join(objectives)}",
                    keras_command(args, size, objectives, seed),
                    worker_environment(backend, args.threads),
                )
                for backend in args.backends
                for objectives in groups
            ]
            if args.open_clip:
                workers.insert(
                    0,
                    LockstepWorker(
                        "open_clip",
                        open_clip_command(args, size),
                        worker_environment("torch", args.threads),
                    ),
                )
            for label, results in run_lockstep(workers, args.steps, seed).items():
                for result in results:
                    if label == "open_clip":
                        result.update(
                            side="open_clip", backend="torch", objective="clip", size=size
                        )
                    result["repeat"] = repeat
                    runs.append(result)
                    print(
                        f"[{repeat}] {size} {result['side']} {result['backend']} {result['objective']}: "
                        f"{result['median_step_s'] * 1000:.1f} ms",
                        file=sys.stderr,
                    )
    rows = summarize(runs)
    targets = ratios(rows, runs)
    print_table(rows, targets)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(
                {
                    "arguments": vars(args),
                    "machine": machine(),
                    "summary": rows,
                    "targets": targets,
                    "runs": runs,
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
