"""qshard eval / mixed on a tfjs layers model from the command line, as a user runs them; the outputs
run again in stock tfjs (Node)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from qshard.accuracy import fidelity
from support.pc_graphs import MODELS


def qshard(*args):
    return subprocess.run([sys.executable, "-m", "qshard", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_eval_and_mixed_on_a_layers_model(wide_layers, tfjs_runner, tmp_path, node):
    src, data, x = wide_layers
    ev = qshard("eval", src, "--data", data, "--json")
    assert ev.returncode == 0, ev.stderr
    table = json.loads(ev.stdout)
    assert table["format"] == "layers-model" and table["sample_count"] == 12 and not table["synthetic"]
    cos = {r["name"]: r["worst_cosine"] for r in table["rows"]}
    assert cos["float32"] == pytest.approx(1.0) and cos["float16"] > 0.9999 and cos["uint8"] < 0.9
    text = qshard("eval", src, "--data", data)
    assert text.returncode == 0 and "(layers-model)" in text.stdout and "worst cos" in text.stdout

    run = qshard("mixed", src, tmp_path / "out", "--data", data, "--min-cosine", "0.999", "--equalize")
    assert run.returncode == 0, run.stderr
    assert "equalized 3 layer pair(s): c1 -> dw, dw -> c2, c2 -> fc" in run.stdout
    assert "budget 0.999) on 12 samples" in run.stdout and "models run in tfjs (cpu)" in run.stdout
    ref, got = tfjs_runner.run(src, {"image": x}).outputs, tfjs_runner.run(tmp_path / "out", {"image": x}).outputs
    assert fidelity.compare(ref, got).worst_cosine >= 0.999
    assert json.loads((tmp_path / "out" / "model.json").read_text())["format"] == "layers-model"

    plain = qshard("mixed", src, tmp_path / "plain", "--data", data, "--min-cosine", "0.999", "--json",
                   "--bias-correction")
    assert plain.returncode == 0, plain.stderr
    result = json.loads(plain.stdout)
    assert result["met"] and result["format"] == "layers-model" and result["equalized"] == []
    assert result["bias_corrected"] == ["c1", "c2", "dw", "fc"]
    got = tfjs_runner.run(tmp_path / "plain", {"image": x}).outputs
    assert fidelity.compare(ref, got).worst_cosine >= 0.999
    assert set(result["choice"].values()) & {"uint16", "float16", "float32"}  # widened without equalization


def test_layers_model_refusals_are_one_line(wide_layers, tmp_path):
    src, data, _ = wide_layers
    per_channel = qshard("quantize", src, tmp_path / "q", "--uint8", "--per-channel")
    assert per_channel.returncode == 2 and "needs a graph model" in per_channel.stderr
    assert "qshard mixed" in per_channel.stderr and "Traceback" not in per_channel.stderr
    to_graph = qshard("convert", src, tmp_path / "g", "--to", "graph")
    assert to_graph.returncode == 2 and "this is a tfjs web model" in to_graph.stderr
    assert "--equalize" in to_graph.stderr and not (tmp_path / "g").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((src / "model.json").read_bytes())  # no shards
    run = qshard("mixed", broken, tmp_path / "out", "--data", data)
    assert run.returncode == 2 and "Traceback" not in run.stderr and str(broken) in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_bias_correction_is_refused_for_a_graph_model(tmp_path, node):
    graph = MODELS["folded_batch_norm"](tmp_path / "graph", np.random.default_rng(7))
    run = qshard("mixed", graph, tmp_path / "out", "--bias-correction", "--samples", "1")
    assert run.returncode == 2 and "--bias-correction is for layers models" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_quantize_equalize_and_the_eval_variant_take_layers_models(wide_layers, tfjs_runner, tmp_path, node):
    from qshard.tfjs import read_weights
    src, data, x = wide_layers
    run = qshard("quantize", src, tmp_path / "q", "--uint8", "--equalize")
    assert run.returncode == 0, run.stderr
    assert "(layers model): 3 layer pairs equalized (c1 -> dw, dw -> c2, c2 -> fc)" in run.stdout
    ranges = np.abs(read_weights(tmp_path / "q")["c1/kernel"]).reshape(-1, 12).max(axis=0)
    assert ranges.max() / ranges.min() < 20  # as given: over 100 (test_layers_mixed)
    assert json.loads((tmp_path / "q" / "model.json").read_text())["format"] == "layers-model"
    tfjs_runner.run(tmp_path / "q", {"image": x})  # stock tfjs loads it
    mixed_flags = qshard("quantize", src, tmp_path / "q2", "--uint8", "--equalize", "--per-channel")
    assert mixed_flags.returncode == 2 and "needs a graph model" in mixed_flags.stderr
    ev = qshard("eval", src, "--data", data, "--variants", "uint8,equalized-uint8", "--json")
    assert ev.returncode == 0, ev.stderr
    assert [r["name"] for r in json.loads(ev.stdout)["rows"]] == ["uint8", "equalized-uint8"]
    graph = MODELS["folded_batch_norm"](tmp_path / "graph", np.random.default_rng(7))
    ev = qshard("eval", graph, "--samples", "2", "--variants", "uint8,equalized-uint8", "--json")
    assert ev.returncode == 0, ev.stderr
    rows = {r["name"]: r["worst_cosine"] for r in json.loads(ev.stdout)["rows"]}
    assert rows["equalized-uint8"] > rows["uint8"]  # folded batch norm: equalization is what helps
