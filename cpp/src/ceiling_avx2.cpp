// Memory-ceiling kernels: the access pattern of a real kernel with (almost) no arithmetic.
#include "qshard/ceiling.hpp"
#include "isa_avx2.hpp"

QSHARD_AVX2_BEGIN
namespace qshard {

uint32_t ceiling_read_avx2(const void* in, size_t n) noexcept {
    const uint32_t* words = static_cast<const uint32_t*>(in);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_or_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i)));
        a1 = _mm256_or_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 8)));
        a2 = _mm256_or_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 16)));
        a3 = _mm256_or_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 24)));
    }
    const __m256i all = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));
    __m128i m = _mm_or_si128(_mm256_castsi256_si128(all), _mm256_extracti128_si256(all, 1));
    m = _mm_or_si128(m, _mm_srli_si128(m, 8));
    m = _mm_or_si128(m, _mm_srli_si128(m, 4));
    return static_cast<uint32_t>(_mm_cvtsi128_si32(m)) | ceiling_read_serial(words + i, n - i);
}

void ceiling_narrow_avx2(const void* in, size_t n, unsigned out_bytes, void* out) noexcept {
    const uint32_t* src = static_cast<const uint32_t*>(in);
    uint8_t* dst = static_cast<uint8_t*>(out);
    size_t i = avx2_detail::head_to_align32(dst, out_bytes, n);
    ceiling_narrow_serial(src, i, out_bytes, dst);
    const size_t block = 32 / out_bytes;  // elements per 32-byte store
    for (; i + block <= n; i += block) {
        const __m256i* s = reinterpret_cast<const __m256i*>(src + i);
        __m256i packed;
        if (out_bytes == 1) {
            const __m256i ab = _mm256_packus_epi32(_mm256_loadu_si256(s), _mm256_loadu_si256(s + 1));
            const __m256i cd = _mm256_packus_epi32(_mm256_loadu_si256(s + 2), _mm256_loadu_si256(s + 3));
            packed = _mm256_packus_epi16(ab, cd);
        } else {
            packed = _mm256_packus_epi32(_mm256_loadu_si256(s), _mm256_loadu_si256(s + 1));
        }
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i * out_bytes), packed);
    }
    ceiling_narrow_serial(src + i, n - i, out_bytes, dst + i * out_bytes);
    _mm_sfence();
}

void ceiling_widen_avx2(const void* in, size_t n, unsigned in_bytes, void* out) noexcept {
    const uint8_t* src = static_cast<const uint8_t*>(in);
    uint32_t* dst = static_cast<uint32_t*>(out);
    size_t i = avx2_detail::head_to_align32(dst, 4, n);
    ceiling_widen_serial(src, i, in_bytes, dst);
    for (; i + 8 <= n; i += 8) {
        const __m256i wide = in_bytes == 1
            ? _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)))
            : _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), wide);
    }
    ceiling_widen_serial(src + i * in_bytes, n - i, in_bytes, dst + i);
    _mm_sfence();
}

}  // namespace qshard
QSHARD_AVX2_END
