"""Keras models and SavedModels converted --to graph, run by stock tfjs 4.22 in Node (cpu backend):
float32 within 1e-4 of the output scale of TensorFlow's own prediction; the uint8 and float16
variants within 1e-4 of TensorFlow running the written graph on the weights qshard stored.

Small models, one per route: a Keras 3 conv / depthwise / dense model with batch norms and every
fused activation, Rescaling + ZeroPadding2D, a Keras default GRU text model (unrolled), a tf.Module
SavedModel whose tf.function uses exact GELU and Erfc, a Keras model.export() SavedModel, and a
tf_keras .h5 model (FusedBatchNormV3)."""
import base64
import json
from collections import Counter

import numpy as np
import pytest

from qshard.graph.write import CONTROL_FLOW_OPS

from support.graph import VARIANTS, check_float32, check_quantized, convert_and_predict
from support.graph_models import BUILDERS, NAMES


@pytest.fixture(scope="module")
def cases(keras, tf, tmp_path_factory):
    rng = np.random.default_rng(7)
    tmp = tmp_path_factory.mktemp("sources")
    return {b.__name__: b(keras, tf, rng, tmp) for b in BUILDERS}


@pytest.fixture(scope="module")
def predicted(cases, node, tmp_path_factory):
    return convert_and_predict(cases, tmp_path_factory.mktemp("converted"), node)


@pytest.mark.parametrize("name", NAMES)
def test_float32_predicts_what_tensorflow_predicts(name, cases, predicted):
    check_float32(name, cases[name], predicted[name]["float32"])


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_quantized_variants_match_tensorflow_on_the_stored_weights(name, variant, tf, cases, predicted):
    check_quantized(tf, name, variant, cases[name], predicted[name][variant], predicted[name]["float32"])


def _graph(case):
    doc = json.loads((case.folders["float32"] / "model.json").read_text())
    nodes = doc["modelTopology"]["node"]
    fused = Counter(base64.b64decode(s).decode() for n in nodes if "fused_ops" in n.get("attr", {})
                    for s in n["attr"]["fused_ops"]["list"]["s"][1:])
    return Counter(n["op"] for n in nodes), fused, doc


def test_the_graphs_are_what_the_conversion_promises(cases, predicted):
    ops, fused, _ = _graph(cases["dense_conv"])
    assert fused == {"Relu6": 1, "Elu": 1, "Sigmoid": 1, "LeakyRelu": 1, "Relu": 1}, fused
    assert not {"Mul", "AddV2", "Sub", "Rsqrt", "BiasAdd"} & set(ops), f"batch norms left unfolded: {ops}"
    assert ops["FusedDepthwiseConv2dNative"] == 1 and ops["_FusedConv2D"] == 3 and ops["_FusedMatMul"] == 2
    ops, _, _ = _graph(cases["gru_text"])
    assert not set(ops) & (CONTROL_FLOW_OPS | {"TensorListReserve", "TensorListStack"}), f"GRU not unrolled: {ops}"
    ops, _, doc = _graph(cases["module_saved_model"])
    assert "Erfc" not in ops and ops["Erf"] == 2
    assert doc["userDefinedMetadata"] == {"structuredOutputKeys": ["gelu", "tail"]}
    ops, _, _ = _graph(cases["tf_keras_h5"])
    assert not any(op.startswith("FusedBatchNorm") for op in ops), f"tf_keras batch norm left: {ops}"
    for name, case in cases.items():
        _, _, doc = _graph(case)
        assert list(doc["signature"]["inputs"]) == list(case.feeds), name
