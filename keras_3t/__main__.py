"""The `keras-3t` command (also `python -m keras_3t`).

    keras-3t [--version] [--verbose] demo [options]

A command's arguments are parsed first; Keras and TensorFlow load only once
they are good, after the native log lines are filtered (`keras_3t.console`),
so `--help`, `--version` and a bad argument answer at once.
"""

import argparse
import sys

from keras_3t.version import __version__

COMMANDS = {
    "demo": "the main job: CLIP, LiT and 3T trained and evaluated on the "
    "embedded handwritten-digit scenes (keras-3t demo --help for its options)",
}


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


def _quiet_native_logs(verbose):
    from keras_3t.console import quiet_native_logs

    quiet_native_logs(verbose=True if verbose else None)


if __name__ == "__main__":
    main()
