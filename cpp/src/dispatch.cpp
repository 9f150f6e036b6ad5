#include "qshard/dispatch.hpp"

#include <atomic>
#include <stdexcept>

#include "qshard/ceiling.hpp"
#include "qshard/f16.hpp"
#include "qshard/widen.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QSHARD_X86 1
#endif

namespace qshard {
namespace {

Kernels make_serial() noexcept {
    Kernels k{};
    k.isa = Isa::serial;
    k.name = "serial";
    k.minmax_f32 = minmax_f32_serial;
    k.quantize_u8_f32 = quantize_u8_f32_serial;
    k.quantize_u16_f32 = quantize_u16_f32_serial;
    k.dequantize_f32_u8 = dequantize_f32_u8_serial;
    k.dequantize_f32_u16 = dequantize_f32_u16_serial;
    k.dequantize_i32_u8 = dequantize_i32_u8_serial;
    k.dequantize_i32_u16 = dequantize_i32_u16_serial;
    k.f16_from_f32 = f16_from_f32_serial;
    k.f32_from_f16 = f32_from_f16_serial;
    k.f32_from_bf16 = f32_from_bf16_serial;
    k.f32_from_f64 = f32_from_f64_serial;
    k.ceiling_read = ceiling_read_serial;
    k.ceiling_narrow = ceiling_narrow_serial;
    k.ceiling_widen = ceiling_widen_serial;
    return k;
}

Kernels make_avx2() noexcept {
    Kernels k = make_serial();
    k.isa = Isa::avx2;
    k.name = "avx2";
#if QSHARD_X86
    k.minmax_f32 = minmax_f32_avx2;
    k.quantize_u8_f32 = quantize_u8_f32_avx2;
    k.quantize_u16_f32 = quantize_u16_f32_avx2;
    k.dequantize_f32_u8 = dequantize_f32_u8_avx2;
    k.dequantize_f32_u16 = dequantize_f32_u16_avx2;
    k.dequantize_i32_u8 = dequantize_i32_u8_avx2;
    k.dequantize_i32_u16 = dequantize_i32_u16_avx2;
    k.f16_from_f32 = f16_from_f32_avx2;
    k.f32_from_f16 = f32_from_f16_avx2;
    k.ceiling_read = ceiling_read_avx2;
    k.ceiling_narrow = ceiling_narrow_avx2;
    k.ceiling_widen = ceiling_widen_avx2;
#endif
    return k;
}

bool probe_avx2() noexcept {
#if QSHARD_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28),
               f16c = ecx & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    // The OS must save the YMM state on context switches (XCR0 bits 1 and 2).
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6u) != 0x6u) return false;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return ebx & (1u << 5);
#else
    return false;
#endif
}

struct Registry {
    Kernels serial = make_serial();
    Kernels avx2 = make_avx2();
    bool has_avx2 = probe_avx2();
    std::atomic<const Kernels*> active{has_avx2 ? &avx2 : &serial};
};

Registry& registry() noexcept {
    static Registry instance;  // filled once, at first use (module import)
    return instance;
}

}  // namespace

bool cpu_supports(Isa isa) noexcept {
    return isa == Isa::serial || (isa == Isa::avx2 && registry().has_avx2);
}

std::vector<std::string> available_isas() {
    std::vector<std::string> names{"serial"};
    if (registry().has_avx2) names.emplace_back("avx2");
    return names;
}

const Kernels& active_kernels() noexcept { return *registry().active.load(); }

const Kernels& kernels_for(const std::string& name) {
    Registry& r = registry();
    if (name.empty()) return *r.active.load();
    if (name == "serial") return r.serial;
    if (name == "avx2") {
        if (!r.has_avx2) throw std::invalid_argument("isa 'avx2' is not supported by this CPU (or OS)");
        return r.avx2;
    }
    throw std::invalid_argument("unknown isa '" + name + "' (known: serial, avx2)");
}

void set_active_isa(const std::string& name) {
    Registry& r = registry();
    r.active.store(name.empty() ? (r.has_avx2 ? &r.avx2 : &r.serial) : &kernels_for(name));
}

}  // namespace qshard
