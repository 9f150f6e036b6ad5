"""Per-channel graph models written by `qshard quantize`, loaded by stock tfjs 4.22 in headless
Chromium over HTTP on the cpu and webgl backends: a real published model (support/real_models.py:
@vladmandic/human 3.3.6's blazeface, where per-tensor uint8 collapses, on a real photo) and the
made-up models that reproduce each failure (support/pc_graphs.py: folded batch norm, a 69%-zero
filter with one zero point per channel, a detection-style head):
- scales on the weights (Mul(codes, scale)): the same outputs as the source graph holding qshard's
  dequantized weights as float32, run in the same page and backend (see TOLERANCE);
- scales placed by default (folded into readers, or a Mul on an output): TensorFlow's kernels running
  the rewritten graph on the weights as qshard decodes them.
Skips loudly without Chromium / playwright / tf.min.js (QSHARD_REQUIRE_BROWSER=1 makes that a failure)."""
import numpy as np
import pytest

from conftest import require, start_tfjs_runner
from qshard.web import browser, deps
from support.browser import require_harness
from support.pc_graphs import MODELS, inputs_for
from support.real_models import (SIDES, as_model_json, dequantized_float_model, human_problem, per_channel_variants,
                                  photo_batch, prepare_models)
from support.tf_reference import evaluate, tensorflow_or_skip

# Same float32 weights, same kernels: the cpu backend gives the same bits (0). WebGL computes
# Mul(codes, scale) in a shader, where GLSL does not promise a correctly rounded float32 product: at
# most a last-bit difference per weight, ~1e-6 of the output's largest magnitude after blazeface's
# layers (SwiftShader, measured: 0). Against TensorFlow's kernels (another summation order), 1e-5 on
# cpu and 1e-4 on webgl, as for the made-up models (measured on blazeface: 0 and 1.8e-6).
TOLERANCE = {"cpu": 0.0, "webgl": 1e-6}
TF_TOLERANCE = {"cpu": 1e-5, "webgl": 1e-4}
FLAGS = {"mostly_zero": ["--asymmetric"]}


@pytest.fixture(scope="module")
def models(tmp_path_factory, node):
    """name -> (inputs by input name, output names, {variant: folder})."""
    require_harness()
    assert deps.tfjs_version(deps.find_tfjs()) == deps.TFJS_VERSION
    require(human_problem(), "QSHARD_REQUIRE_NODE", "THE REAL PUBLISHED MODEL TESTS")
    root = tmp_path_factory.mktemp("pc-models")
    sources = {"blazeface": (prepare_models(root)["blazeface"][0], {"input": photo_batch(SIDES["blazeface"])[:1]})}
    for name in ("folded_batch_norm", "mostly_zero", "detection_head"):
        src = MODELS[name](root / name, np.random.default_rng(5))
        sources[name] = (src, inputs_for(src, np.random.default_rng(1)))
    out = {}
    runner = start_tfjs_runner("cpu")
    try:
        for name, (src, inputs) in sources.items():
            variants = per_channel_variants(src, root / f"{name}-pc", *FLAGS.get(name, []))
            variants["dequantized"] = dequantized_float_model(src, variants["weight-side"], root / f"{name}-deq")
            names = [k.split(":")[0] for k in runner.run(variants["placed"], inputs).outputs]
            out[name] = (inputs, names, variants)
    finally:
        runner.close()
    return out


def close(got, want, tolerance, what):
    assert len(got) == len(want) > 0, what
    for g, w in zip(got, want):
        assert g.shape == w.shape, what
        if w.dtype.kind == "i":
            np.testing.assert_array_equal(g, w, err_msg=what)
            continue
        scale = np.abs(w).max()
        assert scale > 1e-3 and np.abs(g - w).max() <= tolerance * scale, f"{what}: off by {np.abs(g - w).max():.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "webgl"])
def test_chromium_runs_per_channel_models(models, backend, tmp_path):
    tensorflow_or_skip("THE PER-CHANNEL BROWSER TESTS")
    with browser.Browser() as b, b.session() as session:
        for name, (inputs, names, variants) in models.items():
            runs = {v: session.run(folder, list(inputs.values()), backend=backend) for v, folder in variants.items()}
            for v, run in runs.items():
                assert not run.error and not run.console_errors and run.backend == backend, (name, v, run.error)
            close(runs["weight-side"].outputs, runs["dequantized"].outputs, TOLERANCE[backend],
                  f"{name} weight-side on {backend}")
            values = evaluate(as_model_json(variants["placed"], tmp_path / name), inputs)
            close(runs["placed"].outputs, [values[n] for n in names], TF_TOLERANCE[backend], f"{name} placed on {backend}")
