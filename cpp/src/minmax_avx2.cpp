#include "qshard/minmax.hpp"
#include "isa_avx2.hpp"

QSHARD_AVX2_BEGIN
namespace qshard {
namespace {

inline __m256i keys_of(__m256i bits) noexcept {
    const __m256i low31 = _mm256_set1_epi32(0x7fffffff);
    return _mm256_xor_si256(bits, _mm256_and_si256(_mm256_srai_epi32(bits, 31), low31));
}

inline int32_t reduce_min(__m256i v) noexcept {
    __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(m);
}

inline int32_t reduce_max(__m256i v) noexcept {
    __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(m);
}

}  // namespace

void minmax_f32_avx2(const float* x, size_t n, MinMaxKeys* out) noexcept {
    // Four independent accumulator pairs hide the latency of min/max.
    __m256i lo0 = _mm256_set1_epi32(INT32_MAX), lo1 = lo0, lo2 = lo0, lo3 = lo0;
    __m256i hi0 = _mm256_set1_epi32(INT32_MIN), hi1 = hi0, hi2 = hi0, hi3 = hi0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(x + i) + 1024, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + i) + 1024 + 64, _MM_HINT_T0);
        const __m256i k0 = keys_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
        const __m256i k1 = keys_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)));
        const __m256i k2 = keys_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)));
        const __m256i k3 = keys_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 24)));
        lo0 = _mm256_min_epi32(lo0, k0);
        hi0 = _mm256_max_epi32(hi0, k0);
        lo1 = _mm256_min_epi32(lo1, k1);
        hi1 = _mm256_max_epi32(hi1, k1);
        lo2 = _mm256_min_epi32(lo2, k2);
        hi2 = _mm256_max_epi32(hi2, k2);
        lo3 = _mm256_min_epi32(lo3, k3);
        hi3 = _mm256_max_epi32(hi3, k3);
    }
    MinMaxKeys keys;
    keys.lo = reduce_min(_mm256_min_epi32(_mm256_min_epi32(lo0, lo1), _mm256_min_epi32(lo2, lo3)));
    keys.hi = reduce_max(_mm256_max_epi32(_mm256_max_epi32(hi0, hi1), _mm256_max_epi32(hi2, hi3)));
    MinMaxKeys tail;
    minmax_f32_serial(x + i, n - i, &tail);
    *out = merge(keys, tail);
}

}  // namespace qshard
QSHARD_AVX2_END
