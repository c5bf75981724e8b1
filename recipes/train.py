"""Train any preset on your image-caption data, then save it as a preset.

    KERAS_BACKEND=jax python recipes/train.py --preset 3t_tiny \\
        --data captions.csv --image-root images/ --output runs/train_mine

`--data` is one of:
- a `.csv` / `.tsv` (header with `image` and `caption`) or `.jsonl` file,
  image paths relative to `--image-root`;
- a folder (or glob) of TFRecords written by `keras_3t.data.write_tfrecords`
  (convert once with `--write-tfrecords DIR`, then train from DIR);
- img2dataset's shards: its output folder, or a pattern of its `.tar`
  (webdataset), `.parquet` or `.tfrecord` files, e.g.
  `'shards/{00000..00099}.tar'`; each process reads its own shards;
- `tfds:NAME[:SPLIT]`, e.g. `tfds:coco_captions:train` (prepared in
  `--tfds-data-dir`; nothing is downloaded unless `--tfds-download`).

The model starts fresh unless `--from-trained` (then from the preset's
trained weights). Starting fresh, its tokenizer is a WordPiece vocabulary
built from the first `--vocabulary-captions` captions of `--data` (at most
`--vocabulary-size` pieces; the text tower's embedding is sized to it), or
with `--vocabulary preset` the preset's, or a keras-hub tokenizer preset
(`--vocabulary bert_base_en_uncased`). A vocabulary not built from the
captions (always so with `--from-trained`) is checked on them: when over
5 % of their words are unknown to it or split into single characters, the
run warns, or with `--strict-vocabulary` refuses (docs/data.md, section
"Vocabularies"). The vocabulary is saved with the model.

The run is checkpointed to `OUTPUT/checkpoints/step-N/` (model, optimizer,
step, random state; every `--checkpoint-every` steps or each epoch, the
newest `--keep-checkpoints` kept); rerun the same command with `--resume`
after a crash to continue from the newest complete one, with the same result
as a run that never stopped (docs/training.md). A NaN or infinite loss stops
the run, naming the step and the pair loss. The final model is saved with
`save_to_preset` to `OUTPUT/preset` (load it with
`keras_3t.presets.load("OUTPUT/preset")`), the history to
`OUTPUT/history.json`. The backend comes from `KERAS_BACKEND`.

`--data-parallel` trains on every device with the negatives drawn from the
global batch `--batch-size` (docs/distributed.md): TensorFlow uses
MirroredStrategy (MultiWorkerMirroredStrategy when `TF_CONFIG` is set,
TPUStrategy with `--tpu`), JAX `keras.distribution.DataParallel` (several
hosts: `--coordinator`, `--num-processes`, `--process-id`), PyTorch one
process per device started by `torchrun`.

Speed (docs/benchmarks.md): `--third-tower-cache DIR` computes the frozen
third tower's features once per image (next to the data, say
`captions.csv.third_tower_cache`) and trains from them, with central crops
instead of random ones; on img2dataset's shards, `--third-tower-features
DIR` reads them from feature shards beside the data instead
(`recipes/feature_shards.py` writes them), in memory one shard at a time;
`--accumulation-steps N` splits each batch into N
micro-batches with the whole batch's negatives; `--mixed-precision` computes
in bfloat16; `--jit-compile` forces XLA on or off.
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import typing

from keras_3t.console import quiet_native_logs  # noqa: E402

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402

import keras_3t  # noqa: E402
from keras_3t import data  # noqa: E402
from keras_3t.distributed import saving_on_one_process  # noqa: E402
from keras_3t.preprocessing import ThreeTowerPreprocessor  # noqa: E402
from keras_3t.preprocessing import caption_texts  # noqa: E402
from keras_3t.preprocessing import caption_tokenizer  # noqa: E402
from keras_3t.preprocessing import caption_vocabulary  # noqa: E402
from keras_3t.vocabulary import POOR_COVERAGE  # noqa: E402
from keras_3t.vocabulary import tokenizer_from_preset  # noqa: E402
from keras_3t.vocabulary import vocabulary_coverage  # noqa: E402

# --vocabulary's two words; anything else names a keras-hub tokenizer preset.
CAPTIONS, PRESET = "captions", "preset"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--preset", default="3t_tiny", help="a name in keras_3t.presets.names() or a preset folder"
    )
    parser.add_argument(
        "--from-trained", action="store_true", help="start from the preset's trained weights"
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--image-root", default=".")
    parser.add_argument("--tfds-data-dir", default=None)
    parser.add_argument("--tfds-download", action="store_true")
    parser.add_argument(
        "--write-tfrecords",
        metavar="DIR",
        default=None,
        help="convert --data to TFRecords in DIR, then train from them",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--on-bad-data", choices=data.bad_data.BAD_DATA_MODES, default="raise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a non-empty --output, deleting its checkpoints",
    )
    vocabulary = parser.add_argument_group("vocabulary (docs/data.md#vocabularies)")
    vocabulary.add_argument(
        "--vocabulary",
        default=None,
        metavar="SOURCE",
        help=f"'{CAPTIONS}': build a WordPiece vocabulary from --data's captions (the default "
        f"when training from scratch); '{PRESET}': keep the preset's (the default, and the "
        "only choice, with --from-trained); anything else names a keras-hub tokenizer preset, "
        "e.g. bert_base_en_uncased (fetched), or a folder saved with save_to_preset",
    )
    vocabulary.add_argument(
        "--vocabulary-size",
        type=int,
        default=8000,
        metavar="PIECES",
        help="the most word pieces the built vocabulary keeps (default 8000: the common "
        "words of up to millions of captions, with a text embedding table far smaller than "
        "BERT's 30,522 rows; a word needs at least 10 occurrences to become a piece, so few "
        "captions give fewer)",
    )
    vocabulary.add_argument(
        "--vocabulary-captions",
        type=int,
        default=100_000,
        metavar="N",
        help="build the vocabulary, or check a fixed one, on the first N captions of --data "
        "only, not on all of a web-scale set (default 100000; every process reads the same "
        "N examples, images included)",
    )
    vocabulary.add_argument(
        "--strict-vocabulary",
        action="store_true",
        help=f"refuse, instead of warning, when over {POOR_COVERAGE * 100:.0f}%% of the "
        "captions' words are unknown to a fixed vocabulary or split into single characters",
    )
    resume = parser.add_argument_group("checkpoints (docs/training.md)")
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in OUTPUT/checkpoints (or start)",
    )
    resume.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="checkpoint every STEPS steps (default: at each epoch's end)",
    )
    resume.add_argument("--keep-checkpoints", type=int, default=3, metavar="K")
    speed = parser.add_argument_group("speed (docs/benchmarks.md)")
    speed.add_argument(
        "--third-tower-cache",
        metavar="DIR",
        default=None,
        help="3T: read the third tower's features from DIR, writing it first if absent; "
        "turns random crops off (the cache holds central crops)",
    )
    speed.add_argument(
        "--third-tower-features",
        metavar="DIR",
        default=None,
        help="3T on img2dataset shards: read each shard's frozen-tower features from DIR "
        "(written by recipes/feature_shards.py); turns random crops off",
    )
    speed.add_argument(
        "--accumulation-steps",
        type=int,
        default=1,
        help="split each batch into micro-batches; negatives stay the whole batch's",
    )
    speed.add_argument(
        "--mixed-precision", action="store_true", help="compute in bfloat16 (mixed_bfloat16)"
    )
    speed.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto")
    parallel = parser.add_argument_group("data parallelism (docs/distributed.md)")
    parallel.add_argument(
        "--data-parallel",
        action="store_true",
        help="train on every device; --batch-size is the global batch",
    )
    parallel.add_argument(
        "--local-loss",
        action="store_true",
        help="each replica computes only its rows of the logits (less memory)",
    )
    parallel.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="TensorFlow: split the CPU into this many devices (to try it without GPUs)",
    )
    parallel.add_argument(
        "--tpu", default=None, help="TensorFlow: TPU name or address for TPUStrategy"
    )
    parallel.add_argument(
        "--coordinator", default=None, help="JAX multi-host: ADDRESS:PORT of process 0"
    )
    parallel.add_argument(
        "--num-processes", type=int, default=None, help="JAX multi-host: number of hosts"
    )
    parallel.add_argument(
        "--process-id", type=int, default=None, help="JAX multi-host: this host's index"
    )
    args = parser.parse_args(argv)
    for flag in ("vocabulary_size", "vocabulary_captions"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive.")
    if args.vocabulary is None:
        args.vocabulary = PRESET if args.from_trained else CAPTIONS
    return args


class Parallel(typing.NamedTuple):
    """How this process takes part in data-parallel training.

    `scope` gives the scope to build and compile the model in;
    `num_shards`, `shard_index` this process's share of the data;
    `input_batch_size` the batch its input pipeline makes; `chief` whether
    it writes the outputs (the others write nothing); `distribute` turns
    its dataset into what `fit` reads.
    """

    scope: typing.Callable = contextlib.nullcontext
    num_shards: int = 1
    shard_index: int = 0
    input_batch_size: int = 0
    chief: bool = True
    distribute: typing.Callable = lambda dataset: dataset


def data_parallel(args):
    """Sets up data parallelism for the backend; returns a `Parallel`."""
    if not args.data_parallel:
        return Parallel(input_batch_size=args.batch_size)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_parallel(args)
    if backend == "jax":
        import jax

        if args.coordinator is not None:
            # CPU devices of several processes reach each other through gloo
            # (set before the backend starts; accelerators use their own).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            keras.distribution.initialize(args.coordinator, args.num_processes, args.process_id)
        # Each host reads its own data and feeds its own slice of the global
        # batch (not Keras's sharding of one global stream).
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
        )
        hosts, host = jax.process_count(), jax.process_index()
        if args.batch_size % hosts:
            sys.exit(f"--batch-size {args.batch_size} must divide by the {hosts} hosts.")
        return Parallel(contextlib.nullcontext, hosts, host, args.batch_size // hosts, host == 0)
    import torch
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ:
        sys.exit(
            "--data-parallel on PyTorch: start one process per device with "
            "torchrun --nproc-per-node=N recipes/train.py ... (docs/distributed.md)."
        )
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    if args.batch_size % world:
        sys.exit(f"--batch-size {args.batch_size} must divide by the {world} processes.")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return Parallel(contextlib.nullcontext, world, rank, args.batch_size // world, rank == 0)


def _tensorflow_parallel(args):
    import tensorflow as tf

    if args.tpu is not None:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        if args.cpu_devices:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
            )
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    resolver = strategy.cluster_resolver
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # One input pipeline: Keras splits each global batch over the replicas.
        chief = resolver is None or resolver.task_id == 0
        return Parallel(strategy.scope, input_batch_size=args.batch_size, chief=chief)
    # Several workers: each reads its own shards (as on JAX and PyTorch)
    # and batches its replicas' rows, one per-replica batch at a time.
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        sys.exit(f"--batch-size {args.batch_size} must divide by the {replicas} replicas.")
    workers = resolver.cluster_spec().num_tasks("worker")
    return Parallel(
        strategy.scope,
        workers,
        resolver.task_id,
        args.batch_size // replicas,
        resolver.task_id == 0,
        lambda dataset: strategy.distribute_datasets_from_function(lambda _: dataset),
    )


def is_img2dataset(path):
    """Whether `--data` names img2dataset's shards rather than `write_tfrecords`'s folder."""
    if path.endswith((".tar", ".parquet")) or "{" in path:
        return True
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return not os.path.exists(os.path.join(folder, data.records.MANIFEST))


def source(args, bad_data, num_shards, shard_index, features=None):
    """The examples of `--data`, and whether they are this process's share already."""
    if args.data.startswith("tfds:"):
        name, _, split = args.data[len("tfds:") :].partition(":")
        examples = data.from_tfds(
            name, split or "train", data_dir=args.tfds_data_dir, download=args.tfds_download
        )
        return examples, False
    if args.data.endswith((".csv", ".tsv", ".jsonl", ".json")):
        examples = data.from_caption_file(
            args.data, args.image_root, on_bad_data=args.on_bad_data, bad_data=bad_data
        )
        return examples, False
    if is_img2dataset(args.data):
        examples = data.from_img2dataset(
            args.data,
            num_shards,
            shard_index,
            on_bad_data=args.on_bad_data,
            bad_data=bad_data,
            third_tower_features=features,
        )
        return examples, True
    if features is not None:
        sys.exit("--third-tower-features reads img2dataset's shards; use --third-tower-cache.")
    return data.from_tfrecords(args.data), False


