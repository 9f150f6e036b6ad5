"""Hostile layers models and data for `qshard mixed` and `qshard quantize --equalize`, in the house
pattern of tests/formats/test_hostile.py: each run in its own process with a timeout (tfjs-layers
loops forever on a cycle in the inbound nodes), one line naming the file and the problem, exit 2, no
traceback, nothing left behind and the input unchanged."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from support.processes import run_qshard, tree_state


def _layers(doc):
    return doc["modelTopology"]["config"]["layers"]


def _by_name(doc, name):
    return next(entry for entry in _layers(doc) if entry["name"] == name)


def _no_layers(doc):
    del doc["modelTopology"]["config"]["layers"]


def _missing_layer(doc):  # relu1 gone: dw reads a layer that is not there
    doc["modelTopology"]["config"]["layers"] = [e for e in _layers(doc) if e["name"] != "relu1"]


def _cycle(doc):  # c1 reads dw, which (through bn1, relu1) reads c1
    _by_name(doc, "c1")["inbound_nodes"] = [[["dw", 0, 0, {}]]]


def _unknown_class(doc):
    _by_name(doc, "relu1")["class_name"] = "FancyLayer"


def _output_not_a_layer(doc):
    doc["modelTopology"]["config"]["output_layers"] = [["nothere", 0, 0]]


def _call_not_there(doc):  # c2 reads pool's second call; pool is called once
    _by_name(doc, "c2")["inbound_nodes"] = [[["pool", 1, 0, {}]]]


def _kernel_shape(doc):  # c2's kernel declared bigger than the shard holds
    for group in doc["weightsManifest"]:
        for weight in group["weights"]:
            if weight["name"] == "c2/kernel":
                weight["shape"] = [1, 1, 12, 32]


TOPOLOGY = {  # name: (change to model.json, message for mixed, for quantize --equalize or None if it is fine)
    "no-layers": (_no_layers, "modelTopology has no list of layers", "modelTopology has no list of layers"),
    "missing-layer": (_missing_layer, "layer 'dw' reads 'relu1' (call 0), which is not in the model",
                      "layer 'dw' reads 'relu1' (call 0), which is not in the model"),
    "cycle": (_cycle, "the inbound nodes form a cycle through layer", "the inbound nodes form a cycle through layer"),
    "unknown-class": (_unknown_class, "loading in tfjs: Unknown layer: FancyLayer", None),
    "output-not-a-layer": (_output_not_a_layer, "output layer 'nothere' is not in the model's layers",
                           "output layer 'nothere' is not in the model's layers"),
    "call-not-there": (_call_not_there, "layer 'c2' reads 'pool' (call 1), which is not in the model",
                       "layer 'c2' reads 'pool' (call 1), which is not in the model"),
    "kernel-shape": (_kernel_shape, "the shards hold", "the shards hold"),
}


@pytest.fixture
def place(tmp_path, wide_layers):
    """in/ (a copy of the layers model and its samples), work/ (current folder, outputs), tmp/ (TMPDIR)."""
    src, data, _ = wide_layers
    for name in ("work", "tmp"):
        (tmp_path / name).mkdir()
    shutil.copytree(src, tmp_path / "in" / "model")
    shutil.copy(data, tmp_path / "in" / "samples.npz")
    return tmp_path


def edit(model: Path, change) -> None:
    doc = json.loads((model / "model.json").read_text())
    change(doc)
    (model / "model.json").write_text(json.dumps(doc))


def refused(place: Path, args, expected: str, named: Path) -> None:
    """The run ends with one 'qshard: error:' line naming `named` and holding `expected`, exit 2,
    and leaves every folder as it was."""
    before = {name: tree_state(place / name) for name in ("in", "work", "tmp")}
    done = run_qshard(args, cwd=place / "work", tmpdir=place / "tmp")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qshard: error: "), done.stderr
    assert expected in lines[0] and str(named) in lines[0], lines[0]
    assert {name: tree_state(place / name) for name in ("in", "work", "tmp")} == before


@pytest.mark.parametrize("case", TOPOLOGY)
def test_a_broken_topology_is_refused_in_one_line(case, place):
    change, for_mixed, for_quantize = TOPOLOGY[case]
    model, data, out = place / "in" / "model", place / "in" / "samples.npz", place / "work" / "out"
    edit(model, change)
    refused(place, ["mixed", model, out, "--data", data, "-q"], for_mixed, model)
    if for_quantize:
        refused(place, ["quantize", model, out, "--uint8", "--equalize"], for_quantize, model)


def _nan_weights(model: Path) -> None:
    shard = model / "group1-shard1of1.bin"
    values = np.frombuffer(shard.read_bytes(), np.float32).copy()
    values[5], values[100] = np.nan, np.inf  # in c1's kernel (its first 324 values)
    shard.write_bytes(values.tobytes())


def test_non_finite_weights(place):
    model, data = place / "in" / "model", place / "in" / "samples.npz"
    _nan_weights(model)
    refused(place, ["mixed", model, place / "work" / "out", "--data", data, "-q"],
            "the float model's own outputs hold NaN or Inf on the samples", model)
    done = run_qshard(["quantize", model, place / "work" / "q", "--uint8", "--equalize"], cwd=place / "work",
                      tmpdir=place / "tmp")  # allowed, as plain quantize allows it: c1 is kept as stored
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "2 layer pairs equalized (dw -> c2, c2 -> fc)" in done.stdout  # not through c1's NaN
    from qshard.tfjs import read_weights
    values = read_weights(place / "work" / "q")
    assert all(np.isfinite(v).all() for name, v in values.items() if not name.startswith("c1/"))


DATA = {  # name: (arrays of the .npz given the model's x, message)
    "wrong-name": (lambda x: {"foo": x}, "array 'foo' is not an input of the model"),
    "wrong-shape": (lambda x: {"image": x[:, :5]}, "input 'image' takes [?, 12, 12, 3]"),
    "strings": (lambda x: {"image": np.array(["a", "b"])}, "data arrays must be numbers or booleans"),
    "nan": (lambda x: {"image": np.where(x > 1, np.nan, x).astype(np.float32)}, "array 'image' holds NaN"),
    "no-samples": (lambda x: {"image": x[:0]}, "array 'image' holds no samples"),
}


@pytest.mark.parametrize("case", DATA)
def test_bad_samples_are_refused_in_one_line(case, place, wide_layers):
    arrays, expected = DATA[case]
    data = place / "in" / "bad.npz"
    np.savez(data, **arrays(wide_layers[2]))
    refused(place, ["mixed", place / "in" / "model", place / "work" / "out", "--data", data, "-q"], expected, data)


def test_output_on_an_input_and_graph_only_options_are_refused(place):
    model, data = place / "in" / "model", place / "in" / "samples.npz"
    destroy = "writing the output there would destroy the input (even --force does not)"
    refused(place, ["mixed", model, model, "--data", data, "--force", "-q"], destroy, model)
    refused(place, ["mixed", model, data, "--data", data, "--force", "-q"], destroy, data)
    refused(place, ["quantize", model, model, "--uint8", "--equalize", "--force"], destroy, model)
    refused(place, ["mixed", model, place / "work" / "out", "--data", data, "--no-bias-correction", "-q"],
            "--no-bias-correction is for graph models", model)
