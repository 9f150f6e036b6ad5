// F16C conversions. The instructions round to nearest even through subnormals exactly as the
// serial kernel does; they differ only on NaN (they set the quiet bit), so blocks holding a NaN
// lane are redone lane by lane in the serial rule.
#include "qshard/f16.hpp"
#include "isa_avx2.hpp"

QSHARD_AVX2_BEGIN
namespace qshard {

void f16_from_f32_avx2(const float* x, size_t n, uint16_t* out) noexcept {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        const __m128i ha = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m128i hb = _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_set_m128i(hb, ha));
        const int nan_a = _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        const int nan_b = _mm256_movemask_ps(_mm256_cmp_ps(b, b, _CMP_UNORD_Q));
        if (nan_a | nan_b) f16_from_f32_serial(x + i, 16, out + i);
    }
    f16_from_f32_serial(x + i, n - i, out + i);
}

void f32_from_f16_avx2(const uint16_t* h, size_t n, float* out) noexcept {
    const __m256i magnitude = _mm256_set1_epi16(0x7fff);
    const __m256i infinity = _mm256_set1_epi16(0x7c00);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_castsi256_si128(halves)));
        _mm256_storeu_ps(out + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1)));
        const __m256i nan = _mm256_cmpgt_epi16(_mm256_and_si256(halves, magnitude), infinity);
        if (_mm256_movemask_epi8(nan)) f32_from_f16_serial(h + i, 16, out + i);
    }
    f32_from_f16_serial(h + i, n - i, out + i);
}

}  // namespace qshard
QSHARD_AVX2_END
