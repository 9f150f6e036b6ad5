#include <cstring>

#include "qshard/f16.hpp"

namespace qshard {

uint16_t f16_from_f32_one(float x) noexcept {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;

    if (magnitude >= 0x7f800000u) {  // Inf or NaN
        if (magnitude == 0x7f800000u) return sign | 0x7c00u;
        uint16_t payload = static_cast<uint16_t>((magnitude & 0x007fffffu) >> 13);
        if (payload == 0) payload = 1;  // keep it a NaN
        return sign | 0x7c00u | payload;
    }
    if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to Inf
    if (magnitude < 0x38800000u) {                        // below 2^-14: subnormal half or zero
        if (magnitude <= 0x33000000u) return sign;        // <= 2^-25 (the tie goes to even 0)
        const uint32_t exponent = magnitude >> 23;        // 102..112
        const uint32_t mantissa = (magnitude & 0x007fffffu) | 0x00800000u;
        const uint32_t shift = 126 - exponent;            // half subnormal unit is 2^-24
        uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1);
        const uint32_t tie = 1u << (shift - 1);
        if (rest > tie || (rest == tie && (half & 1u))) ++half;  // may carry into the normals: fine
        return sign | static_cast<uint16_t>(half);
    }
    uint32_t half = (magnitude - 0x38000000u) >> 13;  // rebias 127 -> 15, drop 13 mantissa bits
    const uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry bumps the exponent
    return sign | static_cast<uint16_t>(half);
}

float f32_from_f16_one(uint16_t h) noexcept {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            uint32_t e = 113;
            while (!(mantissa & 0x400u)) {
                mantissa <<= 1;
                --e;
            }
            bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

void f16_from_f32_serial(const float* x, size_t n, uint16_t* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = f16_from_f32_one(x[i]);
}

void f32_from_f16_serial(const uint16_t* h, size_t n, float* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = f32_from_f16_one(h[i]);
}

}  // namespace qshard
