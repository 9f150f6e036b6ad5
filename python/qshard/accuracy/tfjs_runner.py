"""Run web models in stock tfjs (Node): one worker process for every model, variant and sample.

`node` must be on PATH and the @tensorflow/tfjs package (4.22) installed in a node_modules folder:
QSHARD_TFJS_NODE_MODULES, else ./node_modules, else tests/js/node_modules of a qshard source
checkout. The worker (run_tfjs.js, shipped beside this module) loads each model once, with
`tf.loadGraphModel` (execute, or executeAsync for graphs with control flow; outputs named by the
signature) or `tf.loadLayersModel`, from the files through `tf.io.fromMemory`. Tensors cross as raw
little-endian files (float32, int32, bool), never as JSON numbers.

Inputs are {input name: array with one leading axis over the samples} (or a list of per-sample
dicts, stacked; or one array for a one-input model). Input names are the model's input keys
(signature keys for graph models, input layer names for layers models) or its graph node names.
A sample either lacks the model's batch axis (shape = model shape without its first axis: the
samples are batched when that axis is free, else fed one by one with a batch axis of 1) or has the
model's full input shape (fed one by one). Outputs come back the same way: {output key: array whose
first axis is the sample}; a per-sample output whose shape changes from sample to sample (decoded
detections) comes back as a list of arrays.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import threading
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ModelInputError, TfjsRunError, TfjsUnavailableError
from ..formats.outputs import Scratch
from ..tfjs import WebModel
from .samples import arrange_inputs, gather_outputs

Inputs = Union[np.ndarray, Mapping[str, np.ndarray], Sequence[Mapping[str, np.ndarray]]]
Outputs = Dict[str, Union[np.ndarray, List[np.ndarray]]]
PathLike = Union[str, os.PathLike]

SCRIPT = Path(__file__).with_name("run_tfjs.js")
BACKENDS = ("cpu", "wasm")
PACKAGES = {"cpu": "@tensorflow/tfjs", "wasm": "@tensorflow/tfjs-backend-wasm"}
INSTALL = "npm install @tensorflow/tfjs@4.22.0"
REPLY = "@@qshard "
DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}
MAX_BATCH_BYTES = 64 << 20  # input bytes per batched request
STDERR_LINES = 60


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a loaded model, as tfjs reports it (shape -1 = free, None = unknown)."""

    key: str
    shape: Optional[Tuple[int, ...]]
    dtype: Optional[str]
    name: str = ""


@dataclass
class ModelInfo:
    """A model loaded in the worker."""

    path: Path
    format: str
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    batchable: bool = True  # cleared when a batched run fails or mixes up the samples
    batch_checked: bool = False  # a batched run was compared with a lone sample once


@dataclass
class Run:
    """What one predict call gave: outputs per name, and seconds per model call of the last request."""

    outputs: Outputs
    seconds: List[float]


def find_node_modules(backend: str = "cpu", folder: Optional[PathLike] = None) -> Path:
    """The node_modules folder holding @tensorflow/tfjs (and the backend's package): folder if given,
    else QSHARD_TFJS_NODE_MODULES, else ./node_modules, else tests/js/node_modules of a source checkout."""
    env = os.environ.get("QSHARD_TFJS_NODE_MODULES")
    if folder is not None:
        candidates = [("the folder given", Path(folder))]
    elif env:
        candidates = [("QSHARD_TFJS_NODE_MODULES", Path(env))]
    else:
        checkout = Path(__file__).resolve().parents[3] / "tests" / "js" / "node_modules"
        candidates = [("the current folder", Path.cwd() / "node_modules"), ("the qshard source checkout", checkout)]
    package = PACKAGES.get(backend, PACKAGES["cpu"])
    for _, path in candidates:
        if (path / "@tensorflow" / "tfjs" / "package.json").is_file():
            if not (path / package / "package.json").is_file():
                raise TfjsUnavailableError(f"{path} has @tensorflow/tfjs but not {package}, which the {backend} "
                                           f"backend needs: `npm install {package}@4.22.0` there")
            return path
    where = "; ".join(f"{what}: {path}" for what, path in candidates)
    raise TfjsUnavailableError(f"running web models needs @tensorflow/tfjs in a node_modules folder ({where}): "
                               f"`{INSTALL}` there, or set QSHARD_TFJS_NODE_MODULES to a node_modules folder")


def require_finite(outputs: Outputs, source: PathLike) -> None:
    """Refuse a float model whose own outputs hold NaN or Inf: a search has nothing to keep close to."""
    for value in outputs.values():
        for array in value if isinstance(value, list) else [value]:
            array = np.asarray(array)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ModelInputError(f"{source}: the float model's own outputs hold NaN or Inf on the samples "
                                      f"(non-finite weights?); there is nothing to keep close to")