@contextlib.contextmanager
def data_errors_end_the_run(source_errors=()):
    """An error about --data ends the run with its message alone (exit code 1).

    A bad example that stops the pipeline is a TensorFlow assertion (through
    PyTorch's DataLoader, with a long traceback) whose message is kept alone;
    `source_errors` are reading a source's errors (a missing file or column,
    no usable rows), printed as they are.
    """
    try:
        yield
        return
    except source_errors as error:
        message = str(error)
    except Exception as error:
        message = data.bad_data.bad_example_error_message(error)
        if message is None:
            raise
    # The library's advice, as this command line spells it.
    sys.exit(message.replace("on_bad_data='skip'", "--on-bad-data skip"))


def caption_sample(args):
    """The captions of the first --vocabulary-captions examples of --data.

    Read whole (not this process's share), so every process gets the same.
    """
    examples, _ = source(args, data.BadDataCounter(), num_shards=1, shard_index=0)
    captions = examples.take(args.vocabulary_captions).map(lambda example: example["caption"])
    return caption_texts(captions)


def chosen_tokenizer(args, captions, chief):
    """The tokenizer --vocabulary names, or None for the preset's own."""
    if args.vocabulary == PRESET:
        return None
    if args.vocabulary == CAPTIONS:
        vocabulary = caption_vocabulary(captions, args.vocabulary_size)
        if chief:
            print(
                f"built a vocabulary of {len(vocabulary)} word pieces from {len(captions)} captions"
            )
        return caption_tokenizer(vocabulary)
    try:
        return tokenizer_from_preset(args.vocabulary)
    except (keras_3t.presets.WeightsUnavailableError, ValueError) as error:
        sys.exit(f"--vocabulary: {error}")


