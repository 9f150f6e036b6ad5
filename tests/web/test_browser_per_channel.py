"""Per-channel graph models (every placement of the scale: folded into the next layer, a Mul on the
layer's output, a Mul on the weight; symmetric and asymmetric) loaded by stock tfjs 4.22 in headless
Chromium over HTTP, on the cpu and webgl backends: outputs equal TensorFlow's kernels running the
rewritten graph on the weights as qshard decodes them. Skips loudly without Chromium / playwright /
tf.min.js (QSHARD_REQUIRE_BROWSER=1 makes that a failure)."""
import os

import numpy as np
import pytest

from qshard.graph.per_channel_model import quantize_graph_model
from qshard.web import browser, deps
from support.browser import require_harness
from support.node import JS_DIR
from support.pc_graphs import MODELS, inputs_for
from support.tf_reference import tensorflow_or_skip, run_graph

# WebGL on SwiftShader sums in float32 in its own order: a little looser than the cpu backend.
TOLERANCE = {"cpu": 1e-5, "webgl": 1e-4}
os.environ.setdefault("QSHARD_TFJS_JS", str(JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"))
CASES = {"folded_batch_norm": {"per_channel": True, "uint8": True},
         "depthwise_stack": {"per_channel": True, "asymmetric": ["dw*"]},
         "matmul_head": {"per_channel_uint16": True, "equalize": True}}


@pytest.fixture(scope="module")
def tf():
    return tensorflow_or_skip("THE PER-CHANNEL BROWSER TESTS")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pc-browser")
    out = {}
    for name, how in CASES.items():
        src = MODELS[name](root / name, np.random.default_rng(5))
        out[name] = (quantize_graph_model(src, root / f"{name}-pc", **how), inputs_for(src, np.random.default_rng(1)))
    return out


@pytest.mark.parametrize("backend", ["cpu", "webgl"])
def test_chromium_runs_per_channel_models(models, tf, backend):
    require_harness()
    assert deps.tfjs_version(deps.find_tfjs()) == deps.TFJS_VERSION
    placements = set()
    with browser.Browser() as b, b.session() as session:
        for name, (report, inputs) in models.items():
            placements |= {r.placement for r in report.per_channel}
            run = session.run(report.out_dir, list(inputs.values()), backend=backend)
            assert not run.error and not run.console_errors, (name, run.error, run.console_errors)
            assert run.backend == backend
            (want,) = run_graph(report.out_dir, inputs)
            (got,) = run.outputs
            scale = np.abs(want).max()
            err = np.abs(got - want).max()
            assert err <= TOLERANCE[backend] * scale, f"{name} on {backend}: off by {err:.3g} (scale {scale:.3g})"
    assert placements == {"absorbed", "output", "weight"}
