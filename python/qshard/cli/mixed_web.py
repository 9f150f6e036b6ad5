"""qshard mixed WEB_MODEL OUT: the smallest per-weight mix of dtypes whose outputs, run in stock tfjs,
stay within a cosine budget of the float model's: per-channel and per-tensor dtypes for graph models,
per-tensor uint8 / uint16 / float16 / float32 (after optional cross-layer equalization) for layers
models, written as a model of the same format."""
from __future__ import annotations

import json
import sys
from collections import Counter

from qshard.cli.common import progress
from qshard.errors import ModelInputError

SHOWN = 10  # widened weights listed by name


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def run(args) -> int:
    """The `mixed` command's route for web models."""
    from qshard.accuracy.tfjs_runner import TfjsRunner
    from qshard.accuracy.web_data import load_samples, synthesize
    from qshard.graph.mixed import search_graph_model
    from qshard.layers.mixed import describe, is_layers_model, search_layers_model
    say = progress(args.quiet)
    layers = is_layers_model(args.model)
    with TfjsRunner(args.backend) as runner:
        info = runner.load(args.model)
        samples = load_samples(args.data, info) if args.data else synthesize(info, args.samples)
        runner.unload(args.model)
        if args.bias_correction and not layers:
            raise ModelInputError(f"{info.path}: --bias-correction is for layers models (graph models correct biases "
                                  f"by default where that does better; --no-bias-correction turns it off)")
        if args.no_bias_correction and layers:
            raise ModelInputError(f"{info.path}: --no-bias-correction is for graph models (layers models correct "
                                  f"biases only with --bias-correction)")
        extra = {"bias_correction": args.bias_correction} if layers else {"bias_correct": not args.no_bias_correction}
        find = search_layers_model if layers else search_graph_model
        result = find(args.model, args.output, samples, min_cosine=args.min_cosine, runner=runner,
                      equalize=args.equalize, force=args.force, progress=say, **extra)
    if say:
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps({"output": args.output, "met": result.met, "worst_cosine": result.cosine,
                          "bytes": result.report.bytes_out, "uint8_bytes": result.uint8_bytes,
                          "evaluations": result.evaluations, "seconds": result.seconds, "choice": result.choice,
                          "format": "layers-model" if layers else "graph-model",
                          "equalized": result.equalized if layers else None,
                          "bias_corrected": result.bias_corrected,
                          "samples": samples.source, "synthetic": samples.synthetic}, indent=1))
        return 0
    if samples.synthetic:
        print(f"qshard: warning: no --data: made-up inputs ({samples.source}); fidelity on them is a guess",
              file=sys.stderr)
    for line in describe(result) if layers else []:
        print(line)
    counts = ", ".join(f"{n} {c}" for c, n in sorted(Counter(result.choice.values()).items()))
    print(f"worst-sample cosine {result.cosine:.6f} (budget {args.min_cosine}) on {samples.count} samples; "
          f"weights: {counts}")
    widened = [n for n in result.ranking if result.choice[n] not in ("per-channel uint8", "uint8")]
    if not result.met:
        print(f"qshard: warning: the budget is NOT met (even float32 gives cosine {result.cosine:.6f}); "
              f"wrote the closest model found", file=sys.stderr)
    for name in widened[:SHOWN]:
        print(f"  {name}: {result.choice[name]} (alone at its smallest: cosine {1 - result.damage[name]:.6f})")
    if len(widened) > SHOWN:
        print(f"  and {len(widened) - SHOWN} more widened")
    print(f"{result.evaluations} models run in tfjs ({runner.backend}), {result.seconds:.1f} s; "
          f"wrote {args.output}: {_size(result.report.bytes_out)} of weights "
          f"({result.bytes / max(result.uint8_bytes, 1):.2f}x all-uint8)")
    return 0


def add_arguments(parser) -> None:
    """The options only web models take."""
    web = parser.add_argument_group(
        "web models (MODEL is a graph or layers model folder with model.json, or a model .json file)",
        "Graph models: searches per weight among per-channel uint8 / uint16 (conv, depthwise and matmul filters), "
        "per-tensor uint8 / uint16 (other weights) and float32; the smallest other weights (biases) start at uint16 "
        "and per-channel layers' biases are corrected for the mean output shift on the samples where that does "
        "better. Layers models (the format has one per-tensor grid "
        "per weight): among uint8, uint16 or float16 (whichever keeps more of that weight) and float32, written "
        "as a layers model. Every candidate runs in stock tfjs under Node on the samples of --data (an .npz with "
        "one array per model input; made up from the signature without it): first all at the smallest, then each "
        "weight alone to rank them by damage per byte, then the shortest prefix of the ranking to widen, by "
        "bisection, then what is not needed given back.")
    web.add_argument("--min-cosine", type=float, default=0.999,
                     help="keep the worst-sample cosine to the float model's outputs at least this (default 0.999)")
    web.add_argument("--backend", choices=("cpu", "wasm"), default="cpu", help="tfjs backend of the runs (default cpu)")
    web.add_argument("--equalize", action="store_true",
                     help="cross-layer equalization before quantizing (layers models: conv / depthwise / dense pairs "
                          "joined by relu, pooling, batch norm and the like; the function and topology are kept)")
    web.add_argument("--bias-correction", action="store_true",
                     help="layers models: correct each quantized conv / depthwise / dense layer's bias (or the batch "
                          "norm after it) for the mean shift its kernel's quantization causes on the samples")
    web.add_argument("--no-bias-correction", action="store_true",
                     help="graph models: leave biases as they are (default: corrected for the mean shift quantization "
                          "causes, where that does better on the samples)")
    web.add_argument("--samples", type=int, default=8, metavar="N", help="made-up samples without --data (default 8)")
