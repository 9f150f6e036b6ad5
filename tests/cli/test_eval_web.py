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
