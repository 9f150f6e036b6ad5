"""The `qshard` command."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import List, Optional

from . import __version__, _core
from .errors import QshardError
from .stream import KINDS
from .tfjs import DEFAULT_SHARD_SIZE

MODEL_HELP = "model folder, model.json or weights_manifest.json"


class _Bar:
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


def _test_pause(progress):
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


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the temporary output folder is removed


def _quantize(args) -> int:
    from . import tfjs
    if not any(getattr(args, d) is not None for d in ("uint8", "uint16", "float16")):
        print("qshard: warning: no --uint8/--uint16/--float16 given: the model is copied as it is",
              file=sys.stderr)
    bar = _Bar("quantizing", not args.quiet)
    try:
        report = tfjs.quantize_model(args.input, args.output, uint8=args.uint8, uint16=args.uint16,
                                     float16=args.float16, keep=args.keep, shard_size=args.shard_size,
                                     force=args.force, threads=args.threads, progress=_test_pause(bar),
                                     kind=args.kind)
    finally:
        bar.close()
    _say(report, args.output, args.quiet)
    return 0


def _say(report, output, quiet: bool) -> None:
    """What a conversion did: warnings on stderr, the summary on stdout (unless quiet)."""
    from .summary import human
    for pattern in report.unmatched_patterns:
        print(f"qshard: warning: pattern {pattern!r} matches no weight", file=sys.stderr)
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


def _bench_browser(args) -> int:
    import tempfile
    from . import browser
    link = None if args.link.strip().lower() in ("none", "off") else browser.Link.parse(args.link)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    say = None if args.quiet or args.json else (lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="qshard-bench-") as tmp:
        result = browser.bench_browser(args.browser, args.work_dir or tmp, link, args.repeat or 1, args.backend,
                                       variants, args.chromium, args.tfjs, progress=say)
    print(json.dumps(result, indent=1) if args.json else browser.format_bench(result))
    return 0


def _inspect(args) -> int:
    from dataclasses import asdict
    from .summary import format_inspect, inspect
    info = inspect(args.model, against=args.against, gzip_size=not args.no_gzip)
    errors = None
    if args.error:
        from .errors_per_tensor import model_errors
        errors = model_errors(args.model)
    if args.json:
        info = dict(info, rows=[asdict(r) for r in info["rows"]])
        if errors is not None:
            info["error_if_stored_as"] = [
                {"name": e.name, "size": e.size, "note": e.note,
                 **{d: {"max_abs_error": m, "sqnr_db": q, "worst_channel_sqnr_db": e.channel_sqnr(d)}
                    for d, (m, q) in e.errors.items()}} for e in errors]
        print(json.dumps(info, indent=1, default=str))
    else:
        print(format_inspect(info))
        if errors is not None:
            from .errors_per_tensor import format_errors
            print("\nerror each weight would get if stored as uint8 / uint16 / float16 (worst uint8 first):")
            print(format_errors(errors))
    return 0


def _convert(args) -> int:
    from .keras import save_web_model
    report = save_web_model(args.input, args.output, uint8=args.uint8, uint16=args.uint16, float16=args.float16,
                            keep=args.keep, shard_size=args.shard_size, force=args.force)
    _say(report, args.output, args.quiet)
    return 0


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    return lambda text: print(f"\r\033[K  {text}", end="", file=sys.stderr, flush=True)


def _load_keras_model(path: str):
    from .keras import load_keras_file
    return load_keras_file(path, "evaluating a model needs Keras 3: pip install tensorflow")


def _eval(args) -> int:
    from . import evaluate, tflite
    modes = {"all": list(tflite.MODES), "none": []}.get(args.tflite)
    if modes is None:
        modes = [m.strip() for m in args.tflite.split(",") if m.strip()]
        bad = [m for m in modes if m not in tflite.MODES]
        if bad:
            raise ValueError(f"--tflite: unknown mode(s) {', '.join(bad)} (modes: {', '.join(tflite.MODES)})")
    say = _progress(args.quiet)
    if args.demo:
        if args.model or args.data:
            raise ValueError("--demo takes no MODEL or --data")
        from . import demo
        if say:
            say("training the demo models")
        pairs = list(demo.models().items())
    else:
        if not args.model or not args.data:
            raise ValueError("give MODEL and --data (or --demo)")
        pairs = [(os.path.basename(args.model), (_load_keras_model(args.model),
                                                  evaluate.load_dataset(args.data, args.metric)))]
    rows = [evaluate.evaluate(model, data, name, modes, progress=say) for name, (model, data) in pairs]
    searches = []
    if args.demo:
        for name, (model, data) in pairs:
            if say:
                say(f"{name}: mixed-precision search")
            searches.append((name, evaluate.search(model, data, 0.5 if data.metric == "accuracy" else 1.0)))
    if say:
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        from dataclasses import asdict
        print(json.dumps({"rows": [asdict(r) for r in rows],
                          "searches": [dict(asdict(s), model=n) for n, s in searches]}, indent=1))
    else:
        print(evaluate.format_table(rows))
        for name, result in searches:
            print(f"\nmixed precision for {name}:\n{evaluate.format_search(result)}")
    return 0


def _tflite(args) -> int:
    from . import tflite
    from .summary import gzipped_size
    modes = list(tflite.MODES) if args.modes == "all" else [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in tflite.MODES]
    if bad:
        raise ValueError(f"--modes: unknown mode(s) {', '.join(bad)} (modes: {', '.join(tflite.MODES)})")
    if not os.path.exists(args.model):
        raise tflite.TFLiteError(f"{args.model}: no such file or folder")
    calibration = tflite.load_inputs(args.calibration) if args.calibration else None
    paths = tflite.write(args.model, args.output, modes, calibration)
    print(f"{'mode':<10} {'bytes':>12} {'gzip':>12}  file")
    for mode, path in paths.items():
        print(f"{mode:<10} {path.stat().st_size:>12,} {gzipped_size(path):>12,}  {path}")
    return 0


def _mixed(args) -> int:
    from . import evaluate
    from .keras import save_web_model
    model = _load_keras_model(args.model)
    data = evaluate.load_dataset(args.data, args.metric)
    say = _progress(args.quiet)
    result = evaluate.search(model, data, args.budget, progress=say, first_cut=not args.measure_all)
    if say:
        print("\r\033[K", end="", file=sys.stderr)
    if not result.met:
        raise evaluate.EvalError(f"no assignment meets the budget ({args.budget} worse than float32's "
                                 f"{result.float32:.4g}); nothing written")
    save_web_model(model, args.output, targets=result.assignment, force=args.force)
    if args.json:
        from dataclasses import asdict
        print(json.dumps(dict(asdict(result), output=args.output), indent=1))
    else:
        print(evaluate.format_search(result))
        print(f"wrote {args.output}")
    return 0


def _report(args) -> int:
    from . import report
    out = report.write(args.model, args.output, against=args.against, top=args.top, worst=args.worst,
                       culprit_db=args.culprit_db)
    print(f"wrote {out}")
    return 0


def _verify(args) -> int:
    from .summary import human, verify
    result = verify(args.model)
    for problem in result.problems:
        print(f"problem: {problem}")
    for stray in result.stray_files:
        print(f"note: {stray} is in the folder but not in the manifest")
    if result.ok:
        print(f"ok: {result.path}: {result.weights} weights, {result.shards} shards, {human(result.bytes)}")
        return 0
    print(f"{len(result.problems)} problem(s) in {result.path}")
    return 1


def _dtype_flags(parser: argparse.ArgumentParser, keep_help: str) -> None:
    """--uint8/--uint16/--float16/--keep patterns and --shard-size, as quantize and convert take them."""
    for dtype in ("uint8", "uint16", "float16"):
        parser.add_argument(f"--{dtype}", nargs="*", metavar="PAT",
                            help=f"weights to store as {dtype} (no pattern: all weights not matched otherwise)")
    parser.add_argument("--keep", nargs="+", metavar="PAT", help=keep_help)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="BYTES",
                        help=f"shard size in bytes (default {DEFAULT_SHARD_SIZE}, what browsers cache)")


def _bench(args) -> int:
    if args.browser:
        return _bench_browser(args)
    from . import bench
    return bench.main(args.size, args.threads, args.isa, args.repeat or 5, args.json, args.quiet, args.kernel)


def _example(args) -> int:
    from .example import write_example
    out = write_example(args.output, args.force, format=f"{args.format}-model", hidden=args.hidden)
    print(f"wrote {out}: a float32 {args.format} model (model.json + shards)")
    return 0


def _info(args) -> int:
    print(f"qshard {__version__}\ninstruction sets: {', '.join(_core.available_isas())} "
          f"(default: {_core.isa()})\nthreads: {_core.get_num_threads()}")
    return 0


_COMMANDS = {"bench": _bench, "quantize": _quantize, "convert": _convert, "eval": _eval, "tflite": _tflite,
             "mixed": _mixed, "inspect": _inspect, "report": _report, "verify": _verify, "example": _example,
             "info": _info}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qshard", description="Fast, exact weight quantization for TensorFlow.js web models and TFLite.")
    parser.add_argument("--version", action="version", version=f"qshard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = commands.add_parser(
        "bench", help="measure the kernels against the memory ceiling, numpy and tensorflowjs; "
                      "--browser MODEL: time to first prediction in Chromium per dtype",
        description="Measure every kernel (min/max, quantize, dequantize, float16) as GB/s of float32 data, "
                    "as a fraction of this machine's memory ceiling for the same access pattern (measured in "
                    "the same run), and against numpy and tensorflowjs (when installed).")
    bench.add_argument("--size", default="64M", help="elements per array: 4M, 64M, 1048576, ... (default 64M)")
    bench.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    bench.add_argument("--isa", help="comma-separated instruction sets (default: all this CPU has)")
    bench.add_argument("--kernel", help="only kernels whose name contains one of these comma-separated words "
                                        "(e.g. quantize,float16)")
    bench.add_argument("--repeat", type=int, help="timed runs per figure: the best is kept for kernels (default 5), "
                                                  "the median for --browser (default 1)")
    bench.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress on the terminal")
    web = bench.add_argument_group(
        "in a browser", "With --browser MODEL: write MODEL's float16, uint16 and uint8 variants, load each in headless "
                        "Chromium with stock tfjs over HTTP from 127.0.0.1 through an emulated link, and time the "
                        "load to the first prediction with an empty cache (cold) and on a return visit (warm).")
    web.add_argument("--browser", metavar="MODEL", help="a float32 tfjs graph or layers model (model.json or folder)")
    web.add_argument("--link", default="10mbit,50ms", metavar="RATE[,LATENCY]",
                     help="emulated link, e.g. 10mbit,50ms (the default), 1.5mbit,150ms; 'none' for no throttling")
    web.add_argument("--backend", default="cpu", choices=("cpu", "webgl"), help="tfjs backend (default cpu)")
    web.add_argument("--variants", default="float32,float16,uint16,uint8",
                     help="comma-separated dtypes to compare (default float32,float16,uint16,uint8)")
    web.add_argument("--work-dir", metavar="DIR", help="keep the written variants here (default: a temporary folder)")
    web.add_argument("--chromium", metavar="PATH", help="Chromium executable (default: chromium on PATH)")
    web.add_argument("--tfjs", metavar="PATH", help="@tensorflow/tfjs's dist/tf.min.js (default: ./node_modules)")

    quant = commands.add_parser(
        "quantize", help="re-quantize a tfjs web model (per-weight uint8/uint16/float16)",
        description="Re-quantize a TensorFlow.js web model (model.json or weights_manifest.json and its shards) "
                    "into a new folder. Patterns are fnmatch wildcards over weight names; a dtype flag without "
                    "patterns takes every weight no other pattern matched. Only float32 weights are quantized; "
                    "every other weight and every model.json key is copied unchanged. Put the flags after IN and "
                    "OUT. The output appears only when complete.",
        epilog="example: qshard quantize web_model out --uint8 --float16 'dense_1/*' --keep 'conv1/*'")
    quant.add_argument("input", metavar="IN", help="tfjs model folder / model.json / weights_manifest.json, "
                                                   ".safetensors, .npz or a folder of .npy, Keras .h5")
    quant.add_argument("output", metavar="OUT", help="output folder (must not exist unless --force)")
    _dtype_flags(quant, "weights to leave as they are stored")
    quant.add_argument("--from", dest="kind", choices=KINDS,
                       help="the kind of IN (default: guessed from the path)")
    quant.add_argument("--force", action="store_true", help="replace OUT if it exists")
    quant.add_argument("--threads", type=int, help="threads for the kernels (default: all cores)")
    quant.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")

    conv = commands.add_parser(
        "convert", help="convert a Keras model (.keras, or tf_keras .h5) to a tfjs layers model",
        description="Write a Keras 3 model (.keras) or a Keras 2 / tf_keras model (.h5) as a TensorFlow.js "
                    "layers model that stock tfjs-layers 4.22 loads: the topology translated to the Keras 2 form "
                    "tfjs reads, weights named as tfjs builds them and quantized per the patterns (over names "
                    "such as 'dense/kernel'). A layer or option tfjs-layers cannot compute as Keras does is an "
                    "error naming the layer and the option. .keras files need Keras 3 (pip install "
                    "\"qshard[keras]\"); .h5 files only h5py.",
        epilog="example: qshard convert model.keras web_model --uint8 --keep 'dense_2/*'")
    conv.add_argument("input", metavar="MODEL", help="a .keras file (Keras 3) or a whole-model .h5 (Keras 2 / tf_keras)")
    conv.add_argument("output", metavar="OUT", help="output folder (must not exist unless --force)")
    _dtype_flags(conv, "weights to keep as float32")
    conv.add_argument("--force", action="store_true", help="replace OUT if it exists")
    conv.add_argument("-q", "--quiet", action="store_true", help="no summary")

    ev = commands.add_parser(
        "eval", help="accuracy / MAE of a Keras model in float32, uint16, uint8, float16 and TFLite modes",
        description="Run a Keras 3 model (.keras) on a labelled data set (.npz with arrays x and y) in float32 "
                    "and in each way it can be shrunk: the tfjs dtypes (weights quantized and dequantized as "
                    "qshard writes and tfjs reads them, run by Keras) and the TFLite converter's modes (run by "
                    "the TFLite interpreter). Prints the metric, size and gzip size of each artifact. --demo "
                    "trains three small models on scikit-learn's bundled data and does it all (a minute or two).")
    ev.add_argument("model", metavar="MODEL", nargs="?", help="a Keras 3 .keras file")
    ev.add_argument("--data", metavar="NPZ", help="labelled data: an .npz with x (inputs) and y (labels/targets); "
                                                  "an optional 'calibration' array feeds TFLite's int8 modes")
    ev.add_argument("--metric", choices=("accuracy", "mae"), default="accuracy", help="default accuracy")
    ev.add_argument("--tflite", default="all", metavar="MODES",
                    help="comma-separated TFLite modes (float32,dynamic,float16,int8,int16x8), 'all' (default) "
                         "or 'none'")
    ev.add_argument("--demo", action="store_true", help="train the demo models and evaluate them (needs "
                                                         "tensorflow and scikit-learn)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress")

    tfl = commands.add_parser(
        "tflite", help="convert a Keras model or SavedModel to TFLite in each mode; print the sizes",
        description="Convert a Keras 3 model (.keras) or a SavedModel folder with the TFLite converter in the "
                    "modes float32, dynamic (dynamic-range int8 weights), float16, int8 (full integer) and "
                    "int16x8, writing OUT/model.<mode>.tflite, and print each file's size and gzip size. The "
                    "int8 and int16x8 modes calibrate on --calibration. Needs TensorFlow "
                    "(pip install \"qshard[tflite]\").")
    tfl.add_argument("model", metavar="MODEL", help="a .keras file or a SavedModel folder")
    tfl.add_argument("output", metavar="OUT", help="folder for the .tflite files (created)")
    tfl.add_argument("--modes", default="all", help="comma-separated modes, or 'all' (default)")
    tfl.add_argument("--calibration", metavar="NPY", help="representative inputs: .npy, or .npz (array 'x')")

    mix = commands.add_parser(
        "mixed", help="find the smallest per-weight dtypes within an accuracy budget; write the tfjs model",
        description="Culprit search and mixed precision: start from every weight at uint8; first widen the "
                    "weights whose uint8 error flags them (worst-channel SQNR under 20 dB) in one evaluation; if "
                    "that is not enough, rank weights by how much the model suffers when each alone is uint8 and "
                    "widen the most harmful (to uint16 or float16, float32 if needed) until the metric is within "
                    "the budget of float32's; then give back what is not needed. Writes the result as a tfjs layers model and says which weights "
                    "were kept wider and why, and how many model evaluations it took.")
    mix.add_argument("model", metavar="MODEL", help="a Keras 3 .keras file")
    mix.add_argument("output", metavar="OUT", help="the tfjs layers model to write (must not exist unless --force)")
    mix.add_argument("--data", metavar="NPZ", required=True, help="labelled data: an .npz with x and y")
    mix.add_argument("--metric", choices=("accuracy", "mae"), default="accuracy", help="default accuracy")
    mix.add_argument("--budget", type=float, default=0.5,
                     help="at most this much worse than float32: accuracy points, or MAE (default 0.5)")
    mix.add_argument("--measure-all", action="store_true",
                     help="skip the cheap first cut (widening the weights whose uint8 error flags them) and "
                          "measure every weight's effect on the metric")
    mix.add_argument("--force", action="store_true", help="replace OUT if it exists")
    mix.add_argument("--json", action="store_true", help="machine-readable output")
    mix.add_argument("-q", "--quiet", action="store_true", help="no progress")

    insp = commands.add_parser(
        "inspect", help="list a web model's weights: shapes, stored dtypes, bytes, quantization, error",
        description="List every weight of a web model with its shape, dtype, stored dtype, bytes and "
                    "quantization parameters, and the totals (raw and gzip). With --against ORIGINAL, "
                    "also the max abs error and SQNR of each weight against the original model.")
    insp.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    insp.add_argument("--against", metavar="ORIGINAL", help="the model it was made from (for errors)")
    insp.add_argument("--no-gzip", action="store_true", help="skip the gzip size (faster on big models)")
    insp.add_argument("--error", action="store_true",
                      help="also the SQNR and max abs error each float32 weight would get as uint8, uint16 "
                           "and float16 (the cheap first cut at finding culprits)")
    insp.add_argument("--json", action="store_true", help="machine-readable output")

    rep = commands.add_parser(
        "report", help="write one self-contained HTML page of sizes and per-weight errors, with charts",
        description="Write a self-contained HTML report (no network, charts inline) to decide what to quantize: "
                    "size per weight by stored dtype, download size raw and gzip, per-weight SQNR and max abs "
                    "error as a sorted bar chart with the culprits marked, and histograms of the worst weights "
                    "with the uint8 grid over them. With --against ORIGINAL the errors are this model's against "
                    "the original; without it, what uint8 would do to each float32 weight. Needs matplotlib "
                    "(pip install \"qshard[report]\").")
    rep.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    rep.add_argument("-o", "--output", metavar="FILE", default="report.html", help="the HTML file (default report.html)")
    rep.add_argument("--against", metavar="ORIGINAL", help="the float model MODEL was made from")
    rep.add_argument("--culprit-db", type=float, default=30.0, metavar="DB",
                     help="a weight with SQNR below this is a culprit (default 30)")
    rep.add_argument("--top", type=int, default=40, metavar="N", help="weights per bar chart (default 40)")
    rep.add_argument("--worst", type=int, default=4, metavar="N", help="histograms of the N worst weights (default 4)")

    ver = commands.add_parser(
        "verify", help="check a web model's manifest and shards (exit 1 on problems)",
        description="Check that the manifest is valid, every shard path stays inside the model folder and "
                    "exists, and each group's shards hold exactly the bytes its weights need. Exit code 0 "
                    "when sound, 1 when a problem was found.")
    ver.add_argument("model", metavar="MODEL", help=MODEL_HELP)

    ex = commands.add_parser(
        "example", help="write a small float32 tfjs model to try the other commands on",
        description="Write a small float32 TensorFlow.js model (a 64-256-128-10 MLP with fixed-seed "
                    "weights, about 200 KB; a layers model unless --format graph) into a new folder. "
                    "Nothing is downloaded.",
        epilog="then: qshard quantize DIR DIR-uint8 --uint8 && qshard inspect DIR-uint8 --against DIR")
    ex.add_argument("output", metavar="DIR", help="folder to create")
    ex.add_argument("--format", choices=("layers", "graph"), default="layers",
                    help="a tfjs layers model (default) or a graph model (GraphDef JSON) of the same MLP")
    ex.add_argument("--hidden", type=int, default=0, metavar="N",
                    help="widen both hidden layers to N units (1600 gives 10.7 MB of float32 weights)")
    ex.add_argument("--force", action="store_true", help="replace DIR if it exists")

    commands.add_parser("info", help="show the version, instruction sets and threads",
                        description="Show the qshard version, the instruction sets this CPU runs and the "
                                    "default thread count.")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the command itself, not a call from Python code
        signal.signal(signal.SIGTERM, _on_sigterm)
    handler = _COMMANDS.get(args.command)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("qshard: interrupted", file=sys.stderr)
        return 130
    except (QshardError, ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        print(f"qshard: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
