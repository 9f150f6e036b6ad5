"""Small Keras models converted --to graph, run by stock tfjs 4.22 in Node and compared with
TensorFlow: float32 within 1e-4 of the output scale of Keras' own prediction; the uint8 and float16
variants within 1e-4 of TensorFlow running the written graph on the weights qshard stored."""
import numpy as np
import pytest

from qshard import tfjs
from qshard.graph import convert_to_graph_model
from test_node import node  # noqa: F401 (a fixture)

from .conftest import assert_close, tf_run_web_model, tfjs_predict

VARIANTS = {"float32": {}, "uint8": {"uint8": "*"}, "float16": {"float16": "*"}}


def _randomize_batch_norms(keras, model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.3, n).astype(np.float32))


def _randomize_biases(model, rng):
    for w in model.weights:
        if w.path.endswith("bias"):
            w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))


def dense_conv_model(keras, rng):
    L = keras.layers
    inp = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("elu")(x)
    x = L.Conv2D(6, 1, activation="sigmoid")(x)
    x = L.Conv2D(6, 3, strides=2)(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, activation="relu")(x)
    out = L.Dense(4)(x)
    model = keras.Model(inp, out)
    _randomize_batch_norms(keras, model, rng)
    _randomize_biases(model, rng)
    return model, {"image": rng.standard_normal((2, 12, 12, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def converted(keras, tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("small")
    cases = {}
    for name, build in {"dense_conv": dense_conv_model}.items():
        model, feeds = build(keras, rng)
        want = model(*feeds.values(), training=False)
        folders = {}
        for variant, flags in VARIANTS.items():
            folders[variant] = root / f"{name}-{variant}"
            convert_to_graph_model(model, folders[variant], **flags)
        cases[name] = (folders, feeds, np.asarray(want))
    return cases


@pytest.fixture(scope="module")
def predicted(converted, node, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("node")
    runs = [(folders[v], feeds, "predict") for folders, feeds, _ in converted.values() for v in VARIANTS]
    outputs = iter(tfjs_predict(node, work, runs))
    return {name: {v: next(outputs) for v in VARIANTS} for name in converted}


@pytest.mark.parametrize("name", ["dense_conv"])
def test_float32_matches_keras(name, converted, predicted):
    _, _, want = converted[name]
    [(_, got)] = predicted[name]["float32"]
    assert_close(f"{name} float32", got, want)


@pytest.mark.parametrize("variant", ["uint8", "float16"])
@pytest.mark.parametrize("name", ["dense_conv"])
def test_quantized_matches_tensorflow_on_stored_weights(name, variant, tf, converted, predicted):
    folders, feeds, float_out = converted[name]
    stored = {s.stored_dtype for s in tfjs.WebModel(folders[variant]).specs}
    assert variant in stored
    [(key, got)] = predicted[name][variant]
    want = tf_run_web_model(tf, folders[variant], feeds)[key]
    assert_close(f"{name} {variant}", got, want)
    assert np.abs(got - float_out).max() > 0, "quantization changed nothing: the comparison would be vacuous"
