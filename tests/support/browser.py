"""What the browser tests need: Chromium, playwright and tf.min.js, or a loud skip."""
from conftest import require
from qshard.errors import BrowserError
from qshard.web import deps


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
