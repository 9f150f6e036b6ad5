"""Bias correction and rounding from sample statistics (qshard.graph.bias_correction, rounding and
per_channel.rewrite_layers): each layer's mean input (and Gram matrix) measured in stock tfjs 4.22
(Node) by a probe copy of the model; per-channel layers' biases corrected for the mean output shift
their quantization causes, also after equalization and with scales moved into the next layer; codes
rounded with error feedback through the Gram matrix."""
import numpy as np
import pytest

from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples
from qshard.errors import QshardError
from qshard.graph.bias_correction import input_means, input_statistics
from qshard.graph.channels import Layer
from qshard.graph.mixed import search_graph_model
from qshard.graph.per_channel import QMAX, Choice, quantize_channels
from qshard.graph.rounding import GramRounding, gptq_codes
from qshard.graph.per_channel_model import quantize_graph_model
from support.pc_graphs import GraphBuilder


@pytest.fixture(scope="module")
def runner(node):
    with TfjsRunner("cpu") as r:
        yield r


def linear_chain(folder, rng, fused):
    """Images (all positive, as photos are) through a 3x3 conv whose channels span 3 decades (batch
    norm folded in) and a 1x1 conv, no activation between: the mean output shift of the first
    layer's quantization reaches the output unchanged, so bias correction can remove it exactly.
    The first conv's bias is fused into it, or added by a separate AddV2 (as in some published models)."""
    g = 10.0 ** rng.uniform(-3, 0, 12)
    b = GraphBuilder()
    x = b.input("image", [1, 10, 10, 3])
    w1, b1 = rng.normal(0.05, 0.4, (3, 3, 3, 12)) * g, rng.normal(0, 0.05, 12) * g
    if fused:
        h = b.conv("conv1", x, w1, bias=b1, padding="VALID")
    else:
        h = b.op("AddV2", "conv1/add", [b.conv("conv1", x, w1, padding="VALID"), b.const("conv1/bias", b1)])
    h = b.conv("conv2", h, rng.normal(0.02, 0.3, (1, 1, 12, 6)), bias=rng.normal(0, 0.1, 6))
    return b.write(folder, [h]), x


@pytest.fixture(scope="module", params=["fused", "unfused"])
def chain(tmp_path_factory, runner, request):
    root = tmp_path_factory.mktemp("bias")
    src, name = linear_chain(root / "src", np.random.default_rng(5), request.param == "fused")
    rng = np.random.default_rng(8)
    samples = Samples({name: rng.uniform(0.2, 1.0, (4, 1, 10, 10, 3)).astype(np.float32)}, None, "4 images")
    means = input_means(src, samples, runner, root)
    reference = runner.run(src, samples.inputs).outputs
    runner.unload(src)
    return root, src, samples, means, next(iter(reference.values()))


def _mean_error(runner, folder, samples, reference):
    got = next(iter(runner.run(folder, samples.inputs).outputs.values()))
    runner.unload(folder)
    axes = tuple(range(got.ndim - 1))
    return np.abs(got.mean(axis=axes) - reference.mean(axis=axes)).max() / np.abs(reference).max()


def test_the_probe_measures_each_layers_mean_input(chain):
    root, src, samples, means, _ = chain
    assert sorted(means) == ["conv1/weights", "conv2/weights"]
    np.testing.assert_allclose(means["conv1/weights"], samples.inputs["image"].mean(axis=(0, 1, 2, 3)), rtol=1e-5)
    assert means["conv2/weights"].shape == (12,)
    assert not (root / "qshard_probe").exists()  # the probe copy is removed


@pytest.mark.parametrize("how", [{}, {"equalize": True}, {"max_growth": float("inf")}])
def test_corrected_biases_remove_the_mean_output_shift(chain, runner, how):
    root, src, samples, means, reference = chain
    tag = "-".join(how) or "plain"
    plain = quantize_graph_model(src, root / f"plain-{tag}", per_channel=True, **how)
    fixed = quantize_graph_model(src, root / f"fixed-{tag}", per_channel=True, input_means=means, **how)
    assert [r.placement for r in fixed.per_channel] == [r.placement for r in plain.per_channel]
    before = _mean_error(runner, plain.out_dir, samples, reference)
    after = _mean_error(runner, fixed.out_dir, samples, reference)
    assert before > 1e-4  # the shift is there without correction
    # Not exactly 0: the VALID conv sees edge pixels less often than the mean input counts them.
    assert after < before / 50


def test_output_shift_is_the_weight_error_times_the_mean_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5)
    conv = Layer("c", "Conv2D", "w", 0)
    d = rng.normal(size=(3, 3, 5, 4))
    np.testing.assert_allclose(conv.output_shift(d, x), [np.sum(d[..., o] * x[None, None, :]) for o in range(4)])
    dw = Layer("d", "DepthwiseConv2dNative", "w", 0)
    d = rng.normal(size=(3, 3, 5, 2))
    np.testing.assert_allclose(dw.output_shift(d, x), (d.sum(axis=(0, 1)) * x[:, None]).reshape(-1))
    mm = Layer("m", "MatMul", "w", 0, transpose_b=True)
    d = rng.normal(size=(4, 5))
    np.testing.assert_allclose(mm.output_shift(d, x), d @ x)


