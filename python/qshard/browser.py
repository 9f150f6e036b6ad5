"""Web models in a real browser: serve a model over HTTP on 127.0.0.1, load it in headless Chromium
with stock TensorFlow.js exactly as a web app does (`tf.loadGraphModel(url)` /
`tf.loadLayersModel(url)`, the browser fetching model.json and every shard), run a prediction and
hand the outputs and timings back to Python.

What it needs, none of it downloaded at run time:
- Chromium: Debian's `chromium` package (`apt-get install chromium`), or QSHARD_CHROMIUM / --chromium;
- pip's `playwright` to drive it (`pip install "qshard[browser]"`); its own browser download is not
  used (it does not work offline);
- `tf.min.js` of @tensorflow/tfjs 4.22 from npm (`npm install @tensorflow/tfjs@4.22.0`), found in
  ./node_modules, or given by QSHARD_TFJS_JS / --tfjs.

The slow-link figures use Chrome DevTools network emulation (throughput and latency applied by the
browser to every request). Model files are served with `Cache-Control: max-age=3600`, so a second
load in the same browser context comes from the HTTP cache, as it would for a returning user.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

import numpy as np

from .errors import QshardError

TFJS_VERSION = "4.22.0"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-gpu",
                 "--enable-unsafe-swiftshader"]  # WebGL on SwiftShader (software), as on a GPU-less client
_NP = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}


class BrowserError(QshardError, RuntimeError):
    """The browser, its driver or tfjs is missing, or the page failed."""


# --------------------------------------------------------------------------------------------------
# Finding what the harness needs.

def find_chromium(explicit: Optional[str] = None) -> str:
    """The Chromium executable: explicit, $QSHARD_CHROMIUM, or chromium / chromium-browser on PATH."""
    for candidate in (explicit, os.environ.get("QSHARD_CHROMIUM")):
        if candidate:
            if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
                raise BrowserError(f"{candidate}: not an executable Chromium")
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("no Chromium found: install Debian's `chromium` package (apt-get install chromium) "
                       "or set QSHARD_CHROMIUM to a Chromium or Chrome executable")


def find_tfjs(explicit: Optional[str] = None) -> Path:
    """tf.min.js of @tensorflow/tfjs: explicit, $QSHARD_TFJS_JS, or ./node_modules."""
    for candidate in (explicit, os.environ.get("QSHARD_TFJS_JS")):
        if candidate:
            p = Path(candidate)
            if p.is_dir():
                p = p / "dist" / "tf.min.js"
            if not p.is_file():
                raise BrowserError(f"{candidate}: no tf.min.js there (give the file, or the @tensorflow/tfjs folder)")
            return p
    p = Path.cwd() / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
    if p.is_file():
        return p
    raise BrowserError(f"no tf.min.js of @tensorflow/tfjs found: run `npm install @tensorflow/tfjs@{TFJS_VERSION}` "
                       f"here, or set QSHARD_TFJS_JS to its dist/tf.min.js")


def tfjs_version(tf_min_js: Path) -> Optional[str]:
    package = tf_min_js.parent.parent / "package.json"
    try:
        return json.loads(package.read_text()).get("version")
    except (OSError, ValueError):
        return None


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserError('the browser harness needs playwright: pip install "qshard[browser]" (or pip install '
                           'playwright); its browser download is not needed, Debian\'s chromium is used') from None
    return sync_playwright


# --------------------------------------------------------------------------------------------------
# The HTTP side: a page, tf.min.js, and model folders, on 127.0.0.1 and a free port.

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qshard harness</title><link rel="icon" href="data:,">
<script src="/tfjs/tf.min.js"></script>
<script>
'use strict';
function toBytes(b64) {
  const s = atob(b64); const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
function toBase64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
const ARRAYS = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};
// Deterministic inputs for a model whose inputs the caller does not give: x_i = ((i * 37) % 101) / 100.
function autoInput(info) {
  const shape = info.shape.map((d) => (d == null || d < 0 ? 1 : d));
  const n = shape.reduce((a, b) => a * b, 1);
  const dtype = info.dtype === 'int32' ? 'int32' : 'float32';
  const values = new (ARRAYS[dtype])(n);
  for (let i = 0; i < n; i++) values[i] = dtype === 'int32' ? (i * 37) % 101 : ((i * 37) % 101) / 100;
  return tf.tensor(values, shape, dtype);
}
window.qshardRun = async function (spec) {
  const result = {tfjs: tf.version.tfjs, backendAsked: spec.backend};
  try {
    if (!(await tf.setBackend(spec.backend))) throw new Error(`tfjs backend ${spec.backend} is not available here`);
    await tf.ready();
    result.backend = tf.getBackend();
    if (result.backend === 'webgl') {
      result.webglVersion = tf.env().getNumber('WEBGL_VERSION');
      result.float32 = tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
    }
    const t0 = performance.now();
    const layers = spec.format === 'layers-model';
    const model = layers ? await tf.loadLayersModel(spec.url, {strict: true}) : await tf.loadGraphModel(spec.url);
    const t1 = performance.now();
    const infos = layers ? model.inputs.map((t) => ({name: t.name, shape: t.shape, dtype: t.dtype})) : model.inputs;
    let xs;
    if (spec.inputs) {
      xs = spec.inputs.map((i) => tf.tensor(new (ARRAYS[i.dtype])(toBytes(i.b64).buffer), i.shape, i.dtype));
    } else {
      xs = infos.map(autoInput);
    }
    let y;
    if (layers) {
      y = model.predict(xs.length === 1 ? xs[0] : xs);
    } else {
      const feed = {};
      infos.forEach((info, k) => { feed[info.name] = xs[k]; });
      y = await model.executeAsync(feed);
    }
    const ys = Array.isArray(y) ? y : [y];
    const data = await Promise.all(ys.map((t) => t.data()));
    const t2 = performance.now();
    result.inputs = xs.map((t) => ({shape: t.shape, dtype: t.dtype}));
    result.outputs = ys.map((t, k) => ({shape: t.shape, dtype: t.dtype, b64: toBase64(data[k])}));
    result.loadMs = t1 - t0;
    result.firstPredictionMs = t2 - t0;
    tf.dispose(xs); tf.dispose(ys); model.dispose();
  } catch (error) {
    result.error = String(error && error.message ? error.message : error);
  }
  return result;
};
window.qshardReady = true;
</script></head><body><p>qshard harness</p></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: "ModelServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def _send(self, status: int, body: bytes, content_type: str, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.record(self.path, status, len(body) if self.command != "HEAD" else 0)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self):  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            return self._send(200, PAGE.encode(), "text/html; charset=utf-8", "no-store")
        if path == "/tfjs/tf.min.js":
            return self._send(200, self.server.tfjs_bytes, "application/javascript", "max-age=3600")
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "m" and parts[2] in self.server.models:
            root = self.server.models[parts[2]]
            target = (root / "/".join(parts[3:])).resolve()
            if root in target.parents and target.is_file():
                kind = "application/json" if target.suffix == ".json" else "application/octet-stream"
                return self._send(200, target.read_bytes(), kind, "max-age=3600")
        self._send(404, f"not found: {path}".encode(), "text/plain", "no-store")


class ModelServer(ThreadingHTTPServer):
    """Serves PAGE at /, tf.min.js at /tfjs/tf.min.js and each model folder at /m/<key>/, on
    127.0.0.1 and a free port, from a background thread; a context manager that stops it. Counts the
    bytes of every response so a caller can tell what crossed the wire."""

    daemon_threads = True

    def __init__(self, tf_min_js: Union[str, os.PathLike]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tfjs_bytes = Path(tf_min_js).read_bytes()
        self.models: Dict[str, Path] = {}
        self.log: List[tuple] = []
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, key: str, folder: Union[str, os.PathLike]) -> str:
        """Serve a model folder; returns its base URL."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"model key {key!r}: use letters, digits, '_', '.', '-'")
        self.models[key] = Path(folder).resolve()
        return f"{self.url}/m/{key}/"

    def record(self, path: str, status: int, nbytes: int) -> None:
        with self._lock:
            self.log.append((path, status, nbytes))

    def take_log(self) -> List[tuple]:
        with self._lock:
            log, self.log = self.log, []
        return log

    def __enter__(self) -> "ModelServer":
        self._thread = threading.Thread(target=self.serve_forever, name="qshard-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


# --------------------------------------------------------------------------------------------------
# The browser side.

@dataclass
class Link:
    """An emulated network link: throughput in bits/s and round-trip latency in ms."""

    bits_per_second: float
    latency_ms: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Link":
        """'10mbit,50ms', '1.5mbit', '512kbit,150ms'."""
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(k|m|g)?bit(?:/s)?\s*(?:,\s*([0-9]*\.?[0-9]+)\s*ms)?\s*",
                         text, re.IGNORECASE)
        if not m:
            raise ValueError(f"link {text!r}: expected THROUGHPUT[,LATENCY] such as 10mbit,50ms or 512kbit")
        scale = {"k": 1e3, "m": 1e6, "g": 1e9, None: 1.0}[(m.group(2) or "").lower() or None]
        bits = float(m.group(1)) * scale
        if bits <= 0:
            raise ValueError(f"link {text!r}: throughput must be positive")
        return cls(bits, float(m.group(3) or 0))

    def __str__(self) -> str:
        for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
            if self.bits_per_second >= scale:
                return f"{self.bits_per_second / scale:g}{unit}/s, {self.latency_ms:g} ms"
        return f"{self.bits_per_second:g}bit/s, {self.latency_ms:g} ms"


