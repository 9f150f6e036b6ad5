"""qshard.accuracy.web_eval end to end in stock tfjs: on a made-up model whose first layer has one
output channel 1000x wider than the rest (as batch norm folded into a conv makes them), per-tensor
uint8 measurably degrades, and every figure of the table equals an independent numpy computation
from the weights qshard writes. Bad sample files are clear errors naming the file and the array."""
import gzip
import json

import numpy as np
import pytest

from support.graphs import bias_add, matmul, op, placeholder, signature_entry, write_graph

from qshard.accuracy.graph_outputs import decoded_outputs
from qshard.accuracy.web_eval import evaluate_web_model, format_web_eval, web_eval_json
from qshard.errors import ModelInputError
from qshard.example import write_example
from qshard.tfjs import quantize_model, read_weights

RNG = np.random.default_rng(3)


def wide_weights():
    w1 = RNG.standard_normal((16, 32)).astype(np.float32) * 0.3
    w1[:, 0] *= 1000  # one channel 1000x wider: one uint8 grid for the tensor cannot hold the others
    w2 = RNG.standard_normal((32, 10)).astype(np.float32) * 0.3
    w2[0] /= 1000
    return [("w1", w1), ("b1", RNG.standard_normal(32).astype(np.float32) * 0.1),
            ("w2", w2), ("b2", RNG.standard_normal(10).astype(np.float32) * 0.1)]


def forward(w, x):
    h = np.maximum(x.astype(np.float64) @ w["w1"] + w["b1"], 0)
    return h @ w["w2"] + w["b2"]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    nodes = [placeholder("x", [-1, 16]), matmul("mm1", "x", "w1"), bias_add("ba1", "mm1", "b1"),
             op("relu", "Relu", ["ba1"], T={"type": "DT_FLOAT"}), matmul("mm2", "relu", "w2"),
             bias_add("logits", "mm2", "b2")]
    model = write_graph(root / "model", nodes, wide_weights(),
                        {"inputs": {"x": signature_entry("x", [-1, 16])},
                         "outputs": {"logits": signature_entry("logits", [-1, 10])}})
    x = RNG.random((40, 16)).astype(np.float32)
    y = forward(read_weights(model), x).argmax(axis=1)
    y[:5] = (y[:5] + 1) % 10  # a few wrong labels, so accuracy is not 100
    np.savez(root / "samples.npz", x=x, y=y)
    return model, root / "samples.npz", x, y


def independent(model, x, dtype, tmp_path):
    """Cosines, relative error, top-1 and sizes computed from qshard's written weights in numpy."""
    folder = tmp_path / dtype
    quantize_model(model, folder, **({dtype: True} if dtype != "float32" else {"keep": True}))
    y0, y = forward(read_weights(model), x), forward(read_weights(folder), x)
    cos = np.sum(y0 * y, axis=1) / (np.linalg.norm(y0, axis=1) * np.linalg.norm(y, axis=1))
    shards = sorted(folder.glob("*.bin"))
    gz = sum(len(gzip.compress(p.read_bytes(), compresslevel=6, mtime=0)) for p in shards)
    return {"worst_cosine": cos.min(), "max_rel_error": np.abs(y - y0).max() / np.abs(y0).max(),
            "top1": np.mean(y.argmax(1) == y0.argmax(1)), "bytes": sum(p.stat().st_size for p in shards),
            "gzip": gz, "outputs": y}


def test_uint8_degrades_and_figures_equal_numpy(tfjs_runner, wide, tmp_path):
    model, data, x, y = wide
    table = evaluate_web_model(model, data, runner=tfjs_runner, repeats=2)
    rows = {r.name: r for r in table.rows}
    assert list(rows) == ["float32", "float16", "uint16", "uint8"]
    assert table.format == "graph-model" and table.sample_count == 40 and not table.synthetic
    assert table.metric == "accuracy" and table.output == "logits"
    wants = {name: independent(model, x, name, tmp_path) for name in rows}
    for name, want in wants.items():
        got = rows[name]
        assert got.fidelity.worst_cosine == pytest.approx(want["worst_cosine"], abs=2e-6), name
        assert got.fidelity.top1_agreement == want["top1"], name
        assert got.weight_bytes == want["bytes"] and got.gzip_bytes == want["gzip"], name
        assert got.metric == pytest.approx(100 * np.mean(want["outputs"].argmax(1) == y)), name
        assert got.seconds is not None and got.seconds > 0
    assert rows["uint8"].fidelity.max_rel_error == pytest.approx(wants["uint8"]["max_rel_error"], rel=1e-4)
    assert rows["float32"].fidelity.worst_cosine == 1.0 and rows["float32"].metric == pytest.approx(87.5)
    assert rows["uint16"].fidelity.worst_cosine > 0.999
    assert rows["uint8"].fidelity.worst_cosine < 0.99  # the wide channel ruins the grid for the others
    text = format_web_eval(table)
    assert "uint8" in text and "accuracy (logits)" in text and "made-up" not in text
    doc = json.loads(json.dumps(web_eval_json(table)))
    assert [r["name"] for r in doc["rows"]] == list(rows) and doc["rows"][3]["worst_cosine"] < 0.99


