"""qshard bench: the kernels against the memory ceiling; --browser: first prediction in Chromium."""
from __future__ import annotations

import json
import sys


def bench_browser(args) -> int:
    from qshard.formats.outputs import temporary_folder
    from qshard.web import bench
    from qshard.web.browser import Link
    link = None if args.link.strip().lower() in ("none", "off") else Link.parse(args.link)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    say = None if args.quiet or args.json else (lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    with temporary_folder("qshard-bench") as tmp:
        result = bench.bench_browser(args.browser, args.work_dir or tmp, link, args.repeat or 1, args.backend,
                                     variants, args.chromium, args.tfjs, progress=say, force=args.force)
    print(json.dumps(result, indent=1) if args.json else bench.format_bench(result))
    return 0


def run(args) -> int:
    if args.browser:
        return bench_browser(args)
    from qshard import bench
    return bench.main(args.size, args.threads, args.isa, args.repeat or 5, args.json, args.quiet, args.kernel)


def register(commands) -> None:
    parser = commands.add_parser(
        "bench", help="measure the kernels against the memory ceiling, numpy and tensorflowjs; "
                      "--browser MODEL: time to first prediction in Chromium per dtype",
        description="Measure every kernel (min/max, quantize, dequantize, float16) as GB/s of float32 data, "
                    "as a fraction of this machine's memory ceiling for the same access pattern (measured in "
                    "the same run), and against numpy and tensorflowjs (when installed).")
    parser.add_argument("--size", default="64M", help="elements per array: 4M, 64M, 1048576, ... (default 64M)")
    parser.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    parser.add_argument("--isa", help="comma-separated instruction sets (default: all this CPU has)")
    parser.add_argument("--kernel", help="only kernels whose name contains one of these comma-separated words "
                                        "(e.g. quantize,float16)")
    parser.add_argument("--repeat", type=int, help="timed runs per figure: the best is kept for kernels (default 5), "
                                                  "the median for --browser (default 1)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on the terminal")
    web = parser.add_argument_group(
        "in a browser", "With --browser MODEL: write MODEL's float16, uint16 and uint8 variants, load each in headless "
                        "Chromium with stock tfjs over HTTP from 127.0.0.1 through an emulated link, and time the "
                        "load to the first prediction with an empty cache (cold) and on a return visit (warm).")
    web.add_argument("--browser", metavar="MODEL", help="a float32 tfjs graph or layers model (model.json or folder)")
    web.add_argument("--link", default="10mbit,50ms", metavar="RATE[,LATENCY]",
                     help="emulated link, e.g. 10mbit,50ms (the default), 1.5mbit,150ms; 'none' for no throttling")
    web.add_argument("--backend", default="cpu", choices=("cpu", "webgl"), help="tfjs backend (default cpu)")
    web.add_argument("--variants", default="float32,float16,uint16,uint8",
                     help="comma-separated dtypes to compare (default float32,float16,uint16,uint8)")
    web.add_argument("--work-dir", metavar="DIR", help="keep the written variants here (default: a temporary folder)")
    web.add_argument("--force", action="store_true", help="replace variant folders already in --work-dir")
    web.add_argument("--chromium", metavar="PATH", help="Chromium executable (default: chromium on PATH)")
    web.add_argument("--tfjs", metavar="PATH", help="@tensorflow/tfjs's dist/tf.min.js (default: ./node_modules)")
    parser.set_defaults(run=run)
