"""Python side of predict_graph_pc.js: run tfjs graph models in stock tfjs under Node and read the
outputs back. Used by tests/graph/ and benchmarks/per_channel.py; to be merged with the product-level
tfjs runner (qshard.accuracy) when that lands."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "predict_graph_pc.js"


class NodeRunError(RuntimeError):
    """node failed: its stderr is the message."""


def model_file(folder) -> Path:
    """The model JSON of a folder (model.json, else the only *.json), or the file itself."""
    p = Path(folder)
    if p.is_file():
        return p
    if (p / "model.json").is_file():
        return p / "model.json"
    found = [f for f in p.glob("*.json") if f.name != "weights_manifest.json"]
    if len(found) != 1:
        raise FileNotFoundError(f"{p}: no single model JSON in it")
    return found[0]


def predict(models: Sequence, inputs: Dict[str, np.ndarray], **kwargs) -> List[dict]:
    """Run each model on the same inputs in one node process; see predict_each."""
    return predict_each([(m, inputs) for m in models], **kwargs)


def predict_each(jobs: Sequence, *, backend: str = "cpu", repeat: int = 0, node: str = "node",
                 js_dir: Optional[Path] = None, timeout: float = 900) -> List[dict]:
    """Run each (model, inputs by name) in one node process; per job {"outputs": [arrays],
    "names": [...], "dtypes": [tfjs dtype of each output; the arrays are float32], "times_ms": [...],
    "backend": ...}. js_dir: a folder whose node_modules has
    @tensorflow/tfjs (and -backend-wasm for backend "wasm"); the scripts are copied there."""
    script = SCRIPT
    if js_dir is not None:
        for name in (SCRIPT.name, "common.js"):
            shutil.copyfile(JS_DIR / name, Path(js_dir) / name)
        script = Path(js_dir) / SCRIPT.name
    with tempfile.TemporaryDirectory(prefix="qshard-pc-") as tmp:
        tmp = Path(tmp)
        specs = []
        for j, (model, inputs) in enumerate(jobs):
            feed = {}
            for i, (name, x) in enumerate(inputs.items()):
                file = tmp / f"in{j}-{i}.f32"
                np.ascontiguousarray(x, "<f4").tofile(file)
                feed[name] = {"shape": list(x.shape), "file": str(file)}
            specs.append({"model": str(model_file(model)), "backend": backend, "inputs": feed,
                          "out": str(tmp / f"out{j}"), "repeat": repeat})
        (tmp / "jobs.json").write_text(json.dumps(specs))
        done = subprocess.run([node, str(script), str(tmp / "jobs.json")], cwd=script.parent, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise NodeRunError(done.stderr.strip()[-4000:])
        results = []
        for spec in specs:
            meta = json.loads(Path(spec["out"] + ".json").read_text())
            outs = [np.fromfile(o["file"], "<f4").reshape(o["shape"]) for o in meta["outputs"]]
            results.append({"outputs": outs, "names": [o["name"] for o in meta["outputs"]],
                            "dtypes": [o["dtype"] for o in meta["outputs"]],
                            "times_ms": meta["times_ms"], "backend": meta["backend"], "tfjs": meta["tfjs"]})
        return results


def runner(**kwargs):
    """A `run(folders, samples)` for qshard.graph.mixed: per folder, per sample, the float outputs
    (int outputs such as an argmax are left out), all in one node process."""
    def run(folders, samples):
        results = predict_each([(f, s) for f in folders for s in samples], **kwargs)
        per = [[o for o, d in zip(r["outputs"], r["dtypes"]) if d == "float32"] for r in results]
        n = len(samples)
        return [per[i * n:(i + 1) * n] for i in range(len(folders))]
    return run
