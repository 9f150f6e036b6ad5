"""The `qshard` command: `main` builds the parser from one module per command and runs the one asked for.

Each command module has `register(commands)`, which adds its sub-parser and sets `run` (args -> exit code).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import List, Optional

# numpy's OpenBLAS starts a thread per core when numpy is imported, and each spins for a while
# waiting for work: on a 2-core machine that took ~19% of a 1 GiB `quantize` from its own workers.
# No command does large BLAS work, so one BLAS thread unless the user chose otherwise. This must run
# before numpy's first import: `import qshard` does not import it (qshard/__init__.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from qshard import __version__, _core  # noqa: E402
from qshard.cli import (
    bench,
    guard,
    convert,
    eval,
    example,
    inspect,
    mixed,
    quantize,
    report,
    tflite,
    verify,
)
from qshard.errors import QshardError

COMMANDS = (bench, quantize, convert, eval, tflite, mixed, inspect, report, verify, example)
NAMES = {command.__name__.rpartition(".")[2] for command in COMMANDS} | {"info"}


def _info(args) -> int:
    print(f"qshard {__version__}\ninstruction sets: {', '.join(_core.available_isas())} "
          f"(default: {_core.isa()})\nthreads: {_core.get_num_threads()}")
    return 0


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line: every command's sub-parser, or with `only`, that command's alone
    (what `qshard COMMAND ...` parses; building the others is ~3 ms of every command's start-up)."""
    parser = argparse.ArgumentParser(
        prog="qshard", description="Fast, exact weight quantization for TensorFlow.js web models and TFLite.")
    parser.add_argument("--version", action="version", version=f"qshard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        if only in (None, command.__name__.rpartition(".")[2]):
            command.register(commands)
    if only not in (None, "info"):
        return parser
    info = commands.add_parser("info", help="show the version, instruction sets and threads",
                               description="Show the qshard version, the instruction sets this CPU runs and the "
                                           "default thread count.")
    info.set_defaults(run=_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `qshard` command line; returns the exit code."""
    given = sys.argv[1:] if argv is None else argv
    named = given[0] if given and given[0] in NAMES else None  # (options before it: the whole parser)
    parser = build_parser(named)
    args = parser.parse_args(given)
    if argv is None:  # the command itself, not a call from Python code
        guard.install()
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        guard.check_paths(args)
        return run(args)
    except guard.Interrupted as interrupt:
        print(f"qshard: interrupted ({signal.Signals(interrupt.signum).name})", file=sys.stderr)
        return 128 + interrupt.signum
    except KeyboardInterrupt:
        print("qshard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as error:
        if guard.stdout_is_gone():
            return 141
        return _fail(args, error)
    except (QshardError, ValueError, TypeError, OSError) as error:
        return _fail(args, error)
    except MemoryError as error:
        return _fail(args, error, "out of memory")
    except RecursionError as error:
        return _fail(args, error, "an input nests too deeply to process")
    except Exception as error:  # a bug, not bad input: still one line, with where to look
        return _fail(args, error, f"internal error: {type(error).__name__}: {error} (a bug in qshard; "
                                  f"--debug shows the traceback)")


def _fail(args, error: BaseException, text: Optional[str] = None) -> int:
    if args.debug:
        raise error
    print(f"qshard: error: {text or error}", file=sys.stderr)
    return 2
