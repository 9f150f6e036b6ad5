"""qshard.layers: cross-layer equalization on a layers model's weights and the mixed-precision search,
every model run in stock tfjs (Node); the failure reproduced by the fixture in conftest.py."""
import json

import numpy as np
import pytest

from qshard.accuracy import fidelity
from qshard.accuracy.web_data import Samples
from qshard.errors import ModelInputError
from qshard.layers.equalize import find_pairs, read_layers
from qshard.layers.mixed import search_layers_model, write_equalized
from qshard.tfjs import WebModel, quantize_model, read_weights

BUDGET = 0.999


def channel_spread(kernel):
    """Largest over smallest output-channel range."""
    r = np.abs(kernel.reshape(-1, kernel.shape[-1])).max(axis=0)
    return r.max() / r.min()


def cosine(runner, reference, folder, x):
    ref, got = runner.run(reference, {"image": x}).outputs, runner.run(folder, {"image": x}).outputs
    return fidelity.compare(ref, got).worst_cosine, got


@pytest.mark.slow
def test_equalization_keeps_the_function_and_narrows_the_channels(wide_layers, tfjs_runner, tmp_path):
    src, _, x = wide_layers
    pairs = write_equalized(src, tmp_path / "eq")
    assert pairs == ["c1 -> dw", "dw -> c2", "c2 -> fc"]  # through batch norm + ReLU, pooling, Flatten
    before, after = read_weights(src), read_weights(tmp_path / "eq")
    assert channel_spread(before["c1/kernel"]) > 100 and channel_spread(after["c1/kernel"]) < 20
    assert channel_spread(before["c2/kernel"]) > 100 and channel_spread(after["c2/kernel"]) < 20
    assert not np.allclose(before["bn1/beta"], after["bn1/beta"])  # the batch norm took the factor
    np.testing.assert_array_equal(before["bn1/moving_variance"], after["bn1/moving_variance"])
    ref, got = tfjs_runner.run(src, {"image": x}).outputs, tfjs_runner.run(tmp_path / "eq", {"image": x}).outputs
    scale = np.abs(ref["fc"]).max()
    assert np.abs(got["fc"] - ref["fc"]).max() <= 1e-4 * scale
    # per-tensor uint8 of the equalized kernels: the narrowest channel keeps far more of itself. (The
    # whole model's uint8 cosine is no measure here: the batch norm's own statistics collapse it with
    # or without equalization, and which of two collapsed cosines is lower depends on the draw.)
    for name in ("c1/kernel", "c2/kernel"):
        assert worst_channel_error(after[name]) < worst_channel_error(before[name]) / 4, (name, worst_channel_error(after[name]), worst_channel_error(before[name]))


def worst_channel_error(kernel: np.ndarray) -> float:
    """The largest, over output channels (last axis), of a channel's uint8 RMS error over its own RMS."""
    from qshard.accuracy.weight_error import roundtrip
    k = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    err = roundtrip(kernel, "uint8").reshape(k.shape) - k
    return float(np.max(np.sqrt((err ** 2).mean(0)) / np.sqrt((k ** 2).mean(0))))


@pytest.mark.slow
@pytest.mark.parametrize("equalize", [False, True])
def test_search_meets_the_budget_all_uint8_misses(wide_layers, tfjs_runner, tmp_path, equalize):
    src, _, x = wide_layers
    quantize_model(src, tmp_path / "u8", uint8=True)
    assert cosine(tfjs_runner, src, tmp_path / "u8", x)[0] < BUDGET
    samples = Samples({"image": x}, None, "test")
    result = search_layers_model(src, tmp_path / "out", samples, min_cosine=BUDGET, runner=tfjs_runner,
                                 equalize=equalize)
    assert result.met and result.cosine >= BUDGET
    assert bool(result.equalized) == equalize
    doc = json.loads((tmp_path / "out" / "model.json").read_text())
    assert doc["format"] == "layers-model" and doc["modelTopology"] == WebModel(src).file.document["modelTopology"]
    stored = {w["name"]: w.get("quantization", {}).get("dtype", "float32")
              for g in doc["weightsManifest"] for w in g["weights"]}
    assert stored == result.choice  # every weight as chosen (all have > 1 element)
    assert "uint8" in stored.values() and set(stored.values()) - {"uint8"}  # mixed, not all one dtype
    float_bytes = sum(s.size * 4 for s in WebModel(src).specs)
    assert result.report.bytes_out == result.bytes < float_bytes / 2
    worst, _ = cosine(tfjs_runner, src, tmp_path / "out", x)  # stock tfjs loads it and the budget holds
    assert worst >= BUDGET and abs(worst - result.cosine) < 1e-6


