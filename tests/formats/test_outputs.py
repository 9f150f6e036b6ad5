"""Outputs under hostile conditions, for every command that writes: an output that is (or holds) an
input, '.', '..' or '/' is refused even with --force; an existing output is refused without it;
SIGINT, SIGTERM and SIGHUP leave nothing half-written; the temporaries of a run killed with SIGKILL
are recognised and removed by the next run; a shard truncated while it is read is an error, not a
signal death; and what the writers write passes `qshard verify`."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from make_hostile import data_file, h5_model, npz, safetensors, web_model  # noqa: E402
from support.processes import run_qshard, start_qshard, tree_state  # noqa: E402

from qshard import tfjs  # noqa: E402


@pytest.fixture
def place(tmp_path):
    """in/ holds valid inputs of every kind, work/ is the current folder, tmp/ is TMPDIR."""
    for name in ("in", "work", "tmp"):
        (tmp_path / name).mkdir()
    web_model(tmp_path / "in" / "float32")  # named as a bench variant, for the --work-dir case
    h5_model(tmp_path / "in" / "m.h5")
    data_file(tmp_path / "in", x=np.zeros((3, 8), np.float32), y=np.array([0, 1, 2]))
    (tmp_path / "in" / "m.keras").write_bytes(b"")  # never opened: every case fails before
    np.save(tmp_path / "in" / "c.npy", np.zeros((2, 8), np.float32))
    tfjs.write_weights({"w": np.ones(4, np.float32)}, tmp_path / "in")  # a bare manifest + shard too
    safetensors(tmp_path / "in" / "s.safetensors", {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                                                    "b": {"dtype": "I64", "shape": [1], "data_offsets": [12, 20]}},
                np.float32([1, 2, 3]).tobytes() + np.int64([7]).tobytes())
    return tmp_path


def _both(place):
    return {name: tree_state(place / name) for name in ("in", "work", "tmp")}


# Each: (command line with {in} and {work} to fill, the folder to run in, the text of the refusal).
OVERLAPS = {
    "quantize-into-its-folder": (["quantize", "{in}/float32", "{in}/float32", "--uint8"], "work", "is the input"),
    "quantize-json-into-its-folder": (["quantize", "{in}/float32/model.json", "{in}/float32", "--uint8"], "work",
                                      "holds the input"),
    "quantize-into-a-parent": (["quantize", "{in}/float32", "{in}", "--uint8"], "work", "holds the input"),
    "quantize-into-dot": (["quantize", "{in}/float32", ".", "--uint8"], "work", "is the current folder"),
    "quantize-into-dotdot": (["quantize", "{in}/float32", "..", "--uint8"], "work", "is the current folder or holds it"),
    "quantize-into-root": (["quantize", "{in}/float32", "/", "--uint8"], "work", "is the root folder"),
    "quantize-into-a-symlink-to-it": (["quantize", "{in}/float32", "{work}/link", "--uint8"], "work", "is the input"),
    "quantize-manifest-over-its-shard": (["quantize", "{in}/weights_manifest.json", "{in}/group1-shard1of1.bin"],
                                         "work", "is the input"),
    "quantize-source-over-itself": (["quantize", "{in}/s.safetensors", "{in}/s.safetensors"], "work", "is the input"),
    "convert-into-its-folder": (["convert", "{in}/m.h5", "{in}"], "work", "holds the input"),
    "convert-graph-into-its-folder": (["convert", "{in}/m.keras", "{in}", "--to", "graph"], "work",
                                      "holds the input"),
    "tflite-into-its-folder": (["tflite", "{in}/m.keras", "{in}", "--modes", "float32"], "work", "holds the input"),
    "tflite-over-calibration": (["tflite", "{in}/m.keras", "{in}", "--calibration", "{in}/c.npy"], "work",
                                "holds the input"),
    "mixed-over-its-data": (["mixed", "{in}/m.keras", "{in}", "--data", "{in}/d.npz"], "work", "holds the input"),
    "report-over-model-json": (["report", "{in}/float32", "-o", "{in}/float32/model.json"], "work", "is the input"),
    "report-over-a-shard": (["report", "{in}/float32", "-o", "{in}/float32/group1-shard1of1.bin"], "work",
                            "is the input"),
    "report-through-a-symlink": (["report", "{in}/float32", "-o", "{work}/link/model.json"], "work", "is the input"),
    "example-into-dot": (["example", "."], "work", "is the current folder"),
    "example-into-root": (["example", "/"], "work", "is the root folder"),
    "bench-variant-over-the-model": (["bench", "--browser", "{in}/float32", "--work-dir", "{in}"], "work",
                                     "is the input"),
}


@pytest.mark.parametrize("name", sorted(OVERLAPS))
def test_an_output_over_an_input_is_refused_even_with_force(name, place):
    argv, cwd, expected = OVERLAPS[name]
    os.symlink(place / "in" / "float32", place / "work" / "link")
    before = _both(place)
    args = [a.format(**{"in": place / "in", "work": place / "work"}) for a in argv] + ["--force"]
    done = run_qshard(args, cwd=place / cwd, tmpdir=place / "tmp")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qshard: error: ") and expected in last, done.stderr
    assert "even --force does not" in last or "give a new folder" in last
    assert _both(place) == before


EXISTING = {
    "quantize": ["quantize", "{in}/float32", "{work}/out", "--uint8"],
    "convert": ["convert", "{in}/m.h5", "{work}/out"],
    "tflite": ["tflite", "{in}/m.keras", "{work}/out", "--modes", "float32"],
    "mixed": ["mixed", "{in}/m.keras", "{work}/out", "--data", "{in}/d.npz"],
    "report": ["report", "{in}/float32", "-o", "{work}/out"],
    "example": ["example", "{work}/out"],
    "bench": ["bench", "--browser", "{in}/float32", "--work-dir", "{work}/out"],
}


@pytest.mark.parametrize("command", sorted(EXISTING))
def test_an_existing_output_is_refused_without_force(command, place):
    out = place / "work" / "out"
    if command == "report":
        out.write_text("an earlier report")
        target = out
    else:
        out.mkdir()
        target = out / "float32" if command == "bench" else out
        target.mkdir(exist_ok=True)
        (target / "keep.txt").write_text("the user's")
    before = _both(place)
    args = [a.format(**{"in": place / "in", "work": place / "work"}) for a in EXISTING[command]]
    done = run_qshard(args, cwd=place / "work", tmpdir=place / "tmp")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"qshard: error: {target}: already exists (use --force to replace it)" or (
        last.startswith(f"qshard: error: {target}: already exists")), last
    assert _both(place) == before


# --------------------------------------------------------------------------------------------------
# Signals.

def _big_model(folder: Path, n: int = 8, size: int = 1 << 18) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tfjs.write_weights([[(f"w{i}", rng.standard_normal(size).astype(np.float32)) for i in range(n)]], folder)
    return folder


def _paused(place, out, *extra):
    """quantize started and paused mid-write (after its first shards), with its temporary on disk."""
    proc = start_qshard(["quantize", place / "in" / "big", out, "--uint16", "-q", "--shard-size", "100000", *extra],
                        cwd=place / "work", tmpdir=place / "tmp",
                        QSHARD_TEST_PAUSE_AT_BYTES=1 << 19, QSHARD_TEST_PAUSE_SECONDS=120)
    assert "paused" in proc.stderr.readline()
    temporaries = [p for p in os.listdir(out.parent) if p.startswith(f".{out.name}.qshard-")]
    assert len(temporaries) == 1 and os.listdir(out.parent / temporaries[0])
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
@pytest.mark.parametrize("force", [False, True], ids=["new", "replacing"])
def test_a_signal_mid_write_leaves_the_old_state(signum, force, place):
    _big_model(place / "in" / "big")
    out = place / "work" / "out"
    if force:
        out.mkdir()
        (out / "previous.txt").write_text("the output before")
    before = _both(place)
    proc = _paused(place, out, *(["--force"] if force else []))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and f"interrupted ({signum.name})" in err, err
    assert "Traceback" not in err
    assert _both(place) == before  # no temporary; the old output (if any) whole


def test_a_killed_runs_temporary_is_removed_by_the_next_run(place):
    _big_model(place / "in" / "big")
    out = place / "work" / "out"
    proc = _paused(place, out)
    proc.kill()  # SIGKILL: no handler runs, the temporary stays
    proc.communicate(timeout=60)  # (not wait: communicate also closes the pipes)
    left = [p for p in os.listdir(place / "work") if p.startswith(".out.qshard-")]
    assert len(left) == 1
    done = run_qshard(["quantize", place / "in" / "big", out, "--uint8", "-q"], cwd=place / "work",
                      tmpdir=place / "tmp")
    assert done.returncode == 0, done.stderr
    assert f"qshard: note: removed {place / 'work' / left[0]}: left by a qshard run that was killed" in done.stderr
    assert sorted(os.listdir(place / "work")) == ["out"]
    assert run_qshard(["verify", out]).returncode == 0


def test_a_live_runs_temporary_is_left_alone(place):
    _big_model(place / "in" / "big")
    out = place / "work" / "out"
    slow = _paused(place, out)
    temporary = [p for p in os.listdir(place / "work") if p.startswith(".out.qshard-")][0]
    fast = run_qshard(["quantize", place / "in" / "big", out, "--uint8", "-q"], cwd=place / "work",
                      tmpdir=place / "tmp")
    assert fast.returncode == 0 and "removed" not in fast.stderr, fast.stderr
    assert temporary in os.listdir(place / "work")  # still there: its writer holds the lock
    slow.send_signal(signal.SIGUSR1)
    _, err = slow.communicate(timeout=60)
    assert slow.returncode == 2 and "created by another process" in err
    assert sorted(os.listdir(place / "work")) == ["out"]


def test_a_killed_report_write_is_cleaned_by_the_next(place):
    stale = place / "work" / ".r.html.qshard-abc123.tmp"
    stale.write_text("half a report")  # nobody holds its lock: as a SIGKILL leaves it
    done = run_qshard(["report", place / "in" / "float32", "-o", "r.html"], cwd=place / "work",
                      tmpdir=place / "tmp")
    assert done.returncode == 0, done.stderr
    assert f"qshard: note: removed {stale.name}: left by a qshard run that was killed while writing r.html" in done.stderr
    assert sorted(os.listdir(place / "work")) == ["r.html"]


# --------------------------------------------------------------------------------------------------
# Shards and sources that shrink while they are read: an error naming the file, never SIGBUS.

def test_a_shard_truncated_mid_quantize(place):
    src = _big_model(place / "in" / "big")
    out = place / "work" / "out"
    proc = _paused(place, out)
    shards = sorted(src.glob("*.bin"))
    os.truncate(shards[-1], 10)  # the tensors still to be read live here
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    # quantize reads file-stored tensors in the C++ chunk loop, which says so in its own words
    assert f"qshard: error: {shards[-1]}: file ends" in err and "was it changed while qshard read it?" in err, err
    assert "(reading weight 'w" in err and "Traceback" not in err
    assert sorted(os.listdir(place / "work")) == []


READ_AFTER_TRUNCATE = {
    "web-values": ("from qshard.tfjs import WebModel; m = WebModel({path!r}); truncate(); "
                   "[m.values(s.name) for s in m.specs]", "shard changed while being read"),
    "web-inspect-error": ("from qshard.accuracy import weight_error as e; from qshard.formats import shards; "
                          "opened = shards.GroupBytes.__init__\n"
                          "def hook(self, files):\n    opened(self, files); truncate()\n"
                          "shards.GroupBytes.__init__ = hook; e.model_errors({path!r})",
                          "shard changed while being read"),
    "safetensors": ("from qshard.formats import sources; from qshard.formats.shards import Scratch; "
                    "s = sources.open_source({path!r}); truncate(); "
                    "[list(t.chunks(Scratch())) for t in s.tensors]", "file ends early"),
    "fortran-npy": ("from qshard.formats import sources; from qshard.formats.shards import Scratch; "
                    "s = sources.open_source({path!r}); truncate(); "
                    "[list(t.chunks(Scratch())) for t in s.tensors]", "ends early"),
}


@pytest.mark.parametrize("what", sorted(READ_AFTER_TRUNCATE))
def test_a_file_truncated_after_it_was_opened(what, place, tmp_path):
    """The file shrinks between open and read (as another process truncating it would do): the
    read fails with a QshardError naming it; with a mapping this was SIGBUS."""
    if what.startswith("web"):
        path = _big_model(tmp_path / "web", n=2)
        victim = sorted(path.glob("*.bin"))[0]
    elif what == "safetensors":
        data = np.arange(1 << 16, dtype=np.float32)
        path = victim = safetensors(tmp_path / "m.safetensors", {"w": {"dtype": "F32", "shape": [1 << 16],
                                                                       "data_offsets": [0, data.nbytes]}},
                                    data.tobytes())
    else:
        path = tmp_path / "npy"
        path.mkdir()
        victim = path / "w.npy"
        np.save(victim, np.asfortranarray(np.ones((256, 256), np.float32)))
    script, expected = READ_AFTER_TRUNCATE[what]
    program = (f"import os\ndef truncate():\n    os.truncate({str(victim)!r}, 200)\n"
               f"from qshard.errors import QshardError\ntry:\n    " + script.format(path=str(path)).replace("\n", "\n    ")
               + "\nexcept QshardError as error:\n    print('refused:', error)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"exit {done.returncode} (negative: killed by that signal): {done.stderr}"
    assert done.stdout.startswith("refused: ") and expected in done.stdout and str(victim) in done.stdout, done.stdout


# --------------------------------------------------------------------------------------------------
# What the writers write, qshard (and so tfjs: see test_verify_agrees_with_tfjs) reads back.

def test_every_writer_output_passes_verify(place):
    work, inp = place / "work", place / "in"
    npz(inp / "n.npz", {"a.npy": np.ones((2, 3), np.float16), "b.npy": np.array([True, False])})
    runs = {"quantize-web": ["quantize", inp / "float32", work / "q1", "--uint8", "--shard-size", "7"],
            "quantize-safetensors": ["quantize", inp / "s.safetensors", work / "q2", "--float16"],
            "quantize-npz": ["quantize", inp / "n.npz", work / "q3", "--uint16"],
            "quantize-h5": ["quantize", inp / "m.h5", work / "q4", "--uint8"],
            "convert-h5": ["convert", inp / "m.h5", work / "c", "--uint8"],
            "example-layers": ["example", work / "e1"],
            "example-graph": ["example", work / "e2", "--format", "graph"]}
    for name, args in runs.items():
        done = run_qshard(args, cwd=work, tmpdir=place / "tmp")
        assert done.returncode == 0, (name, done.stderr)
        check = run_qshard(["verify", args[1] if name.startswith("example") else args[2]])
        assert check.returncode == 0 and check.stdout.startswith("ok:"), (name, check.stdout)


@pytest.mark.slow
def test_keras_conversions_pass_verify(place):
    """convert from a .keras file, to a layers and to a graph model (TensorFlow traces the latter)."""
    from conftest import require
    from support.keras import import_keras
    keras, problem = import_keras()
    require(problem, "QSHARD_REQUIRE_KERAS", "THE KERAS CONVERSIONS' VERIFY TEST")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu", name="h"),
                              keras.layers.Dense(3, name="out")])
    model.save(place / "in" / "real.keras")
    for to in ("layers", "graph"):
        out = place / "work" / to
        done = run_qshard(["convert", place / "in" / "real.keras", out, "--to", to, "--uint8"], tmpdir=place / "tmp")
        assert done.returncode == 0, done.stderr
        check = run_qshard(["verify", out])
        assert check.returncode == 0 and check.stdout.startswith("ok:"), check.stdout


def test_a_shard_size_that_would_write_too_many_files_is_refused(place):
    small = run_qshard(["quantize", place / "in" / "float32", place / "work" / "out", "--shard-size", "1"])
    assert small.returncode == 0 and run_qshard(["verify", place / "work" / "out"]).returncode == 0
    assert len(list((place / "work" / "out").glob("*.bin"))) == 4 * (8 * 4 + 4)  # one file per byte: still fine
    big = _big_model(place / "in" / "big", n=1, size=1 << 16)
    done = run_qshard(["quantize", big, place / "work" / "out2", "--shard-size", "1"])
    assert done.returncode == 2 and "would split a group into 262144 shards; at most 100000" in done.stderr
    assert sorted(os.listdir(place / "work")) == ["out"]


def test_library_writers_refuse_an_output_over_their_input(place):
    """The same refusal from the Python API, where no command line checks first: the per-channel
    writer and the graph-model search (refused before a tfjs runner is even started)."""
    from qshard.errors import OutputError
    from qshard.example import write_example
    from qshard.graph.mixed import search_graph_model
    from qshard.graph.per_channel_model import quantize_graph_model
    graph = write_example(place / "in" / "g", format="graph-model")
    before = _both(place)
    with pytest.raises(OutputError, match="holds the input"):
        quantize_graph_model(graph / "model.json", graph, per_channel=True, force=True)
    with pytest.raises(OutputError, match="is the input"):
        search_graph_model(graph, graph, samples=None, force=True)
    with pytest.raises(OutputError, match="holds the input"):
        tfjs.quantize_model(graph, place / "in", uint8=True, force=True)
    assert _both(place) == before
