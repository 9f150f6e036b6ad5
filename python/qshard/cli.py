"""The `qshard` command."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__, _core


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qshard", description="Fast, exact weight quantization for TensorFlow.js web models and TFLite.")
    parser.add_argument("--version", action="version", version=f"qshard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = commands.add_parser(
        "bench", help="measure the kernels against the memory ceiling, numpy and tensorflowjs",
        description="Measure every kernel (min/max, quantize, dequantize, float16) as GB/s of float32 data, "
                    "as a fraction of this machine's memory ceiling for the same access pattern (measured in "
                    "the same run), and against numpy and tensorflowjs (when installed).")
    bench.add_argument("--size", default="64M", help="elements per array: 4M, 64M, 1048576, ... (default 64M)")
    bench.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    bench.add_argument("--isa", help="comma-separated instruction sets (default: all this CPU has)")
    bench.add_argument("--kernel", help="only kernels whose name contains one of these comma-separated words "
                                        "(e.g. quantize,float16)")
    bench.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the best is kept (default 5)")
    bench.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress on the terminal")

    commands.add_parser("info", help="show the version, instruction sets and threads",
                        description="Show the qshard version, the instruction sets this CPU runs and the "
                                    "default thread count.")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from . import bench
            return bench.main(args.size, args.threads, args.isa, args.repeat, args.json, args.quiet, args.kernel)
        if args.command == "info":
            print(f"qshard {__version__}\ninstruction sets: {', '.join(_core.available_isas())} "
                  f"(default: {_core.isa()})\nthreads: {_core.get_num_threads()}")
            return 0
        parser.print_help()
        return 2
    except KeyboardInterrupt:
        print("qshard: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        print(f"qshard: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
