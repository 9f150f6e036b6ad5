"""Converted graph models in a real headless Chromium (qshard.browser's harness: served over HTTP,
loaded with tf.loadGraphModel(url) as a web page does) on tfjs's cpu and webgl backends: the
conv / depthwise / dense model that uses every fused activation, and MobileNetV3Small. Outputs
within 1e-4 of the output scale of TensorFlow's own prediction."""
import os

import numpy as np
import pytest

from qshard.web import browser
from support.browser import require_harness
from support.graph import assert_close
from support.graph_models import dense_conv, mobilenet_v3_small
from support.node import JS_DIR

# The harness takes tf.min.js from tests/js (npm ci --prefix tests/js), unless told otherwise.
os.environ.setdefault("QSHARD_TFJS_JS", str(JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"))


@pytest.fixture(scope="module")
def chromium():
    require_harness()
    with browser.Browser() as b:
        yield b


@pytest.fixture(scope="module")
def converted(keras, tf, tmp_path_factory):
    from qshard.graph import convert_to_graph_model
    require_harness()
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("browser")
    cases = {"dense_conv": dense_conv(keras, tf, rng, root),
             "mobilenet_v3_small": mobilenet_v3_small(keras, tf, rng, root)}
    for name, case in cases.items():
        case.folders["float32"] = root / name
        convert_to_graph_model(case.src, case.folders["float32"])
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "webgl"])
@pytest.mark.parametrize("name", ["dense_conv", "mobilenet_v3_small"])
def test_chromium_predicts_what_tensorflow_predicts(name, backend, chromium, converted):
    case = converted[name]
    run = chromium.run(case.folders["float32"], list(case.feeds.values()), backend=backend)
    assert not run.error and not run.console_errors, f"{name} on {backend}: {run.error} {run.console_errors}"
    assert run.backend == backend
    if backend == "webgl":
        assert run.webgl_float32, "WebGL without float32 render targets: outputs would be half precision"
    [want] = case.want.values()
    [got] = run.outputs
    assert_close(f"{name} in Chromium ({backend})", got, want)