@dataclass
class Run:
    """One load-and-predict in the page."""

    tfjs: str
    backend: str
    outputs: List[np.ndarray] = field(default_factory=list)
    load_ms: float = 0.0
    first_prediction_ms: float = 0.0
    bytes_transferred: int = 0  # model files served for this run (0 when the HTTP cache had them)
    requests: int = 0
    console_errors: List[str] = field(default_factory=list)
    error: str = ""
    webgl_float32: Optional[bool] = None


def _encode_input(a: np.ndarray) -> dict:
    a = np.asarray(a)
    kind = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool"}.get(a.dtype)
    if kind is None:
        raise ValueError(f"browser inputs must be float32, int32 or bool arrays, not {a.dtype}")
    data = np.ascontiguousarray(a.astype(_NP[kind]))
    return {"shape": list(a.shape), "dtype": kind, "b64": base64.b64encode(data.tobytes()).decode()}


def model_format(folder: Union[str, os.PathLike]) -> str:
    from . import manifest as mf
    model = mf.load(folder)
    if model.document is None:
        raise BrowserError(f"{model.path}: a bare weights manifest has no topology to run; "
                           f"give a model.json (graph-model or layers-model)")
    fmt = model.document.get("format")
    if fmt not in ("graph-model", "layers-model"):
        topology = model.document.get("modelTopology")
        fmt = "graph-model" if isinstance(topology, dict) and "node" in topology else "layers-model"
    return fmt


