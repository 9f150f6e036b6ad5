// Shared by the *_avx2.cpp files only. Include it after every standard header: everything
// between QSHARD_AVX2_BEGIN and QSHARD_AVX2_END is compiled for AVX2/FMA/F16C, and nothing
// inline from a header that baseline files also use may be instantiated in that region
// (the linker could keep the AVX2 copy and crash an older CPU).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

// Clang ignores GCC's target pragma; its own form applies the attribute to every function defined
// in the region (the form StringZilla's and simdjson's Haswell kernels use).
#if defined(__clang__)
#define QSHARD_AVX2_BEGIN \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define QSHARD_AVX2_END _Pragma("clang attribute pop")
#elif defined(__GNUC__)
#define QSHARD_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define QSHARD_AVX2_END _Pragma("GCC pop_options")
#else
#error "the AVX2 kernels need GCC or Clang (a target pragma)"
#endif

namespace qshard::avx2_detail {

// Elements to handle one by one before `out` reaches a 32-byte boundary (non-temporal stores
// need one).
inline size_t head_to_align32(const void* out, size_t element_bytes, size_t n) noexcept {
    const size_t misalign = (32 - (reinterpret_cast<uintptr_t>(out) & 31)) & 31;
    if (misalign % element_bytes) return n;  // cannot align: the caller falls back to plain stores
    const size_t head = misalign / element_bytes;
    return head < n ? head : n;
}

// Outputs at least this large skip the cache (they would only evict the input).
constexpr size_t kStreamBytes = size_t{4} << 20;

}  // namespace qshard::avx2_detail