def test_a_graph_model_or_a_bad_topology_is_refused(tmp_path, wide_layers):
    src, _, x = wide_layers
    doc = json.loads((src / "model.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    doc["modelTopology"] = {"class_name": "Model", "config": {"layers": "none"}}
    (bad / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelInputError, match="no list of layers"):
        write_equalized(bad, tmp_path / "eq")
    doc["format"] = "graph-model"
    (bad / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelInputError, match="not a tfjs layers model"):
        search_layers_model(bad, tmp_path / "out", Samples({"image": x}, None, "test"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "eq").exists()


def layer(cls, name, inputs, **config):
    return {"class_name": cls, "config": dict(name=name, **config), "name": name,
            "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]] if inputs else []}


def functional(*layers, outputs=("out",)):
    return {"modelTopology": {"class_name": "Model", "config": {
        "layers": list(layers), "input_layers": [["in", 0, 0]], "output_layers": [[o, 0, 0] for o in outputs]}}}


def pairs_of(document):
    return [(p.producer.name, p.reader.name) for p in find_pairs(*read_layers(document, "model.json"))]


def test_pairs_stop_where_a_positive_factor_does_not_commute():
    base = [layer("InputLayer", "in", []), layer("Conv2D", "a", ["in"], activation="relu")]
    assert pairs_of(functional(*base, layer("Conv2D", "out", ["a"]))) == [("a", "out")]
    wrapped = functional(*base, layer("Conv2D", "out", ["a"]))["modelTopology"]  # as tensorflowjs writes .h5 models
    assert pairs_of({"modelTopology": {"keras_version": "2.2.4", "model_config": wrapped}}) == [("a", "out")]
    for stop in (layer("ReLU", "s", ["a"], max_value=6.0), layer("Activation", "s", ["a"], activation="sigmoid"),
                 layer("BatchNormalization", "s", ["a"], axis=1), layer("Reshape", "s", ["a"]),
                 layer("UpSampling2D", "s", ["a"], interpolation="bilinear")):
        assert pairs_of(functional(*base, stop, layer("Conv2D", "out", ["s"]))) == []
    relu6 = [layer("InputLayer", "in", []), layer("Conv2D", "a", ["in"], activation="relu6")]
    assert pairs_of(functional(*relu6, layer("Conv2D", "out", ["a"]))) == []
    # two readers (a residual branch), a model output on the way, a layer called twice
    two = functional(*base, layer("Conv2D", "b", ["a"]), layer("Add", "out", ["a", "b"]))
    assert pairs_of(two) == []
    assert pairs_of(functional(*base, layer("Conv2D", "out", ["a"]), outputs=("a", "out"))) == []
    shared = layer("Conv2D", "out", ["a"])
    shared["inbound_nodes"].append([["in", 0, 0, {}]])
    assert pairs_of(functional(*base, shared)) == []
    # Flatten reaches a Dense only; Sequential models chain their layers
    flat = functional(*base, layer("Flatten", "f", ["a"]), layer("Conv2D", "out", ["f"]))
    assert pairs_of(flat) == []
    seq = {"modelTopology": {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"name": "d1", "activation": "relu", "batch_input_shape": [None, 4]}},
        {"class_name": "Dropout", "config": {"name": "drop"}},
        {"class_name": "Dense", "config": {"name": "d2", "activation": "softmax"}}]}}}
    assert pairs_of(seq) == [("d1", "d2")]


@pytest.fixture(scope="module")
def offset_mlp(tmp_path_factory, keras):
    """A Sequential Dense -> ReLU -> Dense model on inputs whose mean is far from 0, where a quantized
    kernel shifts the layer's output mean; (folder, x, float weights)."""
    from qshard.keras.convert import save_web_model
    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input((24,)), keras.layers.Dense(16, name="d1"),
                              keras.layers.ReLU(name="act"), keras.layers.Dense(4, name="d2")])
    k, b = model.get_layer("d1").get_weights()
    model.get_layer("d1").set_weights([k * np.linspace(0.01, 3, 16, dtype=np.float32), b])
    folder = tmp_path_factory.mktemp("offset") / "model"
    save_web_model(model, folder)
    x = (rng.standard_normal((32, 24)) + 3).astype(np.float32)
    return folder, x, read_weights(folder)


def test_bias_correction_takes_out_the_mean_shift(offset_mlp, tfjs_runner, tmp_path):
    from qshard.accuracy.weight_error import roundtrip
    from qshard.layers.bias import corrected, find_targets, input_means
    folder, x, w = offset_mlp
    doc = WebModel(folder).file.document
    assert doc["modelTopology"]["class_name"] == "Sequential"  # the probe rebuilds it as a functional model
    targets = find_targets(*read_layers(doc, "model.json"), w)
    assert [(t.layer.name, t.shifted) for t in targets] == [("d1", "d1/bias"), ("d2", "d2/bias")]
    (key,) = [i.key for i in tfjs_runner.load(folder).inputs]
    means = input_means(folder, targets, Samples({key: x}, None, "test"), tfjs_runner, tmp_path)
    hidden = np.maximum(x.astype(np.float64) @ w["d1/kernel"] + w["d1/bias"], 0)
    np.testing.assert_allclose(means["d1"], x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(means["d2"], hidden.mean(axis=0), rtol=1e-4, atol=1e-6)
    choice = {"d1/kernel": "uint8", "d2/kernel": "uint8"}
    fixed = corrected(w, targets, means, choice)
    for layer, mean in (("d1", x.mean(axis=0)), ("d2", hidden.mean(axis=0))):
        kq = roundtrip(w[f"{layer}/kernel"], "uint8").astype(np.float64)
        want = mean @ w[f"{layer}/kernel"] + w[f"{layer}/bias"]
        plain, fixed_mean = mean @ kq + w[f"{layer}/bias"], mean @ kq + fixed[f"{layer}/bias"]
        assert np.abs(fixed_mean - want).max() < 1e-3 * np.abs(plain - want).max()
    assert corrected(w, targets, means, {})["d1/bias"] is w["d1/bias"]  # float32 kernels: nothing to correct


def test_equalization_alone_holds_uint8_where_the_spread_is_in_the_filters(folded_layers, tfjs_runner):
    from qshard.accuracy.web_eval import evaluate_web_model
    src, data, _ = folded_layers
    table = evaluate_web_model(src, data, ["uint8", "equalized-uint8"], runner=tfjs_runner)
    cos = {r.name: r.fidelity.worst_cosine for r in table.rows}
    assert cos["uint8"] < 0.9 and cos["equalized-uint8"] > 0.999
    assert table.rows[0].weight_bytes == table.rows[1].weight_bytes
