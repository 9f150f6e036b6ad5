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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from qshard import dtypes
from qshard.errors import BrowserError
from qshard.web.deps import find_chromium, find_tfjs, playwright_api
from qshard.web.server import ModelServer

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-gpu",
                 "--enable-unsafe-swiftshader"]  # WebGL on SwiftShader (software), as on a GPU-less client


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
    data = np.ascontiguousarray(a.astype(dtypes.STORED_NUMPY[kind]))
    return {"shape": list(a.shape), "dtype": kind, "b64": base64.b64encode(data.tobytes()).decode()}


def model_format(folder: Union[str, os.PathLike]) -> str:
    from qshard.formats import manifest as mf
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
        sync_playwright = playwright_api()
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
        from qshard.formats import manifest as mf
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
            data = np.frombuffer(base64.b64decode(out["b64"]), dtypes.STORED_NUMPY.get(out["dtype"], np.dtype("<f4")))
            run.outputs.append(data.reshape(out["shape"]))
        return run


