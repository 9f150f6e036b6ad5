"""Python side of predict_graph_pc.js: run tfjs graph models in stock tfjs under Node and read the
outputs back. Used by tests/graph/ and benchmarks/per_channel.py; to be merged with the product-level
tfjs runner (qshard.accuracy) when that lands."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

JS_DIR = Path(__file__).resolve().parent
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


def predict(models: Sequence, inputs: Dict[str, np.ndarray], *, backend: str = "cpu", repeat: int = 0,
            node: str = "node", node_path: Optional[str] = None, timeout: float = 900) -> List[dict]:
    """Run each model on the same inputs in one node process; per model {"outputs": [arrays],
    "names": [...], "times_ms": [...], "backend": ...}."""
    with tempfile.TemporaryDirectory(prefix="qshard-pc-") as tmp:
        tmp = Path(tmp)
        feed = {}
        for i, (name, x) in enumerate(inputs.items()):
            file = tmp / f"in{i}.f32"
            np.ascontiguousarray(x, "<f4").tofile(file)
            feed[name] = {"shape": list(x.shape), "file": str(file)}
        jobs = [{"model": str(model_file(m)), "backend": backend, "inputs": feed, "out": str(tmp / f"out{j}"),
                 "repeat": repeat} for j, m in enumerate(models)]
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        env = dict(os.environ)
        if node_path:
            env["NODE_PATH"] = node_path
        done = subprocess.run([node, str(SCRIPT), str(tmp / "jobs.json")], cwd=JS_DIR, capture_output=True,
                              text=True, timeout=timeout, env=env)
        if done.returncode != 0:
            raise NodeRunError(done.stderr.strip()[-4000:])
        results = []
        for job in jobs:
            meta = json.loads(Path(job["out"] + ".json").read_text())
            outs = [np.fromfile(o["file"], "<f4").reshape(o["shape"]) for o in meta["outputs"]]
            results.append({"outputs": outs, "names": [o["name"] for o in meta["outputs"]],
                            "times_ms": meta["times_ms"], "backend": meta["backend"], "tfjs": meta["tfjs"]})
        return results
