"""qshard inspect: a web model's weights, sizes, quantization and error."""
from __future__ import annotations

import json

from qshard.cli.common import MODEL_HELP


def run(args) -> int:
    from dataclasses import asdict

    from qshard.formats.summary import format_inspect, inspect
    info = inspect(args.model, against=args.against, gzip_size=not args.no_gzip)
    errors = None
    if args.error:
        from qshard.accuracy.weight_error import model_errors
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
            from qshard.accuracy.weight_error import format_errors
            print("\nerror each weight would get if stored as uint8 / uint16 / float16 (worst uint8 first):")
            print(format_errors(errors))
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "inspect", help="list a web model's weights: shapes, stored dtypes, bytes, quantization, error",
        description="List every weight of a web model with its shape, dtype, stored dtype, bytes and "
                    "quantization parameters, and the totals (raw and gzip). With --against ORIGINAL, "
                    "also the max abs error and SQNR of each weight against the original model.")
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("--against", metavar="ORIGINAL", help="the model it was made from (for errors)")
    parser.add_argument("--no-gzip", action="store_true", help="skip the gzip size (faster on big models)")
    parser.add_argument("--error", action="store_true",
                      help="also the SQNR and max abs error each float32 weight would get as uint8, uint16 "
                           "and float16 (the cheap first cut at finding culprits)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)
