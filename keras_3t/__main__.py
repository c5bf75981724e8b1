"""`python -m keras_3t demo ...` (also the `keras-3t` console script)."""

import os
import sys

COMMANDS = ("demo",)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: keras-3t {{{','.join(COMMANDS)}}} [options]; e.g. keras-3t demo --help")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_3t import demo

    demo.main(argv[1:])


if __name__ == "__main__":
    main()
