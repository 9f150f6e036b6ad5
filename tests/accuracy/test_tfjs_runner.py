"""qshard.accuracy.tfjs_runner: web models run by stock tfjs 4.22 in one Node worker give what numpy
computes from the same weights (within float32 rounding), for graph and layers models, batched or
sample by sample; bad inputs, a missing Node or tfjs, a failing model and a stuck worker give clear
errors and leave no process behind."""
import os

import numpy as np
import pytest

from conftest import JS_NODE_MODULES, start_tfjs_runner
from support.graphs import bias_add, matmul, op, placeholder, signature_entry, write_graph

from qshard.accuracy.tfjs_runner import TfjsRunner, predict
from qshard.errors import ModelInputError, TfjsRunError, TfjsUnavailableError
from qshard.example import forward, weights, write_example

RNG = np.random.default_rng(7)
X = RNG.random((6, 64), dtype=np.float32)
WEIGHTS = dict(weights())


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    return {"graph": write_example(root / "graph", format="graph-model"), "layers": write_example(root / "layers")}


def assert_forward(values, x):
    want = forward(WEIGHTS, x)
    assert values.shape == want.shape and values.dtype == np.float32
    np.testing.assert_allclose(values, want, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("kind, output", [("graph", "dense_2/Softmax"), ("layers", "dense_2")])
def test_example_models_equal_numpy(tfjs_runner, examples, kind, output):
    info = tfjs_runner.load(examples[kind])
    assert info.format == f"{kind}-model" and [o.key for o in info.outputs] == [output]
    batched = tfjs_runner.run(examples[kind], X)
    assert_forward(batched.outputs[output], X)
    assert len(batched.seconds) == 1  # one call for all six samples
    one_by_one = tfjs_runner.run(examples[kind], {info.inputs[0].key: X}, batch=False)
    assert_forward(one_by_one.outputs[output], X)
    assert len(one_by_one.seconds) == len(X)
    samples = [{info.inputs[0].key: x} for x in X[:3]]  # a list of samples, each without the batch axis
    assert_forward(tfjs_runner.run(examples[kind], samples).outputs[output], X[:3])
    full = tfjs_runner.run(examples[kind], X[:, None, :]).outputs[output]  # samples with the model's batch axis
    assert full.shape == (6, 1, 10)
    assert_forward(full[:, 0], X)


def test_predict_runs_several_models_in_one_call(examples, monkeypatch):
    start_tfjs_runner().close()  # skips loudly without Node / tfjs
    monkeypatch.setenv("QSHARD_TFJS_NODE_MODULES", JS_NODE_MODULES)
    graph, layers = predict([examples["graph"], examples["layers"] / "model.json"], X)
    assert_forward(graph["dense_2/Softmax"], X)
    assert_forward(layers["dense_2"], X)


@pytest.fixture(scope="module")
def signature_model(tmp_path_factory):
    """Signature keys differ from node names; a float and an int32 output (an ArgMax)."""
    w = RNG.standard_normal((4, 5)).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    nodes = [placeholder("in_node", [-1, 4]), matmul("mm", "in_node", "w"), bias_add("logits", "mm", "b"),
             op("scores", "Softmax", ["logits"], T={"type": "DT_FLOAT"}),
             op("best", "ArgMax", ["logits", "axis"], T={"type": "DT_FLOAT"}, Tidx={"type": "DT_INT32"},
                output_type={"type": "DT_INT32"})]
    signature = {"inputs": {"image": signature_entry("in_node", [-1, 4])},
                 "outputs": {"probs": signature_entry("scores", [-1, 5]),
                             "label": signature_entry("best", [-1], "DT_INT32")}}
    folder = write_graph(tmp_path_factory.mktemp("sig") / "m", nodes,
                         [("w", w), ("b", b), ("axis", np.array(1, np.int32))], signature)
    return folder, w, b


def test_signature_names_and_int_outputs(tfjs_runner, signature_model):
    folder, w, b = signature_model
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    logits = x.astype(np.float64) @ w + b
    for name in ("image", "in_node", "in_node:0"):  # the signature key or the node name
        out = tfjs_runner.run(folder, {name: x}).outputs
        assert sorted(out) == ["label", "probs"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(out["probs"], e / e.sum(axis=1, keepdims=True), rtol=2e-5, atol=1e-7)
        assert out["label"].dtype == np.int32 and out["label"].tolist() == logits.argmax(axis=1).tolist()


@pytest.fixture(scope="module")
def nms_model(tmp_path_factory):
    """NonMaxSuppression: a dynamic op (executeAsync) whose output length changes from sample to sample;
    inputs without a batch axis."""
    nodes = [placeholder("boxes", [8, 4]), placeholder("scores", [8]),
             op("nms", "NonMaxSuppressionV3", ["boxes", "scores", "max_out", "iou", "min_score"],
                T={"type": "DT_FLOAT"}, T_threshold={"type": "DT_FLOAT"})]
    weights = [("max_out", np.array(8, np.int32)), ("iou", np.array(0.5, np.float32)),
               ("min_score", np.array(0.3, np.float32))]
    return write_graph(tmp_path_factory.mktemp("nms") / "m", nodes, weights)


def test_dynamic_graph_runs_async_sample_by_sample(tfjs_runner, nms_model):
    corners = RNG.random((3, 8, 2), dtype=np.float32)
    boxes = np.concatenate([corners, corners + 0.2], axis=2)  # 8 boxes of side 0.2 per sample
    scores = np.stack([np.linspace(0.9, 0.1, 8), np.full(8, 0.2), np.linspace(0.1, 0.95, 8)]).astype(np.float32)
    out = tfjs_runner.run(nms_model, {"boxes": boxes, "scores": scores}).outputs["nms"]
    assert isinstance(out, list) and len(out) == 3  # a different number of boxes kept per sample
    assert out[1].size == 0  # every score under the threshold
    for kept, s in zip(out, scores):
        assert kept.dtype == np.int32
        assert set(kept.tolist()) <= set(np.flatnonzero(s >= 0.3).tolist())
        assert list(s[kept]) == sorted(s[kept], reverse=True)


def test_bad_inputs_name_the_input(tfjs_runner, examples, signature_model):
    graph = examples["graph"]
    cases = [
        (lambda: tfjs_runner.run(graph, X[:, :10]), "input 'input' takes [?, 64]; a sample of the data has shape [10]"),
        (lambda: tfjs_runner.run(graph, {"nope": X}), "no input 'nope'; its inputs: input"),
        (lambda: tfjs_runner.run(graph, {}), "no data for input(s) 'input'"),
        (lambda: tfjs_runner.run(graph, X.astype("U3")), "input 'input' is float32; the data has dtype <U3"),
        (lambda: tfjs_runner.run(signature_model[0], {"image": X[:, :4].astype(bool)}), "the data has dtype bool"),
        (lambda: tfjs_runner.run(graph, [{"input": X[0]}, {"input": X[1, :3]}]), "different shapes across samples"),
    ]
    for call, message in cases:
        with pytest.raises(ModelInputError) as error:
            call()
        assert message in str(error.value) and "model.json: " in str(error.value)


def test_missing_node_or_tfjs_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QSHARD_TFJS_NODE_MODULES", str(tmp_path))
    with pytest.raises(TfjsUnavailableError, match=r"npm install @tensorflow/tfjs@4\.22\.0"):
        TfjsRunner()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TfjsUnavailableError, match="`node` is not on PATH"):
        TfjsRunner(node_modules=JS_NODE_MODULES)


def test_a_model_tfjs_refuses_is_an_error_and_the_worker_goes_on(tfjs_runner, examples, tmp_path):
    bad = write_graph(tmp_path / "erfc", [placeholder("x", [-1, 3]), op("y", "Erfc", ["x"], T={"type": "DT_FLOAT"})], [])
    with pytest.raises(TfjsRunError, match=r"Erfc") as error:
        tfjs_runner.run(bad, np.zeros((2, 3), np.float32))
    assert str(bad) in str(error.value)
    assert_forward(tfjs_runner.run(examples["graph"], X).outputs["dense_2/Softmax"], X)


def test_a_stuck_worker_is_stopped_and_reaped(examples):
    runner = start_tfjs_runner(timeout=1e-3)  # no reply can come this fast: the worker is killed
    with pytest.raises(TfjsRunError, match="no answer from tfjs within"):
        runner.run(examples["graph"], X)
    assert runner._proc is None
    runner.timeout = 120
    assert_forward(runner.run(examples["graph"], X).outputs["dense_2/Softmax"], X)  # a new worker
    proc = runner._proc
    runner.close()
    assert proc.poll() is not None  # exited and waited for: no zombie
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)


