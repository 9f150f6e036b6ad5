"""The op table, the rewrites of ops tfjs lacks, the refusal of ops it lacks otherwise, and the
conversion's handling of bad input: all checked with TensorFlow alone (no Node)."""
import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from qshard import reference, tfjs
from qshard.errors import GraphError, OutputError
from qshard.graph import convert_to_graph_model, ops
from qshard.graph.fuse import FUSED_ACTIVATIONS

from support.graph import tf_run_web_model


def _ops(folder):
    doc = json.loads((Path(folder) / "model.json").read_text())
    return [n["op"] for n in doc["modelTopology"]["node"]], doc


def _save_module(tf, path, fn, spec):
    module = tf.Module()
    module.serve = tf.function(fn, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return tf.saved_model.load(str(path)).signatures["serving_default"]


def test_the_table_is_tfjs_4_22s_op_list():
    table = ops.supported_ops()
    assert {"Conv2D", "_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul", "Erf", "Unpack"} <= table
    assert not {"Erfc", "Softsign", "Rint", "Lgamma"} & table
    assert not any(op.startswith("SimpleML") for op in table), "tfdf ops need @tensorflow/tfjs-tfdf, not stock tfjs"
    try:
        folder = Path(reference.load("quantization").__file__).parent / "op_list"
    except reference.ReferenceUnavailable as error:
        require(str(error), "QSHARD_REQUIRE_REFERENCE", "THE OP TABLE CHECK AGAINST tensorflowjs 4.22")
    assert ops.generate(folder) == json.loads(ops.TABLE.read_text()), "tfjs_ops.json is not what its script makes"


def test_rewrites_compute_what_the_original_ops_compute(tf, tmp_path):
    def fn(x):
        return {"erfc": tf.math.erfc(x), "softsign": tf.nn.softsign(x), "rint": tf.math.rint(x * 3.0)}
    serving = _save_module(tf, tmp_path / "sm", fn, tf.TensorSpec([None, 7], tf.float32, name="x"))
    x = np.linspace(-4, 4, 21, dtype=np.float32)  # includes exact .5 ties for rint
    x = np.concatenate([x, [0.5 / 3, 1.5 / 3, -2.5 / 3]]).astype(np.float32)[:21].reshape(3, 7)
    report = convert_to_graph_model(tmp_path / "sm", tmp_path / "web")
    assert report.rewritten == {"Erfc": 1, "Softsign": 1, "Rint": 1}
    written, _ = _ops(tmp_path / "web")
    assert not {"Erfc", "Softsign", "Rint"} & set(written) and {"Erf", "Abs", "Round"} <= set(written)
    want = {k: v.numpy() for k, v in serving(x=x).items()}
    got = tf_run_web_model(tf, tmp_path / "web", {"x": x})
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-6, atol=2e-6, err_msg=key)


def test_an_op_tfjs_lacks_is_refused_by_name_before_anything_is_written(tf, tmp_path):
    _save_module(tf, tmp_path / "sm", lambda x: tf.math.lgamma(x) + 1.0, tf.TensorSpec([None, 3], tf.float32))
    out = tmp_path / "parent" / "web"
    with pytest.raises(GraphError, match=r"does not implement this op .*Lgamma \(node '[^']*Lgamma[^']*'\)"):
        convert_to_graph_model(tmp_path / "sm", out)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir()), "a temporary folder was left behind"


