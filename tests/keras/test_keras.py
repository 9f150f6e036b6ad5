"""Keras 3 models (and a tf_keras .h5 model) to tfjs layers models that stock tfjs 4.22 loads.

Each model is built here with fixed random weights, written by qshard.keras, loaded in Node with
tf.loadLayersModel (strict: every weight placed, none left over) and run on a fixed input:
- float32: tfjs's prediction equals Keras's within 1e-5 relative to the output scale;
- uint8 / float16: tfjs's prediction equals Keras's run with the weights qshard dequantizes (the
  values tfjs decodes, checked bit for bit in test_node.py) within 1e-5, and differs from float32
  only by what the quantization implies.

Needs Keras 3 with the TensorFlow backend (`pip install tensorflow tf_keras`, as .ci/run does) and
Node with tests/js. Without Keras these tests skip loudly; QSHARD_REQUIRE_KERAS=1 (set in CI) turns
that skip into a failure.
"""
import json
import re

import numpy as np
import pytest

from qshard import cli

from qshard import tfjs
from qshard import keras as qk
from qshard.errors import ConversionError
from qshard.keras.load import keras3_weights, weight_name
from support.keras import (VARIANTS, convert_and_run, js_output, model_input, randomize, set_weights,
                           tfjs_matches_keras, write_input)
from support.node import run_node


# --------------------------------------------------------------------------------------------------
# The models: one per layer family, a MobileNet-style depthwise net and a small LSTM text model.

