"""qshard convert: Keras models to tfjs layers models, and Keras models or SavedModels to tfjs graph models.

The default target is `graph` for a SavedModel (there is no layers form of one) and `layers` for a
Keras file: that keeps what `convert` always did, gives a model tfjs-layers can also fine-tune, and
converts an .h5 with h5py alone, without TensorFlow. When tfjs-layers cannot express a layer, the
error names it and says that `--to graph` converts it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional

from qshard.cli.common import PATTERN_NOTE, dtype_flags, say
from qshard.errors import GraphError

# --metadata NAME:FILE (the official converter's form), or a FILE holding the whole object.
_NAMED = re.compile(r"^([A-Za-z_][\w.-]*):(.+)$")


def _read_json(path: str, what: str):
    from qshard.formats.inputs import parse_json, read_regular
    return parse_json(read_regular(path, what, GraphError), path, GraphError, what)


def read_metadata(values: Optional[List[str]]) -> Optional[dict]:
    """userDefinedMetadata from --metadata values: FILE (a JSON object), or NAME:FILE pairs
    (comma-separated or repeated), each file's JSON under NAME."""
    if not values:
        return None
    metadata: dict = {}
    for value in values:
        if Path(value).is_file():
            whole = _read_json(value, "metadata")
            if not isinstance(whole, dict):
                raise GraphError(f"{value}: metadata must be a JSON object (or give NAME:FILE)")
            metadata.update(whole)
            continue
        for part in value.split(","):
            named = _NAMED.match(part)
            if not named:
                raise GraphError(f"--metadata {part}: no such file (give FILE or NAME:FILE)")
            metadata[named.group(1)] = _read_json(named.group(2), "metadata")
    return metadata


def run(args) -> int:
    from qshard.cli.eval_web import is_web_model
    from qshard.graph.trace import is_saved_model
    saved_model = is_saved_model(Path(args.input))
    if not saved_model and is_web_model(args.input):
        raise GraphError(f"{args.input}: this is a tfjs web model; convert reads Keras files and SavedModels "
                         f"(convert the model's Keras source). For a layers model, `qshard mixed MODEL OUT --data "
                         f"SAMPLES --equalize` and `qshard quantize MODEL OUT --uint8 --equalize` work on it as it is")
    to = args.to or ("graph" if saved_model else "layers")
    if to == "layers":
        if saved_model:
            raise GraphError(f"{args.input}: a SavedModel converts only to a graph model (--to graph)")
        given = [flag for flag, value in (("--signature", args.signature), ("--tags", args.tags),
                                          ("--metadata", args.metadata),
                                          ("--structured-outputs", args.structured_outputs)) if value]
        if given:
            raise GraphError(f"{', '.join(given)}: only with --to graph")
        from qshard.keras.convert import save_web_model
        report = save_web_model(args.input, args.output, uint8=args.uint8, uint16=args.uint16, float16=args.float16,
                                keep=args.keep, shard_size=args.shard_size, force=args.force,
                                allow_unmatched=args.allow_unmatched)
        say(report, args.output, args.quiet)
        return 0
    from qshard.graph import convert_to_graph_model
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    report = convert_to_graph_model(args.input, args.output, signature=args.signature, tags=tags,
                                    uint8=args.uint8, uint16=args.uint16, float16=args.float16, keep=args.keep,
                                    shard_size=args.shard_size, metadata=read_metadata(args.metadata),
                                    structured_outputs=args.structured_outputs, force=args.force,
                                    allow_unmatched=args.allow_unmatched)
    say(report, args.output, args.quiet)
    if not args.quiet:
        rewritten = ", ".join(f"{op} x{n}" for op, n in sorted(report.rewritten.items()))
        print(f"graph: {sum(report.ops.values())} nodes, inputs {', '.join(report.inputs)}, outputs "
              f"{', '.join(report.outputs)}" + (f"; rewritten for tfjs: {rewritten}" if rewritten else ""))
    if report.execute_async:
        print("qshard: note: the graph has control flow or dynamic shapes: run it with model.executeAsync() "
              "in tfjs (predict() refuses such graphs)", file=sys.stderr)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "convert", help="convert a Keras model or SavedModel to a tfjs graph or layers model",
        description="Convert a Keras 3 model (.keras), a Keras 2 / tf_keras model (.h5) or a SavedModel folder "
                    "(tf.saved_model.save, Keras model.export(), tf_keras) into a TensorFlow.js model that stock "
                    "tfjs 4.22 runs, weights quantized per the patterns. --to graph (the default for SavedModels) "
                    "writes a graph model: variables frozen, batch norms folded, conv / depthwise / matmul fused "
                    "with bias and activation where every tfjs backend has the fused kernel, recurrent layers "
                    "unrolled, ops tfjs lacks rewritten (Erfc, Softsign, Rint) or refused by name before "
                    "anything is written; weight names are the graph's constant names. It needs TensorFlow "
                    "(pip install \"qshard[convert]\"), not tensorflowjs. --to layers (the default for Keras "
                    "files) writes a tfjs-layers model; a layer tfjs-layers cannot compute as Keras does is an "
                    "error naming it.",
        epilog=PATTERN_NOTE + " Examples: qshard convert saved_model_dir web_model --uint8   |   "
               "qshard convert model.keras web_model --to graph --float16 --metadata labels:labels.json")
    parser.add_argument("input", metavar="MODEL", help="a .keras file, a whole-model .h5 (Keras 2 / tf_keras), "
                                                       "or a SavedModel folder")
    parser.add_argument("output", metavar="OUT", help="output folder (must not exist unless --force)")
    parser.add_argument("--to", choices=("graph", "layers"),
                        help="the kind of tfjs model (default: graph for a SavedModel, layers for a Keras file)")
    parser.add_argument("--signature", metavar="NAME", help="SavedModel signature (default serving_default)")
    parser.add_argument("--tags", metavar="TAGS", help="SavedModel tags, comma-separated (default serve)")
    parser.add_argument("--metadata", nargs="+", metavar="FILE",
                        help="userDefinedMetadata for model.json: a JSON file holding an object, or NAME:FILE "
                             "pairs (comma-separated, as tensorflowjs_converter takes them)")
    parser.add_argument("--structured-outputs", action="store_true",
                        help="tfjs predict() returns the outputs as a dict keyed by the signature's output "
                             "names (the model must return a dict)")
    dtype_flags(parser, "weights to keep as float32")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary")
    parser.set_defaults(run=run)
