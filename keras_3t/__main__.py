"""The `keras-3t` command (also `python -m keras_3t`).

    keras-3t [--version] [--verbose] demo [options]
    keras-3t [--version] [--verbose] export PRESET_OR_FOLDER OUT [options]

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
