"""keras.applications models (weights=None, random batch-norm statistics and biases) converted --to
graph and run by stock tfjs 4.22 in Node: MobileNetV2 (96 px), ResNet50 (32 px) and MobileNetV3Small
(64 px: hard-swish, squeeze-excite, a Rescaling input). float32 within 1e-4 of the output scale of
Keras' prediction; uint8 / float16 within 1e-4 of TensorFlow on the written graph with the stored
weights. Slow (a conversion takes seconds each), so all share one conversion and one node run."""
import numpy as np
import pytest

from support.graph import VARIANTS, check_float32, check_quantized, convert_and_predict
from support.graph_models import APPLICATIONS

NAMES = [b.__name__ for b in APPLICATIONS]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(keras, tf, tmp_path_factory):
    rng = np.random.default_rng(11)
    return {b.__name__: b(keras, tf, rng, None) for b in APPLICATIONS}


@pytest.fixture(scope="module")
def predicted(cases, node, tmp_path_factory):
    return convert_and_predict(cases, tmp_path_factory.mktemp("applications"), node, requantize=True)


@pytest.mark.parametrize("name", NAMES)
def test_float32_predicts_what_keras_predicts(name, cases, predicted):
    check_float32(name, cases[name], predicted[name]["float32"])


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_quantized_variants_match_tensorflow_on_the_stored_weights(name, variant, tf, cases, predicted):
    check_quantized(tf, name, variant, cases[name], predicted[name][variant], predicted[name]["float32"])


def test_batch_norms_are_folded_and_hardswish_is_never_fused(cases, predicted):
    import base64
    import json
    for name, case in cases.items():
        doc = json.loads((case.folders["float32"] / "model.json").read_text())
        ops = [n["op"] for n in doc["modelTopology"]["node"]]
        assert not {"FusedBatchNormV3", "Rsqrt"} & set(ops), f"{name}: batch norm left: {set(ops)}"
        fused = {base64.b64decode(s).decode() for n in doc["modelTopology"]["node"]
                 if "fused_ops" in n.get("attr", {}) for s in n["attr"]["fused_ops"]["list"]["s"]}
        assert fused <= {"BiasAdd", "NoOp", "Relu", "Relu6"}, f"{name}: {fused}"
        assert ops.count("_FusedConv2D") >= 15, f"{name}: few fused convolutions: {ops.count('_FusedConv2D')}"
