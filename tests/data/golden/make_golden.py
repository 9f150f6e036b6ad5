"""Write the golden fixtures: the official tensorflowjs 4.22's own outputs for small inputs.

The fixtures prove byte-identity with tensorflowjs on every machine, with or without tensorflowjs
installed (tests/compat/test_golden.py). Two arithmetic modes exist in the wild: under numpy >= 2
tensorflowjs computes per element in float64, under numpy 1.x in float32 (min and scale rounded to
float32 first). Run this once with each:

    python tests/data/golden/make_golden.py                      # numpy >= 2: inputs.npz + float64/
    /path/to/numpy1/python tests/data/golden/make_golden.py      # numpy 1.x: float32/

Each run needs `pip install --no-deps tensorflowjs==4.22.0` in that environment (numpy only: its
quantization.py, write_weights.py and read_weights.py are loaded without the package __init__).
Files: inputs.npz (the arrays, written by the numpy >= 2 run), and per mode quantize.npz (codes per
case and dtype), quantize.json (min / scale as Python's repr), write_weights/<dtype>/ (manifest and
shards of every case in one group, 1 KiB shards) and read.npz (what read_weights gives back).
"""
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
SHARD_BYTES = 1024


def cases():
    """Small arrays that reach every rule: the design notes' examples, ties, ranges on one side of
    zero, constants, extremes, a 2-D array and one longer than a shard."""
    rng = np.random.default_rng(2026)
    return {
        "design_example": np.array([0, -0.1, 1.2], np.float32),
        "zero_one_two": np.array([0, 1, 2], np.float32),
        "normal_1000": rng.standard_normal(1000).astype(np.float32),
        "matrix_33x65": rng.standard_normal((33, 65)).astype(np.float32),
        "ties": (np.round(rng.standard_normal(300) * 40) / 2).astype(np.float32),
        "positive": rng.uniform(1000.0, 1000.5, 257).astype(np.float32),
        "negative": (-rng.exponential(2.0, 129) - 0.25).astype(np.float32),
        "constant": np.full(17, 0.375, np.float32),
        "zeros": np.zeros(5, np.float32),
        "one_element": np.array([3.5], np.float32),
        "huge": (rng.standard_normal(100) * 1e37).astype(np.float32),
        "tiny": (rng.standard_normal(100) * 1e-38).astype(np.float32),
        "sparse": np.where(rng.random(200) < 0.9, 0.0, rng.standard_normal(200)).astype(np.float32),
    }


def load_reference():
    """tensorflowjs's quantization, write_weights and read_weights, without its package __init__."""
    spec = importlib.util.find_spec("tensorflowjs")
    if spec is None:
        sys.exit("install the reference first: pip install --no-deps tensorflowjs==4.22.0")
    folder = Path(list(spec.submodule_search_locations)[0])
    package = types.ModuleType("tensorflowjs")
    package.__path__ = [str(folder)]
    sys.modules["tensorflowjs"] = package
    # write_weights imports tensorflow only for tf.io.gfile.GFile; a file object does that job.
    sys.modules["tensorflow"] = types.SimpleNamespace(io=types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open)))
    modules = {}
    for name in ("quantization", "write_weights", "read_weights"):
        module_spec = importlib.util.spec_from_file_location(f"tensorflowjs.{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
        setattr(package, name, module)
        modules[name] = module
    return modules


def main() -> None:
    mode = "float64" if int(np.__version__.split(".")[0]) >= 2 else "float32"
    if mode == "float64":
        np.savez(HERE / "inputs.npz", **cases())
    with np.load(HERE / "inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    ref = load_reference()
    out = HERE / mode
    out.mkdir(exist_ok=True)
    codes, params, read = {}, {}, {}
    for case, x in inputs.items():
        for dtype, np_dtype in DTYPES.items():
            q, meta = ref["quantization"].quantize_weights(x, np_dtype)
            codes[f"{case}.{dtype}"] = q
            params.setdefault(case, {})[dtype] = {k: repr(float(v)) for k, v in meta.items()}
    np.savez_compressed(out / "quantize.npz", **codes)
    (out / "quantize.json").write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
    group = [{"name": case, "data": x} for case, x in inputs.items()]
    group.append({"name": "step", "data": np.array([7, -3], np.int32)})
    for dtype in DTYPES:
        folder = out / "write_weights" / dtype
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        ref["write_weights"].write_weights([group], str(folder), shard_size_bytes=SHARD_BYTES,
                                           quantization_dtype_map={dtype: True})
        manifest = json.loads((folder / "weights_manifest.json").read_text())
        for entry in ref["read_weights"].read_weights(manifest, str(folder), flatten=True):
            read[f"{entry['name']}.{dtype}"] = entry["data"]
    np.savez_compressed(out / "read.npz", **read)
    print(f"wrote {out} ({mode} arithmetic, numpy {np.__version__})")


if __name__ == "__main__":
    main()
