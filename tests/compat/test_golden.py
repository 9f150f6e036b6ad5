"""Byte-identity with the official tensorflowjs 4.22, proven from committed fixtures.

tests/data/golden holds tensorflowjs's own outputs for small inputs (written by
tests/data/golden/make_golden.py under numpy >= 2, float64 arithmetic, and numpy 1.x, float32
arithmetic), so these tests need no tensorflowjs: they run on every machine. The live comparison
with an installed tensorflowjs stays in tests/compat/test_compat.py and test_tensorflowjs.py.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import qshard
from qshard import tfjs
from qshard.compat import tensorflowjs as compat

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
MODES = ("float64", "float32")
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
SHARD_BYTES = 1024  # as make_golden.py wrote them


def _inputs():
    with np.load(GOLDEN / "inputs.npz") as f:
        return {k: f[k] for k in f.files}


INPUTS = _inputs()


def _golden(mode):
    with np.load(GOLDEN / mode / "quantize.npz") as f:
        codes = {k: f[k] for k in f.files}
    return codes, json.loads((GOLDEN / mode / "quantize.json").read_text())


def _same_bits(got, want, what):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert got.tobytes() == want.tobytes(), f"{what}: {np.count_nonzero(got != want)} codes differ"


def test_the_fixtures_cover_both_modes_and_they_differ():
    """The two arithmetic modes really differ on these inputs, so each mode's test is a real check."""
    codes64, params64 = _golden("float64")
    codes32, params32 = _golden("float32")
    assert set(codes64) == set(codes32) == {f"{c}.{d}" for c in INPUTS for d in DTYPES}
    assert params64 == params32  # the metadata is float64 arithmetic in both
    differing = [k for k in codes64 if codes64[k].tobytes() != codes32[k].tobytes()]
    assert "zero_one_two.uint8" in differing and "tiny.uint16" in differing
    # The design notes' examples, as tensorflowjs wrote them.
    assert codes64["zero_one_two.uint8"].tolist() == [0, 128, 255]
    assert codes32["zero_one_two.uint8"].tolist() == [0, 127, 255]
    assert codes64["design_example.uint8"].tolist() == [20, 0, 255]
    assert codes64["design_example.uint16"].tolist() == [5041, 0, 65535]
    assert params64["design_example"]["uint8"] == {"min": "-0.10196078817049663", "scale": "0.0050980394085248315"}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(INPUTS))
def test_kernels_match_tensorflowjs_float64(case, dtype, isa):
    codes, params = _golden("float64")
    got, p = qshard.quantize(INPUTS[case], dtype, isa=isa)
    _same_bits(got, codes[f"{case}.{dtype}"], f"{case} {dtype} {isa}")
    if dtype != "float16":
        want = params[case][dtype]
        assert repr(float(p.scale)) == want["scale"] and repr(float(p.min)) == want["min"], (case, p, want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_compat_quantize_weights_matches_each_mode(mode, dtype):
    codes, params = _golden(mode)
    for case, x in INPUTS.items():
        with np.errstate(over="ignore"):  # huge values overflow float16, as in tensorflowjs
            got, meta = compat.quantize_weights(x, DTYPES[dtype], arithmetic=mode)
        _same_bits(got, codes[f"{case}.{dtype}"], f"{case} {dtype} {mode}")
        assert {k: repr(float(v)) for k, v in meta.items()} == params[case].get(dtype, {}), (case, dtype)


def test_compat_refuses_an_unknown_arithmetic():
    with pytest.raises(ValueError, match="arithmetic"):
        compat.quantize_weights(INPUTS["zeros"], np.uint8, arithmetic="float16")


def _folder_bytes(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _group():
    return [{"name": case, "data": x} for case, x in INPUTS.items()] + [
        {"name": "step", "data": np.array([7, -3], np.int32)}]


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_write_weights_is_byte_identical_to_the_golden_files(tmp_path, dtype):
    """qshard's writer (through the drop-in and through qshard.tfjs) writes tensorflowjs's files."""
    want = _folder_bytes(GOLDEN / "float64" / "write_weights" / dtype)
    (tmp_path / "compat").mkdir()  # tensorflowjs writes into an existing folder
    compat.write_weights([_group()], str(tmp_path / "compat"), shard_size_bytes=SHARD_BYTES,
                         quantization_dtype_map={dtype: True})
    assert _folder_bytes(tmp_path / "compat") == want
    (tmp_path / "tfjs").mkdir()
    groups = [[(e["name"], e["data"]) for e in _group()]]
    tfjs.write_weights(groups, tmp_path / "tfjs", shard_size=SHARD_BYTES, **{dtype: True})
    assert _folder_bytes(tmp_path / "tfjs") == want


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_reading_the_golden_files_gives_what_tensorflowjs_reads(mode, dtype):
    """Both modes' files decode, by qshard.tfjs and the drop-in, to what tensorflowjs's
    read_weights returned (float32 tensors dequantized in float64, then cast)."""
    folder = GOLDEN / mode / "write_weights" / dtype
    with np.load(GOLDEN / mode / "read.npz") as f:
        want = {k.rsplit(".", 1)[0]: f[k] for k in f.files if k.endswith("." + dtype)}
    ours = tfjs.read_weights(folder)
    assert set(ours) == set(want)
    manifest = json.loads((folder / "weights_manifest.json").read_text())
    dropin = {e["name"]: e["data"] for e in compat.read_weights(manifest, str(folder), flatten=True)}
    for name, values in want.items():
        _same_bits(np.asarray(dropin[name]), values, f"drop-in {name} {dtype} {mode}")
        if values.dtype == np.float32:
            _same_bits(ours[name], values, f"qshard.tfjs {name} {dtype} {mode}")
        else:
            assert ours[name].tolist() == values.tolist(), name