def pointwise(folder, rng):
    """A 1x1 conv and a matmul head reading inputs whose channels are strongly correlated (as
    neighbouring feature maps are): where rounding errors cancel across channels matters."""
    b = GraphBuilder()
    x = b.input("features", [1, 6, 6, 16])
    h = b.conv("pw", x, rng.normal(0, 0.3, (1, 1, 16, 12)) * 10.0 ** rng.uniform(-2, 0, 12),
               bias=rng.normal(0, 0.1, 12))
    h = b.reshape("flat", h, [-1, 6 * 6 * 12])
    return b.write(folder, [b.matmul("fc", h, rng.normal(0, 0.2, (6 * 6 * 12, 5)), bias=rng.normal(0, 0.1, 5))])


def correlated(rng, count):
    mix = rng.normal(size=(3, 16))  # 16 channels driven by 3 sources, plus a little noise
    z = rng.normal(size=(count, 1, 6, 6, 3)) @ mix + 0.05 * rng.normal(size=(count, 1, 6, 6, 16)) + 0.5
    return z.astype(np.float32)[: count // 2], z.astype(np.float32)[count // 2:]


def test_gram_rounding_lowers_the_output_error_in_tfjs(tmp_path, runner):
    src = pointwise(tmp_path / "src", np.random.default_rng(2))
    rng = np.random.default_rng(4)
    fit, held_out = correlated(rng, 12)
    fit, held_out = Samples({"features": fit}, None, "6 inputs"), {"features": held_out}
    means, grams = input_statistics(src, fit, runner, tmp_path, gram=True)
    # 6 samples give fc's 432 inputs 6 rows: too few to trust; pw has 6 x 36 rows for 16 channels
    assert sorted(grams) == ["pw/weights"] and grams["pw/weights"].shape == (16, 16)
    x = fit.inputs["features"].reshape(-1, 16).astype(np.float64)
    np.testing.assert_allclose(grams["pw/weights"], x.T @ x, rtol=1e-4)
    rounding = GramRounding(grams)
    nearest = quantize_graph_model(src, tmp_path / "nearest", per_channel=True)
    chosen = quantize_graph_model(src, tmp_path / "gram", per_channel=True, rounding=rounding)
    for a, b in zip(nearest.per_channel, chosen.per_channel):  # same grid and form, other codes for pw only
        np.testing.assert_array_equal(a.codes.scale, b.codes.scale)
        assert a.placement == b.placement
        assert (a.codes.codes != b.codes.codes).any() == (a.layer.weight == "pw/weights")
    ref = next(iter(runner.run(src, held_out).outputs.values()))

    def error(folder):
        got = next(iter(runner.run(folder, held_out).outputs.values()))
        runner.unload(folder)
        return float(np.mean((got - ref) ** 2))
    assert error(tmp_path / "gram") < 0.7 * error(tmp_path / "nearest")  # on inputs the statistics never saw


def test_gptq_codes_stay_on_the_grid_and_cut_the_weighted_error():
    rng = np.random.default_rng(0)
    layer = Layer("fc", "MatMul", "fc/w", 0)
    w = rng.normal(size=(24, 10)).astype(np.float32)
    x = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 24)) + 0.1 * rng.normal(size=(200, 24))
    h = x.T @ x
    for choice in (Choice("uint8"), Choice("uint8", True), Choice("uint16")):
        near = quantize_channels(layer, w, choice)
        got = gptq_codes(layer, w, near, h)
        assert got.codes.dtype == near.codes.dtype and got.codes.shape == near.codes.shape
        assert got.codes.max() <= QMAX[choice.dtype]

        def loss(c):
            d = c.values().astype(np.float64) - w
            return float(np.sum((x @ d) ** 2))
        assert loss(got) < 0.5 * loss(near)


def test_the_search_keeps_bias_correction_where_it_does_better(chain, runner, tmp_path):
    root, src, samples, means, reference = chain
    found = search_graph_model(src, tmp_path / "out", samples, min_cosine=0.5, runner=runner)
    assert found.met and found.bias_corrected
    off = search_graph_model(src, tmp_path / "off", samples, min_cosine=0.5, runner=runner, bias_correct=False)
    assert not off.bias_corrected and off.cosine < found.cosine
    assert found.evaluations == off.evaluations + 2  # the statistics probe, the smallest choice uncorrected


def test_an_unknown_rounding_is_refused_before_searching(tmp_path):
    with pytest.raises(QshardError, match="rounding must be one of nearest, gram"):
        search_graph_model(tmp_path / "src", tmp_path / "out", None, rounding="up")
