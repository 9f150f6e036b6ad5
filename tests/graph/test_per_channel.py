"""Per-channel quantization of graph models (qshard.graph.per_channel_model), run in stock tfjs 4.22
under Node (qshard.accuracy.tfjs_runner) and checked against TensorFlow's kernels running the
rewritten graph on the weights as qshard decodes them (support/tf_reference.py). The made-up models
(support/pc_graphs.py) reproduce the failures seen on published models: batch norm folded into
filters (channels 1000x apart), mostly zero filters, depthwise convs, a matmul head and a
detection-style head."""
import json
from pathlib import Path

import numpy as np
import pytest

import qshard
from qshard import tfjs
from qshard.errors import OutputError, PatternError, QshardError
from qshard.example import write_example
from qshard.graph.channels import GraphView, Layer
from qshard.graph.per_channel import Choice, quantize_channels
from qshard.graph.per_channel_model import graph_outputs, quantize_graph_model
from qshard.graph.shapes import ShapeInference
from qshard.accuracy.tfjs_runner import TfjsRunner
from support.pc_graphs import MODELS, GraphBuilder, inputs_for
from support.tf_reference import tensorflow_or_skip, evaluate, run_graph

# Relative to the output's largest magnitude: float32 rounding differences between TensorFlow's and
# tfjs's kernels over a few layers.
TOLERANCE = 1e-5
VARIANTS = {
    "float32": None,
    "uint8": {"uint8": True},
    "per-channel": {"per_channel": True},
    "per-channel-weight-side": {"per_channel": True, "absorb": False},
    "per-channel+uint8": {"per_channel": True, "uint8": True},
    "per-channel-fold-all": {"per_channel": True, "max_growth": float("inf")},
    "per-channel-asymmetric": {"per_channel": True, "asymmetric": True},
    "per-channel-uint16": {"per_channel_uint16": True},
    "equalized-uint8": {"uint8": True, "equalize": True},
    "mixed": {"per_channel": ["*conv*", "dw*", "fc1/*", "backbone/*"], "uint16": True, "keep": ["*bias"],
              "allow_unmatched": True},
}


@pytest.fixture(scope="module")
def tf():
    return tensorflow_or_skip("THE PER-CHANNEL REFERENCE TESTS")


@pytest.fixture(scope="module")
def runner(node):
    with TfjsRunner("cpu") as r:
        yield r


def predict(runner, folder, inputs):
    """The model's outputs in tfjs for one sample (inputs with the model's full shapes), in order."""
    outputs = runner.run(folder, [inputs]).outputs
    runner.unload(folder)
    return [v[0] for v in outputs.values()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, runner):
    """model -> {"inputs", "src", "variants": {variant: (folder, report, tfjs outputs)}}."""
    root = tmp_path_factory.mktemp("per-channel")
    out = {}
    for name, build in MODELS.items():
        src = build(root / name, np.random.default_rng(7))
        inputs = inputs_for(src, np.random.default_rng(3))
        out[name] = {"inputs": inputs, "src": src, "variants": {}}
        for variant, how in VARIANTS.items():
            report = None if how is None else quantize_graph_model(src, root / f"{name}-{variant}", **how)
            folder = src if how is None else report.out_dir
            out[name]["variants"][variant] = (folder, report, predict(runner, folder, inputs))
    return out


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("model", list(MODELS))
def test_node_predicts_what_tensorflow_computes_on_the_rewritten_graph(runs, tf, model):
    case = runs[model]
    for variant, (folder, _, outputs) in case["variants"].items():
        want = run_graph(folder, case["inputs"])
        assert len(outputs) == len(want)
        for got, ref in zip(outputs, want):
            assert got.shape == ref.shape, f"{model} {variant}: shape {got.shape} vs {ref.shape}"
            if ref.dtype.kind == "i":
                np.testing.assert_array_equal(got, ref, err_msg=f"{model} {variant}")
                continue
            scale = np.abs(ref).max()
            assert scale > 1e-3, f"{model} {variant}: degenerate output"
            err = np.abs(got - ref).max()
            assert err <= TOLERANCE * scale, f"{model} {variant}: tfjs differs from TensorFlow by {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("model", list(MODELS))
