// F16C conversions. The instructions round to nearest even through subnormals exactly as the
// serial kernel does; they differ only on NaN (they set the quiet bit), so blocks holding a NaN
// lane are redone lane by lane in the serial rule. Outputs of 4 MiB and more bypass the cache.
#include "qshard/f16.hpp"
#include "isa_avx2.hpp"

QSHARD_AVX2_BEGIN
namespace qshard {
namespace {

using avx2_detail::head_to_align32;
using avx2_detail::kStreamBytes;

template <bool Stream>
inline void store32(void* out, __m256i value) noexcept {
    if (Stream)
        _mm256_stream_si256(static_cast<__m256i*>(out), value);
    else
        _mm256_storeu_si256(static_cast<__m256i*>(out), value);
}

template <bool Stream>
void to_half(const float* x, size_t n, uint16_t* out) noexcept {
    size_t i = Stream ? head_to_align32(out, 2, n) : 0;
    f16_from_f32_serial(x, i, out);
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m256i halves = _mm256_set_m128i(_mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                          _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
        if (_mm256_movemask_ps(nan)) {
            alignas(32) uint16_t block[16];
            f16_from_f32_serial(x + i, 16, block);
            halves = _mm256_load_si256(reinterpret_cast<const __m256i*>(block));
        }
        store32<Stream>(out + i, halves);
    }
    f16_from_f32_serial(x + i, n - i, out + i);
    if (Stream) _mm_sfence();
}

template <bool Stream>
void from_half(const uint16_t* h, size_t n, float* out) noexcept {
    const __m256i magnitude = _mm256_set1_epi16(0x7fff);
    const __m256i infinity = _mm256_set1_epi16(0x7c00);
    size_t i = Stream ? head_to_align32(out, 4, n) : 0;
    f32_from_f16_serial(h, i, out);
    for (; i + 16 <= n; i += 16) {
        const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i));
        __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(halves));
        __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1));
        const __m256i nan = _mm256_cmpgt_epi16(_mm256_and_si256(halves, magnitude), infinity);
        if (_mm256_movemask_epi8(nan)) {
            alignas(32) float block[16];
            f32_from_f16_serial(h + i, 16, block);
            lo = _mm256_load_ps(block);
            hi = _mm256_load_ps(block + 8);
        }
        store32<Stream>(out + i, _mm256_castps_si256(lo));
        store32<Stream>(out + i + 8, _mm256_castps_si256(hi));
    }
    f32_from_f16_serial(h + i, n - i, out + i);
    if (Stream) _mm_sfence();
}

}  // namespace

void f16_from_f32_avx2(const float* x, size_t n, uint16_t* out) noexcept {
    if (n * 2 >= kStreamBytes && head_to_align32(out, 2, n) < n)
        to_half<true>(x, n, out);
    else
        to_half<false>(x, n, out);
}

void f32_from_f16_avx2(const uint16_t* h, size_t n, float* out) noexcept {
    if (n * 4 >= kStreamBytes && head_to_align32(out, 4, n) < n)
        from_half<true>(h, n, out);
    else
        from_half<false>(h, n, out);
}

}  // namespace qshard
QSHARD_AVX2_END