def _record_errors(page, sink: List[str]) -> None:
    """Append the page's console errors (with the URL they concern) and uncaught exceptions to sink."""
    def on_console(message) -> None:
        if message.type == "error":
            url = (message.location or {}).get("url") or ""
            sink.append(f"{message.text} [{url}]" if url else message.text)
    page.on("console", on_console)
    page.on("pageerror", lambda e: sink.append(f"uncaught: {e}"))


class Browser:
    """Headless Chromium driven by playwright, with a ModelServer beside it. A context manager:

        with Browser() as b:
            run = b.run("path/to/model", inputs=[x], backend="cpu")
    """

    def __init__(self, chromium: Optional[str] = None, tfjs: Optional[str] = None, timeout_s: float = 120.0):
        self.chromium = find_chromium(chromium)
        self.tf_min_js = find_tfjs(tfjs)
        self.timeout_ms = timeout_s * 1000
        self._pw_cm = None
        self._browser = None
        self.server: Optional[ModelServer] = None
        self._keys: Dict[Path, str] = {}

    def __enter__(self) -> "Browser":
        sync_playwright = _playwright()
        self.server = ModelServer(self.tf_min_js).__enter__()
        try:
            self._pw_cm = sync_playwright()
            pw = self._pw_cm.__enter__()
            self._browser = pw.chromium.launch(executable_path=self.chromium, args=CHROMIUM_ARGS,
                                               timeout=self.timeout_ms)
        except Exception as error:
            self.__exit__(None, None, None)
            if isinstance(error, BrowserError):
                raise
            raise BrowserError(f"{self.chromium}: could not start headless Chromium: {error}") from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
            if self._pw_cm is not None:
                self._pw_cm.__exit__(None, None, None)
        finally:
            self._browser = self._pw_cm = None
            if self.server is not None:
                self.server.__exit__()
                self.server = None

    def serve(self, model: Union[str, os.PathLike]) -> str:
        """The URL of a model's JSON file, serving its folder if not yet served."""
        from . import manifest as mf
        path = mf.find_model_file(model).resolve()
        folder = path.parent
        if folder not in self._keys:
            key = f"model{len(self._keys)}"
            self.server.add(key, folder)
            self._keys[folder] = key
        return f"{self.server.url}/m/{self._keys[folder]}/{path.name}"

    def session(self, link: Optional[Link] = None) -> "Session":
        """A fresh browser context (empty HTTP cache) with the harness page open."""
        return Session(self, link)

    def run(self, model: Union[str, os.PathLike], inputs: Optional[Sequence[np.ndarray]] = None,
            backend: str = "cpu", link: Optional[Link] = None) -> Run:
        """Load `model` in a fresh context, predict once, and return the outputs."""
        with self.session(link) as s:
            return s.run(model, inputs, backend)

    def render(self, html_file: Union[str, os.PathLike], png_file: Union[str, os.PathLike],
               width: int = 1100) -> Dict[str, object]:
        """Open a local HTML file (file://) with every request beyond file: and data: blocked and
        recorded, screenshot the whole page into png_file, and return what the page showed:
        {"images": [{id, className, alt, width, height}], "blocked": [urls], "console_errors": [...]}."""
        context = self._browser.new_context(viewport={"width": width, "height": 900})
        blocked: List[str] = []
        console: List[str] = []

        def gate(route):
            url = route.request.url
            if url.startswith(("file:", "data:")):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()
        try:
            context.set_default_timeout(self.timeout_ms)
            context.route("**/*", gate)
            page = context.new_page()
            _record_errors(page, console)
            page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
            images = page.evaluate("""() => Array.from(document.images).map((i) => ({
                id: i.id, className: i.className, alt: i.alt, complete: i.complete,
                width: i.naturalWidth, height: i.naturalHeight}))""")
            page.screenshot(path=str(png_file), full_page=True)
        finally:
            context.close()
        return {"images": images, "blocked": blocked, "console_errors": console}