def test_static_shapes_are_the_ones_tensorflow_computes(runs, tf, model):
    case = runs[model]
    folder = case["src"]
    doc = json.loads((folder / "model.json").read_text())
    view = GraphView(doc["modelTopology"], graph_outputs(doc))
    shapes = ShapeInference(view, tfjs.read_weights(folder)).shapes
    values = evaluate(folder, case["inputs"])
    assert set(shapes) == set(values)
    for name, value in values.items():
        assert shapes[name] in (None, value.shape), f"{model}: {name}: inferred {shapes[name]}, TensorFlow {value.shape}"
    unknown = {name for name, shape in shapes.items() if shape is None}
    assert unknown <= {"best"}, f"{model}: no shape inferred for {unknown}"  # ArgMax: not needed


def test_per_channel_keeps_the_folded_batch_norm_model_where_uint8_breaks(runs):
    variants = runs["folded_batch_norm"]["variants"]
    (base,) = variants["float32"][2]
    cos = {v: _cosine(variants[v][2][0], base) for v in variants}
    assert cos["uint8"] < 0.95, cos
    for v in ("per-channel", "per-channel-weight-side", "per-channel-asymmetric", "equalized-uint8"):
        assert cos[v] > 0.999, (v, cos)
        assert 1 - cos["uint8"] > 50 * (1 - cos[v]), (v, cos)
    assert cos["per-channel-uint16"] > 0.999999, cos


def test_scales_move_into_the_next_layer_where_it_loses_little(runs):
    """conv1 -> pad -> depthwise -> pw -> maxpool -> head. conv1's scales (500x apart) move into the
    depthwise filter, which undoes them; the depthwise's into pw. pw's would spread head's input
    channels 75x (3.6x its quantization error): Mul(codes, scale), 384 elements, fewer than its
    12x12x24 output. head's output is the graph's: Mul(output, scale), 6x6x8 elements, fewer than
    its 3x3x24x8 filter. The biases that took a scale are float16, not uint8."""
    folder, report, _ = runs["folded_batch_norm"]["variants"]["per-channel"]
    placement = {r.layer.weight: r.placement for r in report.per_channel}
    assert placement == {"conv1/weights": "absorbed", "dw/weights": "absorbed", "pw/weights": "weight",
                         "head/weights": "output"}
    assert report.ops_added == 2 and report.elements_recomputed == 16 * 24 + 6 * 6 * 8

    def ops(f):
        return sorted(n["op"] for n in json.loads((Path(f) / "model.json").read_text())["modelTopology"]["node"]
                      if n["op"] != "Const")
    assert ops(folder) == sorted(ops(runs["folded_batch_norm"]["src"]) + ["Mul", "Mul"])
    weight_side = runs["folded_batch_norm"]["variants"]["per-channel-weight-side"][1]
    assert weight_side.ops_added == 4
    folder, report, _ = runs["folded_batch_norm"]["variants"]["per-channel+uint8"]
    assert report.widened == [("conv1/bias", "uint8", "float16"), ("head/bias", "uint8", "float16")]
    specs = {s.name: s.stored_dtype for s in tfjs.WebModel(folder).specs}
    assert specs["conv1/bias"] == "float16" and specs["pw/bias"] == "uint8" and specs["head/bias"] == "float16"


def test_scales_travel_through_flatten_and_global_pooling(runs):
    """Folding wherever the graph allows: the backbone's 12 channel scales reach the class and box
    convs and, tiled 16 times through a flatten to 192, the pose matmul's input rows; the matmul
    head's conv scales pass global average pooling (Mean over H, W) into fc1."""
    report = runs["detection_head"]["variants"]["per-channel-fold-all"][1]
    backbone = [r for r in report.per_channel if r.layer.weight == "backbone/weights"][0]
    assert backbone.placement == "absorbed"
    assert set(backbone.readers) == {"cls/weights", "box/weights", "pose/weights"}
    report = runs["matmul_head"]["variants"]["per-channel-fold-all"][1]
    assert [(r.layer.weight, r.placement) for r in report.per_channel][:2] == [("conv/weights", "absorbed"),
                                                                               ("fc1/weights", "absorbed")]


