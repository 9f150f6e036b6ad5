"""qshard mixed: the smallest per-weight dtypes within an accuracy budget."""
from __future__ import annotations

import json
import sys

from qshard.cli import eval_web, mixed_web
from qshard.cli.common import progress
from qshard.errors import ConversionError
from qshard.cli.eval import load_keras_model


def run(args) -> int:
    if eval_web.is_saved_model(args.model):
        with eval_web.converted(args, progress(args.quiet)):
            return mixed_web.run(args)
    if eval_web.is_web_model(args.model):
        return mixed_web.run(args)
    try:
        return _run_keras(args)
    except ConversionError as error:  # tfjs-layers cannot express it: search the graph model in tfjs
        return eval_web.as_graph_model(args, error, progress(args.quiet), mixed_web.run)


def _run_keras(args) -> int:
    if not args.data:
        raise ValueError("a Keras model needs --data (an .npz with x and y)")
    from qshard.accuracy import evaluate
    from qshard.formats.outputs import check_new_folder
    from qshard.keras.convert import save_web_model
    check_new_folder(args.output, args.force, [args.model, args.data])  # before the search, which takes long
    data = evaluate.load_dataset(args.data, args.metric)  # first: it is quick to check, the model is not
    model = load_keras_model(args.model)
    say = progress(args.quiet)
    result = evaluate.search(model, data, args.budget, progress=say, first_cut=not args.measure_all)
    if say:
        print("\r\033[K", end="", file=sys.stderr)
    if not result.met:
        raise evaluate.EvalError(f"no assignment meets the budget ({args.budget} worse than float32's "
                                 f"{result.float32:.4g}); nothing written")
    save_web_model(model, args.output, targets=result.assignment, force=args.force, inputs=[args.model, args.data])
    if args.json:
        from dataclasses import asdict
        print(json.dumps(dict(asdict(result), output=args.output), indent=1))
    else:
        print(evaluate.format_search(result))
        print(f"wrote {args.output}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "mixed", help="find the smallest per-weight dtypes within an accuracy budget; write the tfjs model",
        description="Culprit search and mixed precision: start from every weight at uint8; first widen the "
                    "weights whose uint8 error flags them (worst-channel SQNR under 20 dB) in one evaluation; if "
                    "that is not enough, rank weights by how much the model suffers when each alone is uint8 and "
                    "widen the most harmful (to uint16 or float16, float32 if needed) until the metric is within "
                    "the budget of float32's; then give back what is not needed. Writes the result as a tfjs layers model and says which weights "
                    "were kept wider and why, and how many model evaluations it took.")
    parser.add_argument("model", metavar="MODEL", help="a Keras 3 .keras file, a tfjs graph or layers model, or a SavedModel folder "
                             "(converted to a graph model first)")
    parser.add_argument("output", metavar="OUT", help="the tfjs model to write (must not exist unless --force)")
    parser.add_argument("--data", metavar="NPZ", help="labelled data: an .npz with x and y (web models: samples, "
                                                     "y optional)")
    parser.add_argument("--metric", choices=("accuracy", "mae"), default="accuracy", help="default accuracy")
    parser.add_argument("--budget", type=float, default=0.5,
                     help="at most this much worse than float32: accuracy points, or MAE (default 0.5)")
    parser.add_argument("--measure-all", action="store_true",
                     help="skip the cheap first cut (widening the weights whose uint8 error flags them) and "
                          "measure every weight's effect on the metric")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    mixed_web.add_arguments(parser)
    parser.set_defaults(run=run)
