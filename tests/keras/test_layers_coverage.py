"""The layers added for keras.applications and common preprocessing, through tfjs-layers 4.22.

One Keras 3 model per new layer family (and one tf_keras .h5 model), with fixed random weights,
converted as float32 and uint8, loaded in Node by tf.loadLayersModel (strict) and compared with
Keras as in test_keras.py. keras.applications MobileNetV2, MobileNetV3Small and EfficientNetB0
(weights=None, batch-norm statistics random) must match Keras within 1e-4 of the output scale
(slow). What tfjs-layers cannot compute is refused, naming the layer and the `--to graph` route.
"""
import json

import numpy as np
import pytest

from qshard import keras as qk
from qshard import tfjs
from qshard.errors import ConversionError
from support.keras import (VARIANTS, convert_and_run, finalize, js_output, set_weights, tfjs_matches_keras,
                           write_input)
from support.node import run_node

TWO = {v: VARIANTS[v] for v in ("float32", "uint8")}


def _models(keras):
    L, ops = keras.layers, keras.ops

    shapes = keras.Sequential([
        keras.Input((5, 6, 2)), L.ZeroPadding2D(((1, 2), (0, 3))), L.Conv2D(4, 3), L.Cropping2D(((1, 0), (2, 1))),
        L.UpSampling2D((3, 2)), L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu"),
        L.Conv2DTranspose(3, (2, 3), strides=(2, 1)), L.PReLU(shared_axes=[1, 2]), L.GaussianNoise(0.1),
        L.Flatten(), L.Dense(4)], name="shapes")

    inp = keras.Input((6,))
    a, b = L.Dense(8)(inp), L.Dense(8, activation="tanh")(inp)
    c = L.Dense(8, activation="leaky_relu")(inp)
    x = L.Concatenate()([L.Multiply()([a, b]), L.Subtract()([a, c]), L.Average()([a, b, c]),
                         L.Maximum()([a, b]), L.Minimum()([b, c])])
    x = L.ELU()(L.ReLU(negative_slope=0.05)(L.LeakyReLU(0.2)(x)))
    x = L.Flatten()(L.Permute((2, 1))(L.Reshape((4, 3))(L.Dense(12)(x))))
    x = L.Flatten()(L.RepeatVector(3)(L.Dense(5)(x)))
    merges = keras.Model(inp, L.Softmax()(L.Dense(6)(x)), name="merges")

    img = keras.Input((6, 6, 3))
    x = L.Rescaling(1 / 255.0)(img)
    x = L.Rescaling(np.array([0.5, 1.0, 2.0], np.float32), offset=[0.1, 0.0, -0.1])(x)  # numpy: per channel
    x = L.Normalization(axis=-1)(x)  # adapted statistics: weights
    x = L.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5])(x)
    x = L.Conv2D(8, 3, padding="same", activation="hard_silu")(x)
    x = L.Activation("hard_sigmoid")(x)
    x = (2.0 - (x + 3.0) * 0.5) / 4.0  # Keras 3 operation layers of a tensor and a number
    x = x - L.Conv2D(8, 1)(x)
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(8, 1, activation="hard_swish")(se)
    x = L.Activation("hard_swish")(L.Multiply()([x, se]))
    x = ops.multiply(x, L.GlobalMaxPooling2D(keepdims=True)(x))
    preprocess = keras.Model(img, L.Dense(3)(L.Flatten()(x)), name="preprocess")

    chain = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="hard_silu"), L.Reshape((2, 4)),
                              L.GlobalAveragePooling1D(keepdims=True), L.Flatten(), L.Dense(3)], name="chain")
    return {"shapes": (shapes, (2, 5, 6, 2), "float32"), "merges": (merges, (4, 6), "float32"),
            "preprocess": (preprocess, (2, 6, 6, 3), "float32", 255.0), "chain": (chain, (4, 10), "float32")}


@pytest.fixture(scope="module")
def converted(keras, node, tmp_path_factory):
    root = tmp_path_factory.mktemp("coverage")
    built, errors = convert_and_run(node, root, _models(keras), TWO, seed=40)
    return root, built, errors


@pytest.mark.parametrize("variant", list(TWO))
@pytest.mark.parametrize("name", ["shapes", "merges", "preprocess", "chain"])
def test_tfjs_predicts_what_keras_predicts(converted, name, variant):
    root, built, errors = converted
    key = f"{name}-{variant}"
    assert not errors[key], f"{key}: tfjs could not load or run the converted model:\n{errors[key]}"
    tfjs_matches_keras(root, key, *built[name], variant)


def _topology(root, key):
    return json.loads((root / key / "model.json").read_text())["modelTopology"]