def test_per_channel_codes_decode_exactly_and_scales_use_trailing_axes(runs):
    """Codes are stored with min = -z (the tensor's zero point) and scale 1: tfjs decodes integers in
    [-z, 255 - z], and the grid is used to one end or the other by some channel."""
    folder, report, _ = runs["depthwise_stack"]["variants"]["per-channel"]
    specs = {s.name: s for s in tfjs.WebModel(folder).specs}
    weights = tfjs.read_weights(folder)
    for r in report.per_channel:
        code_name = r.layer.weight if r.placement != "weight" else f"{r.layer.weight}/pc_codes"
        q, z, decoded = specs[code_name].quantization, r.codes.offset, weights[code_name]
        assert (q.dtype, q.min, q.scale) == ("uint8", -float(z), 1.0) and 0 < z < 255
        assert np.array_equal(decoded, np.rint(decoded))
        assert decoded.min() >= -z and decoded.max() <= 255 - z
        assert decoded.min() == -z or decoded.max() == 255 - z
    assert weights["dw1/weights/pc_scale"].shape == (4, 2)  # [in, multiplier]: a depthwise filter's channels
    assert weights["pw/weights/pc_scale"].shape == (6,)


@pytest.mark.parametrize("skew", [0.0, 0.5, 2.0])
def test_one_zero_point_per_filter_fits_each_channel(skew):
    """Channels 100x apart, centred or skewed: each channel's error relative to its own range is
    about what uint8 gives a lone tensor (1/255 of the range per step), far below per-tensor uint8's
    on the small channels; zeros stay exact."""
    rng = np.random.default_rng(3)
    w = (rng.normal(skew, 1.0, (3, 3, 8, 16)) * 10.0 ** rng.uniform(-2, 0, 16)).astype(np.float32)
    w[0, 0, 0, :] = 0.0
    layer = Layer("conv", "Conv2D", "conv/weights", 0)
    codes = quantize_channels(layer, w, Choice("uint8"))
    span = np.maximum(w.max(axis=(0, 1, 2)), 0) - np.minimum(w.min(axis=(0, 1, 2)), 0)
    assert np.all(codes.scale / span < 1.6 / 255)  # at worst ~160 of the 256 levels for a skewed channel
    tensor_codes, params = qshard.quantize(w, "uint8")
    per_tensor = qshard.dequantize(tensor_codes, params)
    worst = lambda v: (np.abs(v - w).max(axis=(0, 1, 2)) / span).max()  # noqa: E731
    assert worst(codes.values()) <= 0.8 / 255 and worst(per_tensor) > 10 / 255
    assert np.array_equal(codes.values()[0, 0, 0], np.zeros(16))


def test_asymmetric_codes_keep_exact_zeros(runs):
    """The 1x1 conv fed one-hot pixels outputs its own filter: every zero of the 69%-zero filter
    comes out of tfjs as an exact 0, and every code there equals its channel's zero point."""
    case = runs["mostly_zero"]
    src_w = tfjs.read_weights(case["src"])["sparse/weights"]
    zeros = src_w == 0
    assert 0.6 < zeros.mean() < 0.8
    folder, report, (out,) = case["variants"]["per-channel-asymmetric"]
    assert out.shape == (1, 1, 16, 12)
    assert np.all(out[0, 0][zeros[0, 0]] == 0) and np.all(out[0, 0][~zeros[0, 0]] != 0)
    weights = tfjs.read_weights(folder)
    codes, zp = weights["sparse/weights/pc_codes"], weights["sparse/weights/pc_zero_point"]
    assert np.array_equal((codes - zp)[zeros], np.zeros(zeros.sum()))
    assert report.per_channel[0].codes.zero_point is not None and not np.all(zp == zp.flat[0])
    rel = np.abs(out[0, 0] - src_w[0, 0]).max(axis=0) / np.abs(src_w[0, 0]).max(axis=0)
    assert rel.max() <= 1 / 255 + 1e-6  # half a step of a per-channel 255-step grid, at most


