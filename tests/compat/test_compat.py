"""qshard.compat.tensorflowjs against the official tensorflowjs 4.22 modules, bit for bit:
quantize/dequantize, the pattern map, write_weights (files, manifest, stdout, errors), the readers,
and install()/uninstall() patching the official modules."""
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import qshard
from qshard import kernels, reference
from qshard.compat import tensorflowjs as compat
from qshard.formats import webmodel

from conftest import distributions

PYTHON_DIR = str(Path(qshard.__file__).resolve().parent.parent)
NP_TYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
AUTO_CONVERTED = {"float64": np.float32, "float16": np.float32, "int64": np.int32, "complex128": np.complex64}
REPLACED = {"quantization": ["quantize_weights", "dequantize_weights", "map_layers_to_quantization_dtype"],
            "write_weights": ["write_weights"], "read_weights": ["read_weights", "decode_weights"]}


@pytest.fixture(scope="module")
def tfjs():
    """The official quantization / write_weights / read_weights modules (numpy-only loading)."""
    try:
        mods = types.SimpleNamespace(q=reference.load("quantization"), ww=reference.load("write_weights"),
                                     rw=reference.load("read_weights"))
    except reference.ReferenceUnavailable as error:
        if os.environ.get("QSHARD_REQUIRE_REFERENCE"):
            pytest.fail(f"QSHARD_REQUIRE_REFERENCE is set but {error}")
        pytest.skip(f"SKIPPING COMPARISON WITH THE OFFICIAL CONVERTER: {error}")
    for short, attrs in REPLACED.items():
        module = sys.modules[f"tensorflowjs.{short}"]
        for attr in attrs:  # the reference must be the official code, not a leftover patch
            assert getattr(module, attr).__module__ == f"tensorflowjs.{short}", (short, attr)
    return mods


@pytest.fixture(autouse=True)
def never_left_installed():
    yield
    compat.uninstall()


# ------------------------------------------------------------------------------------------ helpers

def assert_same_array(got, ref, layout=True):
    assert type(got) is type(ref)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    if got.dtype == object:
        assert got.tolist() == ref.tolist()
    else:
        assert got.tobytes() == ref.tobytes(), np.flatnonzero(got.reshape(-1) != ref.reshape(-1))[:10]
    if layout:
        assert got.flags.c_contiguous == ref.flags.c_contiguous
        assert got.flags.f_contiguous == ref.flags.f_contiguous


def assert_same_metadata(got, ref):
    assert list(got) == list(ref)
    for key in ref:
        assert type(got[key]) is type(ref[key]), (key, type(got[key]), type(ref[key]))
        assert np.float64(got[key]).tobytes() == np.float64(ref[key]).tobytes(), (key, got[key], ref[key])


def assert_same_quantized(got, ref, layout=True):
    assert isinstance(got, tuple) and len(got) == 2
    assert_same_array(got[0], ref[0], layout)
    assert_same_metadata(got[1], ref[1])


