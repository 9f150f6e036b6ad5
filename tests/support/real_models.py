"""Real published tfjs graph models for the tests, and real photos as their inputs.

The models come from @vladmandic/human 3.3.6, a devDependency of tests/js that `npm ci --prefix
tests/js` installs (pinned by its sha512 in tests/js/package-lock.json; 28.6 MB download, 43 MB on
disk). Its models/ folder ships tfjs graph models as NAME.json + NAME.bin; the tests use:
- blazeface (face detector, 256x256x3, 0.54 MB float32): per-tensor uint8 collapses (worst-sample
  cosine ~0.95 in stock tfjs on the photos below);
- handlandmark-lite (hand landmarks, 224x224x3, published as float16, 4 MB as float32): uint8
  collapses to cosine ~0.31, per-channel uint8 reaches only ~0.61, 16 bits keep it;
- liveness (32x32x3 classifier, 0.59 MB float32): per-tensor uint8 keeps it (cosine ~0.9992).
The photos are the ones scikit-learn (china.jpg, flower.jpg) and matplotlib (grace_hopper.jpg)
ship, as benchmarks/real_models.py uses them: nothing is downloaded at test time."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

from support.node import JS_DIR

HUMAN = JS_DIR / "node_modules" / "@vladmandic" / "human"
HUMAN_VERSION = "3.3.6"
# Model name -> its input side (square RGB images, pixels in [0, 1]).
SIDES = {"blazeface": 256, "handlandmark-lite": 224, "liveness": 32}


def human_problem() -> str:
    """Why the real models are not there ('' when they are)."""
    meta = HUMAN / "package.json"
    if not meta.is_file():
        return f"{HUMAN} is missing (npm ci --prefix tests/js installs it)"
    version = json.loads(meta.read_text()).get("version")
    if version != HUMAN_VERSION:
        return f"{HUMAN} is version {version}, the tests need {HUMAN_VERSION}"
    return ""


def copy_model(name: str, folder: Path) -> Path:
    """The package's models/NAME.json and its shards copied into `folder` (made here); returns it."""
    src = HUMAN / "models" / f"{name}.json"
    folder.mkdir(parents=True)
    shutil.copy(src, folder / src.name)
    for group in json.loads(src.read_text())["weightsManifest"]:
        for path in group["paths"]:
            shutil.copy(src.parent / path, folder / path)
    return folder


def photos() -> List[np.ndarray]:
    """The RGB uint8 photos scikit-learn and matplotlib ship."""
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images
    images = list(load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        images.append(np.asarray(Image.open(fh).convert("RGB")))
    return images


def photo_batch(side: int) -> np.ndarray:
    """Each photo's centred square crop, resized to side x side: float32 [photos, side, side, 3] in [0, 1]."""
    from PIL import Image
    batch = []
    for image in photos():
        h, w = image.shape[:2]
        s = min(h, w)
        crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        batch.append(np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR)))
    return (np.stack(batch) / np.float32(255)).astype(np.float32)


def save_samples(name: str, path: Path) -> Dict[str, np.ndarray]:
    """samples.npz for model `name` (its one input as x); returns the arrays written."""
    arrays = {"x": photo_batch(SIDES[name])}
    np.savez(path, **arrays)
    return arrays


def _weight_value(name: str, nodes: Dict[str, dict], weights: Dict[str, np.ndarray]) -> np.ndarray:
    """The float32 value tfjs computes for node `name` from constants alone (Mul, Sub of Consts)."""
    if name in weights:
        return weights[name]
    node = nodes[name]
    a, b = (_weight_value(i.split(":")[0], nodes, weights) for i in node["input"])
    if node["op"] == "Mul":
        return np.multiply(a, b, dtype=np.float32)
    if node["op"] == "Sub":
        return np.subtract(a, b, dtype=np.float32)
    raise ValueError(f"{name}: {node['op']} is not a weight-side op")


def dequantized_float_model(src: Path, quantized: Path, out: Path) -> Path:
    """The source graph model (its own graph) written as float32 with the weights `quantized` holds
    as qshard decodes them (tfjs.read_weights), a per-channel weight being the Mul(codes, scale) /
    Sub(codes, zero_point) its Const became, computed in float32 as tfjs does."""
    from qshard import tfjs
    src_json = next(Path(src).glob("*.json"))
    q_json = next(Path(quantized).glob("*.json"))
    nodes = {n["name"]: n for n in json.loads(q_json.read_text())["modelTopology"]["node"]}
    decoded = tfjs.read_weights(quantized)
    doc = json.loads(src_json.read_text())
    names = [w["name"] for group in doc["weightsManifest"] for w in group["weights"]]
    values = [(n, _weight_value(n, nodes, decoded)) for n in names]
    out.mkdir(parents=True)
    doc["weightsManifest"] = tfjs.write_weights([values], out, write_manifest=False)
    (out / src_json.name).write_text(json.dumps(doc))
    return out


def prepare_models(root: Path) -> Dict[str, tuple]:
    """name -> (model folder, samples.npz) under root, for every model in SIDES."""
    out = {}
    for name in SIDES:
        save_samples(name, root / f"{name}.npz")
        out[name] = (copy_model(name, root / name), root / f"{name}.npz")
    return out


def run_qshard(*args) -> subprocess.CompletedProcess:
    """`python -m qshard ARGS`, which must succeed."""
    done = subprocess.run([sys.executable, "-m", "qshard", *map(str, args)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    return done


def per_channel_variants(src: Path, root: Path, *flags: str) -> Dict[str, Path]:
    """src quantized per channel (filters; other weights uint8; more `flags`) by `qshard quantize`,
    its scales on the weights (Mul(codes, scale)) and placed as the command does by default."""
    run_qshard("quantize", src, root / "weight-side", "--per-channel", "--uint8", "--scale-on-weights", *flags)
    run_qshard("quantize", src, root / "placed", "--per-channel", "--uint8", *flags)
    return {"weight-side": root / "weight-side", "placed": root / "placed"}


def as_model_json(folder: Path, out: Path) -> Path:
    """A copy of a model folder whose model JSON is named model.json (as support/tf_reference reads it)."""
    out.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, out / ("model.json" if f.suffix == ".json" else f.name))
    return out
