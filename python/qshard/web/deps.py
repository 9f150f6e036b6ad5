"""What the browser harness needs: Chromium, playwright and stock tfjs's tf.min.js, found or named."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from qshard.errors import BrowserError
from qshard.optional import require

TFJS_VERSION = "4.22.0"


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


def playwright_api():
    api = require("playwright.sync_api", "browser", "the browser harness (playwright drives Debian's chromium; "
                  "playwright's own browser download is not needed)", BrowserError)
    return api.sync_playwright


def chromium_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip() or "unknown"