def outcome(fn, *args, **kwargs):
    """('ok', result, stdout) or ('raised', exception type, message, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return ("ok", fn(*args, **kwargs), out.getvalue())
        except Exception as error:  # noqa: BLE001 - comparing what both raise
            return ("raised", type(error), str(error), out.getvalue())


def assert_same_error(got, ref):
    assert ref[0] == "raised", ref
    assert got[0] == "raised", f"compat did not raise; tensorflowjs raised {ref[1].__name__}: {ref[2]}"
    assert got[1:] == ref[1:]


def tie_values(rng, dtype, lo, hi, n=3000):
    """Values on the rounding ties k + 0.5 of the codes for the range [lo, hi]."""
    params = qshard.affine_params(lo, hi, dtype)
    k = rng.integers(0, kernels.AFFINE_QMAX[dtype], n).astype(np.float64)
    x = np.clip(((k + 0.5) * params.scale + params.min).astype(np.float32), lo, hi)
    return np.concatenate([[lo, hi], x]).astype(np.float32)


def float32_cases():
    rng = np.random.default_rng(2024)
    for n in (1, 2, 7, 33, 1000, 4097):
        for name, values in distributions(rng, n).items():
            yield f"{name}{n}", np.asarray(values, np.float32)
    yield "large", rng.standard_normal((1 << 20) + 3).astype(np.float32)
    for dtype in ("uint8", "uint16"):
        for lo, hi in [(-1.0, 1.0), (-0.1, 1.2), (2.0, 2.5), (-7.0, -3.0)]:
            yield f"ties-{dtype}-{lo}-{hi}", tie_values(rng, dtype, lo, hi)
    matrix = rng.standard_normal((37, 29)).astype(np.float32)
    yield "matrix", matrix
    yield "fortran", np.asfortranarray(matrix)
    yield "transposed-3d", rng.standard_normal((5, 6, 7)).astype(np.float32).T
    yield "strided", matrix[::3, 1::2]
    yield "scalar", np.array(-2.5, np.float32)
    yield "constant", np.full((4, 5), 0.375, np.float32)
    yield "zeros", np.zeros(10, np.float32)
    yield "negative-zeros", np.full(10, -0.0, np.float32)
    yield "mixed-zeros", np.array([0.0, -0.0, 0.0, -0.0], np.float32)
    yield "mixed-zeros-neg-first", np.array([-0.0, 0.0, 0.0], np.float32)
    yield "zero-to-255", np.arange(256, dtype=np.float32)  # scale exactly 1.0, not constant
    yield "one-value-and-zero", np.array([0.0, 3.0], np.float32)
    yield "extremes", np.array([-3.4028235e38, 3.4028235e38, 0.0], np.float32)


FLOAT32_CASES = list(float32_cases())


# ------------------------------------------------------------------------------- quantize_weights

@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16"])
def test_quantize_weights_float32_bit_identical(tfjs, dtype):
    for label, x in FLOAT32_CASES:
        with np.errstate(all="ignore"):
            ref = tfjs.q.quantize_weights(x, NP_TYPES[dtype])
            got = compat.quantize_weights(x, NP_TYPES[dtype])
        contiguous = x.flags.c_contiguous or x.flags.f_contiguous
        try:
            assert_same_quantized(got, ref, layout=contiguous)
        except AssertionError as error:
            raise AssertionError(f"{label}: {error}") from None


def test_quantize_weights_float32_uses_the_kernels(tfjs, monkeypatch):
    calls = []
    real = kernels.quantize
    monkeypatch.setattr(kernels, "quantize", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    for dtype in ("uint8", "uint16", "float16"):
        assert_same_quantized(compat.quantize_weights(x, NP_TYPES[dtype]), tfjs.q.quantize_weights(x, NP_TYPES[dtype]))
    assert calls == ["uint8", "uint16", "float16"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_quantize_weights_other_data_dtypes(tfjs, dtype):
    rng = np.random.default_rng(7)
    arrays = {
        "int32-wide": rng.integers(-2 ** 31, 2 ** 31 - 1, 5000, dtype=np.int32),
        "int32-small": rng.integers(-300, 900, (40, 25), dtype=np.int32),
        "int32-positive": rng.integers(5, 70000, 3001, dtype=np.int32),
        "int32-negative": rng.integers(-70000, -5, 3001, dtype=np.int32),
        "int32-constant": np.full(9, -4, np.int32),
        "int32-zeros": np.zeros(6, np.int32),
        "int32-fortran": np.asfortranarray(rng.integers(-50, 50, (8, 9), dtype=np.int32)),
        "float64": rng.standard_normal(2000) * 3,
        "float16": rng.standard_normal(999).astype(np.float16),
        "uint8": rng.integers(0, 256, 500, dtype=np.uint8),
        "int64": rng.integers(-10 ** 12, 10 ** 12, 700),
        "big-endian-float32": rng.standard_normal(300).astype(">f4"),
    }
    for label, x in arrays.items():
        got, ref = compat.quantize_weights(x, NP_TYPES[dtype]), tfjs.q.quantize_weights(x, NP_TYPES[dtype])
        try:
            assert_same_quantized(got, ref)
        except AssertionError as error:
            raise AssertionError(f"{label}: {error}") from None


def test_quantize_weights_dtype_spellings(tfjs):
    x = np.random.default_rng(8).standard_normal(100).astype(np.float32)
    for spelling in (np.uint8, np.dtype("uint8"), np.uint16, np.dtype("<u2"), np.float16, np.dtype("float16")):
        assert_same_quantized(compat.quantize_weights(x, spelling), tfjs.q.quantize_weights(x, spelling))


def test_quantize_weights_errors(tfjs):
    x = np.ones(4, np.float32)
    cases = [(x, "uint8"), (x, "float16"), (x, np.int8), (x, np.float32), (x, None), (x, 8),
             (np.ones(3, np.int32), np.float16), (np.ones(3, ">f4"), np.float16), (np.ones(3), np.float16),
             (np.zeros(0, np.float32), np.uint8), (np.zeros((3, 0), np.float32), np.uint16),
             (np.zeros(0, np.int32), np.uint8), ([1.0, 2.0], np.uint8), ([1.0, 2.0], np.float16)]
    for data, dtype in cases:
        assert_same_error(outcome(compat.quantize_weights, data, dtype), outcome(tfjs.q.quantize_weights, data, dtype))


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_quantize_weights_nonfinite_as_tensorflowjs_with_a_warning(tfjs, dtype):
    for values in ([1.0, np.nan, -2.0], [np.inf, 0.5, 1.0], [-np.inf, 0.0, 3.0], [np.inf, -np.inf], [np.nan] * 3):
        x = np.array(values, np.float32)
        with np.errstate(all="ignore"):
            ref = tfjs.q.quantize_weights(x, NP_TYPES[dtype])
            with pytest.warns(RuntimeWarning, match="NaN or Inf"):
                got = compat.quantize_weights(x, NP_TYPES[dtype])
        assert_same_quantized(got, ref)


def test_quantize_weights_float16_keeps_nan_and_inf(tfjs):
    x = np.array([np.nan, -np.inf, np.inf, 1e6, -0.0, 6e-8, 1.0], np.float32)
    with np.errstate(all="ignore"):
        ref = tfjs.q.quantize_weights(x, np.float16)
        got = compat.quantize_weights(x, np.float16)
    assert_same_quantized(got, ref)
    assert got[1] == {}


# ----------------------------------------------------------------------------- dequantize_weights

def test_dequantize_weights_bit_identical(tfjs):
    rng = np.random.default_rng(11)
    for dtype, qmax in (("uint8", 255), ("uint16", 65535)):
        codes = rng.integers(0, qmax + 1, 20_001).astype(NP_TYPES[dtype])
        for mn, scale in [(-0.10196078817049663, 0.0050980394085248315), (-1234.5, 9.75), (0.0, 1.0),
                          (3.25, 1e-7), (-2.0, 3e5), (-0.0, 0.5)]:
            for meta in ({"min": mn, "scale": scale}, {"scale": np.float64(scale), "min": np.float64(mn)},
                         {"min": np.float32(mn), "scale": np.float32(scale)}, {"min": int(mn), "scale": 1},
                         {"min": mn, "scale": scale, "dtype": dtype, "original_dtype": "float32"}):
                for original in (np.float32, np.dtype("float32"), "float32", np.int32, np.dtype("int32"),
                                 "int32", np.float64, np.dtype("uint8")):
                    got = outcome(compat.dequantize_weights, codes, meta, original)
                    ref = outcome(tfjs.q.dequantize_weights, codes, meta, original)
                    if ref[0] == "ok":  # int metadata below 0 overflows uint8 arithmetic in numpy
                        assert got[0] == "ok", got
                        assert_same_array(got[1], ref[1])
                    else:
                        assert_same_error(got, ref)
                got = outcome(compat.dequantize_weights, codes, meta)
                ref = outcome(tfjs.q.dequantize_weights, codes, meta)
                assert got[0] == ref[0] and (got[0] == "raised" or assert_same_array(got[1], ref[1]) is None)


def test_dequantize_weights_layouts_and_float16(tfjs):
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, (33, 17)).astype(np.uint8)
    meta = {"min": -1.5, "scale": 0.0123}
    for view in (codes, np.asfortranarray(codes), codes.T, codes[::2, ::3], np.array(7, np.uint8)):
        for original in (np.float32, np.int32):
            assert_same_array(compat.dequantize_weights(view, meta, original),
                              tfjs.q.dequantize_weights(view, meta, original),
                              layout=view.flags.c_contiguous or view.flags.f_contiguous)
    halves = np.concatenate([np.arange(65536, dtype=np.uint16)]).view(np.float16)  # every bit pattern
    for view in (halves, halves.reshape(256, 256).T, np.array(1.5, np.float16)):
        with np.errstate(all="ignore"):
            assert_same_array(compat.dequantize_weights(view, {}), tfjs.q.dequantize_weights(view, {}))
            assert_same_array(compat.dequantize_weights(view, {}, np.dtype("float32")),
                              tfjs.q.dequantize_weights(view, {}, np.dtype("float32")))


def test_dequantize_weights_int32_out_of_range_like_numpy(tfjs):
    codes = np.array([0, 1, 255], np.uint8)
    for meta in ({"min": 2.0 ** 31 - 100, "scale": 1.0}, {"min": -1e12, "scale": 1e10},
                 {"min": float("nan"), "scale": 1.0}, {"min": 0.0, "scale": float("inf")}):
        with np.errstate(all="ignore"):
            assert_same_array(compat.dequantize_weights(codes, meta, np.int32),
                              tfjs.q.dequantize_weights(codes, meta, np.int32))
            assert_same_array(compat.dequantize_weights(codes, meta), tfjs.q.dequantize_weights(codes, meta))


def test_dequantize_weights_errors(tfjs):
    u8 = np.arange(4, dtype=np.uint8)
    f16 = np.ones(3, np.float16)
    cases = [(u8, {"min": 0.0}, np.float32), (u8, {"scale": 1.0}, np.float32), (u8.astype(np.uint16), {}, np.int32),
             (f16, {}, np.int32), (f16, {}, "float32"), (f16, {}, np.float64),
             (np.ones(3, np.int8), {"min": 0.0, "scale": 1.0}, np.float32),
             (np.ones(3, np.float32), {}, np.float32), (np.ones(3, ">u2"), {"min": 0.0, "scale": 1.0}, np.float32),
             ([1, 2], {"min": 0.0, "scale": 1.0}, np.float32)]
    for data, meta, original in cases:
        assert_same_error(outcome(compat.dequantize_weights, data, meta, original),
                          outcome(tfjs.q.dequantize_weights, data, meta, original))


# ---------------------------------------------------------------- map_layers_to_quantization_dtype

NAMES = ["conv1/kernel", "conv1/bias", "conv2/kernel", "conv2/bias", "dense/kernel", "dense/bias", "emb"]


@pytest.mark.parametrize("dtype_map", [
    None, {}, {"uint8": "conv1/*"}, {"uint16": ["conv*/kernel", "dense/*"]},
    {"float16": ["*bias"], "uint8": ["conv1/kernel"]}, {"uint8": True}, {"uint16": True, "uint8": ["emb"]},
    {"uint16": ["*/kernel"], "float16": True}, {"float16": True, "uint8": ["emb", "conv2/*"]},
    {"uint8": ["conv1/*", "conv1/kernel"]}, {"uint8": ["no-match"], "uint16": True},
    {"uint8": ["*"], "float16": ["nothing"]}, {"uint8": "conv?/bias"}, {"uint16": "[cd]*/kernel"},
    {"uint8": []}, {"int4": ["nothing-matches"]},
])
def test_map_layers_same_as_tensorflowjs(tfjs, dtype_map):
    got = compat.map_layers_to_quantization_dtype(NAMES, dtype_map)
    ref = tfjs.q.map_layers_to_quantization_dtype(NAMES, dtype_map)
    assert got == ref
    assert list(got.items()) == list(ref.items())  # the same order, and the same numpy types as values
    assert all(type(v) is type and v in (np.uint8, np.uint16, np.float16) for v in got.values())


@pytest.mark.parametrize("names,dtype_map", [
    (NAMES, {"uint8": True, "float16": True}),
    (NAMES, {"uint8": ["conv1/*"], "uint16": ["*/kernel"]}),
    (NAMES, {"float16": "dense/*", "uint8": "*"}),
    (NAMES, {"uint8": False}),
    (NAMES, {"uint8": None}),
    (NAMES, {"uint8": 3}),
    (NAMES, {"int4": ["conv1/*"]}),
    (NAMES, {"int4": True}),
    (NAMES, ["uint8"]),
    ([1, 2], {"uint8": "*"}),
])
def test_map_layers_errors(tfjs, names, dtype_map):
    assert_same_error(outcome(compat.map_layers_to_quantization_dtype, names, dtype_map),
                      outcome(tfjs.q.map_layers_to_quantization_dtype, names, dtype_map))


# ---------------------------------------------------------------------------------- write_weights

def make_groups(case):
    """Fresh weight groups for a write_weights case (called once per implementation)."""
    rng = np.random.default_rng(abs(hash(case)) % 2 ** 32)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    if case == "floats":
        return [[{"name": f"w{i}", "data": f32(13 * i + 1, 3)} for i in range(6)]]
    if case == "mixed-dtypes":
        return [[{"name": "kernel", "data": f32(17, 5)},
                 {"name": "steps", "data": rng.integers(-1000, 1000, 11).astype(np.int32)},
                 {"name": "mask", "data": rng.random(9) < 0.5},
                 {"name": "vocab", "data": np.array(["héllo", "", "wörld", "x" * 40])},
                 {"name": "raw", "data": np.array([b"\x00\xff", b"", b"abc"])},
                 {"name": "objects", "data": np.array(["a", b"b", "\u2603"], dtype=object).reshape(3, 1)},
                 {"name": "codes8", "data": rng.integers(0, 256, 7).astype(np.uint8)},
                 {"name": "codes16", "data": rng.integers(0, 65536, 5).astype(np.uint16)},
                 {"name": "complex", "data": (f32(4) + 1j * f32(4)).astype(np.complex64)},
                 {"name": "bias", "data": f32(5)}]]
    if case == "several-groups":
        return [[{"name": "g1/a", "data": f32(40)}, {"name": "g1/b", "data": f32(3, 3)}],
                [],
                [{"name": "g3/a", "data": f32(100)}],
                [{"name": "g4/int", "data": np.arange(6, dtype=np.int32)}, {"name": "g4/f", "data": f32(2, 2, 2)}],
                []]
    if case == "auto-conversion":
        return [[{"name": "f64", "data": rng.standard_normal((6, 2))},
                 {"name": "i64", "data": rng.integers(-50, 50, 7)},
                 {"name": "f16", "data": f32(9).astype(np.float16)},
                 {"name": "c128", "data": f32(3) + 1j * f32(3)},
                 {"name": "f32", "data": f32(4)}]]
    if case == "edge-values":
        return [[{"name": "constant", "data": np.full((3, 3), 2.5, np.float32)},
                 {"name": "zeros", "data": np.zeros(5, np.float32)},
                 {"name": "mixed-zeros", "data": np.array([0.0, -0.0, 0.0], np.float32)},
                 {"name": "neg-zeros", "data": np.array([-0.0, 0.0], np.float32)},
                 {"name": "unit-scale", "data": np.arange(256, dtype=np.float32)},
                 {"name": "positive", "data": 1000 + f32(50)},
                 {"name": "ties", "data": tie_values(rng, "uint8", -0.1, 1.2, 500)},
                 {"name": "scalar", "data": np.array(1.25, np.float32)},
                 {"name": "empty-int", "data": np.zeros((0, 4), np.int32)},
                 {"name": "fortran", "data": np.asfortranarray(f32(6, 7))},
                 {"name": "strided", "data": f32(10, 10)[::3, 1::2]}]]
    if case == "float16-nonfinite":
        return [[{"name": "inf", "data": np.array([1.0, np.inf, -np.inf, 7e4], np.float32)},
                 {"name": "nan", "data": np.array([np.nan, 2.0, -np.nan], np.float32)},
                 {"name": "empty", "data": np.zeros((2, 0), np.float32)},
                 {"name": "w", "data": f32(8)}]]
    if case == "names":
        return [[{"name": np.str_("numpy/str"), "data": f32(3)}, {"name": "ünïcode/ẃ", "data": f32(4)},
                 {"name": "with space", "data": f32(2)}]]
    if case == "empty-string":  # tensorflowjs writes no bytes for it but its reader skips 4
        return [[{"name": "before", "data": f32(3)}, {"name": "empty-str", "data": np.array([], dtype="<U3")},
                 {"name": "after", "data": f32(2)}]]
    if case == "large":
        return [[{"name": "big", "data": f32(300_000, 5)}, {"name": "small", "data": f32(7)}]]
    raise KeyError(case)


WRITE_CASES = [
    ("floats", {}),
    ("floats", {"quantization_dtype_map": {"uint8": True}}),
    ("floats", {"quantization_dtype_map": {"uint16": True}, "shard_size_bytes": 17}),
    ("floats", {"quantization_dtype_map": {"float16": True}, "shard_size_bytes": 64}),
    ("floats", {"quantization_dtype_map": {"uint8": ["w1", "w3"], "float16": "w[45]", "uint16": True}}),
    ("floats", {"quantization_dtype_map": {"uint8": ["w*"]}, "shard_size_bytes": 1}),
    ("floats", {"quantization_dtype_map": {"uint8": "w0"}, "shard_size_bytes": True}),
    ("floats", {"shard_size_bytes": 4 * 13 * 3}),
    ("floats", {"quantization_dtype_map": {"uint16": True}, "write_manifest": False}),
    ("mixed-dtypes", {}),
    ("mixed-dtypes", {"quantization_dtype_map": {"uint8": True}, "shard_size_bytes": 5}),
    ("mixed-dtypes", {"quantization_dtype_map": {"float16": ["kernel"], "uint16": ["[!k]*"]}, "shard_size_bytes": 3}),
    ("empty-string", {"quantization_dtype_map": {"uint8": True}}),
    ("several-groups", {}),
    ("several-groups", {"quantization_dtype_map": {"uint8": ["g1/*"], "float16": True}, "shard_size_bytes": 30}),
    ("several-groups", {"quantization_dtype_map": {"uint16": "g*/a"}, "shard_size_bytes": 1024 * 1024}),
    ("auto-conversion", {}),
    ("auto-conversion", {"quantization_dtype_map": {"uint8": True}, "shard_size_bytes": 8}),
    ("auto-conversion", {"quantization_dtype_map": {"float16": ["f*"], "uint16": ["i64", "c128"]}}),
    ("edge-values", {"quantization_dtype_map": {"uint8": ["*"]}}),
    ("edge-values", {"quantization_dtype_map": {"uint16": True}, "shard_size_bytes": 10}),
    ("edge-values", {"quantization_dtype_map": {"float16": True}}),
    ("float16-nonfinite", {"quantization_dtype_map": {"float16": True}, "shard_size_bytes": 6}),
    ("names", {"quantization_dtype_map": {"uint8": ["numpy/*", "ü*"]}}),
    ("large", {"quantization_dtype_map": {"uint8": ["big"], "float16": True}}),
    ("large", {"quantization_dtype_map": {"uint16": True}, "shard_size_bytes": 999_999}),
]


def entry_state(groups):
    """What write_weights may change in the caller's entries (tensorflowjs converts in place)."""
    return [[(e["name"], e["data"].dtype.str, e["data"].shape,
              e["data"].tolist() if e["data"].dtype == object else e["data"].tobytes()) for e in g] for g in groups]


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def run_write(fn, case, folder, kwargs):
    folder.mkdir()
    groups = make_groups(case)
    result = outcome(fn, groups, str(folder), **kwargs)
    return result, folder_bytes(folder), entry_state(groups)


