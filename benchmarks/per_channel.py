"""Per-channel quantization and the mixed search on real published tfjs graph models, run in stock
tfjs 4.22 under Node (qshard.accuracy.tfjs_runner) on real photos: the per-channel columns of
benchmarks/real_models.py (same packages, photos, fidelity measure and timing), plus where each
model's per-channel scales went and what the search cost.

    python benchmarks/per_channel.py --cache /work/models/npm [--only a,b] [--backend cpu|wasm] [--markdown t.md]
        [--search-backend wasm] [--min-cosine 0.999] [--repeats 7] [--columns pc,pc-f16] [--json out.json]

Columns (every one a model written by qshard from the float32 model):
  uint8      every float32 weight per tensor (tensorflowjs_converter --quantize_uint8)
  pc         conv / depthwise / matmul filters per-channel uint8, the rest uint8 (`qshard quantize
             --uint8 --per-channel`): scales folded into the next layer or the layer's output where
             the graph allows, else Mul(codes, scale) on the weight
  pc-weight  the same with every scale applied by Mul(codes, scale) on the weight (no folding)
  pc-f16     filters as pc, every other float32 weight (biases, prelu slopes, ...) float16
  eq-uint8   cross-layer equalization, then every weight per tensor uint8
  pc-bc      pc with bias correction (each layer's mean input measured on the photos, in tfjs)
  eq-pc-bc   equalization, then pc-bc
  pc-bc-gram pc-bc with 1x1 convs' and matmuls' codes rounded through their inputs' Gram matrices
  mixed      qshard.graph.mixed: the smallest mix keeping the worst-sample cosine >= --min-cosine on
             the photos (its candidates run on --search-backend; the result is measured like the rest)
cos: worst-sample cosine to the float32 model; MB: weight bytes; t: predict time / float32's (median
of --repeats, variants in turns). Per model also: filters whose scale was folded into the next
layer / put on the output / left on the weight, and the search's evaluations and seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

from qshard.accuracy import web_eval  # noqa: E402
from qshard.accuracy.tfjs_runner import TfjsRunner  # noqa: E402
from qshard.graph.bias_correction import input_statistics
from qshard.graph.mixed import search_graph_model  # noqa: E402
from qshard.graph.per_channel_model import quantize_graph_model
from qshard.graph.rounding import GramRounding  # noqa: E402

PER_CHANNEL = {"pc": {"per_channel": True, "uint8": True},
               "pc-weight": {"per_channel": True, "uint8": True, "absorb": False},
               "pc-f16": {"per_channel": True, "float16": True},
               "eq-uint8": {"uint8": True, "equalize": True},
               "pc-bc": {"per_channel": True, "uint8": True, "bias_correct": True},
               "eq-pc-bc": {"per_channel": True, "uint8": True, "equalize": True, "bias_correct": True},
               "pc-bc-gram": {"per_channel": True, "uint8": True, "bias_correct": True, "gram": True}}


def variants(stats: dict, samples, args, search_runner):
    """The columns, as web_eval variants (float32 folder, out folder); each records its report in stats."""
    def per_channel(name, how):
        def write(src, out):
            how_ = dict(how)
            bias, gram = how_.pop("bias_correct", False), how_.pop("gram", False)
            if bias or gram:
                means, grams = input_statistics(src, samples, search_runner, out.parent, gram=gram)
                how_.update(input_means=means if bias else None, rounding=GramRounding(grams) if gram else None)
            report = quantize_graph_model(src, out, **how_)
            stats[name] = dict(Counter(r.placement for r in report.per_channel), equalized=report.equalized,
                               ops_added=report.ops_added, elements=report.elements_recomputed)
        return write

    def mixed(src, out):
        found = search_graph_model(src, out, samples, min_cosine=args.min_cosine, runner=search_runner,
                                   equalize=args.mixed_equalize, bias_correct=not args.no_bias_correction,
                                   rounding=args.rounding)
        stats["mixed"] = {"evaluations": found.evaluations, "seconds": round(found.seconds, 1), "met": found.met,
                          "widened": sum(c not in ("per-channel uint8", "uint8") for c in found.choice.values()),
                          "bias_corrected": found.bias_corrected, "ops_added": found.report.ops_added,
                          "elements": found.report.elements_recomputed, "choice": Counter(found.choice.values())}
    out = {"float32": web_eval.VARIANTS["float32"], "uint8": web_eval.VARIANTS["uint8"]}
    out.update({name: per_channel(name, how) for name, how in PER_CHANNEL.items() if name in args.columns})
    if args.min_cosine:
        out["mixed"] = mixed
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, help="folder of unpacked npm packages (see real_models.py)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--backend", default="cpu", choices=("cpu", "wasm"), help="tfjs backend (default cpu)")
    ap.add_argument("--search-backend", choices=("cpu", "wasm"), help="backend of the search's candidates "
                    "(default --backend)")
    ap.add_argument("--min-cosine", type=float, default=0.999, help="the mixed column's budget (0: no column)")
    ap.add_argument("--mixed-equalize", action="store_true", help="the mixed column equalizes first")
    ap.add_argument("--no-bias-correction", action="store_true", help="the mixed column corrects no bias")
    ap.add_argument("--rounding", choices=("nearest", "gram"), default="nearest", help="the mixed column's rounding")
    ap.add_argument("--samples", type=int, default=3, help="photo crops per model (default 3)")
    ap.add_argument("--repeats", type=int, default=7, help="timed predicts per variant (0: no timing)")
    ap.add_argument("--columns", default=",".join(PER_CHANNEL), help="per-channel columns to run, comma-separated "
                    f"(default all: {','.join(PER_CHANNEL)})")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    ap.add_argument("--markdown", type=Path, help="write the README's table here")
    ap.add_argument("--render", type=Path, nargs="+", metavar="JSON", help="only print the table of earlier --json "
                    "files (a model in a later file replaces its row from an earlier one)")
    args = ap.parse_args(argv)
    if args.render:
        rows = {}
        for path in args.render:
            rows.update({r["model"]: r for r in json.loads(path.read_text())["rows"]})
        print(markdown(list(rows.values()), args.min_cosine))
        return 0
    if args.cache is None:
        ap.error("--cache is required (unless --render)")
    args.columns = [c for c in args.columns.split(",") if c]
    unknown = sorted(set(args.columns) - set(PER_CHANNEL))
    if unknown:
        ap.error(f"unknown column {unknown[0]!r}; choose from {', '.join(PER_CHANNEL)}")
    only = set(args.only.split(",")) if args.only else None
    images = real_models.crops(real_models.photos(), args.samples)
    rows, start = [], time.perf_counter()
    search_backend = args.search_backend or args.backend
    columns = ["float32", "uint8", *args.columns] + (["mixed"] if args.min_cosine else [])
    with TfjsRunner(args.backend, timeout=1800) as runner, \
            TfjsRunner(search_backend, timeout=1800) as search_runner:
        for label, path in real_models.find_models(args.cache):
            name = real_models.model_name(path)
            if (only and name not in only) or json.loads(path.read_text()).get("format") != "graph-model":
                continue
            print(f"{name} ({label})", file=sys.stderr, flush=True)
            try:
                info = runner.load(path)
                samples, why = real_models.photo_samples(info, images)
                runner.unload(path)
                if samples is None:
                    rows.append({"model": name, "package": label, "skipped": why})
                    continue
                stats, began = {}, time.perf_counter()
                table = web_eval.evaluate_web_model(path, variants=variants(stats, samples, args, search_runner),
                                                    runner=runner, samples=samples, repeats=args.repeats)
                row = real_models.row_for(name, label, table)
                row["placement"], row["seconds"] = stats, round(time.perf_counter() - began, 1)
                rows.append(row)
            except Exception as error:  # noqa: BLE001 - one model's failure is a row of the table
                rows.append({"model": name, "package": label, "skipped": f"{type(error).__name__}: "
                                                                         f"{str(error).splitlines()[0][:160]}"})
            print(real_models.format_rows(rows[-1:], columns), file=sys.stderr, flush=True)
        tfjs = runner.tfjs_version
    print(f"tfjs {tfjs}, {args.backend} backend (search: {search_backend}), {args.samples} photo crops per model, "
          f"{time.perf_counter() - start:.0f} s; cos: worst-sample cosine to float32; t: predict time / float32's "
          f"(median of {args.repeats}, variants in turns)")
    print(real_models.format_rows(rows, columns))
    print("\nper-channel scales (pc): folded into the next layer / on the layer's output / on the weight; "
          "mixed: evaluations, seconds")
    for r in rows:
        if "placement" in r:
            p, m = r["placement"].get("pc", {}), r["placement"].get("mixed")
            print(f"  {r['model']}: {p.get('absorbed', 0)} / {p.get('output', 0)} / {p.get('weight', 0)}"
                  + (f"; mixed {m['evaluations']} runs, {m['seconds']} s, {m['widened']} weights widened"
                     + ("" if m["met"] else " (budget missed)") if m else ""))
    if args.json:
        args.json.write_text(json.dumps({"tfjs": tfjs, "backend": args.backend, "search_backend": search_backend,
                                         "min_cosine": args.min_cosine, "rows": rows}, indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(rows, args.min_cosine) + "\n")
    return 0


def markdown(rows, min_cosine: float) -> str:
    """The README's table: per model the uint8 / pc / mixed cosines, mixed's size and predict time
    ratios, what the search cost; then how many collapsing models met the targets."""
    head = ["model", "uint8 cos", "pc cos", "mixed cos", "mixed size / uint8", "mixed t / float", "pc t / float",
            "evaluations", "search s", "model s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    collapsing = met = 0
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        v, m = r["variants"], r["placement"].get("mixed")
        ratio = v["mixed"]["bytes"] / v["uint8"]["bytes"] if m else None
        fmt = lambda x, d=4: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
        cos = lambda x: fmt(x["worst_cosine"]) + ("d" if x.get("cosine_over") == "decoded" else "")  # noqa: E731
        if v["uint8"]["worst_cosine"] is not None and v["uint8"]["worst_cosine"] < 0.99:
            collapsing += 1
            met += bool(m and v["mixed"]["worst_cosine"] >= min_cosine and ratio <= 1.25)
        lines.append("| " + " | ".join([
            r["model"], cos(v["uint8"]), cos(v["pc"]) if "pc" in v else "-",
            cos(v["mixed"]) if m else "-", fmt(ratio, 2) if m else "-",
            fmt(v["mixed"]["time_ratio"], 2) if m else "-", fmt(v.get("pc", {}).get("time_ratio"), 2),
            str(m["evaluations"]) if m else "-", f"{m['seconds']:.0f}" if m else "-",
            f"{r['seconds']:.0f}" if "seconds" in r else "-"]) + " |")
    lines.append(f"\nd: cosine over decoded outputs (the model has no others). {met} of {collapsing} collapsing models (uint8 cosine < 0.99) met cosine >= {min_cosine} "
                 f"at <= 1.25x the all-uint8 size.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
