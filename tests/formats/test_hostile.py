"""Hostile inputs (tests/data/make_hostile.py) against every command that reads them: each run is a
separate process with a timeout (a hang fails the test instead of hanging CI) and must end with one
line naming the file and the problem, exit code 2 (verify: a problem line and 1), no traceback, no
signal death, nothing left behind (no output, no temporary, no folder created for it) and the input
unchanged."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import make_hostile  # noqa: E402
from make_hostile import CASES, data_file, web_model  # noqa: E402
from support.processes import run_qshard, tree_state  # noqa: E402


@pytest.fixture
def place(tmp_path):
    """Folders for one run: in/ (the hostile input), work/ (the current folder and outputs),
    tmp/ (TMPDIR), and valid companions: a web model, a data file, a placeholder .keras file."""
    for name in ("in", "work", "tmp"):
        (tmp_path / name).mkdir()
    web_model(tmp_path / "good")
    data_file(tmp_path / "gooddata", x=np.zeros((3, 8), np.float32), y=np.array([0, 1, 2]))
    (tmp_path / "placeholder.keras").write_bytes(b"")  # never opened: the data fails first
    (tmp_path / "tf.min.js").write_text("// never served: the model fails first")
    return tmp_path


def commands(kind: str, path: Path, t: Path) -> dict:
    """Every command that takes an input of this kind, with the hostile input in its place."""
    work, good, data, keras = t / "work", t / "good", t / "gooddata" / "d.npz", t / "placeholder.keras"
    out = work / "out"
    if kind == "web":
        return {"quantize": ["quantize", path, out, "--uint8"],
                "inspect": ["inspect", path, "--no-gzip"],
                "inspect-error": ["inspect", path, "--error", "--no-gzip"],
                "inspect-against": ["inspect", good, "--against", path, "--no-gzip"],
                "verify": ["verify", path],
                "report": ["report", path, "-o", work / "r.html"],
                "bench-browser": ["bench", "--browser", path, "--work-dir", work / "bench",  # tools that pass its
                                  "--chromium", sys.executable, "--tfjs", t / "tf.min.js"]}  # checks, never run
    if kind in ("safetensors", "npz", "npy", "h5"):
        return {"quantize": ["quantize", path, out, "--uint8"]}
    if kind == "h5model":
        return {"convert": ["convert", path, out], "convert-graph": ["convert", path, out, "--to", "graph"],
                "quantize-keras": ["quantize", path, out, "--uint8", "--from", "keras"]}
    if kind == "keras":
        return {"convert": ["convert", path, out], "convert-graph": ["convert", path, out, "--to", "graph"],
                "quantize": ["quantize", path, out, "--uint8"],
                "eval": ["eval", path, "--data", data, "--tflite", "none"],
                "mixed": ["mixed", path, out, "--data", data],
                "tflite": ["tflite", path, out, "--modes", "float32"]}
    if kind == "savedmodel":
        return {"tflite": ["tflite", path, out, "--modes", "float32"], "convert": ["convert", path, out]}
    assert kind == "data"
    return {"eval": ["eval", keras, "--data", path, "--tflite", "none"],
            "mixed": ["mixed", keras, out, "--data", path],
            "tflite": ["tflite", keras, out, "--modes", "float32", "--calibration", path]}


RUNS = [(c, name) for c in CASES for name in commands(c.kind, Path("x"), Path("t"))
        if not c.only or name in c.only]


def test_every_kind_and_command_is_covered():
    kinds = {c.kind for c in CASES}
    assert kinds == set(make_hostile.KINDS)
    assert {name for c, name in RUNS} >= {"quantize", "inspect", "inspect-error", "inspect-against", "verify", "report",
                                           "bench-browser", "convert", "convert-graph", "eval", "mixed", "tflite"}
    assert len(CASES) >= 70 and len(RUNS) >= 200


@pytest.mark.parametrize("case,command", RUNS, ids=[f"{c.name}-{name}" for c, name in RUNS])
def test_hostile_input(case, command, place):
    path = case.build(place / "in")
    before = {name: tree_state(place / name) for name in ("in", "work", "tmp")}
    done = run_qshard(commands(case.kind, path, place)[command], cwd=place / "work", tmpdir=place / "tmp")
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    if command == "verify":
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert case.expected in done.stdout, done.stdout
    else:
        assert done.returncode == 2, (done.stdout, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("qshard: error: ") and case.expected in last, done.stderr
        assert str(path) in last, f"the message does not name {path}: {last}"
    after = {name: tree_state(place / name) for name in ("in", "work", "tmp")}
    assert after == before, "the run changed its input or left something behind"
