"""qshard eval on a web model path: routed to the tfjs evaluator (not Keras), a table or --json, and
bad sample files as one-line errors naming the file and the array."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import JS_NODE_MODULES, start_tfjs_runner

from qshard.example import forward, weights, write_example


@pytest.fixture(scope="module")
def env():
    start_tfjs_runner().close()  # a loud skip without Node and tfjs (a failure under QSHARD_REQUIRE_NODE)
    return dict(os.environ, QSHARD_TFJS_NODE_MODULES=JS_NODE_MODULES)


def qshard(env, *args):
    return subprocess.run([sys.executable, "-m", "qshard", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_eval_routes_a_web_model_to_tfjs(env, tmp_path):
    model = write_example(tmp_path / "graph", format="graph-model")
    x = np.random.default_rng(0).random((12, 64), dtype=np.float32)
    y = forward(dict(weights()), x).argmax(axis=1)
    np.savez(tmp_path / "samples.npz", x=x, y=y)
    done = qshard(env, "eval", model / "model.json", "--data", tmp_path / "samples.npz", "--variants", "float16,uint8",
                  "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["format"] == "graph-model" and doc["sample_count"] == 12 and doc["metric"] == "accuracy"
    assert [r["name"] for r in doc["rows"]] == ["float16", "uint8"]
    assert doc["rows"][0]["metric"] == 100.0 and doc["rows"][1]["worst_cosine"] < 1.0
    text = qshard(env, "eval", model, "--variants", "uint8", "--samples", "3")
    assert text.returncode == 0, text.stderr
    assert "3 made-up samples" in text.stdout and "is a guess" in text.stdout and "uint8" in text.stdout


def test_eval_web_errors_are_one_line(env, tmp_path):
    model = write_example(tmp_path / "layers")
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 63), np.float32))
    done = qshard(env, "eval", model, "--data", tmp_path / "bad.npz")
    assert done.returncode == 2
    assert done.stderr.startswith(f"qshard: error: {tmp_path / 'bad.npz'}: input 'dense_input'") and \
        "[63]" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    unknown = qshard(env, "eval", model, "--variants", "int4")
    assert unknown.returncode == 2 and "unknown variant(s) int4" in unknown.stderr


def test_eval_takes_a_folder_whose_model_json_has_another_name(env, tmp_path):
    model = write_example(tmp_path / "faceres")
    (model / "model.json").rename(model / "faceres-deep.json")
    done = qshard(env, "eval", model, "--variants", "uint8", "--samples", "3")
    assert done.returncode == 0, done.stderr
    assert "faceres-deep.json" in done.stdout and "uint8" in done.stdout
    (model / "faceres-lite.json").write_bytes((model / "faceres-deep.json").read_bytes())
    several = qshard(env, "eval", model, "--samples", "3")
    assert several.returncode == 2 and "holds 2 model JSONs (faceres-deep.json, faceres-lite.json)" in several.stderr


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tf.Module SavedModel (dense + exact GELU): what `convert` takes and eval / mixed must take too."""
    from conftest import require
    try:
        import tensorflow as tf
    except ImportError as error:
        require(f"TensorFlow is not installed ({error})", "QSHARD_REQUIRE_KERAS", "SAVEDMODEL ROUTES OF EVAL/MIXED")
    rng = np.random.default_rng(5)

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.standard_normal((16, 8)).astype(np.float32))
            self.b = tf.Variable(rng.standard_normal(8).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.gelu(tf.matmul(x, self.w) + self.b, approximate=False)}

    net = Net()
    path = tmp_path_factory.mktemp("sm") / "saved"
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.serve})
    x = rng.random((6, 16), dtype=np.float32)
    np.savez(path.parent / "samples.npz", x=x)
    return path, path.parent / "samples.npz", net.serve(tf.constant(x))["y"].numpy()


def test_eval_and_mixed_take_a_saved_model(env, saved_model, tmp_path):
    path, samples, want = saved_model
    done = qshard(env, "eval", path, "--data", samples, "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["rows"]}
    assert set(rows) >= {"float32", "float16", "uint8"}
    assert rows["float16"]["worst_cosine"] > 0.999 and rows["float32"]["worst_cosine"] == pytest.approx(1.0)
    out = tmp_path / "mixed"
    done = qshard(env, "mixed", path, out, "--data", samples, "--min-cosine", "0.999", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["met"] and result["worst_cosine"] >= 0.999
    doc = json.loads((out / "model.json").read_text())
    assert doc["format"] == "graph-model" and not any("qshard-convert-" in p for p in os.listdir(tmp_path))
    # the written model, run in stock tfjs, predicts what TensorFlow predicts within the budget
    runner = start_tfjs_runner()
    try:
        got = runner.run(out, {"x": np.load(samples)["x"]}).outputs
    finally:
        runner.close()
    y = np.asarray(next(iter(got.values())), np.float64).ravel()
    assert np.dot(y, want.ravel()) / (np.linalg.norm(y) * np.linalg.norm(want)) >= 0.999


def test_mixed_refuses_to_write_into_its_saved_model(env, saved_model):
    path, samples, _ = saved_model
    done = qshard(env, "mixed", path, path / "variables", "--data", samples, "--force")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()


def test_eval_and_mixed_take_a_keras_model_layers_cannot_express(env, saved_model, tmp_path):
    """Keras' default GRU has no tfjs-layers form: eval and mixed go through the graph conversion
    (as `convert --to graph` does) and evaluate it in tfjs, labels included."""
    import keras
    rng = np.random.default_rng(8)
    model = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.GRU(16), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "gru.keras")
    x = rng.integers(0, 50, (24, 12)).astype(np.int32)
    y = model.predict(x, verbose=0).argmax(axis=1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    done = qshard(env, "eval", tmp_path / "gru.keras", "--data", tmp_path / "d.npz", "--tflite", "none", "--json")
    assert done.returncode == 0, done.stderr
    assert "reset_after=True" in done.stderr and "as a graph model in tfjs instead" in done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["rows"]}
    assert rows["float32"]["metric"] == pytest.approx(100.0)  # tfjs predicts Keras's own labels
    assert rows["float16"]["worst_cosine"] > 0.999
    done = qshard(env, "mixed", tmp_path / "gru.keras", tmp_path / "out", "--data", tmp_path / "d.npz",
                  "--min-cosine", "0.999", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["met"]
    assert json.loads((tmp_path / "out" / "model.json").read_text())["format"] == "graph-model"


def test_the_parser_names_the_default_variants_without_importing_the_evaluator():
    """The CLI spells the default variants out so that building the parser stays cheap."""
    from qshard.accuracy import web_eval
    from qshard.cli import eval_web
    assert eval_web.DEFAULT_VARIANTS == web_eval.DEFAULT_VARIANTS
    code = "import sys; from qshard import cli; cli.build_parser(); print('qshard.accuracy.web_eval' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
