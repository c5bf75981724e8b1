"""Quiet consoles: TensorFlow's and absl's native log lines kept from the user.

TensorFlow writes start-up lines from C++ through absl ("All log messages
before absl::InitializeLog() ...", oneDNN and CUDA-driver notices, "failed
call to cuInit") straight to file descriptor 2, on every Keras backend
(keras-hub's tokenizers load TensorFlow), and `TF_CPP_MIN_LOG_LEVEL` no
longer stops all of them. Two scopes:

- `import keras_3t` calls `quiet_tensorflow_start()`: TensorFlow's import and
  its first look at the devices, whenever they happen, write into a buffer
  whose native lines are dropped; the rest is written to stderr afterwards.
  Later lines (warnings and errors while training) pass unchanged.
- The command line and the recipes own their process and call
  `quiet_native_logs()` before TensorFlow loads: every native line is dropped
  for the rest of the process.

Python's own output (warnings, tracebacks, progress bars) passes in both.
"""

import atexit
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading

# Setting this (or `keras-3t --verbose`) keeps every native line.
VERBOSE_ENVIRONMENT = "KERAS_3T_VERBOSE"
# absl / glog's native prefix: severity and date, time, thread, file:line].
NATIVE_LINE = re.compile(rb"^[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
NATIVE_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called",
    # The second line of TensorFlow's cpu_feature_guard notice.
    b"To enable the following instructions: ",
)


def is_native_log_line(line):
    """Whether a line of stderr (bytes) is one of the native log lines.

    Example:
    >>> from keras_3t.console import is_native_log_line
    >>> is_native_log_line(b"I0000 00:00:1796.2 28784 cudart_stub.cc:31] No cuda drivers")
    True
    >>> is_native_log_line(b"Traceback (most recent call last):")
    False
    """
    return bool(NATIVE_LINE.match(line)) or line.startswith(NATIVE_NOTICES)


def raised_as_is(error):
    """Marks an exception so that Keras re-raises it unchanged.

    A layer's `__call__` rewrites an exception raised inside it as
    "Exception encountered when calling X.call()", which moves keras-3t's
    message off the first line; Keras leaves an exception alone once it
    carries this mark (keras/src/utils/traceback_utils.py).

    Args:
        error: the exception to raise.

    Returns:
        `error`, marked.

    Example:
    >>> from keras_3t.console import raised_as_is
    >>> str(raised_as_is(ValueError("An empty caption.")))
    'An empty caption.'
    """
    error._keras_call_info_injected = True
    return error


def _verbose_requested():
    return os.environ.get(VERBOSE_ENVIRONMENT, "") not in ("", "0")


def quiet_tensorflow_start():
    """Drops the native lines TensorFlow writes when it loads, whenever it loads.

    Installs an import hook for `tensorflow`: its import, and its first
    listing of the devices (where the CUDA-driver lines come from), write
    fd 2 into a temporary file; afterwards the file's lines that are not
    native are written to stderr. Does nothing when TensorFlow is already
    loaded, when the user has set TensorFlow's log level
    (`TF_CPP_MIN_LOG_LEVEL`) or when `KERAS_3T_VERBOSE` is set.
    """
    if (
        "tensorflow" in sys.modules
        or "TF_CPP_MIN_LOG_LEVEL" in os.environ
        or _verbose_requested()
        or any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path)
    ):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        # The other finders locate TensorFlow; its loader is wrapped. A probe
        # (`importlib.util.find_spec`) gets a wrapped spec it never loads.
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self._finder)
        with _native_lines_dropped():
            self._loader.exec_module(module)
            module.config.list_physical_devices()


@contextlib.contextmanager
def _native_lines_dropped():
    """fd 2 goes to a file for the block; its non-native lines follow after."""
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
            captured.seek(0)
            _write(2, captured.read().splitlines(keepends=True))


def quiet_native_logs(verbose=None):
    """Keeps native log lines off stderr for the rest of the process.

    Call it before TensorFlow is imported. Does nothing when `verbose` is
    true, or when it is None and `KERAS_3T_VERBOSE` is set to anything but
    "" or "0".

    Args:
        verbose: bool or None. True leaves stderr untouched.
    """
    if verbose is None:
        verbose = _verbose_requested()
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _filter_stderr()


def _filter_stderr():
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy_lines():
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                _write(terminal, [line + b"\n" for line in lines])
            _write(terminal, [pending] if pending else [])

    thread = threading.Thread(target=copy_lines, name="keras-3t-stderr", daemon=True)
    thread.start()

    def restore():
        # Everything written so far reaches the terminal before exit.
        sys.stderr.flush()
        os.dup2(terminal, 2)
        thread.join(timeout=5)

    atexit.register(restore)


def _write(descriptor, lines):
    kept = b"".join(line for line in lines if not is_native_log_line(line))
    while kept:
        kept = kept[os.write(descriptor, kept) :]