@pytest.mark.parametrize("case,kwargs", WRITE_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(WRITE_CASES)])
def test_write_weights_byte_identical(tfjs, tmp_path, case, kwargs):
    got, got_files, got_entries = run_write(compat.write_weights, case, tmp_path / "compat", kwargs)
    ref, ref_files, ref_entries = run_write(tfjs.ww.write_weights, case, tmp_path / "tfjs", kwargs)
    assert ref[0] == "ok" and got[0] == "ok", (got, ref)
    assert repr(got[1]) == repr(ref[1])  # the returned manifest, numpy.float64 min/scale included
    assert got[2] == ref[2]  # the "auto converted" lines
    assert list(got_files) == list(ref_files)
    for name in ref_files:
        assert got_files[name] == ref_files[name], name
    assert got_entries == ref_entries
    assert ("weights_manifest.json" in got_files) == kwargs.get("write_manifest", True)


def test_write_weights_runs_qshard_writer(tfjs, tmp_path, monkeypatch):
    calls = []
    real = webmodel.write_weights
    monkeypatch.setattr(webmodel, "write_weights", lambda *a, **k: calls.append(k) or real(*a, **k))
    groups = [[{"name": "a", "data": np.ones(4, np.float32)}, {"name": "b", "data": np.arange(3.0, dtype=np.float32)},
               {"name": "c", "data": np.arange(5.0, dtype=np.float32)}]]
    compat.write_weights(groups, str(tmp_path), quantization_dtype_map={"uint8": ["a"], "float16": ["b"]})
    assert len(calls) == 1 and sorted(calls[0]["targets"].values()) == ["float16", "uint8"]


