"""What main gives every command: signals that unwind like Ctrl-C (temporaries removed), outputs
checked against inputs before any work, and every failure as one line on stderr."""
from __future__ import annotations

import os
import signal
import sys
import warnings

from qshard.errors import StaleTemporaryWarning
from qshard.formats.outputs import check_output

INPUT_ARGS = ("input", "model", "data", "against", "calibration", "browser")  # argparse dests that name inputs
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, raised where the main thread is, so that every `finally` and
    temporary-removing `except` on the way out runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    for s in SIGNALS:  # a second signal must not cut short the unwinding that removes temporaries
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def install() -> None:
    """For the command itself (not calls from Python code): signals, and qshard's notes as one line."""
    for s in SIGNALS:
        signal.signal(s, _on_signal)
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StaleTemporaryWarning):
            print(f"qshard: note: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    warnings.showwarning = one_line


def check_paths(args) -> None:
    """Before any work: OUT must not be an input, hold one, or be '/', '.' or a folder holding '.',
    even with --force. The writers check again, against every file they read (a web model's
    shards too), and refuse an existing OUT without --force before their long work."""
    out = getattr(args, "output", None)
    if isinstance(out, str) and hasattr(args, "force"):  # (eval's --output names a model output, not a file)
        check_output(out, [v for v in (getattr(args, a, None) for a in INPUT_ARGS) if isinstance(v, str)])


def stdout_is_gone() -> bool:
    """True when stdout is a closed pipe (`qshard inspect M | head`); later writes then go nowhere."""
    try:
        sys.stdout.flush()
        return False
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return True
