"""qshard mixed WEB_MODEL OUT --min-cosine: the graph-model search from the command line (stock tfjs
in Node runs every candidate)."""
import json
import subprocess
import sys

import numpy as np

from qshard.accuracy import fidelity
from qshard.accuracy.tfjs_runner import TfjsRunner
from support.pc_graphs import MODELS


def qshard(*args):
    return subprocess.run([sys.executable, "-m", "qshard", *args], capture_output=True, text=True, timeout=600)


def test_mixed_on_a_graph_model_keeps_the_budget(tmp_path, node):
    src = MODELS["folded_batch_norm"](tmp_path / "src", np.random.default_rng(7))
    x = np.random.default_rng(2).standard_normal((4, 12, 12, 3)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", x=x)
    run = qshard("mixed", str(src), str(tmp_path / "out"), "--data", str(tmp_path / "samples.npz"),
                 "--min-cosine", "0.99999")
    assert run.returncode == 0, run.stderr
    assert "budget 0.99999) on 4 samples" in run.stdout and "models run in tfjs (cpu)" in run.stdout
    assert "per-channel uint16" in run.stdout and "x all-uint8" in run.stdout
    with TfjsRunner("cpu") as runner:
        ref, got = runner.run(src, {"image": x}).outputs, runner.run(tmp_path / "out", {"image": x}).outputs
    assert fidelity.compare(ref, got).worst_cosine >= 0.99999
    again = qshard("mixed", str(src), str(tmp_path / "out"), "--min-cosine", "0.9", "--json")
    assert again.returncode == 2 and "already exists" in again.stderr
    made_up = qshard("mixed", str(src), str(tmp_path / "out2"), "--min-cosine", "0.9", "--json", "--samples", "2",
                     "--no-bias-correction")
    assert made_up.returncode == 0, made_up.stderr
    result = json.loads(made_up.stdout)
    # the smallest choice (biases at uint16) met the budget, and so did the biases at uint8; no mean inputs measured
    assert result["met"] and result["synthetic"] and result["evaluations"] == 2
    assert set(result["choice"].values()) == {"per-channel uint8", "uint8"}


def test_mixed_refusals_are_one_line(tmp_path):
    run = qshard("mixed", str(tmp_path / "model.keras"), str(tmp_path / "out"))
    assert run.returncode == 2 and "needs --data" in run.stderr and "Traceback" not in run.stderr


def test_a_graph_model_whose_own_outputs_are_not_finite_is_refused(tmp_path, node):
    src = MODELS["folded_batch_norm"](tmp_path / "src", np.random.default_rng(7))
    shard = next(src.glob("*.bin"))
    values = np.frombuffer(shard.read_bytes(), np.float32).copy()
    values[3] = np.nan  # in conv1/weights, the first weight
    shard.write_bytes(values.tobytes())
    run = qshard("mixed", str(src), str(tmp_path / "out"), "--samples", "2", "-q")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]  # (after the made-up samples warning)
    assert last.startswith(f"qshard: error: {src}") and "outputs hold NaN or Inf" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no temporary