def test_write_weights_keeps_nonfinite_float32_with_a_warning(tfjs, tmp_path):
    def groups():
        return [[{"name": "ok", "data": np.linspace(-1, 2, 50, dtype=np.float32)},
                 {"name": "has-nan", "data": np.array([1.0, np.nan, 3.0], np.float32)},
                 {"name": "has-inf", "data": np.array([-np.inf, 0.5], np.float32)}]]
    (tmp_path / "compat").mkdir()
    (tmp_path / "ref").mkdir()
    with pytest.warns(RuntimeWarning) as caught:
        manifest = compat.write_weights(groups(), str(tmp_path / "compat"), quantization_dtype_map={"uint8": True})
    messages = " ".join(str(w.message) for w in caught)
    assert "'has-nan'" in messages and "'has-inf'" in messages and "'ok'" not in messages
    # The kept tensors are written as plain float32; everything else as tensorflowjs writes it.
    ref = tfjs.ww.write_weights(groups(), str(tmp_path / "ref"), quantization_dtype_map={"uint8": ["ok"]})
    assert repr(manifest) == repr(ref)
    assert folder_bytes(tmp_path / "compat") == folder_bytes(tmp_path / "ref")
    assert [w.get("quantization", {}).get("dtype") for w in manifest[0]["weights"]] == ["uint8", None, None]
    # tensorflowjs itself would have put NaN into the JSON, which no JSON parser of tfjs reads back.
    (tmp_path / "garbage").mkdir()
    with np.errstate(all="ignore"):
        tfjs.ww.write_weights(groups(), str(tmp_path / "garbage"), quantization_dtype_map={"uint8": True})
    assert "NaN" in (tmp_path / "garbage" / "weights_manifest.json").read_text()