def _models(keras):
    L = keras.layers
    inp = keras.Input((10,))
    a = L.Dense(8, activation="relu")(inp)
    b = L.Dense(8, activation="tanh")(inp)
    merged = L.Concatenate()([L.Add()([a, b]), a])
    functional = keras.Model(inp, L.Dense(3, activation="softmax")(L.Activation("gelu")(merged)), name="branches")

    def mobilenet():
        x_in = keras.Input((16, 16, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x_in)
        x = L.BatchNormalization()(x)
        x = L.ReLU(max_value=6.0)(x)
        for filters, stride in ((16, 1), (24, 2)):
            x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU(max_value=6.0)(x)
            x = L.Conv2D(filters, 1, use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU(max_value=6.0)(x)
        x = L.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dropout(0.2)(x)
        return keras.Model(x_in, L.Dense(5, activation="softmax", name="classifier")(x), name="mobilenet_like")

    return {
        # name: (model, input shape, input dtype)
        "dense": (keras.Sequential([keras.Input((12,)), L.Dense(16, activation="relu"), L.Dropout(0.5),
                                    L.Dense(4, activation="softmax")], name="dense_net"), (5, 12), "float32"),
        "functional": (functional, (5, 10), "float32"),
        "conv1d": (keras.Sequential([keras.Input((20, 3)), L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(2),
                                     L.Conv1D(4, 3, padding="same", strides=2), L.AveragePooling1D(2),
                                     L.GlobalAveragePooling1D(), L.Dense(2)]), (3, 20, 3), "float32"),
        "conv2d": (keras.Sequential([keras.Input((12, 12, 2)), L.Conv2D(6, 3, padding="same"),
                                     L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
                                     L.Conv2D(4, 3, dilation_rate=2, padding="same", activation="elu"),
                                     L.AveragePooling2D(2), L.Flatten(), L.Dense(3)]), (2, 12, 12, 2), "float32"),
        "mobilenet": (mobilenet(), (2, 16, 16, 3), "float32"),
        "lstm_text": (keras.Sequential([keras.Input((12,), dtype="int32"), L.Embedding(50, 8),
                                        L.LSTM(16, return_sequences=True), L.LSTM(8), L.Dense(2, activation="sigmoid")],
                                       name="text"), (4, 12), "int32"),
        "gru": (keras.Sequential([keras.Input((7, 4)), L.GRU(6, reset_after=False, return_sequences=True),
                                  L.GlobalMaxPooling1D(), L.Dense(2)]), (3, 7, 4), "float32"),
        "norms": (keras.Sequential([keras.Input((4, 6)), L.LayerNormalization(), L.Flatten(), L.Reshape((6, 4)),
                                    L.Activation("swish"), L.GlobalAveragePooling1D(), L.Dense(3)]),
                  (3, 4, 6), "float32"),
    }


@pytest.fixture(scope="module")
def converted(keras, node, tmp_path_factory):
    """Every model in every variant, written, then run by tfjs in one Node process."""
    root = tmp_path_factory.mktemp("keras")
    built, errors = convert_and_run(node, root, _models(keras))
    return root, built, errors


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", ["dense", "functional", "conv1d", "conv2d", "mobilenet", "lstm_text", "gru", "norms"])
def test_tfjs_predicts_what_keras_predicts(converted, name, variant):
    root, built, errors = converted
    key = f"{name}-{variant}"
    assert not errors[key], f"{key}: tfjs could not load or run the converted model:\n{errors[key]}"
    tfjs_matches_keras(root, key, *built[name], variant)


def test_weights_are_named_as_tfjs_layers_builds_them(converted):
    root, _, _ = converted
    # (Keras numbers layer names per process: 'lstm', 'lstm_3', ... depending on what ran before.)
    names = " ".join(s.name for s in tfjs.WebModel(root / "mobilenet-float32").specs)
    for pattern in (r"depthwise_conv2d(_\d+)?/depthwise_kernel", r"separable_conv2d(_\d+)?/pointwise_kernel"):
        assert re.search(pattern, names), (pattern, names)
    names = " ".join(s.name for s in tfjs.WebModel(root / "lstm_text-float32").specs)
    for pattern in (r"embedding(_\d+)?/embeddings", r"lstm(_\d+)?/lstm_cell(_\d+)?/kernel",
                    r"lstm(_\d+)?/lstm_cell(_\d+)?/recurrent_kernel"):
        assert re.search(pattern, names), (pattern, names)
    doc = json.loads((root / "dense-uint8" / "model.json").read_text())
    assert doc["format"] == "layers-model" and doc["convertedBy"].startswith("qshard ")
    first = doc["modelTopology"]["config"]["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_input_shape"] == [None, 12]
    assert "batch_shape" not in first["config"]
    assert all(isinstance(layer["config"]["dtype"], str) for layer in doc["modelTopology"]["config"]["layers"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_weights_are_the_bytes_tensorflowjs_writes(converted, tfjs_quantization, tmp_path, variant):
    """The shards and manifest of a converted model are what tensorflowjs 4.22's write_weights
    writes for the same weights and quantization map."""
    from qshard import reference
    root, built, _ = converted
    model, _ = built["mobilenet"]
    groups = [[{"name": name, "data": array} for name, array in keras3_weights(model)]]
    qmap = {} if variant == "float32" else {variant: "*"}
    (tmp_path / "ref").mkdir()
    manifest = reference.load("write_weights").write_weights(groups, str(tmp_path / "ref"), shard_size_bytes=4096,
                                                             quantization_dtype_map=qmap or None)
    ours = root / f"mobilenet-{variant}"
    assert json.loads((ours / "model.json").read_text())["weightsManifest"] == manifest
    for path in manifest[0]["paths"]:
        assert (ours / path).read_bytes() == (tmp_path / "ref" / path).read_bytes(), path


# --------------------------------------------------------------------------------------------------
# Files: a .keras file through the command, and a tf_keras .h5 model.

def test_convert_command_on_a_keras_file(keras, node, tmp_path, capsys):
    model, shape, dtype = _models(keras)["mobilenet"]
    randomize(model, 9)
    model.save(tmp_path / "m.keras")
    out = tmp_path / "web"
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(out), "--uint8", "--keep", "classifier/*"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    stored = {s.name: s.stored_dtype for s in tfjs.WebModel(out).specs}
    assert stored["classifier/kernel"] == "float32" and stored["stem/kernel"] == "uint8"
    x = model_input(shape, dtype, 3)
    write_input(tmp_path / "in.json", x)
    error = run_node(node, "load_layers_model.js", [out, tmp_path / "in.json", tmp_path / "out.json"])
    assert not error, error
    got, _ = js_output(tmp_path / "out.json")
    set_weights(model, tfjs.read_weights(out))
    want = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_tf_keras_h5_model(tf_keras, node, tmp_path):
    L = tf_keras.layers
    inp = tf_keras.Input((10, 10, 2))
    x = L.Conv2D(4, 3, activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Flatten()(x)
    y = L.Dense(3, activation="softmax")(L.Concatenate()([L.Dense(5)(x), L.Dense(5, activation="relu")(x)]))
    model = tf_keras.Model(inp, y)
    rng = np.random.default_rng(4)
    model.set_weights([(rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name else rng.standard_normal(w.shape) * 0.3)
                       .astype(np.float32) for w in model.weights])
    model.save(tmp_path / "m.h5")
    x_in = rng.standard_normal((2, 10, 10, 2)).astype(np.float32)
    write_input(tmp_path / "in.json", x_in)
    want = model.predict(x_in, verbose=0)
    for variant, how in VARIANTS.items():
        out = tmp_path / variant
        qk.save_web_model(tmp_path / "m.h5", out, **how)
        error = run_node(node, "load_layers_model.js", [out, tmp_path / "in.json", tmp_path / f"{variant}.json"])
        assert not error, f"{variant}: {error}"
        got, _ = js_output(tmp_path / f"{variant}.json")
        values = tfjs.read_weights(out)
        model.set_weights([values[weight_name(w.name)] for w in model.weights])
        expected = model.predict(x_in, verbose=0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max(), err_msg=variant)
        if variant == "float32":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # The model object converts to the same files as its .h5 (topology and weights alike).
    model.load_weights(tmp_path / "m.h5")
    qk.save_web_model(model, tmp_path / "from-object", uint8=True)
    for name in sorted(p.name for p in (tmp_path / "uint8").iterdir()):
        a, b = (tmp_path / "uint8" / name).read_bytes(), (tmp_path / "from-object" / name).read_bytes()
        if name == "model.json":
            a, b = json.loads(a), json.loads(b)
            a["modelTopology"].pop("keras_version"), b["modelTopology"].pop("keras_version")
            a.pop("generatedBy"), b.pop("generatedBy")
        assert a == b, name


# --------------------------------------------------------------------------------------------------
# What cannot be converted is refused, naming the layer and the option.

def _unsupported(keras):
    L = keras.layers
    return {
        "conv3d": (lambda: keras.Sequential([keras.Input((4, 4, 4, 1)), L.Conv3D(2, 1, name="volume")]),
                   r"layer 'volume' \(Conv3D\): this layer class is not converted"),
        "gru_reset_after": (lambda: keras.Sequential([keras.Input((5, 3)), L.GRU(4, name="gru")]),
                            r"layer 'gru' \(GRU\): option reset_after=True is not supported"),
        "causal": (lambda: keras.Sequential([keras.Input((8, 2)), L.Conv1D(2, 3, padding="causal", name="c")]),
                   r"layer 'c' \(Conv1D\): option padding='causal' is not supported"),
        "leaky": (lambda: keras.Sequential([keras.Input((3,)), L.ReLU(max_value=6.0, negative_slope=0.1, name="r")]),
                  r"layer 'r' \(ReLU\): option negative_slope=0.1"),
        "exponential": (lambda: keras.Sequential([keras.Input((3,)), L.Dense(2, activation="exponential",
                                                                             name="d")]),
                        r"layer 'd' \(Dense\): option activation='exponential'"),
        "rms": (lambda: keras.Sequential([keras.Input((3,)), L.LayerNormalization(rms_scaling=True, name="n")]),
                r"layer 'n' \(LayerNormalization\): option rms_scaling=True"),
    }


@pytest.mark.parametrize("case", ["conv3d", "gru_reset_after", "causal", "leaky", "exponential", "rms"])
def test_unsupported_layers_and_options_are_refused(keras, tmp_path, case, capsys):
    build, message = _unsupported(keras)[case]
    model = build()
    with pytest.raises(ConversionError, match=message):
        qk.save_web_model(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    model.save(tmp_path / "m.keras")
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "m.keras" in err and "not" in err and not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "m.keras"]


def test_subclassed_models_and_bad_files_are_refused(keras, tmp_path, capsys):
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)
    model = Custom()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(ConversionError, match="subclassed"):
        qk.save_web_model(model, tmp_path / "out")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    assert cli.main(["convert", str(tmp_path / "bad.keras"), str(tmp_path / "out")]) == 2
    assert "bad.keras" in capsys.readouterr().err
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    assert cli.main(["convert", str(tmp_path / "bad.h5"), str(tmp_path / "out")]) == 2
    assert "bad.h5" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.keras"), str(tmp_path / "out")]) == 2
    assert "missing.keras" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