def test_rewrites_are_layers_tfjs_has(converted):
    """The rewritten layers became tfjs-layers classes; a Sequential that needed a branch became a
    functional Model; a Normalization's sample count is not written."""
    root, _, _ = converted
    classes = {layer["class_name"] for layer in _topology(root, "preprocess-float32")["config"]["layers"]}
    assert {"Rescaling", "BatchNormalization", "ReLU", "Multiply", "Reshape", "Add"} <= classes
    assert not classes & {"Normalization", "Subtract", "Activation"}
    chain = _topology(root, "chain-float32")
    assert chain["class_name"] == "Model"
    assert [layer["class_name"] for layer in chain["config"]["layers"]][:5] == [
        "InputLayer", "Dense", "Rescaling", "ReLU", "Multiply"]
    names = {s.name for s in tfjs.WebModel(root / "preprocess-float32").specs}
    assert any(n.endswith("/moving_variance") for n in names) and not any(n.endswith("/count") for n in names)
    merges = _topology(root, "merges-float32")["config"]["layers"]
    assert [layer["config"]["alpha"] for layer in merges if layer["class_name"] == "LeakyReLU"] == [0.2, 0.2, 0.05]


# --------------------------------------------------------------------------------------------------
# A tf_keras .h5 model: Keras 2's hard_sigmoid is tfjs's own; Normalization weights are renamed.

def test_tf_keras_h5_layers(tf_keras, node, tmp_path):
    L = tf_keras.layers
    inp = tf_keras.Input((7,))
    x = L.Normalization()(inp)
    a = L.Dense(6, activation="hard_sigmoid")(x)
    b = L.LeakyReLU(alpha=0.1)(L.Dense(6)(x))
    x = L.ThresholdedReLU(theta=0.3)(L.Subtract()([b, a]))
    t = L.Flatten()(L.Conv2DTranspose(2, (2, 1), strides=(2, 1))(L.Reshape((7, 1, 1))(inp)))
    model = tf_keras.Model(inp, L.Dense(3)(L.Concatenate()([x, a, t])))
    rng = np.random.default_rng(7)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name else
                       np.asarray(20, np.int64) if "count" in w.name else rng.standard_normal(w.shape)
                       for w in model.weights])
    finalize(model)
    model.save(tmp_path / "m.h5")
    x_in = rng.standard_normal((5, 7)).astype(np.float32) * 2
    write_input(tmp_path / "in.json", x_in)
    for variant, how in TWO.items():
        out = tmp_path / variant
        qk.save_web_model(tmp_path / "m.h5", out, **how)
        error = run_node(node, "load_layers_model.js", [out, tmp_path / "in.json", tmp_path / f"{variant}.json"])
        assert not error, f"{variant}: {error}"
        got, _ = js_output(tmp_path / f"{variant}.json")
        values = tfjs.read_weights(out)
        assert "normalization/moving_mean" in values and "normalization/count" not in values
        renamed = {"normalization/mean": "normalization/moving_mean",
                   "normalization/variance": "normalization/moving_variance"}
        model.set_weights([values[renamed.get(n, n)] if n != "normalization/count" else np.asarray(20, np.int64)
                           for n in (w.name.split(":")[0] for w in model.weights)])
        finalize(model)
        want = model.predict(x_in, verbose=0)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), err_msg=variant)


# --------------------------------------------------------------------------------------------------
# keras.applications, weights=None, batch-norm statistics random (nothing is downloaded).

def _applications(keras):
    apps = keras.applications
    return {"mobilenet_v2": (apps.MobileNetV2(weights=None, input_shape=(96, 96, 3), classifier_activation=None),
                             (2, 96, 96, 3), "float32", 255.0),
            "mobilenet_v3_small": (apps.MobileNetV3Small(weights=None, input_shape=(64, 64, 3),
                                                         classifier_activation=None), (2, 64, 64, 3), "float32", 255.0),
            "efficientnet_b0": (apps.EfficientNetB0(weights=None, input_shape=(64, 64, 3),
                                                    classifier_activation=None), (2, 64, 64, 3), "float32", 255.0)}


@pytest.fixture(scope="module")
def applications(keras, node, tmp_path_factory):
    root = tmp_path_factory.mktemp("applications")
    built, errors = convert_and_run(node, root, _applications(keras), {"float32": {}}, seed=60)
    return root, built, errors


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_keras_applications_run_in_tfjs(applications, name):
    root, built, errors = applications
    key = f"{name}-float32"
    assert not errors[key], f"{key}: tfjs could not load or run the converted model:\n{errors[key]}"
    tfjs_matches_keras(root, key, *built[name], "float32", tolerance=1e-4)
    layers = _topology(root, key)["config"]["layers"]
    assert len(layers) >= len(built[name][0].layers)


@pytest.mark.slow
def test_mobilenet_v2_uint8(applications, node, tmp_path):
    """The uint8 web model of MobileNetV2 predicts what Keras predicts with its dequantized weights."""
    root, built, _ = applications
    model, x = built["mobilenet_v2"]
    qk.save_web_model(model, tmp_path / "web", uint8=True)
    error = run_node(node, "load_layers_model.js", [tmp_path / "web", root / "mobilenet_v2.in.json",
                                                    tmp_path / "out.json"])
    assert not error, error
    got, _ = js_output(tmp_path / "out.json")
    original = [v.numpy().copy() for v in model.weights]
    try:
        set_weights(model, tfjs.read_weights(tmp_path / "web"))
        want = np.asarray(model(x, training=False))
    finally:
        for v, a in zip(model.weights, original):
            v.assign(a)
        finalize(model)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