def bad_inputs():
    f = np.ones(3, np.float32)
    return {
        "tuple-of-groups": ((([{"name": "a", "data": f}],)), {}),
        "dict": ({"a": f}, {}),
        "no-groups": ([], {}),
        "group-not-list": ([({"name": "a", "data": f},)], {}),
        "entry-without-data": ([[{"name": "a"}]], {}),
        "entry-without-name": ([[{"data": f}]], {}),
        "data-not-array": ([[{"name": "a", "data": [1.0, 2.0]}]], {}),
        "entry-not-dict": ([[("a", f)]], {}),
        "entry-none": ([[None]], {}),
        "shard-size-0": ([[{"name": "a", "data": f}]], {"shard_size_bytes": 0}),
        "shard-size-negative": ([[{"name": "a", "data": f}]], {"shard_size_bytes": -5}),
        "shard-size-float": ([[{"name": "a", "data": f}]], {"shard_size_bytes": 2.5}),
        "shard-size-numpy": ([[{"name": "a", "data": f}]], {"shard_size_bytes": np.int64(4)}),
        "shard-size-none": ([[{"name": "a", "data": f}]], {"shard_size_bytes": None}),
        "shard-size-false": ([[{"name": "a", "data": f}]], {"shard_size_bytes": False}),
        "duplicate-in-group": ([[{"name": "a", "data": f}, {"name": "a", "data": f}]], {}),
        "duplicate-across-groups": ([[{"name": "a", "data": f}], [], [{"name": "a", "data": f}]], {}),
        "duplicate-int-names": ([[{"name": 1, "data": f}, {"name": 1, "data": f}]], {}),
        "int8": ([[{"name": "a", "data": f}], [{"name": "b", "data": np.ones(2, np.int8)}]], {}),
        "uint32": ([[{"name": "b", "data": np.ones(2, np.uint32)}]], {}),
        "float128-like": ([[{"name": "b", "data": np.ones(2, np.longdouble)}]], {}),
        "big-endian": ([[{"name": "b", "data": np.ones(2, ">f4")}]], {"quantization_dtype_map": {"uint8": True}}),
        "empty-to-uint8": ([[{"name": "b", "data": np.zeros(0, np.float32)}]],
                           {"quantization_dtype_map": {"uint8": True}}),
        "empty-to-uint16-after-bad-dtype": ([[{"name": "x", "data": np.ones(2, np.int8)},
                                              {"name": "b", "data": np.zeros((0, 2), np.float32)}]],
                                            {"quantization_dtype_map": {"uint16": ["b"]}}),
        "two-dtypes-one-weight": ([[{"name": "a", "data": f}]],
                                  {"quantization_dtype_map": {"uint8": "a", "uint16": "*"}}),
        "two-fallthroughs": ([[{"name": "a", "data": f}]],
                             {"quantization_dtype_map": {"uint8": True, "float16": True}}),
        "map-not-dict": ([[{"name": "a", "data": f}]], {"quantization_dtype_map": ["uint8"]}),
        "unknown-dtype-key": ([[{"name": "a", "data": f}]], {"quantization_dtype_map": {"int4": "*"}}),
        "object-not-string": ([[{"name": "s", "data": np.array([1, "a"], dtype=object)}]], {}),
        "int-name-converted": ([[{"name": 5, "data": np.ones(2)}]], {}),
        "int-name-pattern": ([[{"name": 5, "data": f}]], {"quantization_dtype_map": {"uint8": "*"}}),
        "second-group-fails": ([[{"name": "a", "data": np.ones(2)}],
                                [{"name": "b", "data": np.ones(2, np.int16)}]], {}),
    }


