// qshard/affine.hpp: per-tensor affine quantization float32 -> uint8/uint16 and back.
//
// The parameters follow tensorflowjs 4.22 quantization.py, in float64 (numpy >= 2 semantics):
//   lo, hi   = min(x), max(x) as float64
//   lo == hi : scale = 1, min = lo, max = hi           (every code is 0)
//   else     : scale = (hi - lo) / qmax
//              if lo <= 0 <= hi:  zp = rint((0 - lo) / scale); min = -zp * scale;
//                                 max = qmax * scale + min          ("nudge": 0.0 is exact)
//              else               min = lo, max = hi
// Quantize:   q = rint((clip(x, min, max) - min) / scale)   all in float64, rint = round half
//             to even (nearbyint under the default rounding mode), never std::round.
// Dequantize: x = float32(q * scale + min) in float64 (tfjs: Math.fround(q * scale + min));
//             for int32 originals, int32(round(q * scale + min)) with one of two rounding rules:
//             half to even (numpy, so tensorflowjs's Python reader) or half up (JavaScript's
//             Math.round, so the tfjs client); `half_up` picks.
// The whole project builds with -ffp-contract=off: a fused multiply-add would change
// `qmax * scale + min` and so the nudged max, and with it the bytes.
//
// The SIMD kernels multiply by the reciprocal of scale; where a lane's estimate lies within a
// proven error bound of a rounding boundary (k + 0.5), the block is redone by the serial kernel,
// so every byte equals the serial result (see affine_avx2.cpp for the bounds).
// NaN and +-Inf are refused before these kernels run (the parameters would be meaningless).
#pragma once
#include <cstddef>
#include <cstdint>

namespace qshard {

struct AffineParams {
    double min = 0.0;    // nudged minimum: code 0 dequantizes to this
    double max = 0.0;    // nudged maximum: values above are clipped to it
    double scale = 1.0;  // step between codes
    uint32_t qmax = 255;
    // False when every x to be quantized is known to lie in [lo, hi], the range these parameters
    // came from (then no x is more than half a step outside [min, max], and the SIMD kernels
    // can let their saturating packs do the clipping). Never changes the result.
    bool clip = true;
};

// lo, hi: the tensor's minimum and maximum (finite). qmax: 255 or 65535.
AffineParams affine_params(double lo, double hi, uint32_t qmax) noexcept;

void quantize_u8_f32_serial(const float* x, size_t n, const AffineParams& p, uint8_t* out) noexcept;
void quantize_u16_f32_serial(const float* x, size_t n, const AffineParams& p, uint16_t* out) noexcept;
void quantize_u8_f32_avx2(const float* x, size_t n, const AffineParams& p, uint8_t* out) noexcept;
void quantize_u16_f32_avx2(const float* x, size_t n, const AffineParams& p, uint16_t* out) noexcept;

void dequantize_f32_u8_serial(const uint8_t* q, size_t n, double min, double scale, float* out) noexcept;
void dequantize_f32_u16_serial(const uint16_t* q, size_t n, double min, double scale, float* out) noexcept;
void dequantize_i32_u8_serial(const uint8_t* q, size_t n, double min, double scale, bool half_up, int32_t* out) noexcept;
void dequantize_i32_u16_serial(const uint16_t* q, size_t n, double min, double scale, bool half_up, int32_t* out) noexcept;
void dequantize_f32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, float* out) noexcept;
void dequantize_f32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, float* out) noexcept;
void dequantize_i32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, bool half_up, int32_t* out) noexcept;
void dequantize_i32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, bool half_up, int32_t* out) noexcept;

// One element, the definition of "correct" for both directions.
uint32_t quantize_one(float x, const AffineParams& p) noexcept;
int32_t round_to_i32(double v) noexcept;  // rint, saturating out-of-range and NaN to INT32_MIN
// JavaScript's Math.round (halves toward +Inf), what tfjs computes for int32 weights; same saturation.
int32_t round_half_up_to_i32(double v) noexcept;

}  // namespace qshard