# --------------------------------------------------------------------------------------------------
# Refusals: the layer, the option and the graph route named; nothing written.

def _refused(keras):
    L, ops = keras.layers, keras.ops

    def seq(*layers, shape=(4, 4, 2)):
        return lambda: keras.Sequential([keras.Input(shape), *layers])

    def two_inputs(op):
        def build():
            a, b = keras.Input((3,)), keras.Input((3,))
            return keras.Model([a, b], op(a, b))
        return build

    def exp():
        a = keras.Input((3,))
        return keras.Model(a, ops.exp(a))

    def training():
        a = keras.Input((3,))
        return keras.Model(a, L.Dropout(0.5, name="drop")(a, training=True))

    return {
        "bilinear": (seq(L.UpSampling2D(interpolation="bilinear", name="up")),
                     r"layer 'up' \(UpSampling2D\): option interpolation='bilinear' is not supported"),
        "dilated_transpose": (seq(L.Conv2DTranspose(2, 3, dilation_rate=2, name="t")),
                              r"layer 't' \(Conv2DTranspose\): option dilation_rate=\(2, 2\)"),
        "output_padding": (seq(L.Conv2DTranspose(2, 3, strides=2, output_padding=1, name="t")),
                           r"layer 't' \(Conv2DTranspose\): option output_padding=\(1, 1\)"),
        "elu_alpha": (seq(L.ELU(alpha=0.5, name="e")), r"layer 'e' \(ELU\): option alpha=0.5"),
        "softmax_axis": (seq(L.Softmax(axis=1, name="s")), r"layer 's' \(Softmax\): option axis=1"),
        "invert": (seq(L.Normalization(invert=True, name="n")), r"layer 'n' \(Normalization\): option invert=True"),
        "zero_padding_1d": (seq(L.ZeroPadding1D(2, name="z"), shape=(4, 2)),
                            r"layer 'z' \(ZeroPadding1D\): this layer class is not converted"),
        "exp": (exp, r"\(operation Exp\): this Keras operation is not converted"),
        "divide_tensors": (two_inputs(lambda a, b: a / b), r"dividing two tensors is not in tfjs-layers"),
        "gru": (seq(L.GRU(4, name="gru"), shape=(5, 3)), r"layer 'gru' \(GRU\): option reset_after=True"),
        "cell_activation": (seq(L.LSTM(4, activation="hard_silu", name="lstm"), shape=(5, 3)),
                            r"layer 'lstm' \(LSTM\): option activation='hard_silu'"),
        "training": (training, r"layer 'drop' \(Dropout\): called with training=True"),
    }


@pytest.mark.parametrize("case", ["bilinear", "dilated_transpose", "output_padding", "elu_alpha", "softmax_axis",
                                  "invert", "zero_padding_1d", "exp", "divide_tensors", "gru", "cell_activation",
                                  "training"])
def test_what_tfjs_layers_cannot_compute_is_refused(keras, tmp_path, case):
    build, message = _refused(keras)[case]
    with pytest.raises(ConversionError, match=message) as error:
        qk.save_web_model(build(), tmp_path / "out")
    if case != "training":
        assert "`qshard convert --to graph` converts it" in str(error.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_normalization_variance_below_keras_floor_is_refused(keras, tmp_path):
    """Keras divides by max(sqrt(variance), 1e-7); the BatchNormalization tfjs runs would not."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Normalization(name="n")])
    model.layers[0].adapt_variance.assign(np.array([1.0, 0.0, 2.0], np.float32))
    with pytest.raises(ConversionError, match=r"layer 'n' \(Normalization\): a variance of 0"):
        qk.save_web_model(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()



def test_keras2_sequential_without_input_layer_expands_to_a_model(node, tmp_path):
    """A Keras 2 Sequential whose first layer carries the input shape and whose activation tfjs
    lacks (leaky_relu) becomes a Model with an InputLayer, which tfjs loads and runs."""
    from qshard.keras.topology import translate_topology
    from support.layers import dense_topology, dense_weights, write_layers_model
    keras2 = dense_topology()
    keras2["config"]["layers"][0]["config"]["activation"] = "leaky_relu"
    topology = translate_topology(keras2["config"], "Sequential", "2.15.0")
    assert topology["class_name"] == "Model"
    groups = dense_weights(5)
    write_layers_model(tmp_path / "web", topology, groups)
    x = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    write_input(tmp_path / "in.json", x)
    error = run_node(node, "load_layers_model.js", [tmp_path / "web", tmp_path / "in.json", tmp_path / "out.json"])
    assert not error, error
    got, _ = js_output(tmp_path / "out.json")
    w = {name: array.astype(np.float64) for group in groups for name, array in group}
    h = x @ w["dense/kernel"] + w["dense/bias"]
    want = np.where(h > 0, h, 0.2 * h) @ w["dense_1/kernel"] + w["dense_1/bias"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