@pytest.mark.parametrize("label", list(bad_inputs()))
def test_write_weights_same_errors(tfjs, tmp_path, label):
    (tmp_path / "compat").mkdir()
    (tmp_path / "tfjs").mkdir()
    groups, kwargs = bad_inputs()[label]
    got = outcome(compat.write_weights, groups, str(tmp_path / "compat"), **kwargs)
    groups, kwargs = bad_inputs()[label]
    ref = outcome(tfjs.ww.write_weights, groups, str(tmp_path / "tfjs"), **kwargs)
    assert_same_error(got, ref)
    assert got[-1] == ref[-1]  # same stdout (auto-conversion lines) before the error
    assert list((tmp_path / "compat").iterdir()) == []  # nothing written (tensorflowjs may have written shards)


def test_write_weights_missing_folder(tfjs, tmp_path):
    groups = [[{"name": "a", "data": np.ones(3, np.float32)}]]
    assert_same_error(outcome(compat.write_weights, groups, str(tmp_path / "missing")),
                      outcome(tfjs.ww.write_weights, groups, str(tmp_path / "missing")))


# ----------------------------------------------------------------------------------- read / decode

def assert_same_groups(got, ref, flatten):
    assert type(got) is list and len(got) == len(ref)
    groups = [(got, ref)] if flatten else list(zip(got, ref))
    for g, r in groups:
        assert type(g) is list and len(g) == len(r)
        for ge, re_ in zip(g, r):
            assert list(ge) == list(re_) == ["name", "data"]
            assert ge["name"] == re_["name"]
            assert_same_array(ge["data"], re_["data"])
            assert ge["data"].flags.writeable == re_["data"].flags.writeable


def assert_same_read(got, ref, flatten, case):
    if case == "empty-string":  # tensorflowjs cannot read this back; neither can compat, identically
        assert_same_error(got, ref)
        return
    assert ref[0] == "ok" and got[0] == "ok", (got, ref)
    assert_same_groups(got[1], ref[1], flatten)


READ_CASES = [c for c in WRITE_CASES if c[0] != "large" and c[1].get("write_manifest", True)] + [WRITE_CASES[-1]]


@pytest.mark.parametrize("case,kwargs", READ_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(READ_CASES)])
def test_read_weights_of_tensorflowjs_output(tfjs, tmp_path, case, kwargs):
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        manifest = tfjs.ww.write_weights(make_groups(case), str(tmp_path), **kwargs)
    loaded = json.loads((tmp_path / "weights_manifest.json").read_text()) if kwargs.get("write_manifest", True) \
        else manifest
    for flatten in (False, True):
        for m in (manifest, loaded):
            for base in (str(tmp_path), tmp_path):
                assert_same_read(outcome(compat.read_weights, m, base, flatten=flatten),
                                 outcome(tfjs.rw.read_weights, m, base, flatten=flatten), flatten, case)


@pytest.mark.parametrize("case,kwargs", READ_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(READ_CASES)])
def test_tensorflowjs_reads_compat_output(tfjs, tmp_path, case, kwargs):
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        manifest = compat.write_weights(make_groups(case), str(tmp_path), **kwargs)
    ref = outcome(tfjs.rw.read_weights, manifest, str(tmp_path))
    assert_same_read(outcome(compat.read_weights, manifest, str(tmp_path)), ref, False, case)
    if ref[0] == "raised":
        return
    ref = ref[1]
    originals = {e["name"]: e["data"] for g in make_groups(case) for e in g}
    for group in ref:
        for entry in group:
            original = originals[entry["name"]]
            if original.dtype.kind in "US":
                original = original.astype(object)
            if not any(w["name"] == entry["name"] and "quantization" in w for g in manifest for w in g["weights"]):
                if original.dtype == object:
                    as_bytes = [v if isinstance(v, bytes) else v.encode() for v in original.reshape(-1).tolist()]
                    assert entry["data"].reshape(-1).tolist() == as_bytes
                else:  # stored unchanged (after tensorflowjs's auto conversion)
                    expected = original.astype(AUTO_CONVERTED.get(original.dtype.name, original.dtype))
                    assert entry["data"].tobytes() == np.ascontiguousarray(expected).tobytes()


