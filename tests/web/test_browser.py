"""Web models written by qshard, loaded by stock tfjs 4.22 in a real headless Chromium over HTTP.

The harness (qshard.web.browser) serves a model folder, a page and tf.min.js (from tests/js/node_modules,
installed by `npm ci --prefix tests/js`) on 127.0.0.1; the page calls tf.loadGraphModel(url) /
tf.loadLayersModel(url) as a web app does, so model.json and every shard are fetched by the browser.
Outputs come back to Python and must equal numpy's forward pass over the weights as qshard
dequantizes them (the same values tfjs decodes, checked bit for bit in test_node.py).

Needs Debian's chromium and pip's playwright (`.ci/run` installs both). Without them these tests skip
loudly; QSHARD_REQUIRE_BROWSER=1 (set in CI) turns that skip into a failure.
"""
import json
import re

import numpy as np
import pytest

from qshard.web import browser, deps
from qshard import cli
from qshard import example, tfjs
from qshard.formats.summary import verify
from support.browser import require_harness
from support.layers import conv_forward, conv_topology, conv_weights, write_layers_model

# Relative to the largest output magnitude: float32 rounding of a few hundred multiply-adds.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def chromium():
    require_harness()
    assert deps.tfjs_version(deps.find_tfjs()) == deps.TFJS_VERSION
    with browser.Browser() as b:
        yield b


# --------------------------------------------------------------------------------------------------
# The models: a graph model (the example MLP as a GraphDef) and a layers model (conv + dense), each
# as float32, uint8, uint16, float16 and a mix of all four.

MIXED_GRAPH = {"uint8": ["dense/kernel"], "uint16": ["dense_1/*"], "float16": ["dense_2/kernel"],
               "keep": ["dense_2/bias", "dense/bias"]}
MIXED_GRAPH_STORED = {"dense/kernel": "uint8", "dense/bias": "float32", "dense_1/kernel": "uint16",
                      "dense_1/bias": "uint16", "dense_2/kernel": "float16", "dense_2/bias": "float32"}
MIXED_LAYERS = {"uint8": ["conv2d/kernel"], "uint16": ["dense/kernel"], "float16": ["conv2d/bias"]}
MIXED_LAYERS_STORED = {"conv2d/kernel": "uint8", "dense/kernel": "uint16", "conv2d/bias": "float16",
                       "dense/bias": "float32"}
