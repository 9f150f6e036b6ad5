"""The per-channel flags of `qshard quantize` (graph models): parsing, running, and the summary;
--equalize alone also takes a layers model (its weights equalized, then quantized per tensor)."""
from __future__ import annotations

import argparse
import sys
from collections import Counter

FLAGS = ("per_channel", "per_channel_uint16", "asymmetric")
SHOWN = 8  # weights listed by name in a warning before "and N more"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--per-channel, --per-channel-uint16, --asymmetric, --equalize, --scale-on-weights."""
    group = parser.add_argument_group(
        "per-channel (tfjs graph models)",
        "Conv, depthwise conv and matmul filters quantized per output channel, in a form stock tfjs "
        "loads: integer codes whose per-channel scale is folded into the next layer or the layer's "
        "output where the graph allows, else applied by a Mul on the weight at predict time.")
    group.add_argument("--per-channel", nargs="*", metavar="PAT",
                       help="filters to store as per-channel uint8 (no pattern: every filter it handles)")
    group.add_argument("--per-channel-uint16", nargs="*", metavar="PAT",
                       help="filters to store as per-channel uint16 (no pattern: every filter it handles)")
    group.add_argument("--asymmetric", nargs="*", metavar="PAT",
                       help="per-channel filters to give each channel its own integer zero point, at the cost of "
                            "a Sub op per predict (no pattern: all; default: one zero point per filter)")
    group.add_argument("--equalize", action="store_true",
                       help="cross-layer equalization first (rescales pairs of layers; the function is unchanged); "
                            "alone, also for a layers model")
    group.add_argument("--scale-on-weights", action="store_true",
                       help="apply every per-channel scale by Mul(codes, scale) on the weight (no folding)")


def asked(args) -> bool:
    """Whether the command line asks for anything only graph models can do."""
    return any(getattr(args, f) is not None for f in FLAGS) or args.equalize or args.scale_on_weights


def run(args) -> int:
    """quantize IN OUT for a graph model with per-channel weights; prints what was done."""
    from qshard.errors import QshardError
    from qshard.formats.sources import guess_kind
    from qshard.formats.summary import human
    from qshard.graph.per_channel_model import quantize_graph_model
    kind = args.kind or guess_kind(args.input)
    if kind != "tfjs":
        raise QshardError(f"{args.input}: per-channel quantization and --equalize need a tfjs graph model "
                          f"(model.json with format graph-model), not a {kind} file")
    if args.equalize and not any(getattr(args, f) is not None for f in FLAGS) and not args.scale_on_weights:
        from qshard.layers.mixed import is_layers_model
        if is_layers_model(args.input):
            return _equalize_layers(args)
    report = quantize_graph_model(
        args.input, args.output, per_channel=args.per_channel, per_channel_uint16=args.per_channel_uint16,
        asymmetric=args.asymmetric, uint8=args.uint8, uint16=args.uint16, float16=args.float16, keep=args.keep,
        equalize=args.equalize, absorb=not args.scale_on_weights, shard_size=args.shard_size, force=args.force,
        allow_unmatched=args.allow_unmatched)
    for pattern in report.unmatched_patterns:
        print(f"qshard: warning: pattern {pattern!r} matches no weight (--allow-unmatched)", file=sys.stderr)
    for k in report.kept:
        print(f"qshard: kept {k.name!r} as stored instead of {k.asked}: it {k.reason}", file=sys.stderr)
    explicit = [f for f in FLAGS[:2] if getattr(args, f)]
    if report.not_per_channel and explicit:
        names = ", ".join(f"{n!r} ({why})" for n, why in report.not_per_channel[:SHOWN])
        more = len(report.not_per_channel) - SHOWN
        print(f"qshard: not per channel (left to the other flags): {names}" + (f" and {more} more" if more > 0 else ""),
              file=sys.stderr)
    if args.quiet:
        return 0
    placements = Counter(r.placement for r in report.per_channel)
    where = ", ".join(f"{n} {p}" for p, n in sorted(placements.items())) or "none"
    per_tensor = Counter(report.per_tensor.values())
    tensors = ", ".join(f"{n} -> {d}" for d, n in sorted(per_tensor.items())) or "none"
    ratio = f" ({100 * report.bytes_out / report.bytes_in:.0f}%)" if report.bytes_in else ""
    print(f"wrote {args.output}: {len(report.per_channel)} filters per channel (scale: {where}), "
          f"per tensor: {tensors}; {human(report.bytes_in)} -> {human(report.bytes_out)}{ratio}")
    print(f"  predict-time cost: {report.ops_added} ops over {report.elements_recomputed:,} elements"
          + (f"; {report.equalized} layer pairs equalized" if report.equalized else "")
          + (f"; {len(report.widened)} biases that took a scale stored as float16/float32" if report.widened else ""))
    return 0


def _equalize_layers(args) -> int:
    """quantize --equalize on a layers model: equalized weights, quantized per the usual flags."""
    from qshard.formats.summary import human
    from qshard.layers.mixed import quantize_equalized
    report, pairs = quantize_equalized(args.input, args.output, uint8=args.uint8, uint16=args.uint16,
                                       float16=args.float16, keep=args.keep, shard_size=args.shard_size,
                                       force=args.force, allow_unmatched=args.allow_unmatched)
    if not args.quiet:
        print(f"wrote {args.output} (layers model): {len(pairs)} layer pairs equalized"
              + (f" ({', '.join(pairs[:4])}{', ...' if len(pairs) > 4 else ''})" if pairs else "")
              + f"; {human(report.bytes_in)} -> {human(report.bytes_out)}")
    return 0
