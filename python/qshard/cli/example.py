"""qshard example: a small float32 web model to try the other commands on."""
from __future__ import annotations


def run(args) -> int:
    from qshard.example import write_example
    out = write_example(args.output, args.force, format=f"{args.format}-model", hidden=args.hidden)
    print(f"wrote {out}: a float32 {args.format} model (model.json + shards)")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "example", help="write a small float32 tfjs model to try the other commands on",
        description="Write a small float32 TensorFlow.js model (a 64-256-128-10 MLP with fixed-seed "
                    "weights, about 200 KB; a layers model unless --format graph) into a new folder. "
                    "Nothing is downloaded.",
        epilog="then: qshard quantize DIR DIR-uint8 --uint8 && qshard inspect DIR-uint8 --against DIR")
    parser.add_argument("output", metavar="DIR", help="folder to create")
    parser.add_argument("--format", choices=("layers", "graph"), default="layers",
                    help="a tfjs layers model (default) or a graph model (GraphDef JSON) of the same MLP")
    parser.add_argument("--hidden", type=int, default=0, metavar="N",
                    help="widen both hidden layers to N units (1600 gives 10.7 MB of float32 weights)")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists")
    parser.set_defaults(run=run)