def test_decode_weights_quantized_int32_and_buffers(tfjs):
    rng = np.random.default_rng(21)
    u8 = rng.integers(0, 256, 12).astype(np.uint8)
    u16 = rng.integers(0, 65536, 7).astype(np.uint16)
    f16 = rng.standard_normal(5).astype(np.float16)
    i32 = np.arange(-3, 3, dtype=np.int32)
    manifest = [{"paths": [], "weights": [
        {"name": "a", "shape": [3, 4], "dtype": "int32", "quantization": {"dtype": "uint8", "min": -7.5, "scale": 0.5}},
        {"name": "b", "shape": [7], "dtype": "float32",
         "quantization": {"dtype": "uint16", "min": -1.25, "scale": 3.1e-5, "original_dtype": "float32"}},
        {"name": "c", "shape": [5], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "d", "shape": [2, 3], "dtype": "int32"},
        {"name": "e", "shape": [7], "dtype": "int32", "quantization": {"dtype": "uint16", "min": -9.0, "scale": 1.5}},
    ]}]
    buffer = u8.tobytes() + u16.tobytes() + f16.tobytes() + i32.tobytes() + u16.tobytes()
    for buffers in (buffer, [buffer], bytearray(buffer), memoryview(buffer)):
        for flatten in (False, True):
            assert_same_groups(compat.decode_weights(manifest, buffers, flatten),
                               tfjs.rw.decode_weights(manifest, buffers, flatten), flatten)
    assert compat.decode_weights(manifest, buffer)[0][0]["data"].dtype == np.int32


def test_decode_weights_quirks_and_errors(tfjs, tmp_path):
    strings = [{"paths": [], "weights": [{"name": "s", "shape": [2], "dtype": "string"},
                                         {"name": "n", "shape": [0], "dtype": "string"},
                                         {"name": "i", "shape": [1], "dtype": "int32"}]}]
    payload = (3).to_bytes(4, "little") + b"abc" + (0).to_bytes(4, "little") + np.array([5], np.int32).tobytes()
    cases = [
        (strings, [payload + b"\x07\x00\x00\x00"]),  # the empty string tensor skips 4 bytes in tensorflowjs
        (strings, [payload]),
        (strings, [payload, payload]),
        ([{"paths": [], "weights": [{"name": "x", "shape": [2], "dtype": "float64"}]}], [b"\x00" * 16]),
        ([{"paths": [], "weights": [{"name": "x", "shape": [3], "dtype": "float32"}]}], [b"\x00" * 8]),
        ([{"paths": [], "weights": [{"name": "x", "shape": [1], "dtype": "float32",
                                     "quantization": {"dtype": "uint8", "min": 0.0}}]}], [b"\x01"]),
        ([{"paths": [], "weights": [{"name": "x", "shape": [1], "dtype": "float32",
                                     "quantization": {"dtype": "int8", "min": 0.0, "scale": 1.0}}]}], [b"\x01"]),
        ([{"paths": [], "weights": []}, {"paths": [], "weights": []}], [b""]),
    ]
    for manifest, buffers in cases:
        got = outcome(compat.decode_weights, manifest, buffers)
        ref = outcome(tfjs.rw.decode_weights, manifest, buffers)
        if ref[0] == "ok":
            assert got[0] == "ok", got
            assert_same_groups(got[1], ref[1], False)
        else:
            assert_same_error(got, ref)
    for bad in ({"paths": []}, "manifest", None):
        assert_same_error(outcome(compat.read_weights, bad, str(tmp_path)),
                          outcome(tfjs.rw.read_weights, bad, str(tmp_path)))
    missing = [{"paths": ["nope.bin"], "weights": []}]
    assert_same_error(outcome(compat.read_weights, missing, str(tmp_path)),
                      outcome(tfjs.rw.read_weights, missing, str(tmp_path)))


# ------------------------------------------------------------------------------ install/uninstall

