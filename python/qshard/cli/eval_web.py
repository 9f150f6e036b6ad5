"""qshard eval WEB_MODEL: a tfjs graph or layers model and its float16 / uint16 / uint8 variants run
in stock tfjs (Node) on the same samples; fidelity to the float model, sizes, the task metric."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from qshard.cli.common import progress


def is_web_model(path: str) -> bool:
    """A folder holding a model JSON (any name; several is the loader's error), or a .json file: what
    `qshard eval` hands to the tfjs evaluator."""
    from qshard.formats.manifest import model_files
    p = Path(path)
    return (p.is_dir() and bool(model_files(p))) or p.suffix.lower() == ".json"


def as_graph_model(args, error, say, run) -> int:
    """A Keras model that tfjs-layers cannot express (error: the ConversionError saying why) is
    evaluated / searched as the graph model `convert --to graph` makes of it, in stock tfjs."""
    print(f"qshard: note: {error}; evaluating {args.model} as a graph model in tfjs instead", file=sys.stderr)
    with converted(args, say):
        return run(args)


def is_saved_model(path: str) -> bool:
    """A SavedModel folder: eval and mixed convert it to a graph model first, as `convert` does."""
    p = Path(path)
    return p.is_dir() and (p / "saved_model.pb").is_file()


@contextmanager
def converted(args, say=None) -> Iterator[None]:
    """While open, args.model names a graph model converted from the SavedModel it named (in a
    temporary folder, removed afterwards): eval and mixed take what `convert --to graph` takes."""
    from qshard.formats.outputs import check_new_folder, temporary_folder
    from qshard.graph import convert_to_graph_model
    source = args.model
    if getattr(args, "output", None) and hasattr(args, "force"):  # (mixed's OUT; eval's --output names an output)
        check_new_folder(args.output, args.force, [source] + ([args.data] if args.data else []))  # before converting
    with temporary_folder("qshard-convert") as tmp:  # locked: a killed run's is removed by the next
        if say:
            say(f"converting {source} to a graph model")
        convert_to_graph_model(source, Path(tmp) / "model", signature=getattr(args, "signature", None),
                               tags=getattr(args, "tags", None))
        args.model = str(Path(tmp) / "model")
        try:
            yield
        finally:
            args.model = source


def run(args) -> int:
    """Evaluate a web model (the `eval` command's route for model.json paths)."""
    from qshard.accuracy import web_eval
    if args.demo:
        raise ValueError("--demo takes no MODEL")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    say = progress(args.quiet)
    table = web_eval.evaluate_web_model(args.model, args.data, variants, args.backend, metric=args.metric,
                                        output=args.output, synthetic_count=args.samples, repeats=args.time,
                                        progress=say)
    if say:
        print("\r\033[K", end="", file=sys.stderr)
    print(json.dumps(web_eval.web_eval_json(table), indent=1) if args.json else web_eval.format_web_eval(table))
    return 0


# web_eval.DEFAULT_VARIANTS, spelled out: importing web_eval (and the tfjs runner) to build the parser
# cost every command ~50 ms of start-up. tests/cli/test_eval_web.py checks the two agree.
DEFAULT_VARIANTS = ("float32", "float16", "uint16", "uint8")


def add_arguments(parser) -> None:
    """The options only web models take."""
    web = parser.add_argument_group(
        "web models (MODEL is a folder holding one model JSON, or the .json file)",
        "Runs the float32 model and each variant in stock tfjs under Node (npm install @tensorflow/tfjs@4.22.0; "
        "found through QSHARD_TFJS_NODE_MODULES or ./node_modules) on the samples of --data: an .npz with "
        "one array per model input, named as the input (or x for a one-input model), and optional labels y. "
        "Without --data the inputs are made up from the signature, and the fidelity on them is a guess. "
        "Prints per variant the worst-sample cosine to the float32 outputs, the max relative error, top-1 "
        "agreement for classifier outputs, rows matched for decoded outputs (ArgMax/TopK/NMS), exact agreement "
        "for integer outputs, weight and gzip bytes, and the metric when y is given.")
    web.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                     help=f"comma-separated variants (default {','.join(DEFAULT_VARIANTS)}; also per-channel-uint8 "
                          "and per-channel-uint16 for graph models, equalized-uint8 for graph and layers models)")
    web.add_argument("--backend", choices=("cpu", "wasm"), default="cpu",
                     help="tfjs backend: cpu (pure JS, default) or wasm (@tensorflow/tfjs-backend-wasm@4.22.0)")
    web.add_argument("--output", metavar="NAME", help="the output the labels y score (needed when there are several)")
    web.add_argument("--samples", type=int, default=8, metavar="N", help="made-up samples without --data (default 8)")
    web.add_argument("--time", type=int, default=0, metavar="N",
                     help="also time N predicts of one sample per variant (median, variants in turns)")
