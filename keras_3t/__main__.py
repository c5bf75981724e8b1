"""The `keras-3t` command (also `python -m keras_3t`).

    keras-3t [--version] [--verbose] demo [options]
    keras-3t [--version] [--verbose] export PRESET_OR_FOLDER OUT [options]
    keras-3t [--version] [--verbose] embed PRESET_OR_FOLDER (--images PATH | --captions FILE)
                                           --output OUT [options]
    keras-3t [--version] [--verbose] search OUT [QUERY ...] [--image FILE ...] [options]

A command's arguments are parsed first; Keras and TensorFlow load only once
they are good, after the native log lines are filtered (`keras_3t.console`),
so `--help`, `--version` and a bad argument answer at once.
"""

import argparse
import json
import os
import sys

from keras_3t.version import __version__

COMMANDS = {
    "demo": "the main job: CLIP, LiT and 3T trained and evaluated on the "
    "embedded handwritten-digit scenes (keras-3t demo --help for its options)",
    "export": "write a model's image and text encoders as a TensorFlow SavedModel, "
    "ONNX or LiteRT (keras-3t export --help)",
    "embed": "embed a folder of images, img2dataset shards or a caption file, resumably "
    "(keras-3t embed --help)",
    "search": "the best matches of captions or images in embeddings that embed wrote "
    "(keras-3t search --help)",
}
# keras_3t.export.FORMATS's keys, named here so that --help loads nothing.
EXPORT_FORMATS = ("tf_saved_model", "onnx", "litert")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="keras-3t",
        description="Three Towers (3T) contrastive image-text learning for Keras 3.",
        epilog="commands:\n"
        + "\n".join(f"  {name:8s}{help}" for name, help in COMMANDS.items())
        + "\n\nThe backend is Keras's: KERAS_BACKEND=jax|tensorflow|torch keras-3t demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-3t {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's, absl's and CUDA's native log lines (also KERAS_3T_VERBOSE=1)",
    )
    parser.add_argument(
        "command", choices=sorted(COMMANDS), metavar="command", help=", ".join(sorted(COMMANDS))
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv:
        parser.print_usage(sys.stderr)
        parser.exit(2, f"keras-3t: name a command: {', '.join(sorted(COMMANDS))}\n")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    options = [option for option in args.options if option != "--verbose"]
    verbose = args.verbose or len(options) < len(args.options)
    if args.command == "demo":
        from keras_3t.demo.demo_arguments import parse_args as parse_demo_args

        parse_demo_args(options)
        _quiet_native_logs(verbose)
        from keras_3t.demo import main_job

        main_job.main(options)
    elif args.command == "export":
        export_args = parse_export_args(options)
        # The encoders are TensorFlow graphs, and a preset's weights load on
        # any backend: exporting runs on TensorFlow (keras_3t.export). With
        # Keras already loaded (main() called in Python), export_encoders
        # starts a TensorFlow process itself.
        if "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = "tensorflow"
        _quiet_native_logs(verbose)
        from keras_3t import presets

        try:
            model = presets.load(export_args.preset)
            model.export_encoders(
                export_args.output,
                format=export_args.format,
                alpha=export_args.alpha,
                overwrite=export_args.overwrite,
            )
        except (ValueError, FileExistsError) as error:  # a bad preset, α or output folder
            sys.exit(f"keras-3t export: {error}")
        print(f"Wrote the {export_args.format} encoders to {export_args.output}")
    elif args.command == "embed":
        embed_args = parse_embed_args(options)
        _quiet_native_logs(verbose)
        embed(embed_args)
    elif args.command == "search":
        search_args = parse_search_args(options)
        _quiet_native_logs(verbose)
        search(search_args)


def parse_export_args(argv):
    """`keras-3t export`'s options from `argv` (a list of strings); exits on a bad one.

    Example:
    >>> parse_export_args(["3t_tiny", "out", "--format", "onnx", "--alpha", "0.5"]).alpha
    0.5
    """
    parser = argparse.ArgumentParser(
        prog="keras-3t export",
        description="Writes a model's image and text encoders, which return its unit "
        "embeddings at alpha, to run without Keras (docs/deploy.md).",
    )
    parser.add_argument("preset", metavar="PRESET_OR_FOLDER", help="a preset name or folder")
    parser.add_argument("output", metavar="OUT", help="the folder to write")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="tf_saved_model")
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=1.0,
        help="the main path's weight in [0, 1] (below 1: 3T models), or JSON weights "
        'by path, e.g. \'{"main": 0.5, "digits": 0.5}\' (default 1)',
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it is not empty")
    return parser.parse_args(argv)


