"""Quiet consoles: TensorFlow's and absl's native log lines kept from the user.

TensorFlow writes start-up lines from C++ through absl ("All log messages
before absl::InitializeLog() ...", oneDNN and CUDA-driver notices, "failed
call to cuInit") straight to file descriptor 2, on every Keras backend, and
`TF_CPP_MIN_LOG_LEVEL` no longer stops all of them. The command line and the
recipes call `quiet_native_logs()` before TensorFlow loads: it sets the
environment TensorFlow reads and passes the process's stderr through a filter
that drops lines in absl's native format. Python's own output (warnings,
tracebacks, progress bars) passes unchanged.
"""

import atexit
import os
import re
import sys
import threading

# Setting this (or `keras-3t --verbose`) keeps every native line.
VERBOSE_ENVIRONMENT = "KERAS_3T_VERBOSE"
# absl / glog's native prefix: severity and date, time, thread, file:line].
NATIVE_LINE = re.compile(rb"^[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
NATIVE_NOTICES = (b"WARNING: All log messages before absl::InitializeLog() is called",)


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


def quiet_native_logs(verbose=None):
    """Keeps native log lines off stderr for the rest of the process.

    Call it before TensorFlow is imported. Does nothing when `verbose` is
    true, or when it is None and `KERAS_3T_VERBOSE` is set to anything but
    "" or "0".

    Args:
        verbose: bool or None. True leaves stderr untouched.
    """
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENVIRONMENT, "") not in ("", "0")
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
