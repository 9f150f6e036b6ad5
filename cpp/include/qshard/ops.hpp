// qshard/ops.hpp: whole-buffer operations: pick the kernels, split over threads, check inputs.
// This is the C++ API the bindings (and any C++ caller) use; kernels stay single-range and pure.
#pragma once
#include <cstddef>
#include <cstdint>

#include "qshard/affine.hpp"
#include "qshard/dispatch.hpp"
#include "qshard/minmax.hpp"

namespace qshard {

MinMaxKeys minmax(const Kernels& k, const float* x, size_t n, unsigned threads);

// Minimum and maximum, then tensorflowjs's parameters, then the codes (out has n elements of
// 1 byte for qmax 255, 2 bytes for 65535). Throws std::invalid_argument when x holds NaN or Inf.
// An empty buffer gets min 0, scale 1 (tensorflowjs raises on it).
AffineParams quantize(const Kernels& k, const float* x, size_t n, uint32_t qmax, void* out, unsigned threads);
// The codes for parameters chosen elsewhere (e.g. from a min/max over a whole streamed tensor).
void quantize_with(const Kernels& k, const float* x, size_t n, const AffineParams& p, void* out, unsigned threads);

// code_bytes: 1 or 2; out_is_int32: round to int32 instead of float32.
// half_up: int32 rounding as JavaScript's Math.round (the tfjs client) instead of half to even.
void dequantize(const Kernels& k, const void* q, size_t n, unsigned code_bytes, double min, double scale,
                bool out_is_int32, void* out, unsigned threads, bool half_up = false);

void f16_from_f32(const Kernels& k, const float* x, size_t n, uint16_t* out, unsigned threads);
void f32_from_f16(const Kernels& k, const uint16_t* h, size_t n, float* out, unsigned threads);

uint32_t ceiling_read(const Kernels& k, const void* in, size_t n, unsigned threads);
void ceiling_narrow(const Kernels& k, const void* in, size_t n, unsigned out_bytes, void* out, unsigned threads);
void ceiling_widen(const Kernels& k, const void* in, size_t n, unsigned in_bytes, void* out, unsigned threads);

}  // namespace qshard
