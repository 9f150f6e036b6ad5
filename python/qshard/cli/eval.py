"""qshard eval: a model's metric in float32, the tfjs dtypes and the TFLite modes."""
from __future__ import annotations

import json
import os
import sys

from qshard.cli import eval_web
from qshard.cli.common import progress
from qshard.errors import ConversionError


def load_keras_model(path: str):
    from qshard.keras.load import load_keras_file
    return load_keras_file(path, "eval", "evaluating a Keras model")


def run(args) -> int:
    if args.model and eval_web.is_saved_model(args.model):
        with eval_web.converted(args, progress(args.quiet)):
            return eval_web.run(args)
    if args.model and eval_web.is_web_model(args.model):
        return eval_web.run(args)
    if args.model and not args.demo:
        try:
            return _run_keras(args)
        except ConversionError as error:  # tfjs-layers cannot express it: the graph route can
            return eval_web.as_graph_model(args, error, progress(args.quiet), eval_web.run)
    return _run_keras(args)


def _run_keras(args) -> int:
    from qshard import tflite
    from qshard.accuracy import evaluate
    modes = {"all": list(tflite.MODES), "none": []}.get(args.tflite)
    if modes is None:
        modes = [m.strip() for m in args.tflite.split(",") if m.strip()]
        bad = [m for m in modes if m not in tflite.MODES]
        if bad:
            raise ValueError(f"--tflite: unknown mode(s) {', '.join(bad)} (modes: {', '.join(tflite.MODES)})")
    say = progress(args.quiet)
    if args.demo:
        if args.model or args.data:
            raise ValueError("--demo takes no MODEL or --data")
        from qshard.accuracy import demo
        if say:
            say("training the demo models")
        pairs = list(demo.models().items())
    else:
        if not args.model or not args.data:
            raise ValueError("give MODEL and --data (or --demo)")
        data = evaluate.load_dataset(args.data, args.metric)  # first: it is quick to check, the model is not
        pairs = [(os.path.basename(args.model), (load_keras_model(args.model), data))]
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


def register(commands) -> None:
    parser = commands.add_parser(
        "eval", help="accuracy / MAE of a Keras model in float32, uint16, uint8, float16 and TFLite modes; "
                     "fidelity of a web model's variants in tfjs",
        description="Run a Keras 3 model (.keras) on a labelled data set (.npz with arrays x and y) in float32 "
                    "and in each way it can be shrunk: the tfjs dtypes (weights quantized and dequantized as "
                    "qshard writes and tfjs reads them, run by Keras) and the TFLite converter's modes (run by "
                    "the TFLite interpreter). Prints the metric, size and gzip size of each artifact. --demo "
                    "trains three small models on scikit-learn's bundled data and does it all (a minute or two). Needs "
                    "TensorFlow (Keras 3, TFLite), and scikit-learn for --demo: pip install \"qshard[eval]\".")
    parser.add_argument("model", metavar="MODEL", nargs="?", help="a Keras 3 .keras file, a web model, or a SavedModel folder (converted to a graph model first)")
    parser.add_argument("--data", metavar="NPZ", help="labelled data: an .npz with x (inputs) and y (labels/targets); "
                                                  "an optional 'calibration' array feeds TFLite's int8 modes")
    parser.add_argument("--metric", choices=("accuracy", "mae"), default="accuracy", help="default accuracy")
    parser.add_argument("--tflite", default="all", metavar="MODES",
                    help="comma-separated TFLite modes (float32,dynamic,float16,int8,int16x8), 'all' (default) "
                         "or 'none'")
    parser.add_argument("--demo", action="store_true", help="train the demo models and evaluate them (needs "
                                                         "tensorflow and scikit-learn: pip install \"qshard[eval]\")")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    eval_web.add_arguments(parser)
    parser.set_defaults(run=run)