def test_wasm_backend_equals_numpy(examples):
    runner = start_tfjs_runner("wasm")
    try:
        for kind, output in (("graph", "dense_2/Softmax"), ("layers", "dense_2")):
            run = runner.run(examples[kind], X)
            assert_forward(run.outputs[output], X)
        assert runner.run(examples["graph"], X).outputs  # loaded once, run again
    finally:
        runner.close()


def test_a_graph_that_mixes_its_batch_runs_sample_by_sample(tfjs_runner, tmp_path):
    """x - mean over the batch axis: the signature says the axis is free, yet a batch would change
    every sample's output; the runner notices once and feeds the samples one by one."""
    nodes = [placeholder("x", [-1, 4]),
             op("mean", "Mean", ["x", "axis"], T={"type": "DT_FLOAT"}, Tidx={"type": "DT_INT32"}, keep_dims={"b": True}),
             op("centred", "Sub", ["x", "mean"], T={"type": "DT_FLOAT"}), op("y", "Add", ["centred", "x"],
                                                                            T={"type": "DT_FLOAT"})]
    model = write_graph(tmp_path / "mix", nodes, [("axis", np.array([0], np.int32))])
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    run = tfjs_runner.run(model, x)
    np.testing.assert_array_equal(run.outputs["y"], x)  # alone, each sample is its own mean
    assert not tfjs_runner.load(model).batchable and len(run.seconds) == 5
