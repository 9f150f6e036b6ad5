#include <cmath>

#include "qshard/affine.hpp"

namespace qshard {

AffineParams affine_params(double lo, double hi, uint32_t qmax) noexcept {
    AffineParams p;
    p.qmax = qmax;
    if (lo == hi) {
        p.min = lo;
        p.max = hi;
        p.scale = 1.0;
        return p;
    }
    p.scale = (hi - lo) / static_cast<double>(qmax);
    if (lo <= 0.0 && 0.0 <= hi) {
        const double zero_point = std::nearbyint((0.0 - lo) / p.scale);
        p.min = -zero_point * p.scale;
        p.max = static_cast<double>(qmax) * p.scale + p.min;
    } else {
        p.min = lo;
        p.max = hi;
    }
    return p;
}

uint32_t quantize_one(float x, const AffineParams& p) noexcept {
    double v = static_cast<double>(x);
    // numpy's clip: min(max(v, lo), hi)
    if (v < p.min) v = p.min;
    if (v > p.max) v = p.max;
    const double q = std::nearbyint((v - p.min) / p.scale);
    // (v - min) / scale lies in [0, qmax] up to float64 rounding, so the cast is safe; the clamp
    // only guards against parameters a caller built by hand.
    if (!(q > 0.0)) return 0;
    if (q > static_cast<double>(p.qmax)) return p.qmax;
    return static_cast<uint32_t>(q);
}

int32_t round_to_i32(double v) noexcept {
    const double r = std::nearbyint(v);
    // x86's cvtsd2si gives INT32_MIN for NaN and out-of-range values; keep that, portably.
    if (!(r >= -2147483648.0 && r < 2147483648.0)) return INT32_MIN;
    return static_cast<int32_t>(r);
}

void quantize_u8_f32_serial(const float* x, size_t n, const AffineParams& p, uint8_t* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(quantize_one(x[i], p));
}

void quantize_u16_f32_serial(const float* x, size_t n, const AffineParams& p, uint16_t* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint16_t>(quantize_one(x[i], p));
}

void dequantize_f32_u8_serial(const uint8_t* q, size_t n, double min, double scale, float* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(q[i]) * scale + min);
}

void dequantize_f32_u16_serial(const uint16_t* q, size_t n, double min, double scale, float* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(q[i]) * scale + min);
}

int32_t round_half_up_to_i32(double v) noexcept {
    double r = std::floor(v);
    if (v - r >= 0.5) r += 1.0;  // v - floor(v) is exact
    if (!(r >= -2147483648.0 && r < 2147483648.0)) return INT32_MIN;
    return static_cast<int32_t>(r);
}

void dequantize_i32_u8_serial(const uint8_t* q, size_t n, double min, double scale, bool half_up,
                              int32_t* out) noexcept {
    for (size_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(q[i]) * scale + min;
        out[i] = half_up ? round_half_up_to_i32(v) : round_to_i32(v);
    }
}

void dequantize_i32_u16_serial(const uint16_t* q, size_t n, double min, double scale, bool half_up,
                               int32_t* out) noexcept {
    for (size_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(q[i]) * scale + min;
        out[i] = half_up ? round_half_up_to_i32(v) : round_to_i32(v);
    }
}

}  // namespace qshard