class Session:
    """A browser context with the harness page loaded; runs share its HTTP cache."""

    def __init__(self, browser: Browser, link: Optional[Link]):
        self.browser = browser
        self.link = link
        self.console: List[str] = []
        self.context = browser._browser.new_context()
        self.context.set_default_timeout(browser.timeout_ms)
        self.page = self.context.new_page()
        _record_errors(self.page, self.console)
        self.open()

    def open(self) -> None:
        """(Re)load the harness page; network emulation applies from here on, tf.min.js included
        only in the first load (it is cached after)."""
        self.page.goto(self.browser.server.url + "/", wait_until="load")
        self.page.wait_for_function("window.qshardReady === true")
        if self.link is not None:
            cdp = self.context.new_cdp_session(self.page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": self.link.latency_ms,
                "downloadThroughput": self.link.bits_per_second / 8, "uploadThroughput": self.link.bits_per_second / 8})

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.context.close()

    def run(self, model: Union[str, os.PathLike], inputs: Optional[Sequence[np.ndarray]] = None,
            backend: str = "cpu") -> Run:
        url = self.browser.serve(model)
        spec = {"url": url, "format": model_format(model), "backend": backend,
                "inputs": None if inputs is None else [_encode_input(x) for x in inputs]}
        self.browser.server.take_log()
        before = len(self.console)
        raw = self.page.evaluate("spec => window.qshardRun(spec)", spec)
        served = [entry for entry in self.browser.server.take_log() if entry[0].startswith("/m/")]
        run = Run(tfjs=raw.get("tfjs", ""), backend=raw.get("backend", ""), error=raw.get("error", ""),
                  load_ms=raw.get("loadMs", 0.0), first_prediction_ms=raw.get("firstPredictionMs", 0.0),
                  bytes_transferred=sum(n for _, _, n in served), requests=len(served),
                  console_errors=self.console[before:], webgl_float32=raw.get("float32"))
        for out in raw.get("outputs", []):
            data = np.frombuffer(base64.b64decode(out["b64"]), _NP.get(out["dtype"], np.dtype("<f4")))
            run.outputs.append(data.reshape(out["shape"]))
        return run