def load_model(args, tokenizer):
    """--preset's model; with `tokenizer`, fresh, its text tower sized to the tokenizer's vocabulary."""
    if tokenizer is None:
        return keras_3t.presets.load(
            args.preset, weights=args.from_trained, local_loss=args.local_loss
        )
    vocabulary_size = tokenizer.vocabulary_size()
    if args.preset in keras_3t.presets.names():
        text_tower = keras_3t.presets.PRESETS[args.preset]["text_tower"]
        return keras_3t.presets.load(
            args.preset,
            weights=False,
            preprocessor=ThreeTowerPreprocessor(tokenizer, text_tower["sequence_length"]),
            text_tower={"vocabulary_size": vocabulary_size},
            local_loss=args.local_loss,
        )
    # A preset folder builds every tower fresh from its config without
    # weights: the same, with the text tower resized.
    model = keras_3t.presets.load(
        args.preset, weights=False, preprocessor=False, local_loss=args.local_loss
    )
    config = model.get_config()
    text_tower = config["text_tower"]["config"]
    text_tower["vocabulary_size"] = vocabulary_size
    config["preprocessor"] = ThreeTowerPreprocessor(tokenizer, text_tower["sequence_length"])
    return keras_3t.ThreeTowerModel.from_config(config)


def check_coverage(args, tokenizer, captions, chief):
    """Warns (with --strict-vocabulary, exits) if `tokenizer` covers the captions poorly."""
    coverage = vocabulary_coverage(tokenizer, captions)
    if not coverage.is_poor():
        return
    whose = "The preset's" if args.vocabulary == PRESET else f"{args.vocabulary}'s"
    remedy = f"Build one from them with --vocabulary {CAPTIONS}"
    if args.from_trained:
        remedy += " (training from scratch: without --from-trained)"
    message = (
        f"{whose} vocabulary covers the captions poorly: in the first {len(captions)}, "
        f"{coverage} (over {POOR_COVERAGE:.0%} is poor). {remedy}."
    )
    if args.strict_vocabulary:
        sys.exit(message)
    if chief:
        logging.warning(message)