class TfjsRunner:
    """A stock tfjs worker process (Node): load models once, predict many samples, time predicts."""

    def __init__(self, backend: str = "cpu", timeout: float = 600.0, node_modules: Optional[PathLike] = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.backend = backend
        self.timeout = timeout
        self.node_modules = find_node_modules(backend, node_modules)
        self.node = shutil.which("node")
        if self.node is None:
            raise TfjsUnavailableError("running web models needs Node.js (>= 18): `node` is not on PATH")
        self.tfjs_version = ""
        self._proc: Optional[subprocess.Popen] = None
        self._replies: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._models: Dict[Path, ModelInfo] = {}
        self._tmp: Optional[Path] = None
        self._count = 0

    # ---------------------------------------------------------------------------------------------
    # The process.

    def __enter__(self) -> "TfjsRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _start(self) -> None:
        self._scratch = Scratch("qshard-tfjs")  # locked: a killed run's is removed by the next
        self._tmp = self._scratch.path
        self._replies = queue.Queue()
        self._stderr.clear()
        self._proc = subprocess.Popen(
            [self.node, str(SCRIPT), str(self.node_modules), self.backend], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            start_new_session=True)
        threading.Thread(target=self._pump, args=(self._proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._proc.stderr, False), daemon=True).start()
        ready = self._reply("starting tfjs")
        self.tfjs_version = ready.get("tfjs", "")

    def _pump(self, stream, replies: bool) -> None:
        for line in stream:
            if replies and line.startswith(REPLY):
                self._replies.put(line[len(REPLY):])
            else:
                self._stderr.append(line.rstrip("\n"))
        if replies:
            self._replies.put(None)

    def _failure(self, what: str, problem: str) -> TfjsRunError:
        log = "\n".join(line for line in self._stderr if line.strip() and not _banner(line))
        return TfjsRunError(f"{what}: {problem}" + (f"\n{log}" if log else ""))

    def _reply(self, what: str) -> dict:
        try:
            line = self._replies.get(timeout=self.timeout)
        except queue.Empty:
            self._stop()
            raise self._failure(what, f"no answer from tfjs within {self.timeout:g} s; the worker was stopped") from None
        if line is None:
            code = self._proc.wait(timeout=10) if self._proc else None
            self._stop()
            raise self._failure(what, f"the tfjs worker exited (code {code})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise self._failure(what, reply.get("error", "unknown error"))
        return reply

    def _request(self, what: str, request: dict) -> dict:
        if self._proc is None:
            self._start()
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except OSError as error:
            self._stop()
            raise self._failure(what, f"cannot talk to the tfjs worker: {error}") from None
        return self._reply(what)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        self._models.clear()
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except OSError:
                    proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._tmp is not None:
            self._scratch.remove()
            self._tmp = None

    def close(self) -> None:
        """Stop the worker (asking first) and remove its temporary files."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop()

    # ---------------------------------------------------------------------------------------------
    # Models.

    def load(self, model: PathLike) -> ModelInfo:
        """Load a web model (folder or model.json) once; its inputs and outputs as tfjs sees them."""
        web = WebModel(model)  # checks the manifest and the shard files first: clear errors, safe paths
        path = web.file.path.resolve()
        if not web.file.is_model_json or not web.file.document.get("modelTopology"):
            raise ModelInputError(f"{path}: not a model.json with a modelTopology (a bare weights manifest "
                                  f"cannot be run)")
        if path in self._models:
            return self._models[path]
        document = web.file.document
        if document.get("format") != "graph-model" and "node" not in document["modelTopology"]:
            from ..layers.equalize import read_layers
            read_layers(document, str(path))  # a broken topology is refused here: tfjs hangs on a cycle
        try:
            reply = self._load_request(path)
        except TfjsRunError as error:
            if self._proc is None:  # the worker died or timed out: its log says why
                raise
            first = str(error).splitlines()[0]  # tfjs refused the model: its first line says what
            raise ModelInputError(first.rstrip(":")) from None
        tensor = lambda t: TensorInfo(t["key"], None if t["shape"] is None else tuple(t["shape"]),  # noqa: E731
                                      t.get("dtype"), t.get("name") or t["key"])
        info = ModelInfo(path, reply["format"], [tensor(t) for t in reply["inputs"]],
                         [tensor(t) for t in reply["outputs"]])
        self._models[path] = info
        return info

    def _load_request(self, path: Path) -> dict:
        if self._proc is None:
            self._start()
        shards = [str((path.parent / p).resolve()) for g in WebModel(path).file.groups for p in g.paths]
        return self._request(f"{path}: loading in tfjs", {"op": "load", "model": str(path), "shards": shards})

    def unload(self, model: PathLike) -> None:
        """Free a loaded model in the worker."""
        path = WebModel(model, check=False).file.path.resolve()
        if self._models.pop(path, None) is not None and self._proc is not None:
            self._request(f"{path}: unloading", {"op": "unload", "model": str(path)})

    def run(self, model: PathLike, inputs: Inputs, *, batch: bool = True, repeats: int = 1) -> Run:
        """Predict every sample (batched where the model allows); seconds of the model calls."""
        info = self.load(model)
        arranged = arrange_inputs(info, inputs)
        if batch and info.batchable and arranged.batchable and arranged.count > 1:
            try:
                return self._run_batched(info, arranged, repeats)
            except TfjsRunError:
                if self._proc is None:  # a timeout or a crash: do not try again sample by sample
                    raise
            info.batchable = False
        runs = [self._call(info, arranged.sample(i), repeats) for i in range(arranged.count)]
        outputs = gather_outputs(info, [r[0] for r in runs], arranged.added_batch_axis)
        return Run(outputs, [s for r in runs for s in r[1]])

    def _run_batched(self, info: ModelInfo, arranged, repeats: int) -> Run:
        per_sample = max(1, arranged.sample_bytes)
        step = max(1, min(arranged.count, MAX_BATCH_BYTES // per_sample))
        parts, seconds = [], []
        for start in range(0, arranged.count, step):
            stop = min(arranged.count, start + step)
            outputs, secs = self._call(info, arranged.chunk(start, stop), repeats)
            if any(v.ndim == 0 or v.shape[0] != stop - start for v in outputs.values()):
                raise TfjsRunError(f"{info.path}: a batched output does not have one row per sample")
            if not info.batch_checked:
                self._check_batch(info, arranged, outputs)
            parts.append(outputs)
            seconds.extend(secs)
        return Run({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, seconds)

    def _check_batch(self, info: ModelInfo, arranged, batched: Dict[str, np.ndarray]) -> None:
        """The first sample alone must give what it gave in the batch: a graph may declare a free
        batch axis and still mix the samples (a reshape that flattens it, a decoder over the batch)."""
        alone, _ = self._call(info, arranged.sample(0), 1)
        for key, values in alone.items():
            row = np.asarray(batched[key][0])  # 0-d for a [batch] output
            values = values.reshape(row.shape) if values.size == row.size else values
            # the tolerance's scale over finite values (NaN would make atol NaN); integer outputs exact
            finite = row[np.isfinite(row)] if row.dtype.kind == "f" else np.zeros(0)
            scale = float(np.max(np.abs(finite))) if finite.size else 0.0
            if values.shape != row.shape or not np.allclose(values, row, rtol=0, atol=1e-4 * scale, equal_nan=True):
                raise TfjsRunError(f"{info.path}: output {key} of a sample differs in a batch and alone")
        info.batch_checked = True

    def _call(self, info: ModelInfo, feed: Dict[str, np.ndarray], repeats: int):
        self._count += 1
        if self._proc is None:  # the worker was stopped (timeout, crash): a new one loads the model again
            self._load_request(info.path)
            self._models[info.path] = info
        folder = self._tmp / f"call{self._count}"
        folder.mkdir()
        try:
            specs = []
            for i, (key, array) in enumerate(feed.items()):
                file = folder / f"input{i}.bin"
                np.ascontiguousarray(array, DTYPES[_tfjs_dtype(array)]).tofile(file)
                specs.append({"key": key, "file": str(file), "shape": list(array.shape), "dtype": _tfjs_dtype(array)})
            reply = self._request(f"{info.path}: predicting in tfjs",
                                  {"op": "predict", "model": str(info.path), "inputs": specs, "out": str(folder),
                                   "repeats": repeats})
            outputs = {}
            for o in reply["outputs"]:
                values = np.fromfile(o["file"], DTYPES[o["dtype"]]).reshape(o["shape"])
                outputs[o["key"]] = values.astype(bool) if o["dtype"] == "bool" else values
            return outputs, reply["seconds"]
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _banner(line: str) -> bool:
    """The cpu backend's "install tfjs-node" greeting, printed on first use: not worth showing in errors."""
    return set(line.strip()) == {"="} or "install our node backend" in line


def _tfjs_dtype(array: np.ndarray) -> str:
    if array.dtype == np.bool_:
        return "bool"
    return "int32" if array.dtype.kind in "iu" else "float32"


def predict(models: Union[PathLike, Sequence[PathLike]], inputs: Inputs, backend: str = "cpu",
            timeout: float = 600.0) -> List[Outputs]:
    """Per model (folder or model.json): {output name: values per sample}, all in one tfjs process."""
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    with TfjsRunner(backend, timeout) as runner:
        return [runner.run(m, inputs).outputs for m in models]
