// qshard/f16.hpp: float32 <-> IEEE binary16, bit-identical to numpy's astype.
//
// float32 -> float16 rounds to nearest, ties to even, through subnormals; values >= 65520 in
// magnitude become Inf. NaN keeps its sign and the top 10 payload bits; a payload that would
// vanish becomes 1, so a NaN stays a NaN and a signalling NaN stays signalling (numpy's rule; the
// F16C instruction would quiet it, so the SIMD path hands NaN lanes to the serial kernel).
// float16 -> float32 is exact; NaN payloads are shifted up unchanged (F16C would set the quiet bit).
// Halves are passed as uint16_t bit patterns.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qshard {

uint16_t f16_from_f32_one(float x) noexcept;
float f32_from_f16_one(uint16_t h) noexcept;

void f16_from_f32_serial(const float* x, size_t n, uint16_t* out) noexcept;
void f32_from_f16_serial(const uint16_t* h, size_t n, float* out) noexcept;
void f16_from_f32_avx2(const float* x, size_t n, uint16_t* out) noexcept;
void f32_from_f16_avx2(const uint16_t* h, size_t n, float* out) noexcept;

}  // namespace qshard
