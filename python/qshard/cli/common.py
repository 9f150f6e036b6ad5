"""What several commands share: progress on a terminal, the summary of a conversion, the dtype flags."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from qshard.formats.writer import DEFAULT_SHARD_SIZE

MODEL_HELP = "a model folder (holding one model JSON, whatever its name) or the JSON file"


class Bar:
    """A one-line progress bar on stderr, only when it is a terminal."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled and sys.stderr.isatty()
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB {done / elapsed / 1e6:,.0f} MB/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

def test_pause(progress):
    """Test hook: with QSHARD_TEST_PAUSE_AT_BYTES=N the command says 'paused' on stderr once N bytes
    are written and waits (up to QSHARD_TEST_PAUSE_SECONDS, default 60, or until SIGUSR1), so a test
    can interrupt it, or race another process against it, at a known point."""
    limit = os.environ.get("QSHARD_TEST_PAUSE_AT_BYTES")
    if not limit:
        return progress
    state = {"paused": False}
    resume = threading.Event()
    signal.signal(signal.SIGUSR1, lambda signum, frame: resume.set())

    def wrapped(done: int, total: int) -> None:
        progress(done, total)
        if not state["paused"] and done >= int(limit):
            state["paused"] = True
            sys.stderr.write("qshard: paused (test hook)\n")
            sys.stderr.flush()
            # Short slices, not one long wait: a signal the kernel hands to another thread only sets
            # a flag, and the main thread runs its Python handler when it next runs bytecode.
            deadline = time.monotonic() + float(os.environ.get("QSHARD_TEST_PAUSE_SECONDS", "60"))
            while not resume.wait(0.05) and time.monotonic() < deadline:
                pass
    return wrapped

def say(report, output, quiet: bool) -> None:
    """What a conversion did: warnings on stderr, the summary on stdout (unless quiet)."""
    from qshard.formats.summary import human
    for note in report.notes:
        print(f"qshard: note: {note}", file=sys.stderr)
    for pattern in report.unmatched_patterns:
        print(f"qshard: warning: pattern {pattern!r} matches no weight (--allow-unmatched)", file=sys.stderr)
    if report.widened:
        pairs = sorted({(old, new) for _, old, new in report.widened})
        print(f"qshard: warning: {len(report.widened)} weight(s) already stored as "
              f"{'/'.join(sorted({old for old, _ in pairs}))} re-quantized to {'/'.join(sorted({new for _, new in pairs}))}: "
              f"this doubles their bytes and cannot restore the accuracy the narrower codes lost (quantize "
              f"the float32 original instead): {', '.join(repr(name) for name, _, _ in report.widened)}", file=sys.stderr)
    for k in report.kept:
        print(f"qshard: kept {k.name!r} as stored instead of {k.asked}: it {k.reason}", file=sys.stderr)
    if not quiet:
        counts = {}
        for dtype in report.changed.values():
            counts[dtype] = counts.get(dtype, 0) + 1
        changed = ", ".join(f"{n} -> {d}" for d, n in sorted(counts.items())) or "none changed"
        ratio = f" ({100 * report.bytes_out / report.bytes_in:.0f}%)" if report.bytes_in else ""
        print(f"wrote {output}: {report.weights} weights ({changed}), "
              f"{human(report.bytes_in)} -> {human(report.bytes_out)}{ratio}")

def progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    return lambda text: print(f"\r\033[K  {text}", end="", file=sys.stderr, flush=True)

class PatternList(argparse.Action):
    """A pattern flag's values, each also read as tensorflowjs_converter's comma list."""

    def __call__(self, parser, namespace, values, option_string=None):
        from qshard.errors import PatternError
        from qshard.formats.patterns import split_list
        try:
            setattr(namespace, self.dest, [p for value in values for p in split_list(value)])
        except PatternError as error:
            raise argparse.ArgumentError(self, str(error)) from None


PATTERN_NOTE = ("PAT is an fnmatch wildcard over weight names; several may follow one flag, separated by spaces "
                "or commas as tensorflowjs_converter takes them ('conv/*,dense/*'); [,] matches a literal comma. "
                "A pattern that matches no weight is an error unless --allow-unmatched.")


def dtype_flags(parser: argparse.ArgumentParser, keep_help: str) -> None:
    """--uint8/--uint16/--float16/--keep patterns, --allow-unmatched and --shard-size, as quantize and
    convert take them."""
    for dtype in ("uint8", "uint16", "float16"):
        parser.add_argument(f"--{dtype}", nargs="*", metavar="PAT", action=PatternList,
                            help=f"weights to store as {dtype} (no pattern: all weights not matched otherwise)")
    parser.add_argument("--keep", nargs="+", metavar="PAT", action=PatternList, help=keep_help)
    parser.add_argument("--allow-unmatched", action="store_true",
                        help="write even if a pattern matches no weight (a warning instead of an error)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="BYTES",
                        help=f"shard size in bytes (default {DEFAULT_SHARD_SIZE}, what browsers cache)")
