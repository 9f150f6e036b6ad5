"""The `qshard` command: `main` builds the parser from one module per command and runs the one asked for.

Each command module has `register(commands)`, which adds its sub-parser and sets `run` (args -> exit code).
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

from qshard import __version__, _core
from qshard.cli import (
    bench,
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


def _info(args) -> int:
    print(f"qshard {__version__}\ninstruction sets: {', '.join(_core.available_isas())} "
          f"(default: {_core.isa()})\nthreads: {_core.get_num_threads()}")
    return 0


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the temporary output folder is removed


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="qshard", description="Fast, exact weight quantization for TensorFlow.js web models and TFLite.")
    parser.add_argument("--version", action="version", version=f"qshard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    info = commands.add_parser("info", help="show the version, instruction sets and threads",
                               description="Show the qshard version, the instruction sets this CPU runs and the "
                                           "default thread count.")
    info.set_defaults(run=_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `qshard` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the command itself, not a call from Python code
        signal.signal(signal.SIGTERM, _on_sigterm)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:
        print("qshard: interrupted", file=sys.stderr)
        return 130
    except (QshardError, ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        print(f"qshard: error: {error}", file=sys.stderr)
        return 2
