#include <cstring>

#include "qshard/widen.hpp"

namespace qshard {

void f32_from_bf16_serial(const uint16_t* h, size_t n, float* out) noexcept {
    for (size_t i = 0; i < n; ++i) {
        const uint32_t bits = static_cast<uint32_t>(h[i]) << 16;
        std::memcpy(out + i, &bits, sizeof bits);
    }
}

void f32_from_f64_serial(const double* x, size_t n, float* out) noexcept {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i]);
}

}  // namespace qshard
