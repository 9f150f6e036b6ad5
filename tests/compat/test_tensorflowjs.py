"""qshard against the official tensorflowjs 4.22 quantization module, bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qshard
from conftest import as_f32, distributions

NP_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}


def assert_same_as_tfjs(tq, x, dtype, isa):
    ref, meta = tq.quantize_weights(x, NP_DTYPES[dtype])
    codes, params = qshard.quantize(x, dtype, isa=isa)
    assert codes.tobytes() == ref.tobytes(), np.flatnonzero(codes != ref)[:10]
    assert codes.dtype == ref.dtype and codes.shape == ref.shape
    assert float(params.scale) == float(meta["scale"])
    if np.all(x == 0):  # the sign of zero is the one documented difference (see minmax.hpp)
        assert params.min == meta["min"]
    else:
        assert np.float64(params.min).tobytes() == np.float64(meta["min"]).tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 33, 1000, (1 << 20) + 3])
def test_distributions_match_tensorflowjs(tfjs_quantization, isa, dtype, n):
    rng = np.random.default_rng(n)
    for name, values in distributions(rng, n).items():
        assert_same_as_tfjs(tfjs_quantization, as_f32(values), dtype, isa)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_documented_examples(tfjs_quantization, isa, dtype):
    x = np.array([0, -0.1, 1.2], np.float32)
    assert_same_as_tfjs(tfjs_quantization, x, dtype, isa)
    codes, params = qshard.quantize(x, dtype, isa=isa)
    if dtype == "uint8":
        assert codes.tolist() == [20, 0, 255]
        assert params.min == -0.10196078817049663 and params.scale == 0.0050980394085248315
    else:
        assert codes.tolist() == [5041, 0, 65535]
    # float64 arithmetic (numpy >= 2): [0, 1, 2] -> 128 in the middle, not 127.
    assert qshard.quantize(np.array([0, 1, 2], np.float32), "uint8", isa=isa)[0].tolist() == [0, 128, 255]
    # A minimum of exactly 0 is written as -0.0, as tensorflowjs does (-zp * scale with zp = 0).
    p = qshard.quantize(np.array([0, 1, 2], np.float32), "uint8", isa=isa)[1]
    assert p.min == 0 and np.signbit(p.min)


def test_rounding_ties_match_tensorflowjs(tfjs_quantization, isa):
    rng = np.random.default_rng(5)
    for dtype, qmax in (("uint8", 255), ("uint16", 65535)):
        for lo, hi in [(-1.0, 1.0), (-0.1, 1.2), (2.0, 2.5), (-7.0, -3.0)]:
            params = qshard.affine_params(lo, hi, dtype)
            k = rng.integers(0, qmax, 4000).astype(np.float64)
            x = ((k + 0.5) * params.scale + params.min).astype(np.float32)
            x = np.concatenate([[lo, hi], np.clip(x, lo, hi)]).astype(np.float32)
            assert_same_as_tfjs(tfjs_quantization, x, dtype, isa)


def test_float16_matches_tensorflowjs(tfjs_quantization, isa):
    rng = np.random.default_rng(9)
    x = as_f32(rng.standard_normal(100_003) * 300)
    ref, meta = tfjs_quantization.quantize_weights(x, np.float16)
    got, params = qshard.quantize(x, "float16", isa=isa)
    assert meta == {} and params.dtype == "float16"
    assert got.view(np.uint16).tobytes() == ref.view(np.uint16).tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("original", ["float32", "int32"])
def test_dequantize_matches_tensorflowjs(tfjs_quantization, isa, dtype, original):
    rng = np.random.default_rng(13)
    x = as_f32(rng.standard_normal(50_001) * (1000 if original == "int32" else 1))
    codes, params = qshard.quantize(x, dtype, isa=isa)
    meta = {"min": params.min, "scale": params.scale}
    ref = tfjs_quantization.dequantize_weights(codes, meta, np.dtype(original))
    got = qshard.dequantize(codes, params, original, isa=isa)
    assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()


def test_empty_tensor_is_a_documented_deviation(tfjs_quantization, isa):
    # tensorflowjs raises on an empty tensor (numpy min of nothing); qshard returns no codes.
    with pytest.raises(ValueError):
        tfjs_quantization.quantize_weights(np.zeros(0, np.float32), np.uint8)
    codes, params = qshard.quantize(np.zeros(0, np.float32), "uint8", isa=isa)
    assert codes.size == 0 and params.min == 0.0 and params.scale == 1.0


@settings(max_examples=400, deadline=None)
@given(x=hnp.arrays(np.float32, st.integers(1, 400),
                    elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
       dtype=st.sampled_from(["uint8", "uint16"]))
def test_hypothesis_matches_tensorflowjs(tfjs_quantization, x, dtype):
    with np.errstate(all="ignore"):
        for isa in qshard.available_isas():
            assert_same_as_tfjs(tfjs_quantization, x, dtype, isa)