def test_fused_activations_are_the_ones_every_backend_implements(keras, tmp_path):
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="hard_swish")(inp)  # tfjs 4.22's cpu backend has no fused hardswish
    x = L.Conv2D(4, 3, activation="relu6")(x)
    out = L.Dense(2, activation="sigmoid")(L.Flatten()(x))
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(np.full(w.shape, 0.1, np.float32))  # non-zero biases (grappler drops adding zeros)
    convert_to_graph_model(model, tmp_path / "web")
    _, doc = _ops(tmp_path / "web")
    fused = sorted((node["op"], [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"]["s"]])
                   for node in doc["modelTopology"]["node"] if "fused_ops" in node.get("attr", {}))
    # hard_swish stays x * relu6(x + 3) / 6 after a conv fused with its bias only.
    assert fused == [("_FusedConv2D", ["BiasAdd"]), ("_FusedConv2D", ["BiasAdd", "Relu6"]),
                     ("_FusedMatMul", ["BiasAdd", "Sigmoid"])]
    assert {"Relu6", "Sigmoid"} <= set(FUSED_ACTIVATIONS) and "HardSwish" not in FUSED_ACTIVATIONS


def test_outputs_signatures_and_options(keras, tf, tmp_path):
    inp = keras.Input((3,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="already exists"):
        convert_to_graph_model(model, tmp_path / "taken")
    with pytest.raises(GraphError, match="structured output names need a function that returns a dict"):
        convert_to_graph_model(model, tmp_path / "a", structured_outputs=True)
    with pytest.raises(GraphError, match="signature and tags apply to SavedModels only"):
        convert_to_graph_model(model, tmp_path / "a", signature="serving_default")
    report = convert_to_graph_model(model, tmp_path / "taken", force=True, metadata={"labels": ["a", "b"]})
    assert report.inputs == ["x"] and report.outputs == model.output_names
    doc = json.loads((tmp_path / "taken" / "model.json").read_text())
    assert doc["userDefinedMetadata"] == {"labels": ["a", "b"]} and doc["format"] == "graph-model"
    assert doc["convertedBy"].startswith("qshard ") and doc["generatedBy"].startswith("keras 3.")
    _save_module(tf, tmp_path / "sm", lambda v: v * 2.0, tf.TensorSpec([None, 3], tf.float32))
    with pytest.raises(GraphError, match=r"no signature 'other' \(the SavedModel has: serving_default\)"):
        convert_to_graph_model(tmp_path / "sm", tmp_path / "b", signature="other")
    with pytest.raises(GraphError, match="could not load the SavedModel with tags train"):
        convert_to_graph_model(tmp_path / "sm", tmp_path / "b", tags=["train"])
    for bad, problem in ((tmp_path / "missing.keras", "no such file"), (tmp_path / "sm" / "saved_model.pb",
                                                                        "expected a .keras file")):
        with pytest.raises(GraphError, match=problem):
            convert_to_graph_model(bad, tmp_path / "c")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary output left behind"


def test_converting_with_dtype_flags_equals_quantizing_the_float32_conversion(keras, tmp_path):
    """So the heavy models' quantized variants may be made from their float32 conversion."""
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    model = keras.Model(inp, L.Dense(3)(L.Flatten()(L.Conv2D(4, 3)(inp))))
    convert_to_graph_model(model, tmp_path / "f32")
    for flag in ("uint8", "float16"):
        convert_to_graph_model(model, tmp_path / flag, **{flag: "*"})
        tfjs.quantize_model(tmp_path / "f32", tmp_path / f"{flag}-requantized", **{flag: "*"})
        for name in ("model.json", "group1-shard1of1.bin"):
            a, b = (tmp_path / flag / name).read_bytes(), (tmp_path / f"{flag}-requantized" / name).read_bytes()
            assert a == b, f"{flag}: {name} differs"


def test_h5_and_keras_files_load_through_their_own_keras(keras, tmp_path):
    L = keras.layers
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, L.Dense(2, activation="relu")(inp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # from inside Keras' saving code
        model.save(tmp_path / "m.keras")
    report = convert_to_graph_model(tmp_path / "m.keras", tmp_path / "web")
    assert report.inputs == ["x"] and report.ops.get("_FusedMatMul") == 1
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(GraphError, match="junk.h5: tf_keras could not load it"):
            convert_to_graph_model(tmp_path / "junk.h5", tmp_path / "web2")
