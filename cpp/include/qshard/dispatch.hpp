// qshard/dispatch.hpp: one table of kernel pointers per instruction set, chosen at run time.
//
// The serial table is always complete; a tier's table starts as a copy of the serial one and
// overwrites what that tier implements (so a missing variant falls back, never crashes). The
// best tier this CPU and OS support is found once, from CPUID and XGETBV, at module import.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "qshard/affine.hpp"
#include "qshard/minmax.hpp"

namespace qshard {

enum class Isa : int { serial = 0, avx2 = 1 };

struct Kernels {
    Isa isa;
    const char* name;
    void (*minmax_f32)(const float*, size_t, MinMaxKeys*) noexcept;
    void (*quantize_u8_f32)(const float*, size_t, const AffineParams&, uint8_t*) noexcept;
    void (*quantize_u16_f32)(const float*, size_t, const AffineParams&, uint16_t*) noexcept;
    void (*dequantize_f32_u8)(const uint8_t*, size_t, double, double, float*) noexcept;
    void (*dequantize_f32_u16)(const uint16_t*, size_t, double, double, float*) noexcept;
    void (*dequantize_i32_u8)(const uint8_t*, size_t, double, double, bool, int32_t*) noexcept;
    void (*dequantize_i32_u16)(const uint16_t*, size_t, double, double, bool, int32_t*) noexcept;
    void (*f16_from_f32)(const float*, size_t, uint16_t*) noexcept;
    void (*f32_from_f16)(const uint16_t*, size_t, float*) noexcept;
    void (*f32_from_bf16)(const uint16_t*, size_t, float*) noexcept;
    void (*f32_from_f64)(const double*, size_t, float*) noexcept;
    uint32_t (*ceiling_read)(const void*, size_t) noexcept;
    void (*ceiling_narrow)(const void*, size_t, unsigned, void*) noexcept;
    void (*ceiling_widen)(const void*, size_t, unsigned, void*) noexcept;
};

// What the CPU and OS support (CPUID + XGETBV), probed once.
bool cpu_supports(Isa isa) noexcept;
// Names of the tiers this machine can run, best last ("serial" always first).
std::vector<std::string> available_isas();
// The tier used when a call names none: the best supported, unless overridden.
const Kernels& active_kernels() noexcept;
// The table for a named tier; throws std::invalid_argument for an unknown or unsupported name.
const Kernels& kernels_for(const std::string& name);
// Overrides the default tier for the whole process ("" restores the best one).
void set_active_isa(const std::string& name);

}  // namespace qshard