VARIANTS = {"float32": {}, "uint8": {"uint8": True}, "uint16": {"uint16": True}, "float16": {"float16": True}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (folder, forward(weights, x), input, stored dtype per weight or one for all)."""
    root = tmp_path_factory.mktemp("browser-models")
    graph = example.write_example(root / "graph-src", format="graph-model")
    layers = root / "layers-src"
    write_layers_model(layers, conv_topology(), conv_weights(3), shard_size=512)
    rng = np.random.default_rng(11)
    inputs = {"graph": rng.random((4, 64)).astype(np.float32),
              "layers": rng.standard_normal((3, 6, 6, 2)).astype(np.float32)}
    forwards = {"graph": example.forward, "layers": conv_forward}
    out = {}
    # Small shards, so that every variant spans several files (the conv model is 2 KB in float32).
    shard_sizes = {"graph": 30000, "layers": 200}
    for arch, src in (("graph", graph), ("layers", layers)):
        for variant, how in VARIANTS.items():
            folder = root / f"{arch}-{variant}"
            tfjs.quantize_model(src, folder, shard_size=shard_sizes[arch], **how)
            out[f"{arch}-{variant}"] = (folder, forwards[arch], inputs[arch], variant)
        mixed = MIXED_GRAPH if arch == "graph" else MIXED_LAYERS
        tfjs.quantize_model(src, root / f"{arch}-mixed", shard_size=shard_sizes[arch], **mixed)
        out[f"{arch}-mixed"] = (root / f"{arch}-mixed", forwards[arch], inputs[arch],
                                MIXED_GRAPH_STORED if arch == "graph" else MIXED_LAYERS_STORED)
    return out


def _served_files(folder):
    doc = json.loads((folder / "model.json").read_text())
    paths = [p for g in doc["weightsManifest"] for p in g["paths"]]
    return paths, (folder / "model.json").stat().st_size + sum((folder / p).stat().st_size for p in paths)


@pytest.fixture(scope="module", params=["cpu", "webgl"])
def runs(request, chromium, models):
    """Every model loaded and run in one page (fresh context) on one tfjs backend."""
    with chromium.session() as session:
        yield request.param, {name: session.run(folder, [x], backend=request.param)
                              for name, (folder, _, x, _) in models.items()}


CASES = [f"{arch}-{v}" for arch in ("graph", "layers") for v in list(VARIANTS) + ["mixed"]]


@pytest.mark.parametrize("name", CASES)
def test_chromium_predicts_what_numpy_computes(runs, models, name):
    backend, results = runs
    folder, forward, x, stored = models[name]
    run = results[name]
    assert not run.error, f"{name} on {backend}: the page failed: {run.error}"
    assert not run.console_errors, f"{name} on {backend}: console errors: {run.console_errors}"
    assert run.tfjs == deps.TFJS_VERSION
    assert run.backend == backend, f"asked for the {backend} backend, tfjs ran {run.backend}"
    if backend == "webgl":
        assert run.webgl_float32, "WebGL without float32 render targets: outputs would be half precision"
    # The stored dtypes are the ones this case is about.
    for spec in tfjs.WebModel(folder).specs:
        want = stored if isinstance(stored, str) else stored[spec.name]
        assert spec.stored_dtype == want, f"{name}: {spec.name} stored as {spec.stored_dtype}, expected {want}"
    # The browser fetched model.json and every shard over HTTP, nothing else from the model folder.
    paths, nbytes = _served_files(folder)
    assert len(paths) >= 2, f"{name}: the test models are meant to span several shards"
    assert run.requests == 1 + len(paths) and run.bytes_transferred == nbytes
    (got,) = run.outputs
    want = forward(tfjs.read_weights(folder), x)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = np.abs(want).max()
    assert scale > 0.05, f"{name}: degenerate test output"
    err = np.abs(got - want).max()
    assert err <= TOLERANCE * scale, (f"{name} on {backend}: Chromium's output differs from numpy over qshard's "
                                      f"dequantized weights by {err:.3g} (output scale {scale:.3g})")


def test_quantized_outputs_differ_from_float32_only_by_quantization(runs, models):
    """The variants really are different models (so the comparison above is not vacuous), and close."""
    backend, results = runs
    for arch in ("graph", "layers"):
        base = results[f"{arch}-float32"].outputs[0]
        for v in ("uint8", "uint16", "float16", "mixed"):
            diff = np.abs(results[f"{arch}-{v}"].outputs[0] - base).max() / np.abs(base).max()
            assert 0 < diff < 0.05, f"{arch}-{v} on {backend}: relative change {diff} from float32"


def test_a_corrupted_shard_changes_the_browser_output(chromium, tmp_path):
    """The comparison catches a wrong weight: flip bytes in a shard, and Chromium's output no longer
    matches the original weights (it matches what the corrupted file now holds)."""
    folder = example.write_example(tmp_path / "m", format="graph-model")
    shard = folder / json.loads((folder / "model.json").read_text())["weightsManifest"][0]["paths"][0]
    original = tfjs.read_weights(folder)
    data = bytearray(shard.read_bytes())
    data[:4 * 256] = np.full(256, 0.5, np.float32).tobytes()  # dense/kernel[0, :] = 0.5
    shard.write_bytes(bytes(data))
    x = np.random.default_rng(5).random((2, 64)).astype(np.float32)
    run = chromium.run(folder, [x])
    assert not run.error, run.error
    want = example.forward(original, x)
    assert np.abs(run.outputs[0] - want).max() > 100 * TOLERANCE * np.abs(want).max()
    np.testing.assert_allclose(run.outputs[0], example.forward(tfjs.read_weights(folder), x),
                               rtol=0, atol=TOLERANCE * np.abs(want).max())


def test_a_missing_shard_fails_in_the_browser_and_verify_names_the_same_file(chromium, tmp_path):
    """The browser's fetch of the shard fails with 404 (its console names the URL). tfjs 4.22 does not
    check the status of shard responses (weights_loader.js takes response.arrayBuffer() as it comes):
    it decodes the 404 page as weight bytes, and the load fails only because their count is wrong."""
    src = example.write_example(tmp_path / "src", format="graph-model")
    folder = tmp_path / "u8"
    tfjs.quantize_model(src, folder, uint8=True, shard_size=20000)
    paths, _ = _served_files(folder)
    assert len(paths) >= 3
    missing = paths[1]
    (folder / missing).unlink()
    run = chromium.run(folder, [np.zeros((1, 64), np.float32)])
    assert run.error, "loading a model with a missing shard succeeded"
    assert not run.outputs
    assert "should have" in run.error and "values but has" in run.error, run.error
    failed = [re.search(r"/m/model\d+/(\S+?)\]", e).group(1) for e in run.console_errors if "404" in e]
    assert failed == [missing], f"the browser's errors do not name the missing shard {missing}: {run.console_errors}"
    report = verify(folder)
    assert not report.ok
    named = [p for p in report.problems if "missing" in p]
    assert len(named) == 1 and named[0].split(":")[0].endswith("/" + missing), report.problems


def test_the_page_reports_an_unknown_backend(chromium, tmp_path):
    folder = example.write_example(tmp_path / "m", format="graph-model")
    run = chromium.run(folder, [np.zeros((1, 64), np.float32)], backend="no-such-backend")
    assert "no-such-backend" in run.error and not run.outputs


def test_the_server_refuses_paths_outside_the_model_folder(chromium, tmp_path):
    import urllib.error
    import urllib.request
    folder = example.write_example(tmp_path / "m", format="graph-model")
    (tmp_path / "secret.txt").write_text("not for the browser")
    url = chromium.serve(folder)
    base = url.rsplit("/", 1)[0]
    with urllib.request.urlopen(url) as response:
        assert json.loads(response.read())["format"] == "graph-model"
    for bad in ("/../secret.txt", "/%2e%2e/secret.txt", "/../../m/model.json"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + bad)
        info.value.close()  # the error holds the response's socket
        assert info.value.code == 404


# --------------------------------------------------------------------------------------------------
# qshard report, opened in the browser: charts rendered, nothing fetched, no console error.

@pytest.mark.parametrize("with_original", [False, True])
def test_report_renders_in_chromium(chromium, tmp_path, with_original):
    from matplotlib import image
    from support.models import OUTLIER, outlier_model
    outlier_model(tmp_path / "src")
    model, against = tmp_path / "src", None
    if with_original:
        tfjs.quantize_model(tmp_path / "src", tmp_path / "u8", uint8=True)
        model, against = tmp_path / "u8", tmp_path / "src"
    html_file = tmp_path / "report.html"
    assert cli.main(["report", str(model), "-o", str(html_file), "--worst", "2"]
                    + (["--against", str(against)] if against else [])) == 0
    shown = chromium.render(html_file, tmp_path / "report.png")
    assert not shown["console_errors"], shown["console_errors"]
    assert not shown["blocked"], f"the report tried to fetch {shown['blocked']}"
    images = shown["images"]
    assert [i["id"] or i["className"] for i in images] == ["size-chart", "error-chart", "histogram", "histogram"]
    for i in images:
        assert i["complete"] and i["width"] >= 600 and i["height"] >= 250, f"chart not rendered: {i}"
    assert images[2]["alt"] == OUTLIER  # the worst weight's histogram comes first
    # The screenshot is a real page: mostly white, with a good share of drawn pixels and many colours.
    pixels = image.imread(tmp_path / "report.png")[..., :3]
    assert pixels.shape[0] > 1500 and pixels.shape[1] >= 1000
    inked = (pixels.min(axis=2) < 0.9).mean()
    assert 0.03 < inked < 0.8, f"{inked:.1%} of the screenshot is drawn"
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
