"""What the browser tests need: Chromium, playwright and tf.min.js, or a loud skip."""
import os

from conftest import require
from qshard.errors import BrowserError
from qshard.web import deps
from support.node import JS_DIR

# The harness takes tf.min.js from tests/js (npm ci --prefix tests/js), unless told otherwise; set
# here, where every browser test module gets it, so that each also runs alone.
os.environ.setdefault("QSHARD_TFJS_JS", str(JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"))


def harness_problem():
    try:
        deps.find_chromium()
        deps.find_tfjs()
        deps.playwright_api()
    except BrowserError as error:
        return str(error)
    return ""


def require_harness():
    """Skip loudly when Chromium, playwright or tf.min.js is missing; fail under QSHARD_REQUIRE_BROWSER."""
    require(harness_problem(), "QSHARD_REQUIRE_BROWSER", "THE BROWSER TESTS")
