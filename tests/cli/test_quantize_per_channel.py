"""qshard quantize --per-channel / --equalize on graph models: the summary, and clear one-line
refusals for layers models, other inputs and conflicting patterns."""
import json
import subprocess
import sys

import numpy as np

from qshard import tfjs
from qshard.example import write_example
from support.pc_graphs import MODELS


def qshard(*args):
    return subprocess.run([sys.executable, "-m", "qshard", *args], capture_output=True, text=True, timeout=600)


def test_per_channel_with_uint8_for_the_rest(tmp_path):
    src = MODELS["folded_batch_norm"](tmp_path / "src", np.random.default_rng(7))
    run = qshard("quantize", str(src), str(tmp_path / "out"), "--uint8", "--per-channel")
    assert run.returncode == 0, run.stderr
    assert "4 filters per channel (scale: 2 absorbed, 1 output, 1 weight)" in run.stdout, run.stdout
    assert "predict-time cost: 2 ops over 672 elements" in run.stdout
    specs = {s.name: s.stored_dtype for s in tfjs.WebModel(tmp_path / "out").specs}
    assert specs["conv1/weights"] == "uint8" and specs["pw/weights/pc_scale"] == "float32"
    assert specs["conv1/bias"] == "float16" and specs["pw/bias"] == "uint8"
    doc = json.loads((tmp_path / "out" / "model.json").read_text())
    mul = [n for n in doc["modelTopology"]["node"] if n["name"] == "pw/weights"]
    assert mul[0]["op"] == "Mul" and mul[0]["input"] == ["pw/weights/pc_codes", "pw/weights/pc_scale"]


def test_uint16_asymmetric_and_equalize(tmp_path):
    src = MODELS["matmul_head"](tmp_path / "src", np.random.default_rng(7))
    run = qshard("quantize", str(src), str(tmp_path / "out"), "--per-channel-uint16", "fc*", "--asymmetric",
                 "--equalize", "--float16")
    assert run.returncode == 0, run.stderr
    assert "2 filters per channel" in run.stdout and "layer pairs equalized" in run.stdout
    specs = {s.name: s.stored_dtype for s in tfjs.WebModel(tmp_path / "out").specs}
    assert specs["fc1/weights/pc_codes"] == "uint16" and specs["conv/weights"] == "float16"
    assert "fc1/weights/pc_zero_point" in specs


def test_refusals_are_one_line(tmp_path):
    layers = write_example(tmp_path / "layers")
    run = qshard("quantize", str(layers), str(tmp_path / "o"), "--per-channel")
    assert run.returncode == 2 and "needs a graph model" in run.stderr and "Traceback" not in run.stderr
    np.savez(tmp_path / "w.npz", a=np.zeros((2, 2), np.float32))
    run = qshard("quantize", str(tmp_path / "w.npz"), str(tmp_path / "o"), "--equalize")
    assert run.returncode == 2 and "need a tfjs graph model" in run.stderr
    src = MODELS["matmul_head"](tmp_path / "src", np.random.default_rng(7))
    run = qshard("quantize", str(src), str(tmp_path / "o"), "--per-channel", "conv/*", "--uint8", "conv/weights")
    assert run.returncode == 2 and "matches a per-channel and a per-tensor pattern" in run.stderr
    run = qshard("quantize", str(src), str(tmp_path / "o"), "--per-channel", "nomatch/*")
    assert run.returncode == 2 and "'nomatch/*' (--per-channel) matches no weight" in run.stderr
    assert not (tmp_path / "o").exists()
    run = qshard("quantize", str(src), str(tmp_path / "o"), "--per-channel", "nomatch/*", "--allow-unmatched")
    assert run.returncode == 0 and "pattern 'nomatch/*' matches no weight" in run.stderr


def test_weights_it_cannot_do_are_named(tmp_path):
    src = MODELS["detection_head"](tmp_path / "src", np.random.default_rng(7))
    run = qshard("quantize", str(src), str(tmp_path / "o"), "--per-channel", "*", "--uint8")
    assert run.returncode == 0, run.stderr
    assert "not per channel (left to the other flags): 'backbone/bias' (is not the filter" in run.stderr


def test_eval_shows_the_per_channel_variants(tmp_path, node):
    src = MODELS["folded_batch_norm"](tmp_path / "src", np.random.default_rng(7))
    run = qshard("eval", str(src), "--variants", "uint8,per-channel-uint8,per-channel-uint16", "--json", "--samples", "2")
    assert run.returncode == 0, run.stderr
    rows = {r["name"]: r for r in json.loads(run.stdout)["rows"]}
    cos = {name: rows[name]["worst_cosine"] for name in rows}
    assert cos["uint8"] < 0.99 < cos["per-channel-uint8"] < cos["per-channel-uint16"], cos