def chromium_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip() or "unknown"


# --------------------------------------------------------------------------------------------------
# `qshard bench --browser`: time to first prediction over an emulated link, per stored dtype.

VARIANTS = ("float32", "float16", "uint16", "uint8")


@dataclass
class BenchRow:
    variant: str
    model_bytes: int                 # bytes of model.json + shards
    cold_bytes: int                  # bytes served on a first visit (empty cache)
    warm_bytes: int                  # bytes served on a return visit (HTTP cache)
    cold_ms: float                   # median time from load start to the first prediction's data
    warm_ms: float
    cold_ms_all: List[float] = field(default_factory=list)
    warm_ms_all: List[float] = field(default_factory=list)
    speedup: Optional[float] = None  # float32's cold time / this one's
    max_abs_diff: Optional[float] = None  # of the outputs against float32's, same inputs
    relative_diff: Optional[float] = None  # worst output's max |difference| / its max |float32 value|


def _folder_bytes(model: Union[str, os.PathLike]) -> int:
    from . import manifest as mf
    file = mf.load(model)
    return file.path.stat().st_size + sum((file.folder / p).stat().st_size for g in file.groups for p in g.paths)


def bench_browser(model: Union[str, os.PathLike], work_dir: Union[str, os.PathLike], link: Optional[Link],
                  repeat: int = 1, backend: str = "cpu", variants: Sequence[str] = VARIANTS,
                  chromium: Optional[str] = None, tfjs: Optional[str] = None, progress=None) -> Dict[str, object]:
    """Write each quantized variant of `model` into work_dir (all float32 weights as that dtype),
    then, `repeat` times (in a rotated order each time), load each in a fresh browser context (cold
    cache) and again after a page reload in the same context (warm cache), over `link`; time from the
    start of the load to the first prediction's output, and count the bytes the server sent."""
    from . import manifest as mf
    from . import tfjs as tfjs_mod
    if repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {repeat}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"variants must be among {', '.join(VARIANTS)}, got {', '.join(variants) or 'none'}")
    fmt = model_format(model)
    folders = {}
    work = Path(work_dir)
    for v in variants:
        # float32 is written too (weights as they are, in 4 MiB shards), so that every variant has the
        # same shard layout and only the stored dtype differs.
        if progress:
            progress(f"writing the {v} variant")
        tfjs_mod.quantize_model(model, work / v, **({} if v == "float32" else {v: True}), force=True)
        folders[v] = work / v / mf.find_model_file(model).name
    cold: Dict[str, List[float]] = {v: [] for v in variants}
    warm: Dict[str, List[float]] = {v: [] for v in variants}
    served: Dict[str, tuple] = {}
    outputs: Dict[str, List[np.ndarray]] = {}
    with Browser(chromium, tfjs) as b:
        for i in range(repeat):
            # Each repeat starts one variant later, so that no variant always runs right after the
            # same one (a run just after the float32 one measured up to 2 s slower).
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                if progress:
                    progress(f"run {i + 1}/{repeat}: {v}")
                with b.session(link) as s:
                    first = s.run(folders[v], backend=backend)
                    s.open()
                    again = s.run(folders[v], backend=backend)
                for r in (first, again):
                    if r.error:
                        raise BrowserError(f"{folders[v]}: the {v} model failed in Chromium: {r.error}")
                cold[v].append(first.first_prediction_ms)
                warm[v].append(again.first_prediction_ms)
                served[v] = (first.bytes_transferred, again.bytes_transferred)
                outputs[v] = first.outputs
                ran = (first.tfjs, first.backend)
    rows = []
    for v in variants:
        row = BenchRow(v, _folder_bytes(folders[v]), served[v][0], served[v][1],
                       float(np.median(cold[v])), float(np.median(warm[v])), cold[v], warm[v])
        if "float32" in variants:
            row.speedup = float(np.median(cold["float32"])) / row.cold_ms if row.cold_ms > 0 else None
            diffs, relative = [], []
            for a, b in zip(outputs[v], outputs["float32"]):
                if not b.size:
                    continue
                d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                diffs.append(d)
                scale = float(np.max(np.abs(b)))
                relative.append(d / scale if scale > 0 else (0.0 if d == 0 else math.inf))
            row.max_abs_diff = max(diffs) if diffs else None
            row.relative_diff = max(relative) if relative else None
        rows.append(row)
    return {"model": str(model), "format": fmt, "link": None if link is None else
            {"bits_per_second": link.bits_per_second, "latency_ms": link.latency_ms, "text": str(link)},
            "repeat": repeat, "tfjs": ran[0], "backend": ran[1], "chromium": chromium_version(find_chromium(chromium)),
            "rows": [row.__dict__ for row in rows]}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_bench(result: Dict[str, object]) -> str:
    link = result["link"]["text"] if result["link"] else "no throttling"
    lines = [f"{result['model']} ({result['format']}) in {result['chromium']}, tfjs {result['tfjs']} "
             f"({result['backend']} backend)",
             f"link: {link}; time from the start of the model load to the first prediction's output, "
             f"median of {result['repeat']} run(s); cold = empty HTTP cache, warm = return visit; "
             f"output change = max |y - y_float32| / max |y_float32| on a fixed input, worst output",
             "",
             f"{'variant':<8} {'model':>10} {'sent cold':>10} {'sent warm':>10} {'cold':>9} {'warm':>9} "
             f"{'vs float32':>10} {'output change':>14}"]
    for r in result["rows"]:
        speed = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
        diff = f"{r['relative_diff']:.2e}" if r["relative_diff"] is not None else "-"
        lines.append(f"{r['variant']:<8} {_mb(r['model_bytes']):>10} {_mb(r['cold_bytes']):>10} "
                     f"{_mb(r['warm_bytes']):>10} {r['cold_ms'] / 1000:>8.2f}s {r['warm_ms'] / 1000:>8.2f}s "
                     f"{speed:>10} {diff:>14}")
    by = {r["variant"]: r for r in result["rows"]}
    if "uint8" in by and "float32" in by and by["uint8"]["speedup"]:
        lines += ["", f"uint8 reaches its first prediction {by['uint8']['speedup']:.2f}x faster than float32 "
                      f"on this link (cold cache)."]
    return "\n".join(lines)