def test_equalization_alone_keeps_the_function(tmp_path, runner, tf):
    src = MODELS["folded_batch_norm"](tmp_path / "src", np.random.default_rng(2))
    report = quantize_graph_model(src, tmp_path / "eq", equalize=True)
    assert report.equalized == 3 and not report.per_channel and not report.per_tensor
    before, after = tfjs.read_weights(src), tfjs.read_weights(tmp_path / "eq")
    ratio = lambda w: np.abs(w).max(axis=(0, 1, 2)).max() / np.abs(w).max(axis=(0, 1, 2)).min()  # noqa: E731
    assert ratio(after["conv1/weights"]) < ratio(before["conv1/weights"]) / 10
    x = inputs_for(src, np.random.default_rng(0))
    (a,), (b,) = predict(runner, src, x), predict(runner, tmp_path / "eq", x)
    assert np.abs(a - b).max() <= TOLERANCE * np.abs(a).max()


def test_every_weight_keeps_its_shape_scalars_too(runs):
    for variant in ("uint8", "per-channel+uint8", "equalized-uint8"):
        folder = runs["detection_head"]["variants"][variant][0]
        shapes = {s.name: s.shape for s in tfjs.WebModel(folder).specs}
        assert shapes["pose/scale"] == () and shapes["best/axis"] == ()
        for spec in tfjs.WebModel(runs["detection_head"]["src"]).specs:  # (a Mul(codes, scale) filter's codes have its shape)
            assert shapes.get(spec.name, shapes.get(f"{spec.name}/pc_codes")) == spec.shape, (variant, spec.name)


def test_mixed_choice_quantizes_each_weight_as_asked(runs):
    folder, report, _ = runs["matmul_head"]["variants"]["mixed"]
    specs = {s.name: s for s in tfjs.WebModel(folder).specs}
    assert {r.layer.weight for r in report.per_channel} == {"conv/weights", "fc1/weights"}
    assert specs["fc2/weights"].stored_dtype == "uint16"
    assert specs["fc1/bias"].stored_dtype == "float32" and specs["conv/bias"].stored_dtype == "float32"


def test_weight_names_that_prefix_each_other_or_look_like_new_ones(tmp_path, runner, tf):
    """Filters named "f" and "f/pc_codes" (the name the rewrite would give f's codes): each keeps its
    own codes and scale, and tfjs computes what TensorFlow does on the rewritten graph."""
    rng = np.random.default_rng(4)
    b = GraphBuilder()
    x = b.input("x", [1, 6, 6, 3])
    conv = {"strides": {"list": {"i": ["1", "1", "1", "1"]}}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
            "padding": {"s": "U0FNRQ=="}, "data_format": {"s": "TkhXQw=="}}  # SAME, NHWC
    b.const("f", rng.normal(0, 1, (3, 3, 3, 8)) * np.logspace(-2, 0, 8))
    h = b.op("Conv2D", "c1", [x, "f"], **conv)
    b.const("f/pc_codes", rng.normal(0, 1, (1, 1, 8, 4)))
    h = b.op("Conv2D", "c2", [h, "f/pc_codes"], **conv)
    src = b.write(tmp_path / "src", [h])
    report = quantize_graph_model(src, tmp_path / "out", per_channel=True, absorb=False)
    assert {r.layer.weight for r in report.per_channel} == {"f", "f/pc_codes"}
    names = [s.name for s in tfjs.WebModel(tmp_path / "out").specs]
    assert len(names) == len(set(names)) == 4 and "f/pc_codes/pc_codes" in names and "f/pc_codes_1" in names
    inputs = inputs_for(src, rng)
    (got,), (want,) = predict(runner, tmp_path / "out", inputs), run_graph(tmp_path / "out", inputs)
    assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max()


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors, no output left behind.

def test_a_layers_model_is_refused(tmp_path):
    src = write_example(tmp_path / "layers")
    with pytest.raises(QshardError, match="per-channel quantization needs a graph model"):
        quantize_graph_model(src, tmp_path / "out", per_channel=True)
    assert not (tmp_path / "out").exists()


