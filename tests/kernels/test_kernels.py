"""Every SIMD kernel against the serial reference, byte for byte."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qshard
from conftest import LENGTHS, SIMD_ISAS, as_f32, distributions

pytestmark = pytest.mark.skipif(not SIMD_ISAS, reason="this CPU has no SIMD tier; only the reference runs")

DISTRIBUTION_NAMES = list(distributions(np.random.default_rng(0), 4))


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("n", LENGTHS)
def test_quantize_matches_serial_lengths(simd, dtype, n):
    rng = np.random.default_rng(n)
    for name, values in distributions(rng, n).items():
        x = as_f32(values)
        if n == 0:
            continue
        ref, ref_p = qshard.quantize(x, dtype, isa="serial")
        got, got_p = qshard.quantize(x, dtype, isa=simd)
        assert same(ref, got), (name, np.flatnonzero(ref != got)[:10])
        assert ref_p == got_p


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("name", DISTRIBUTION_NAMES)
def test_quantize_unaligned_views(simd, dtype, name):
    rng = np.random.default_rng(7)
    buffer = as_f32(distributions(rng, 4099 + 8)[name])
    for offset in range(1, 8):
        x = buffer[offset:offset + 4099]
        out_buffer = np.zeros(4099 + 8, np.uint8 if dtype == "uint8" else np.uint16)
        out = out_buffer[offset:offset + 4099]
        qshard.quantize(x, dtype, isa=simd, out=out)
        ref, _ = qshard.quantize(x, dtype, isa="serial")
        assert same(out, ref)
        assert not out_buffer[:offset].any() and not out_buffer[offset + 4099:].any()


def tie_values(params, rng, count=5000):
    """float32 values whose (x - min) / scale lies on or next to k + 0.5."""
    qmax = 255 if params.dtype == "uint8" else 65535
    k = rng.integers(-1, qmax + 1, count).astype(np.float64)
    exact = (k + 0.5) * params.scale + params.min
    x = exact.astype(np.float32)
    return np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (-0.1, 1.2), (0.0, 3.0), (-5.0, 0.0), (2.0, 2.5),
                                   (1000.0, 1000.5), (-1e-30, 3e-30), (-3e38, 3e38)])
def test_quantize_rounding_ties(simd, dtype, lo, hi):
    rng = np.random.default_rng(3)
    params = qshard.affine_params(lo, hi, dtype)
    x = tie_values(params, rng)
    ref = qshard.quantize_with(x, params, isa="serial")
    got = qshard.quantize_with(x, params, isa=simd)
    assert same(ref, got), np.flatnonzero(ref != got)[:10]
    # Whole tensors whose range is [lo, hi] and whose values sit on ties.
    y = np.concatenate([np.array([lo, hi], np.float32), x.clip(np.float32(lo), np.float32(hi))])
    assert same(qshard.quantize(y, dtype, isa="serial")[0], qshard.quantize(y, dtype, isa=simd)[0])


def test_round_half_to_even_is_pinned():
    # (x - min) / scale = 0.5, 1.5, 2.5, 3.5 exactly: half to even gives 0, 2, 2, 4.
    params = qshard.QuantParams("uint8", 0.0, 1.0, 255.0)
    x = np.array([0.5, 1.5, 2.5, 3.5, 254.5], np.float32)
    for isa in qshard.available_isas():
        assert qshard.quantize_with(x, params, isa=isa).tolist() == [0, 2, 2, 4, 254]


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_quantize_large_streaming_and_threads(simd, dtype):
    # Large enough for non-temporal stores (>= 4 MiB of output per thread) and an unaligned output.
    rng = np.random.default_rng(11)
    n = (1 << 22) + 37
    buffer = as_f32(rng.standard_normal(n + 3))
    x = buffer[3:]
    ref, ref_p = qshard.quantize(x, dtype, isa="serial", threads=1)
    for threads in (1, 2, 3):
        out = np.empty(n + 1, ref.dtype)[1:]
        got, got_p = qshard.quantize(x, dtype, isa=simd, threads=threads, out=out)
        assert same(ref, got) and ref_p == got_p


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("n", LENGTHS)
def test_minmax_matches_serial(simd, n):
    if n == 0:
        return
    rng = np.random.default_rng(n + 1)
    for name, values in distributions(rng, n).items():
        x = as_f32(values)
        assert qshard.minmax(x, isa="serial") == qshard.minmax(x, isa=simd)
        assert qshard.minmax(x, isa=simd) == (float(x.min()), float(x.max())), name


@pytest.mark.parametrize("simd", SIMD_ISAS)
def test_minmax_nan_inf_signed_zero(simd):
    for isa in ("serial", simd):
        x = np.zeros(100, np.float32)
        x[57] = np.nan
        lo, hi = qshard.minmax(x, isa=isa)
        assert np.isnan(lo) and np.isnan(hi)
        x[57] = -np.inf
        assert qshard.minmax(x, isa=isa) == (-np.inf, 0.0)
        z = np.array([0.0, -0.0] * 40, np.float32)
        lo, hi = qshard.minmax(z, isa=isa)
        assert lo == 0 and np.signbit(lo) and hi == 0 and not np.signbit(hi)


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("to", ["float32", "int32"])
@pytest.mark.parametrize("n", LENGTHS + [(1 << 21) + 5])
def test_dequantize_matches_serial(simd, dtype, to, n):
    rng = np.random.default_rng(n + 2)
    qmax = 255 if dtype == "uint8" else 65535
    codes = rng.integers(0, qmax + 1, n, dtype=np.uint8 if dtype == "uint8" else np.uint16)
    for mn, scale in [(-0.10196078817049663, 0.0050980394085248315), (-1e9, 12345.678), (0.5, 1.0)]:
        params = qshard.QuantParams(dtype, mn, scale)
        ref = qshard.dequantize(codes, params, to, isa="serial")
        got = qshard.dequantize(codes, params, to, isa=simd)
        assert same(ref, got)


@pytest.mark.parametrize("simd", SIMD_ISAS)
@pytest.mark.parametrize("n", LENGTHS)
def test_float16_matches_serial(simd, n):
    rng = np.random.default_rng(n + 3)
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)  # includes NaN payloads
    for x in (bits.view(np.float32), as_f32(rng.standard_normal(n) * 1e3)):
        ref = qshard.quantize(x, "float16", isa="serial")[0]
        got = qshard.quantize(x, "float16", isa=simd)[0]
        assert same(ref.view(np.uint16), got.view(np.uint16))
        back_ref = qshard.dequantize(ref, qshard.QuantParams("float16"), isa="serial")
        back = qshard.dequantize(ref, qshard.QuantParams("float16"), isa=simd)
        assert same(back_ref.view(np.uint32), back.view(np.uint32))


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(x=hnp.arrays(np.float32, st.integers(1, 300), elements=any_f32), dtype=st.sampled_from(["uint8", "uint16"]))
def test_hypothesis_quantize_serial_vs_simd(x, dtype):
    results = []
    for isa in qshard.available_isas():
        try:
            codes, params = qshard.quantize(x, dtype, isa=isa)
            results.append((codes.tobytes(), params))
        except ValueError as error:
            assert "NaN" in str(error) or "Inf" in str(error)
            assert not np.isfinite(x).all()
            results.append(("refused", None))
    assert all(r == results[0] for r in results)


@settings(max_examples=300, deadline=None)
@given(x=hnp.arrays(np.float32, st.integers(1, 200), elements=any_f32))
def test_hypothesis_float16_serial_vs_simd(x):
    outs = [qshard.quantize(x, "float16", isa=isa)[0].view(np.uint16).tobytes() for isa in qshard.available_isas()]
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).view(np.uint16).tobytes()
    assert all(o == outs[0] for o in outs)
    assert outs[0] == expected


@pytest.mark.parametrize("simd", SIMD_ISAS)
def test_float16_large_streaming(simd):
    # Outputs of >= 4 MiB take the non-temporal path; unaligned outputs take its scalar head.
    rng = np.random.default_rng(17)
    n = (1 << 21) + 37
    x = as_f32(rng.standard_normal(n + 1) * 100)[1:]
    x[rng.integers(0, n, 50)] = np.nan
    ref = qshard.quantize(x, "float16", isa="serial", threads=1)[0]
    for threads in (1, 2):
        out = np.empty(n + 1, np.float16)[1:]
        got = qshard.quantize(x, "float16", isa=simd, threads=threads, out=out)[0]
        assert same(ref.view(np.uint16), got.view(np.uint16))
        back_ref = qshard.dequantize(ref, qshard.QuantParams("float16"), isa="serial", threads=1)
        back_out = np.empty(n + 3, np.float32)[3:]
        back = qshard.dequantize(ref, qshard.QuantParams("float16"), isa=simd, threads=threads, out=back_out)
        assert same(back_ref.view(np.uint32), back.view(np.uint32))


def math_round(v):
    """JavaScript's Math.round, from its definition: the integer closest to v, ties toward +Inf."""
    r = np.floor(v)
    return np.where(v - r >= 0.5, r + 1, r)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_dequantize_int32_rounding_rules(dtype):
    # min -64.5, scale 0.5: every other code lands on a .5 tie.
    qmax = 255 if dtype == "uint8" else 65535
    codes = np.arange(qmax + 1, dtype=np.uint8 if dtype == "uint8" else np.uint16)
    params = qshard.QuantParams(dtype, -64.5, 0.5)
    exact = codes * 0.5 - 64.5
    for isa in qshard.available_isas():
        even = qshard.dequantize(codes, params, "int32", isa=isa)
        up = qshard.dequantize(codes, params, "int32", isa=isa, rounding="half_up")
        assert even.tolist() == np.round(exact).astype(np.int32).tolist()
        assert up.tolist() == math_round(exact).astype(np.int32).tolist()
        assert (even != up).any()


@pytest.mark.parametrize("simd", SIMD_ISAS)
def test_dequantize_half_up_matches_serial(simd):
    rng = np.random.default_rng(23)
    codes = rng.integers(0, 65536, (1 << 21) + 7, dtype=np.uint16)
    for mn, scale in [(-64.5, 0.5), (0.49999999999999994, 1.0), (-3e9, 1e5), (-1e-3, 0.25)]:
        params = qshard.QuantParams("uint16", mn, scale)
        a = qshard.dequantize(codes, params, "int32", isa="serial", rounding="half_up")
        b = qshard.dequantize(codes, params, "int32", isa=simd, rounding="half_up")
        assert a.tobytes() == b.tobytes()


def test_dequantize_keeps_scalar_shapes():
    for dtype in ("uint8", "uint16", "float16"):
        codes, params = qshard.quantize(np.float32(1.5), dtype)
        assert codes.shape == () and qshard.dequantize(codes, params).shape == ()
