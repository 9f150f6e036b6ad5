"""Keras models and SavedModels converted --to graph, run by stock tfjs 4.22 in Node (cpu backend):
float32 within 1e-4 of the output scale of TensorFlow's own prediction; the uint8 and float16
variants within 1e-4 of TensorFlow running the written graph on the weights qshard stored.

Small models, one per route: a Keras 3 conv / depthwise / dense model with batch norms and every
fused activation, Rescaling + ZeroPadding2D, a Keras default GRU text model (unrolled), a tf.Module
SavedModel whose tf.function uses exact GELU and Erfc, a Keras model.export() SavedModel, and a
tf_keras .h5 model (FusedBatchNormV3). And, marked slow, keras.applications MobileNetV2 (96 px),
ResNet50 (32 px) and MobileNetV3Small (64 px: hard-swish, squeeze-excite, a Rescaling input), with
random batch-norm statistics and biases. Each group is converted and run in one node process, the
first time one of its tests asks; the applications' quantized variants are made from their float32
conversion by quantize_model (the same bytes: test_ops checks it)."""
import base64
import json
from collections import Counter

import numpy as np
import pytest

from qshard.graph.write import CONTROL_FLOW_OPS
from support.graph import VARIANTS, assert_close, check_float32, check_quantized, convert_and_predict, tfjs_predict
from support.graph_models import APPLICATIONS, BUILDERS

GROUPS = {"routes": BUILDERS, "applications": APPLICATIONS}
GROUP_OF = {b.__name__: group for group, builders in GROUPS.items() for b in builders}
NAMES = [pytest.param(name, marks=pytest.mark.slow) if group == "applications" else name
         for name, group in GROUP_OF.items()]


@pytest.fixture(scope="module")
def converted(keras, tf, node, tmp_path_factory):
    """name -> (Case, {variant: {output key: tfjs's array}}), each group built on first use."""
    done = {}

    def get(name):
        group = GROUP_OF[name]
        if group not in done:
            rng = np.random.default_rng(7)
            tmp = tmp_path_factory.mktemp(group)
            cases = {b.__name__: b(keras, tf, rng, tmp) for b in GROUPS[group]}
            done[group] = cases, convert_and_predict(cases, tmp, node, requantize=group == "applications")
        cases, predicted = done[group]
        return cases[name], predicted[name]
    return get


@pytest.mark.parametrize("name", NAMES)
def test_float32_predicts_what_tensorflow_predicts(name, converted):
    case, predicted = converted(name)
    check_float32(name, case, predicted["float32"])


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_quantized_variants_match_tensorflow_on_the_stored_weights(name, variant, tf, converted):
    case, predicted = converted(name)
    check_quantized(tf, name, variant, case, predicted[variant], predicted["float32"])


def _graph(converted, name):
    case, _ = converted(name)
    doc = json.loads((case.folders["float32"] / "model.json").read_text())
    nodes = doc["modelTopology"]["node"]
    fused = Counter(base64.b64decode(s).decode() for n in nodes if "fused_ops" in n.get("attr", {})
                    for s in n["attr"]["fused_ops"]["list"]["s"][1:])
    return Counter(n["op"] for n in nodes), fused, doc


def test_the_graphs_are_what_the_conversion_promises(converted):
    ops, fused, _ = _graph(converted, "dense_conv")
    assert fused == {"Relu6": 1, "Elu": 1, "Sigmoid": 1, "LeakyRelu": 1, "Relu": 1}, fused
    assert not {"Mul", "AddV2", "Sub", "Rsqrt", "BiasAdd"} & set(ops), f"batch norms left unfolded: {ops}"
    assert ops["FusedDepthwiseConv2dNative"] == 1 and ops["_FusedConv2D"] == 3 and ops["_FusedMatMul"] == 2
    ops, _, _ = _graph(converted, "gru_text")
    assert not set(ops) & (CONTROL_FLOW_OPS | {"TensorListReserve", "TensorListStack"}), f"GRU not unrolled: {ops}"
    ops, _, doc = _graph(converted, "module_saved_model")
    assert "Erfc" not in ops and ops["Erf"] == 2
    assert doc["userDefinedMetadata"] == {"structuredOutputKeys": ["gelu", "tail"]}
    ops, _, _ = _graph(converted, "tf_keras_h5")
    assert not any(op.startswith("FusedBatchNorm") for op in ops), f"tf_keras batch norm left: {ops}"
    for builder in BUILDERS:
        case, _ = converted(builder.__name__)
        _, _, doc = _graph(converted, builder.__name__)
        assert list(doc["signature"]["inputs"]) == list(case.feeds), builder.__name__
        # A dict of outputs comes out in its keys' order (as TensorFlow flattens it), else in the model's.
        dict_outputs = case.options.get("structured_outputs")
        assert list(doc["signature"]["outputs"]) == (sorted(case.want) if dict_outputs else list(case.want))


@pytest.mark.slow
@pytest.mark.parametrize("name", [b.__name__ for b in APPLICATIONS])
def test_batch_norms_are_folded_and_hardswish_is_never_fused(name, converted):
    ops, fused, _ = _graph(converted, name)
    assert not {"FusedBatchNormV3", "Rsqrt"} & set(ops), f"{name}: batch norm left: {set(ops)}"
    assert set(fused) <= {"Relu", "Relu6"}, f"{name}: {fused}"
    assert ops["_FusedConv2D"] >= 15, f"{name}: few fused convolutions: {ops['_FusedConv2D']}"


def test_a_recurrent_model_without_a_fixed_length_stays_a_loop_that_execute_async_runs(keras, node, tmp_path):
    """No fixed sequence length, no unrolling: the While loop stays, and tfjs runs it with
    executeAsync on sequences of any length (predict refuses control flow, as tfjs documents)."""
    from qshard.graph import convert_to_graph_model
    L = keras.layers
    inp = keras.Input((None, 3), name="steps")
    out = L.Dense(2)(L.LSTM(5)(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(3)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    report = convert_to_graph_model(model, tmp_path / "web")
    assert report.execute_async and "While" not in report.ops and report.ops.get("Merge")
    feeds = [{"steps": rng.standard_normal((2, n, 3)).astype(np.float32)} for n in (4, 9)]
    runs = [(tmp_path / "web", f, "executeAsync") for f in feeds]
    for f, [(key, got)] in zip(feeds, tfjs_predict(node, tmp_path, runs)):
        assert key == model.output_names[0]
        assert_close(f"LSTM loop over {f['steps'].shape[1]} steps", got, model(f["steps"], training=False))
