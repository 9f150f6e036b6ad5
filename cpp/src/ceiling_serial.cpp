#include <cstring>

#include "qshard/ceiling.hpp"

namespace qshard {

uint32_t ceiling_read_serial(const void* in, size_t n) noexcept {
    const uint32_t* words = static_cast<const uint32_t*>(in);
    uint32_t acc = 0;
    for (size_t i = 0; i < n; ++i) acc |= words[i];
    return acc;
}

void ceiling_narrow_serial(const void* in, size_t n, unsigned out_bytes, void* out) noexcept {
    const uint8_t* src = static_cast<const uint8_t*>(in);
    uint8_t* dst = static_cast<uint8_t*>(out);
    for (size_t i = 0; i < n; ++i) std::memcpy(dst + i * out_bytes, src + i * 4, out_bytes);
}

void ceiling_widen_serial(const void* in, size_t n, unsigned in_bytes, void* out) noexcept {
    const uint8_t* src = static_cast<const uint8_t*>(in);
    uint32_t* dst = static_cast<uint32_t*>(out);
    for (size_t i = 0; i < n; ++i) {
        uint32_t word = 0;
        std::memcpy(&word, src + i * in_bytes, in_bytes);
        dst[i] = word;
    }
}

}  // namespace qshard
