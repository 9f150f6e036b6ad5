"""qshard report: one self-contained HTML page of sizes and per-weight errors."""
from __future__ import annotations

from qshard.cli.common import MODEL_HELP


def run(args) -> int:
    from qshard.web import report
    out = report.write(args.model, args.output, against=args.against, force=args.force, top=args.top,
                       worst=args.worst, culprit_db=args.culprit_db)
    print(f"wrote {out}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "report", help="write one self-contained HTML page of sizes and per-weight errors, with charts",
        description="Write a self-contained HTML report (no network, charts inline) to decide what to quantize: "
                    "size per weight by stored dtype, download size raw and gzip, per-weight SQNR and max abs "
                    "error as a sorted bar chart with the culprits marked, and histograms of the worst weights "
                    "with the uint8 grid over them. With --against ORIGINAL the errors are this model's against "
                    "the original; without it, what uint8 would do to each float32 weight. Needs matplotlib "
                    "(pip install \"qshard[report]\").")
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("-o", "--output", metavar="FILE", default="report.html", help="the HTML file (default report.html)")
    parser.add_argument("--against", metavar="ORIGINAL", help="the float model MODEL was made from")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--culprit-db", type=float, default=30.0, metavar="DB",
                     help="a weight with SQNR below this is a culprit (default 30)")
    parser.add_argument("--top", type=int, default=40, metavar="N", help="weights per bar chart (default 40)")
    parser.add_argument("--worst", type=int, default=4, metavar="N", help="histograms of the N worst weights (default 4)")
    parser.set_defaults(run=run)
