// qshard/minmax.hpp: one-pass minimum and maximum of a float32 buffer.
//
// Floats are compared through an order-preserving int32 key (see float_key):
//   -NaN < -Inf < ... < -0.0 < +0.0 < ... < +Inf < +NaN
// so the result is unique whatever the lane order, the SIMD path gives the same bits as the
// serial one, and NaN shows up as a key beyond +-Inf without a second comparison.
// The only difference from numpy's min()/max(): among zeros of both signs numpy returns
// whichever its reduction meets last; qshard returns -0.0 as the minimum and +0.0 as the maximum.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qshard {

struct MinMaxKeys {
    int32_t lo = INT32_MAX;   // smallest key seen; INT32_MAX when the buffer was empty
    int32_t hi = INT32_MIN;   // largest key seen
};

inline int32_t float_key(float value) noexcept {
    int32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits ^ ((bits >> 31) & 0x7fffffff);
}

inline float key_float(int32_t key) noexcept {
    int32_t bits = key ^ ((key >> 31) & 0x7fffffff);
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

constexpr int32_t kKeyPlusInf = 0x7f800000;
constexpr int32_t kKeyMinusInf = static_cast<int32_t>(0xff800000u ^ 0x7fffffffu);  // -8388609

inline MinMaxKeys merge(MinMaxKeys a, MinMaxKeys b) noexcept {
    return {a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
}

void minmax_f32_serial(const float* x, size_t n, MinMaxKeys* out) noexcept;
void minmax_f32_avx2(const float* x, size_t n, MinMaxKeys* out) noexcept;

}  // namespace qshard
