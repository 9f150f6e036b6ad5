"""A real published graph model (support/real_models.py: @vladmandic/human 3.3.6's blazeface, where
per-tensor uint8 collapses) quantized per channel by `qshard quantize`, loaded by stock tfjs 4.22 in
headless Chromium over HTTP on the cpu and webgl backends, on a real photo:
- scales on the weights (Mul(codes, scale)): the same outputs as the source graph holding qshard's
  dequantized weights as float32, run in the same page and backend (see TOLERANCE);
- scales placed by default (folded into readers, or a Mul on an output): TensorFlow's kernels running
  the rewritten graph on the weights as qshard decodes them.
Skips loudly without Chromium / playwright / tf.min.js (QSHARD_REQUIRE_BROWSER=1 makes that a failure)."""
import numpy as np
import pytest

from conftest import require
from qshard.web import browser, deps
from support.browser import require_harness
from support.real_models import (SIDES, as_model_json, dequantized_float_model, human_problem, per_channel_variants,
                                  photo_batch, prepare_models)
from support.tf_reference import evaluate, tensorflow_or_skip

# Same float32 weights, same kernels: the cpu backend gives the same bits (0). WebGL computes
# Mul(codes, scale) in a shader, where GLSL does not promise a correctly rounded float32 product: at
# most a last-bit difference per weight, ~1e-6 of the output's largest magnitude after blazeface's
# layers (SwiftShader, measured: 0). Against TensorFlow's kernels (another summation order), 1e-5 on
# cpu and 1e-4 on webgl, as for the made-up models (measured: 0 and 1.8e-6).
TOLERANCE = {"cpu": 0.0, "webgl": 1e-6}
TF_TOLERANCE = {"cpu": 1e-5, "webgl": 1e-4}


@pytest.fixture(scope="module")
def blazeface(tmp_path_factory):
    require(human_problem(), "QSHARD_REQUIRE_NODE", "THE REAL PUBLISHED MODEL TESTS")
    require_harness()
    assert deps.tfjs_version(deps.find_tfjs()) == deps.TFJS_VERSION
    root = tmp_path_factory.mktemp("real-browser")
    src, _ = prepare_models(root)["blazeface"]
    variants = per_channel_variants(src, root)
    variants["dequantized"] = dequantized_float_model(src, variants["weight-side"], root / "dequantized")
    return src, variants


def close(got, want, tolerance, what):
    assert len(got) == len(want) == 4, what
    for g, w in zip(got, want):
        assert g.shape == w.shape, what
        scale = np.abs(w).max()
        assert scale > 1 and np.abs(g - w).max() <= tolerance * scale, f"{what}: off by {np.abs(g - w).max():.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "webgl"])
def test_chromium_runs_per_channel_blazeface(blazeface, backend, tmp_path):
    tensorflow_or_skip("THE REAL MODEL BROWSER TESTS")
    src, variants = blazeface
    x = photo_batch(SIDES["blazeface"])[:1]
    with browser.Browser() as b, b.session() as session:
        runs = {name: session.run(folder, [x], backend=backend) for name, folder in variants.items()}
    for name, run in runs.items():
        assert not run.error and not run.console_errors and run.backend == backend, (name, run.error)
    close(runs["weight-side"].outputs, runs["dequantized"].outputs, TOLERANCE[backend], f"weight-side on {backend}")
    values = evaluate(as_model_json(variants["placed"], tmp_path / "placed"), {"input": x})
    want = [values[f"Identity{s}"] for s in ("_3", "", "_1", "_2")]  # the order tfjs returns them in
    close(runs["placed"].outputs, want, TF_TOLERANCE[backend], f"placed on {backend}")
