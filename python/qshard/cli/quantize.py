"""qshard quantize: re-quantize a web model, or convert weights files, per weight."""
from __future__ import annotations

import sys

from qshard.cli import per_channel
from qshard.cli.common import PATTERN_NOTE, Bar, dtype_flags, say, test_pause
from qshard.formats.sources import kinds


def run(args) -> int:
    from qshard.formats.writer import quantize_model
    if per_channel.asked(args):
        return per_channel.run(args)
    if not any(getattr(args, d) is not None for d in ("uint8", "uint16", "float16")):
        print("qshard: warning: no --uint8/--uint16/--float16 given: the model is copied as it is",
              file=sys.stderr)
    bar = Bar("quantizing", not args.quiet)
    try:
        report = quantize_model(args.input, args.output, uint8=args.uint8, uint16=args.uint16,
                                     float16=args.float16, keep=args.keep, shard_size=args.shard_size,
                                     force=args.force, threads=args.threads, progress=test_pause(bar),
                                     kind=args.kind, allow_unmatched=args.allow_unmatched)
    finally:
        bar.close()
    say(report, args.output, args.quiet)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "quantize", help="re-quantize a tfjs web model (per-weight uint8/uint16/float16)",
        description="Re-quantize a TensorFlow.js web model (model.json or weights_manifest.json and its shards) "
                    "into a new folder. Patterns are fnmatch wildcards over weight names; a dtype flag without "
                    "patterns takes every weight no other pattern matched. Only float32 weights are quantized; "
                    "every other weight and every model.json key is copied unchanged. Put the flags after IN and "
                    "OUT. The output appears only when complete.",
        epilog=PATTERN_NOTE + " Examples: qshard quantize web_model out --uint8 --float16 'dense_1/*' --keep 'conv1/*'; "
               "qshard quantize graph_model out --uint8 --per-channel (filters per channel, the rest uint8)")
    parser.add_argument("input", metavar="IN", help="tfjs model folder / model.json / weights_manifest.json, "
                                                   ".safetensors, .npz or a folder of .npy, .h5, Keras .keras")
    parser.add_argument("output", metavar="OUT", help="output folder (must not exist unless --force)")
    dtype_flags(parser, "weights to leave as they are stored")
    parser.add_argument("--from", dest="kind", choices=kinds(),
                       help="the kind of IN (default: guessed from the path)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--threads", type=int, help="threads for the kernels (default: all cores)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    per_channel.add_flags(parser)
    parser.set_defaults(run=run)