def third_tower_cache(args, model, examples, image_size, chief):
    """The cache of --third-tower-cache, written on first use (by the chief only)."""
    if args.third_tower_cache is None:
        return None
    if model.objective != "3t":
        sys.exit(f"--third-tower-cache is for 3T presets; {args.preset} is {model.objective!r}.")
    if not os.path.exists(args.third_tower_cache):
        if not chief:
            sys.exit(f"{args.third_tower_cache} does not exist: write it on one process first.")
        manifest = data.write_third_tower_cache(model, examples, args.third_tower_cache, image_size)
        print(
            f"cached the third tower's features of {manifest['images']} images in {args.third_tower_cache}"
        )
    return data.load_third_tower_cache(args.third_tower_cache, model)


def main(argv=None):
    args = parse_args(argv)
    # Every process checks before the setup below, which waits for all of
    # them; only then does the chief write.
    if args.resume and args.overwrite:
        sys.exit("--resume continues the run in --output and --overwrite starts it over: pass one.")
    if args.from_trained and args.vocabulary != PRESET:
        sys.exit(
            f"--from-trained keeps the preset's vocabulary, which its text tower was trained "
            f"on: drop --vocabulary {args.vocabulary}, or drop --from-trained to train from "
            "scratch with another."
        )
    if (
        os.path.isdir(args.output)
        and os.listdir(args.output)
        and not (args.overwrite or args.resume)
    ):
        sys.exit(
            f"{args.output} is not empty; pass --resume to continue its run, --overwrite "
            "to start over, or choose another --output."
        )
    parallel = data_parallel(args)
    # After the setup above: TensorFlow's multi-worker setup must come
    # before any TensorFlow op.
    with data_errors_end_the_run((OSError, ValueError)):
        captions = caption_sample(args)
    tokenizer = chosen_tokenizer(args, captions, parallel.chief)
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with parallel.scope():
            model = load_model(args, tokenizer)
    except keras_3t.presets.WeightsUnavailableError as error:
        sys.exit(str(error))
    if model.preprocessor is None:
        sys.exit(f"{args.preset} has no tokenizer; save one with the model (see docs/presets.md).")
    if args.vocabulary != CAPTIONS:
        check_coverage(args, model.preprocessor.tokenizer, captions, parallel.chief)
    image_size = model.image_tower.backbone.input_shape[1]
    bad_data = data.BadDataCounter()
    features = None
    if args.third_tower_features is not None:
        if args.third_tower_cache is not None or args.write_tfrecords:
            sys.exit(
                "--third-tower-features goes with neither --third-tower-cache nor --write-tfrecords."
            )
        try:
            features = data.load_feature_shards(args.third_tower_features, model)
        except (OSError, ValueError) as error:
            sys.exit(str(error))
    with data_errors_end_the_run((OSError, ValueError)):
        examples, sharded = source(
            args, bad_data, parallel.num_shards, parallel.shard_index, features
        )
    if args.write_tfrecords:
        if parallel.num_shards > 1:
            sys.exit(
                "--write-tfrecords converts once on one process; convert first, then train in parallel."
            )
        with data_errors_end_the_run((OSError, ValueError)):
            manifest = data.write_tfrecords(
                examples, args.write_tfrecords, on_bad_data=args.on_bad_data
            )
        print(
            f"wrote {manifest['examples']} examples to {args.write_tfrecords} (skipped {manifest['skipped']})"
        )
        examples, sharded = data.from_tfrecords(args.write_tfrecords), False
    with data_errors_end_the_run():
        cache = (
            features
            if features is not None
            else third_tower_cache(args, model, examples, image_size, parallel.chief)
        )
    checkpoints = os.path.join(args.output, "checkpoints")
    if args.overwrite and parallel.chief and os.path.isdir(checkpoints):
        shutil.rmtree(checkpoints)
    try:
        checkpoint = keras_3t.callbacks.TrainingCheckpoint(
            checkpoints,
            save_every_n_steps=args.checkpoint_every,
            keep=args.keep_checkpoints,
            resume=args.resume,
            save=parallel.chief,
        )
    except (FileExistsError, keras_3t.callbacks.CheckpointError) as error:
        sys.exit(str(error))
    dataset = data.make_dataset(
        examples,
        model.preprocessor,
        image_size,
        parallel.input_batch_size,
        seed=args.seed,
        on_bad_data=args.on_bad_data,
        bad_data=bad_data,
        num_shards=1 if sharded else parallel.num_shards,
        shard_index=0 if sharded else parallel.shard_index,
        third_tower_cache=cache,
        start_step=checkpoint.initial_step,
        **({"random_crop_scale": None} if cache is not None else {}),
    )
    total = args.epochs * args.steps_per_epoch
    with parallel.scope():
        model.compile(
            learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps,
            total_steps=total,
            accumulation_steps=args.accumulation_steps,
            jit_compile={"true": True, "false": False}.get(args.jit_compile, "auto"),
        )
    try:
        with data_errors_end_the_run():
            model.fit(
                parallel.distribute(dataset),
                epochs=args.epochs,
                steps_per_epoch=args.steps_per_epoch,
                verbose=2 if parallel.chief else 0,
                callbacks=[data.BadDataReport(bad_data), checkpoint],
            )
    except (keras_3t.callbacks.NonFiniteLossError, keras_3t.callbacks.CheckpointError) as error:
        sys.exit(str(error))
    # Every epoch's logs, those before a resume included.
    history = checkpoint.history
    if not parallel.chief:
        return history
    with open(os.path.join(args.output, "history.json"), "w") as file:
        json.dump(history, file, indent=2)
    command = f"KERAS_BACKEND={keras.backend.backend()} python recipes/train.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    with saving_on_one_process():
        model.save_to_preset(
            os.path.join(args.output, "preset"),
            overwrite=args.overwrite or args.resume,
            metadata={"command": command, "data": args.data, "skipped": bad_data.counts()},
        )
    print(
        f"final loss {history['loss'][-1]:.4f}; skipped {bad_data.counts()}; "
        f"saved {os.path.join(args.output, 'preset')}"
    )
    return history


if __name__ == "__main__":
    main()