def test_without_data_says_the_inputs_are_made_up(tfjs_runner, tmp_path):
    model = write_example(tmp_path / "layers")
    table = evaluate_web_model(model, runner=tfjs_runner, variants=["float16", "uint8"])
    assert table.synthetic and "uniform in [0, 1)" in table.samples and table.sample_count == 8
    assert [r.name for r in table.rows] == ["float16", "uint8"]
    assert table.rows[0].fidelity.top1_agreement == 1.0
    assert "fidelity on made-up inputs is a guess" in format_web_eval(table)


def test_a_float16_model_is_compared_with_its_float32_values(tfjs_runner, tmp_path):
    src = write_example(tmp_path / "f32", format="graph-model")
    given = tmp_path / "f16"
    quantize_model(src, given, float16=True)
    table = evaluate_web_model(given, runner=tfjs_runner, variants=["float32", "float16"])
    assert table.given_dtypes == {"float16": 6}
    f32, f16 = table.rows
    assert f32.weight_bytes == 2 * f16.weight_bytes
    assert f32.fidelity.worst_cosine == 1.0 and f16.fidelity.worst_cosine == 1.0  # the same values
    assert f16.fidelity.max_rel_error == 0.0


def test_decoded_outputs_found_in_the_graph(tmp_path):
    nodes = [placeholder("heat", [-1, 8]), op("peak", "ArgMax", ["heat", "axis"], T={"type": "DT_FLOAT"},
                                              Tidx={"type": "DT_INT32"}, output_type={"type": "DT_INT32"}),
             op("coord", "Cast", ["peak"], SrcT={"type": "DT_INT32"}, DstT={"type": "DT_FLOAT"}),
             op("scaled", "Mul", ["coord", "scale"], T={"type": "DT_FLOAT"}),
             op("raw", "Relu", ["heat"], T={"type": "DT_FLOAT"}),
             # an ArgMax over weights alone picks the same every time: not a decoder
             op("fixed_pick", "ArgMax", ["table", "axis"], T={"type": "DT_FLOAT"}, Tidx={"type": "DT_INT32"},
                output_type={"type": "DT_INT32"}),
             op("fixed", "Cast", ["fixed_pick"], SrcT={"type": "DT_INT32"}, DstT={"type": "DT_FLOAT"}),
             op("shifted", "AddV2", ["raw", "fixed"], T={"type": "DT_FLOAT"})]
    weights = [("axis", np.array(1, np.int32)), ("scale", np.array(0.5, np.float32)),
               ("table", np.eye(8, dtype=np.float32))]
    model = write_graph(tmp_path / "m", nodes, weights,
                        {"inputs": {"heat": signature_entry("heat", [-1, 8])},
                         "outputs": {"where": signature_entry("scaled", [-1]), "raw": signature_entry("raw", [-1, 8]),
                                     "shifted": signature_entry("shifted", [-1, 8])}})
    assert decoded_outputs(model / "model.json", ["where", "raw", "shifted"]) == ["where"]
    assert decoded_outputs(write_example(tmp_path / "layers") / "model.json", ["dense_2"]) == []


BAD_FILES = {
    "missing": ({"y": np.zeros(4)}, "no array for input(s) 'x'"),
    "unknown": ({"x": np.zeros((4, 16), np.float32), "z": np.zeros(4)}, "array 'z' is not an input of the model"),
    "shape": ({"x": np.zeros((4, 15), np.float32)}, "input 'x' takes [?, 16]; a sample of the data has shape [15]"),
    "nan": ({"x": np.where(np.eye(4, 16) > 0, np.nan, 0).astype(np.float32)}, "array 'x' holds NaN (sample 0, 4"),
    "labels": ({"x": np.zeros((4, 16), np.float32), "y": np.zeros(3)}, "array 'y' has 3 labels for 4 samples"),
    "dtype": ({"x": np.array([["a"] * 16] * 4)}, "array 'x': holds <U1 values"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_sample_files_name_the_file_and_array(tfjs_runner, wide, tmp_path, case):
    arrays, message = BAD_FILES[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelInputError) as error:
        evaluate_web_model(wide[0], path, runner=tfjs_runner, variants=["uint8"])
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_file_that_is_not_npz(tfjs_runner, wide, tmp_path):
    path = tmp_path / "samples.npz"
    path.write_text("not a zip")
    with pytest.raises(ModelInputError, match=r"samples\.npz: the data file \(\.npz\) is not a readable zip archive"):
        evaluate_web_model(wide[0], path, runner=tfjs_runner)