def test_conflicting_patterns_are_refused(tmp_path):
    src = MODELS["matmul_head"](tmp_path / "src", np.random.default_rng(0))
    with pytest.raises(PatternError, match="conv/weights"):
        quantize_graph_model(src, tmp_path / "out", per_channel=["conv/*"], uint16=["conv/weights"])
    with pytest.raises(PatternError, match="both per-channel uint8 and uint16"):
        quantize_graph_model(src, tmp_path / "out", per_channel=["conv/*"], per_channel_uint16=["*"])
    with pytest.raises(PatternError, match="only one of per-channel uint8 and uint16"):
        quantize_graph_model(src, tmp_path / "out", per_channel=True, per_channel_uint16=[])
    assert list(tmp_path.iterdir()) == [tmp_path / "src"]


def test_a_per_channel_flag_without_patterns_takes_the_filters_no_pattern_matched(tmp_path):
    src = MODELS["matmul_head"](tmp_path / "src", np.random.default_rng(0))
    report = quantize_graph_model(src, tmp_path / "out", per_channel=True, per_channel_uint16=["fc1/*"],
                                  uint16=["fc2/weights"], keep=["conv/weights"], uint8=True)
    assert {r.layer.weight: r.codes.dtype for r in report.per_channel} == {"fc1/weights": "uint16"}
    assert {n: d for n, d in report.per_tensor.items() if n != "fc1/bias"} == {"fc2/weights": "uint16", "conv/bias": "uint8"}
    (widened,) = report.widened  # fc1's scale went into its bias: a float, not the uint8 asked
    assert widened[:2] == ("fc1/bias", "uint8") and widened[2] in ("float16", "float32")
    report = quantize_graph_model(src, tmp_path / "out2", per_channel_uint16=True, per_channel=["conv/*"])
    assert {r.layer.weight: r.codes.dtype for r in report.per_channel} == {
        "conv/weights": "uint8", "fc1/weights": "uint16", "fc2/weights": "uint16"}


def test_weights_that_cannot_be_per_channel_are_listed_and_left_to_the_other_flags(tmp_path):
    src = MODELS["detection_head"](tmp_path / "src", np.random.default_rng(0))
    report = quantize_graph_model(src, tmp_path / "out", per_channel=["*"], float16=True)
    why = dict(report.not_per_channel)
    assert "cls/bias" in why and "BiasAdd" not in why["cls/bias"] and "_FusedConv2D" in why["cls/bias"]
    assert "cls/flat/shape" not in why  # int32: never a candidate, not worth a line
    assert report.per_tensor["cls/bias"] == "float16"
    assert {r.layer.weight for r in report.per_channel} == {"backbone/weights", "cls/weights", "box/weights",
                                                             "pose/weights"}


def test_an_existing_output_needs_force(tmp_path):
    src = MODELS["mostly_zero"](tmp_path / "src", np.random.default_rng(0))
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="already exists"):
        quantize_graph_model(src, tmp_path / "out", per_channel=True)
    quantize_graph_model(src, tmp_path / "out", per_channel=True, force=True)
    assert (tmp_path / "out" / "model.json").is_file()


def test_a_filter_with_nan_is_kept_and_listed(tmp_path):
    clean = MODELS["matmul_head"](tmp_path / "clean", np.random.default_rng(0))
    doc = json.loads((clean / "model.json").read_text())
    weights = tfjs.read_weights(clean)
    weights["fc1/weights"][0, 0] = np.nan
    src = tmp_path / "src"
    src.mkdir()
    doc["weightsManifest"] = tfjs.write_weights([list(weights.items())], src, write_manifest=False)
    (src / "model.json").write_text(json.dumps(doc))
    report = quantize_graph_model(src, tmp_path / "out", per_channel=True)
    assert dict(report.not_per_channel)["fc1/weights"] == "holds NaN or Inf"
    assert tfjs.WebModel(tmp_path / "out").spec("fc1/weights").stored_dtype == "float32"