def test_install_patches_the_official_modules_and_uninstall_restores(tfjs, tmp_path, monkeypatch):
    modules = {"quantization": tfjs.q, "write_weights": tfjs.ww, "read_weights": tfjs.rw}
    originals = {(short, a): getattr(modules[short], a) for short, attrs in REPLACED.items() for a in attrs}
    # A tensorflowjs module that imported a function by name, as a tool might.
    tool = types.ModuleType("tensorflowjs.fake_tool")
    tool.ww = tfjs.ww.write_weights
    tool.dq = tfjs.q.dequantize_weights
    tool.unrelated = len
    monkeypatch.setitem(sys.modules, "tensorflowjs.fake_tool", tool)

    patched = compat.install()
    expected = [f"tensorflowjs.{short}.{a}" for short, attrs in REPLACED.items() for a in attrs]
    assert patched == expected + ["tensorflowjs.fake_tool.ww", "tensorflowjs.fake_tool.dq"]
    for (short, attr) in originals:
        assert getattr(modules[short], attr) is getattr(compat, attr)
    assert tool.ww is compat.write_weights and tool.dq is compat.dequantize_weights and tool.unrelated is len
    assert compat.install() == patched and compat.installed() == patched  # twice: harmless

    # Calls through the official modules now run qshard's kernels, with the official results.
    calls = []
    real_quantize = kernels.quantize
    monkeypatch.setattr(kernels, "quantize", lambda *a, **k: calls.append(a[1]) or real_quantize(*a, **k))
    x = np.random.default_rng(31).standard_normal((64, 9)).astype(np.float32)
    for dtype in ("uint8", "uint16", "float16"):
        assert_same_quantized(tfjs.q.quantize_weights(x, NP_TYPES[dtype]),
                              originals["quantization", "quantize_weights"](x, NP_TYPES[dtype]))
    assert calls == ["uint8", "uint16", "float16"]
    codes = np.arange(256, dtype=np.uint8)
    assert_same_array(tfjs.q.dequantize_weights(codes, {"min": -1.0, "scale": 0.01}),
                      originals["quantization", "dequantize_weights"](codes, {"min": -1.0, "scale": 0.01}))
    assert tfjs.q.map_layers_to_quantization_dtype(NAMES, {"uint8": True}) == \
        originals["quantization", "map_layers_to_quantization_dtype"](NAMES, {"uint8": True})

    (tmp_path / "patched").mkdir()
    (tmp_path / "original").mkdir()
    kwargs = {"shard_size_bytes": 100, "quantization_dtype_map": {"uint8": ["kernel"], "float16": True}}
    with contextlib.redirect_stdout(io.StringIO()):
        m_patched = tfjs.ww.write_weights(make_groups("mixed-dtypes"), str(tmp_path / "patched"), **kwargs)
        assert calls[3:] == []  # compat's write_weights streams through the shard writer, not quantize()
        m_original = originals["write_weights", "write_weights"](make_groups("mixed-dtypes"),
                                                                 str(tmp_path / "original"), **kwargs)
    # The original write_weights calls quantization.quantize_weights through the module: patched too.
    assert calls[3:] == ["uint8", "float16"]
    assert repr(m_patched) == repr(m_original)
    assert folder_bytes(tmp_path / "patched") == folder_bytes(tmp_path / "original")
    assert_same_groups(tfjs.rw.read_weights(m_patched, str(tmp_path / "patched")),
                       originals["read_weights", "read_weights"](m_original, str(tmp_path / "original")), False)

    restored = compat.uninstall()
    assert restored == patched
    for (short, attr), original in originals.items():
        assert getattr(modules[short], attr) is original
    assert tool.ww is originals["write_weights", "write_weights"]
    assert tool.dq is originals["quantization", "dequantize_weights"]
    assert compat.uninstall() == [] and compat.installed() == []
    assert tfjs.q.quantize_weights.__module__ == "tensorflowjs.quantization"


def run_python(code, extra_path=None):
    paths = ([str(extra_path)] if extra_path else []) + [PYTHON_DIR, os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_install_in_a_fresh_interpreter(tfjs):
    # Nothing imported yet: install() imports tensorflowjs (here the numpy-only stand-in, since the
    # real package needs TensorFlow) and patches it.
    out = run_python("""
        import sys
        from qshard.compat import tensorflowjs as compat
        assert "tensorflowjs" not in sys.modules
        patched = compat.install()
        import tensorflowjs.write_weights, tensorflowjs.read_weights, tensorflowjs.quantization
        assert tensorflowjs.write_weights.write_weights is compat.write_weights
        assert tensorflowjs.read_weights.decode_weights is compat.decode_weights
        assert tensorflowjs.quantization.quantize_weights is compat.quantize_weights
        assert len(patched) == 6, patched
        original = compat.uninstall()
        assert tensorflowjs.write_weights.write_weights.__module__ == "tensorflowjs.write_weights"
        print("ok", len(original))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "6"]


def test_install_patches_an_importable_package_and_its_from_imports(tmp_path):
    # A stand-in for an importable tensorflowjs (TensorFlow present): the real package import runs,
    # and a converter module that did `from tensorflowjs.write_weights import write_weights` is patched.
    package = tmp_path / "tensorflowjs"
    (package / "converters").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from tensorflowjs import quantization\nfrom tensorflowjs.converters import tool\n")
    (package / "quantization.py").write_text(
        "def quantize_weights(data, dtype): return 'orig'\n"
        "def dequantize_weights(data, meta, original_dtype=None): return 'orig'\n"
        "def map_layers_to_quantization_dtype(names, m): return 'orig'\n")
    (package / "read_weights.py").write_text(
        "def read_weights(m, base, flatten=False): return 'orig'\n"
        "def decode_weights(m, buffers, flatten=False): return 'orig'\n")
    (package / "write_weights.py").write_text("def write_weights(*args, **kwargs): return 'orig'\n")
    (package / "converters" / "__init__.py").write_text("")
    (package / "converters" / "tool.py").write_text(
        "from tensorflowjs.write_weights import write_weights\n"
        "from tensorflowjs.quantization import quantize_weights as q\n")
    out = run_python("""
        import sys
        from qshard.compat import tensorflowjs as compat
        patched = compat.install()
        import tensorflowjs
        from tensorflowjs.converters import tool
        assert tensorflowjs.__file__.endswith("__init__.py"), tensorflowjs
        assert tool.write_weights is compat.write_weights and tool.q is compat.quantize_weights
        assert sys.modules["tensorflowjs.read_weights"].read_weights is compat.read_weights
        print(" ".join(patched))
        compat.uninstall()
        assert tool.write_weights() == "orig" and tool.q(1, 2) == "orig"
        assert tensorflowjs.quantization.quantize_weights(1, 2) == "orig"
        assert sys.modules["tensorflowjs.read_weights"].decode_weights(1, 2) == "orig"
    """, extra_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {
        "tensorflowjs.quantization.quantize_weights", "tensorflowjs.quantization.dequantize_weights",
        "tensorflowjs.quantization.map_layers_to_quantization_dtype", "tensorflowjs.write_weights.write_weights",
        "tensorflowjs.read_weights.read_weights", "tensorflowjs.read_weights.decode_weights",
        "tensorflowjs.converters.tool.write_weights", "tensorflowjs.converters.tool.q"}


def test_install_without_tensorflowjs_says_so():
    out = run_python("""
        import importlib.util
        from qshard import reference
        from qshard.compat import tensorflowjs as compat
        importlib.util.find_spec = lambda name, *a, **k: None   # as if tensorflowjs were not installed
        try:
            compat.install()
        except reference.ReferenceUnavailable as error:
            print("raised:", error)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("raised: tensorflowjs is not installed")
