"""qshard verify: manifest and shard integrity (exit 1 on problems)."""
from __future__ import annotations

from qshard.cli.common import MODEL_HELP


def run(args) -> int:
    from qshard.formats.summary import human, verify
    result = verify(args.model)
    for problem in result.problems:
        print(f"problem: {problem}")
    for stray in result.stray_files:
        print(f"note: {stray} is in the folder but not in the manifest")
    if result.ok:
        print(f"ok: {result.path}: {result.weights} weights, {result.shards} shards, {human(result.bytes)}")
        return 0
    print(f"{len(result.problems)} problem(s) in {result.path}")
    return 1


def register(commands) -> None:
    parser = commands.add_parser(
        "verify", help="check a web model's manifest and shards (exit 1 on problems)",
        description="Check that the manifest is valid, every shard path stays inside the model folder and "
                    "exists, and each group's shards hold exactly the bytes its weights need. Exit code 0 "
                    "when sound, 1 when a problem was found.")
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.set_defaults(run=run)
