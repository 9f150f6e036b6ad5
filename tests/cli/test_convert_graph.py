"""qshard convert --to graph|layers from the command line: the defaults, the SavedModel options,
--metadata, the refusals (one line, exit 2), and TensorFlow imported only when converting."""
import json
import subprocess
import sys

import numpy as np
import pytest

from qshard import cli, tfjs

# Keras' own .keras saving code warns about numpy 2's copy keyword; nothing qshard can change.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def qshard(*args):
    return subprocess.run([sys.executable, "-m", "qshard", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def saved_model(keras, tmp_path_factory):
    import tensorflow as tf
    path = tmp_path_factory.mktemp("sm") / "saved_model"
    module = tf.Module()
    module.w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    module.serve = tf.function(lambda x: {"scores": tf.nn.relu(tf.matmul(x, module.w)), "lgamma": tf.math.lgamma(x)},
                               input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    module.plain = tf.function(lambda x: tf.matmul(x, module.w) * 2.0,
                               input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "plain": module.plain})
    return path


def test_help_names_the_targets_and_tensorflow_stays_unimported():
    code = ("import sys, contextlib, io\nfrom qshard.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    try:\n        main(['convert', '--help'])\n"
            "    except SystemExit:\n        pass\nprint('--to' in out.getvalue(), 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stdout + done.stderr


@pytest.mark.slow
def test_a_saved_model_converts_to_a_graph_model_by_default(saved_model, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    out = qshard("convert", saved_model, tmp_path / "web", "--signature", "plain", "--uint8",
                 "--metadata", f"labels:{tmp_path / 'labels.json'}")
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "graph:" in out.stdout
    doc = json.loads((tmp_path / "web" / "model.json").read_text())
    assert doc["format"] == "graph-model" and doc["userDefinedMetadata"] == {"labels": ["a", "b", "c"]}
    assert list(doc["signature"]["inputs"]) == ["x"] and list(doc["signature"]["outputs"]) == ["output_0"]
    assert {s.stored_dtype for s in tfjs.WebModel(tmp_path / "web").specs} == {"uint8"}


def test_refusals_are_one_line(saved_model, keras, tmp_path, capsys):
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    model.save(tmp_path / "m.keras")
    (tmp_path / "list.json").write_text("[1, 2]")
    cases = [
        ([saved_model, tmp_path / "a"], "does not implement this op .*Lgamma"),
        ([saved_model, tmp_path / "a", "--to", "layers"], "converts only to a graph model"),
        ([tmp_path / "m.keras", tmp_path / "a", "--signature", "plain"], "--signature: only with --to graph"),
        ([tmp_path / "m.keras", tmp_path / "a", "--to", "graph", "--metadata", tmp_path / "list.json"],
         "metadata must be a JSON object"),
        ([tmp_path / "m.keras", tmp_path / "a", "--to", "graph", "--metadata", "nofile"], "no such file"),
        ([saved_model, tmp_path / "a", "--signature", "nope"], r"no signature 'nope' \(the SavedModel has: plain, "
                                                              r"serving_default\)"),
    ]
    for args, message in cases:
        assert cli.main(["convert", *map(str, args)]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("qshard: error: ") and err.count("\n") == 1, err
        assert __import__("re").search(message, err), (message, err)
    assert not (tmp_path / "a").exists()


def test_a_keras_file_goes_to_layers_by_default_and_to_graph_when_asked(keras, tmp_path, capsys):
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2, activation="relu")(inp))
    model.save(tmp_path / "m.keras")
    (tmp_path / "meta.json").write_text(json.dumps({"author": "me"}))
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "layers"), "-q"]) == 0
    assert json.loads((tmp_path / "layers" / "model.json").read_text())["format"] == "layers-model"
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "graph"), "--to", "graph", "--float16",
                     "--metadata", str(tmp_path / "meta.json")]) == 0
    doc = json.loads((tmp_path / "graph" / "model.json").read_text())
    assert doc["format"] == "graph-model" and doc["userDefinedMetadata"] == {"author": "me"}
    assert "_FusedMatMul" in {n["op"] for n in doc["modelTopology"]["node"]}
    assert "float16" in {s.stored_dtype for s in tfjs.WebModel(tmp_path / "graph").specs}
    assert "graph:" in capsys.readouterr().out
