"""The `keras-3t demo` command's arguments, parsed before anything heavy loads.

`keras-3t demo --help` and a bad argument answer at once; Keras and the
backend load only once the arguments are good (`keras_3t.demo.main_job`).

Example:
>>> from keras_3t.demo.demo_arguments import parse_args
>>> parse_args(["--regime", "clean", "--seed", "2"]).regime
'clean'
"""

import argparse

DESCRIPTION = "The main job: CLIP vs LiT vs 3T on the embedded handwritten-digit scenes."


def parse_args(argv):
    """The demo's options from `argv` (a list of strings); exits on a bad one."""
    parser = argparse.ArgumentParser(prog="keras-3t demo", description=DESCRIPTION)
    parser.add_argument("--regime", choices=["web", "clean"], default="web")
    parser.add_argument(
        "--mismatched",
        action="store_true",
        help="also train LiT and 3T with the mismatched (stroke thickness) third tower",
    )
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        default=None,
        help="default: runs/demo_<backend>_<regime>[_mismatched][_quick]_seed<seed>",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder's results"
    )
    parser.add_argument(
        "--save-presets",
        metavar="DIR",
        default=None,
        help="also save the trained CLIP, LiT and 3T as presets DIR/{clip,lit,3t}_tiny",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's, absl's and CUDA's native log lines",
    )
    return parser.parse_args(argv)
