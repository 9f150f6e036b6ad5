// qshard/widen.hpp: stored float forms other than float32 and float16, widened to float32.
//
// bfloat16 is the top half of a float32: widening shifts it up, exactly (NaN payloads included).
// float64 -> float32 rounds to nearest, ties to even, as numpy's astype (a C cast) does; values
// beyond float32's range become +-Inf, NaN stays NaN. Both are memory-bound and auto-vectorize
// at -O3, so they have no SIMD variant of their own.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qshard {

void f32_from_bf16_serial(const uint16_t* h, size_t n, float* out) noexcept;
void f32_from_f64_serial(const double* x, size_t n, float* out) noexcept;

}  // namespace qshard
