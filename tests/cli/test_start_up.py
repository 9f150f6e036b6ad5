"""Start-up: `qshard info` and `qshard quantize` of float32 tfjs and safetensors models run without
importing numpy (~75 ms, more than half of the command's start-up before it; qshard/lazy.py), JSON
nesting is measured without it, and a command builds its own sub-parser alone."""
import json
import subprocess
import sys

import numpy as np
import pytest

from qshard import cli, tfjs
from qshard.errors import InputError
from qshard.formats.inputs import MAX_JSON_DEPTH, nesting, parse_json
from support.files import same_output, write_safetensors

# Runs the command in a fresh interpreter and prints whether numpy was imported by the end.
SCRIPT = "import sys; from qshard.cli import main; rc = main(sys.argv[1:]); print('numpy' in sys.modules); sys.exit(rc)"


def numpy_imported(*args) -> bool:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "True"


def float_graph_model(folder):
    """A graph model of float32 weights whose topology has far more brackets than MAX_JSON_DEPTH
    (as real ones do), so the nesting check runs."""
    rng = np.random.default_rng(0)
    weights = [(f"conv{i}/kernel", rng.standard_normal((3, 3, 4, 4)).astype(np.float32)) for i in range(40)]
    folder.mkdir()
    manifest = tfjs.write_weights([weights], folder, write_manifest=False)
    nodes = [{"name": f"conv{i}", "op": "Conv2D", "input": [f"x{i}", f"conv{i}/kernel"],
              "attr": {"strides": {"list": {"i": ["1", "1", "1", "1"]}}}} for i in range(200)]
    (folder / "model.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": nodes},
                                                   "weightsManifest": manifest}))
    return folder


def test_info_does_not_import_numpy():
    assert not numpy_imported("info")


def test_quantize_of_a_float_web_model_does_not_import_numpy(tmp_path):
    model = float_graph_model(tmp_path / "model")
    assert (model / "model.json").read_bytes().count(b"{") > MAX_JSON_DEPTH
    assert not numpy_imported("quantize", model, tmp_path / "out", "--uint8", "-q")
    tfjs.quantize_model(model, tmp_path / "in-process", uint8=True)
    same_output(tmp_path / "out", tmp_path / "in-process")


def test_quantize_of_float_safetensors_does_not_import_numpy(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"w": rng.standard_normal((300, 40)).astype(np.float32), "h": rng.standard_normal(77).astype(np.float16),
              "b": rng.standard_normal(64).astype(np.float32)}
    write_safetensors(tmp_path / "m.safetensors", arrays, bf16={"b"})
    assert not numpy_imported("quantize", tmp_path / "m.safetensors", tmp_path / "out", "--uint16", "-q")
    tfjs.quantize_model(tmp_path / "m.safetensors", tmp_path / "in-process", uint16=True)
    same_output(tmp_path / "out", tmp_path / "in-process")


def test_the_check_sees_numpy_when_a_command_needs_it(tmp_path):
    # (the control: an .npz source reads its arrays with numpy)
    np.savez(tmp_path / "w.npz", w=np.ones(10, np.float32))
    assert numpy_imported("quantize", tmp_path / "w.npz", tmp_path / "out", "--uint8", "-q")


@pytest.mark.parametrize("depth", [1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5000])
def test_json_nesting_is_measured_exactly(depth):
    text = "[" * (depth - 1) + '{"a": "[[[[{{{{"}' + "]" * (depth - 1)  # brackets in strings do not count
    assert text.count("[") + text.count("{") > depth
    if depth <= MAX_JSON_DEPTH:
        assert nesting(parse_json(text, "m.json", InputError)) == depth
        return
    with pytest.raises(InputError, match=f"m.json: the file nests {depth} levels deep; qshard reads at most"):
        parse_json(text, "m.json", InputError)  # (5000 is past Python's parser: measured from the text)


def test_nesting_of_plain_values_and_mixed_documents():
    assert nesting(3) == nesting("[[") == 0
    assert nesting([]) == nesting({}) == 1
    assert nesting({"a": [1, {"b": []}], "c": {"d": 2}}) == 4


@pytest.mark.parametrize("name", sorted(cli.NAMES))
def test_a_command_parses_alike_with_its_own_parser_alone(name, capsys):
    # `qshard NAME ...` builds NAME's sub-parser only (the others cost start-up): same help, same args.
    texts = []
    for parser in (cli.build_parser(), cli.build_parser(name)):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and f"usage: qshard {name}" in texts[0]  # (the help lists every option)
