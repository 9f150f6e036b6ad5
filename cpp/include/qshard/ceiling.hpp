// qshard/ceiling.hpp: memory-ceiling kernels for `qshard bench`.
//
// Each touches memory in the same pattern as a real kernel but does no arithmetic worth the
// name, so its speed is what the memory system allows for that pattern on this machine, now:
//   read_f32      reads 4 bytes per element (min/max)
//   narrow_4to1   reads 4, writes 1 (quantize uint8)      narrow_4to2  reads 4, writes 2
//   widen_1to4    reads 1, writes 4 (dequantize uint8)    widen_2to4   reads 2, writes 4
// Writes use non-temporal stores where the CPU has AVX2, as a streaming kernel would.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qshard {

uint32_t ceiling_read_serial(const void* in, size_t n_elements) noexcept;
void ceiling_narrow_serial(const void* in, size_t n, unsigned out_bytes, void* out) noexcept;
void ceiling_widen_serial(const void* in, size_t n, unsigned in_bytes, void* out) noexcept;
uint32_t ceiling_read_avx2(const void* in, size_t n_elements) noexcept;
void ceiling_narrow_avx2(const void* in, size_t n, unsigned out_bytes, void* out) noexcept;
void ceiling_widen_avx2(const void* in, size_t n, unsigned in_bytes, void* out) noexcept;

}  // namespace qshard
