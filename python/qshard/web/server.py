"""The HTTP side of the harness: the page, tf.min.js and model folders on 127.0.0.1 and a free port."""
from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Union
from urllib.parse import unquote, urlsplit

PAGE = resources.files("qshard.web").joinpath("harness.html").read_text(encoding="utf-8")


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