def parse_embed_args(argv):
    """`keras-3t embed`'s options from `argv` (a list of strings); exits on a bad one.

    Example:
    >>> args = parse_embed_args(["3t_tiny", "--captions", "c.txt", "--output", "out"])
    >>> args.captions, args.images, args.batch_size, args.on_bad_data
    ('c.txt', None, 64, 'raise')
    """
    parser = argparse.ArgumentParser(
        prog="keras-3t embed",
        description="Embeds every image of a folder or of img2dataset's shards, or every "
        "caption of a file, into OUT: embeddings.npy, items.jsonl (the ids) and "
        "skipped.jsonl. Killed, the same command goes on where it stopped "
        "(docs/deploy.md).",
    )
    parser.add_argument("preset", metavar="PRESET_OR_FOLDER", help="a preset name or folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images",
        metavar="PATH",
        help="a folder of image files (searched recursively), or img2dataset's shards: "
        "a folder of .tar, .tfrecord or .parquet files, a pattern or a file",
    )
    source.add_argument("--captions", metavar="FILE", help="a .txt, .csv, .tsv or .jsonl file")
    parser.add_argument("--output", metavar="OUT", required=True, help="the folder to write")
    parser.add_argument("--alpha", type=_alpha, default=1.0, help="as for keras-3t export")
    parser.add_argument("--batch-size", type=_positive, default=64, help="default 64")
    parser.add_argument(
        "--part-size",
        type=_positive,
        default=1024,
        help="items per part file; at most this many are embedded again after a kill "
        "(default 1024)",
    )
    parser.add_argument(
        "--on-bad-data",
        choices=("raise", "skip"),
        default="raise",
        help="stop at a missing or undecodable image, an empty caption or a damaged "
        "shard (raise, the default), or leave it out and list it in skipped.jsonl",
    )
    parser.add_argument("--caption-column", default="caption", help="(.csv, .tsv, .jsonl)")
    parser.add_argument("--id-column", help="(.csv, .tsv, .jsonl) default: the line number")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it holds anything else"
    )
    return parser.parse_args(argv)


def embed(args):
    """Runs `keras-3t embed` with parsed `args`."""
    from keras_3t.collection import embed_collection

    try:
        collection = embed_collection(
            args.preset,
            args.output,
            images=args.images,
            captions=args.captions,
            alpha=args.alpha,
            batch_size=args.batch_size,
            part_size=args.part_size,
            on_bad_data=args.on_bad_data,
            caption_column=args.caption_column,
            id_column=args.id_column,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:  # bad input, a bad item, a taken folder
        sys.exit(f"keras-3t embed: {error}")
    skipped = sum(collection.manifest["skipped"].values())
    print(
        f"{len(collection)} {collection.manifest['settings']['kind']} embedded in {args.output}"
        + (f"; {skipped} skipped, listed in skipped.jsonl" if skipped else "")
    )


def parse_search_args(argv):
    """`keras-3t search`'s options from `argv` (a list of strings); exits on a bad one.

    Example:
    >>> args = parse_search_args(["out", "a 3 above a 7", "--top-k", "3"])
    >>> args.queries, args.top_k, args.images
    (['a 3 above a 7'], 3, [])
    """
    parser = argparse.ArgumentParser(
        prog="keras-3t search",
        description="The best matches in OUT (written by keras-3t embed) of each caption "
        "QUERY and each --image, scored by the model and α that embedded OUT.",
    )
    parser.add_argument("collection", metavar="OUT", help="a folder that keras-3t embed wrote")
    parser.add_argument("queries", metavar="QUERY", nargs="*", help="captions to search for")
    parser.add_argument(
        "--image",
        dest="images",
        metavar="FILE",
        action="append",
        default=[],
        help="an image file to search for (repeat for several)",
    )
    parser.add_argument("--top-k", type=_positive, default=5, help="matches per query (5)")
    parser.add_argument(
        "--model",
        metavar="PRESET_OR_FOLDER",
        help="the model that embedded OUT, if it is no longer where OUT's manifest says",
    )
    parser.add_argument("--json", action="store_true", help="print the matches as JSON")
    args = parser.parse_args(argv)
    if not args.queries and not args.images:
        parser.error("give a caption QUERY or an --image FILE to search for")
    return args


def search(args):
    """Runs `keras-3t search` with parsed `args`."""
    from keras_3t.collection import read_collection

    try:
        images = []
        for path in args.images:
            with open(path, "rb") as file:
                images.append(file.read())
        matches = read_collection(args.collection).search(
            texts=args.queries, images=images, model=args.model, top_k=args.top_k
        )
    except (ValueError, OSError) as error:  # not embeddings, another model, a bad query
        sys.exit(f"keras-3t search: {error}")
    queries = [*args.queries, *args.images]
    if args.json:
        print(json.dumps([{"query": q, "matches": m} for q, m in zip(queries, matches)]))
        return
    for query, query_matches in zip(queries, matches):
        print(json.dumps(query, ensure_ascii=False))
        for match in query_matches:
            caption = f"  {match['caption']}" if "caption" in match else ""
            print(f"  {match['rank']:>3}  {match['score']:.4f}  {match['id']}{caption}")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _alpha(text):
    try:
        return float(text)
    except ValueError:
        pass
    try:
        weights = json.loads(text)
    except ValueError:
        weights = None
    if not isinstance(weights, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor JSON weights by path")
    return weights


def _quiet_native_logs(verbose):
    from keras_3t.console import quiet_native_logs

    quiet_native_logs(verbose=True if verbose else None)


if __name__ == "__main__":
    main()
