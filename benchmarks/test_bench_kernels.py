"""pytest-benchmark suite: each kernel, serial vs SIMD vs numpy (vs tensorflowjs where installed),
at 1 Mi and 64 Mi elements. Run: python -m pytest benchmarks --benchmark-group-by=param:kernel,param:n
Not part of the test suite: speeds are compared within one run, never asserted."""
import numpy as np
import pytest

import qshard
from qshard import _core, reference

SIZES = [1 << 20, 1 << 26]
KERNELS = ["minmax", "quantize_uint8", "quantize_uint16", "dequantize_uint8", "dequantize_uint16",
           "float32_to_float16", "float16_to_float32"]
IMPLS = [*qshard.available_isas(), "numpy", "tensorflowjs"]

_data = {}


def data(n):
    if n not in _data:
        _data.clear()
        x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        u8, p8 = qshard.quantize(x, "uint8")
        u16, p16 = qshard.quantize(x, "uint16")
        _data[n] = dict(x=x, u8=u8, p8=p8, u16=u16, p16=p16, f16=x.astype(np.float16),
                        out_u8=np.empty(n, np.uint8), out_u16=np.empty(n, np.uint16), out_f32=np.empty(n, np.float32))
    return _data[n]


def make_call(kernel, impl, d):
    x = d["x"]
    if impl in qshard.available_isas():
        return {
            "minmax": lambda: _core.minmax(x, impl, 0),
            "quantize_uint8": lambda: _core.quantize_u8(x, d["out_u8"], impl, 0),
            "quantize_uint16": lambda: _core.quantize_u16(x, d["out_u16"], impl, 0),
            "dequantize_uint8": lambda: _core.dequantize(d["u8"], d["out_f32"], d["p8"].min, d["p8"].scale, impl, 0),
            "dequantize_uint16": lambda: _core.dequantize(d["u16"], d["out_f32"], d["p16"].min, d["p16"].scale, impl, 0),
            "float32_to_float16": lambda: _core.f16_from_f32(x, d["out_u16"], impl, 0),
            "float16_to_float32": lambda: _core.f32_from_f16(d["f16"].view(np.uint16), d["out_f32"], impl, 0),
        }[kernel]
    if impl == "numpy":
        def quantize(qmax, dtype):
            p = qshard.affine_params(float(x.min()), float(x.max()), dtype)
            return np.round((x.clip(np.float64(p.min), np.float64(p.max)) - np.float64(p.min)) / p.scale).astype(dtype)
        return {
            "minmax": lambda: (x.min(), x.max()),
            "quantize_uint8": lambda: quantize(255, "uint8"),
            "quantize_uint16": lambda: quantize(65535, "uint16"),
            "dequantize_uint8": lambda: (d["u8"] * d["p8"].scale + d["p8"].min).astype(np.float32),
            "dequantize_uint16": lambda: (d["u16"] * d["p16"].scale + d["p16"].min).astype(np.float32),
            "float32_to_float16": lambda: x.astype(np.float16),
            "float16_to_float32": lambda: d["f16"].astype(np.float32),
        }[kernel]
    try:
        tq = reference.load("quantization")
    except reference.ReferenceUnavailable as error:
        pytest.skip(str(error))
    calls = {
        "quantize_uint8": lambda: tq.quantize_weights(x, np.uint8),
        "quantize_uint16": lambda: tq.quantize_weights(x, np.uint16),
        "dequantize_uint8": lambda: tq.dequantize_weights(d["u8"], {"min": d["p8"].min, "scale": d["p8"].scale}),
        "dequantize_uint16": lambda: tq.dequantize_weights(d["u16"], {"min": d["p16"].min, "scale": d["p16"].scale}),
        "float32_to_float16": lambda: tq.quantize_weights(x, np.float16),
        "float16_to_float32": lambda: tq.dequantize_weights(d["f16"], {}),
    }
    if kernel not in calls:
        pytest.skip(f"tensorflowjs has no {kernel}")
    return calls[kernel]


@pytest.mark.parametrize("n", SIZES, ids=["1Mi", "64Mi"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("impl", IMPLS)
def test_kernel(benchmark, kernel, impl, n):
    call = make_call(kernel, impl, data(n))
    benchmark.extra_info["GB_float32"] = 4 * n / 1e9
    benchmark.pedantic(call, rounds=5 if n <= 1 << 20 else 3, warmup_rounds=1)
