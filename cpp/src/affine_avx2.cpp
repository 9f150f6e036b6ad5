// AVX2 affine kernels. Quantize multiplies by the reciprocal of scale instead of dividing, and
// proves per lane that the shortcut rounds like the serial kernel; lanes it cannot prove are
// recomputed by quantize_one before the block is stored.
//
// Error bounds (u = unit roundoff, T = qmax + 1 bounds |(x - min) / scale| for x in range):
// float64 lanes: t' = fl(fl(x - min) * fl(1/scale)) and the serial t = fl(fl(x - min) / scale)
//   differ by at most 3u64 * T. float32 lanes (uint8 only): with mf = f32(min), rf = f32(1/scale),
//   t' = fl32(fl32(x - mf) * rf) differs from t by at most
//   A + (T + A) * 3.01 * u32 + T * 2.01 * u64, where A = (|min| * u32 + 2^-149) / scale
//   (the error of storing min in float32). Each kernel doubles its bound E and sends a lane to the
//   serial kernel when its estimate lies within E of a half-integer; elsewhere both round to the
//   same integer. Values outside [min, max] give estimates below 0 or above qmax, which clamp to
//   0 / qmax exactly as the serial kernel's clip does.
#include <cmath>
#include <type_traits>

#include "qshard/affine.hpp"
#include "isa_avx2.hpp"

namespace qshard {
namespace {

struct F32Plan {
    float min, inverse_scale, threshold;
};

// The float32 shortcut is taken only where its bound is tight (fewer than ~1 lane in 500 near a
// boundary); otherwise float64 lanes are used. Called outside the AVX2 region on purpose.
bool plan_f32(const AffineParams& p, F32Plan* plan) noexcept {
    const double u32 = 0x1p-24, u64 = 0x1p-53;
    const double inverse = 1.0 / p.scale;
    const float mf = static_cast<float>(p.min), rf = static_cast<float>(inverse);
    if (!std::isfinite(mf) || !std::isnormal(rf)) return false;
    // x - mf must not overflow float32 for any x in [min, max].
    if (!(std::fabs(p.min) + std::fabs(p.max) <= 1e38)) return false;
    const double t = static_cast<double>(p.qmax) + 1.0;
    const double a = (std::fabs(p.min) * u32 + 0x1p-149) / p.scale;
    const double bound = 2.0 * (a + (t + a) * 3.01 * u32 + t * 2.01 * u64);
    if (!(bound <= 0x1p-10)) return false;
    *plan = {mf, rf, static_cast<float>(0.5 - bound)};
    return true;
}

double threshold_f64(const AffineParams& p) noexcept {
    return 0.5 - 2.0 * 3.01 * 0x1p-53 * (static_cast<double>(p.qmax) + 1.0);
}

}  // namespace
}  // namespace qshard

QSHARD_AVX2_BEGIN
namespace qshard {
namespace {

using avx2_detail::head_to_align32;
using avx2_detail::kStreamBytes;

// Eight float32 inputs -> eight int32 codes in [0, qmax], and a bit per lane that needs the
// serial kernel.
struct LanesF32 {
    __m256 min, inverse_scale, threshold, qmax;
    LanesF32(const F32Plan& plan, uint32_t q)
        : min(_mm256_set1_ps(plan.min)), inverse_scale(_mm256_set1_ps(plan.inverse_scale)),
          threshold(_mm256_set1_ps(plan.threshold)), qmax(_mm256_set1_ps(static_cast<float>(q))) {}

    __m256i operator()(const float* x, uint32_t* unsure) const noexcept {
        const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x), min), inverse_scale);
        __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 sign = _mm256_set1_ps(-0.0f);
        const __m256 distance = _mm256_andnot_ps(sign, _mm256_sub_ps(t, r));
        *unsure = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(distance, threshold, _CMP_GE_OQ)));
        r = _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), qmax);
        return _mm256_cvtps_epi32(r);
    }
};

struct LanesF64 {
    __m256d min, inverse_scale, threshold, qmax;
    LanesF64(const AffineParams& p, double thresh)
        : min(_mm256_set1_pd(p.min)), inverse_scale(_mm256_set1_pd(1.0 / p.scale)),
          threshold(_mm256_set1_pd(thresh)), qmax(_mm256_set1_pd(static_cast<double>(p.qmax))) {}

    __m128i half(__m128 x4, int* unsure) const noexcept {
        const __m256d t = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(x4), min), inverse_scale);
        __m256d r = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256d distance = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(t, r));
        *unsure = _mm256_movemask_pd(_mm256_cmp_pd(distance, threshold, _CMP_GE_OQ));
        r = _mm256_min_pd(_mm256_max_pd(r, _mm256_setzero_pd()), qmax);
        return _mm256_cvtpd_epi32(r);
    }

    __m256i operator()(const float* x, uint32_t* unsure) const noexcept {
        const __m256 x_f32x8 = _mm256_loadu_ps(x);
        int unsure_lo, unsure_hi;
        const __m128i lo = half(_mm256_castps256_ps128(x_f32x8), &unsure_lo);
        const __m128i hi = half(_mm256_extractf128_ps(x_f32x8, 1), &unsure_hi);
        *unsure = static_cast<uint32_t>(unsure_lo | (unsure_hi << 4));
        return _mm256_set_m128i(hi, lo);
    }
};

// 32 int32 codes (four vectors of eight, in order) -> 32 bytes in order.
inline __m256i pack_u8(__m256i a, __m256i b, __m256i c, __m256i d) noexcept {
    const __m256i ab = _mm256_packus_epi32(a, b);      // per 128-bit lane: a0-3 b0-3 | a4-7 b4-7
    const __m256i cd = _mm256_packus_epi32(c, d);
    const __m256i abcd = _mm256_packus_epi16(ab, cd);  // dwords: a0 b0 c0 d0 a1 b1 c1 d1
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 16 int32 codes -> 16 uint16 in order.
inline __m256i pack_u16(__m256i a, __m256i b) noexcept {
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

template <class Code, bool Stream, class Lanes>
void quantize_blocks(const float* x, size_t n, const AffineParams& p, Code* out, const Lanes& lanes) noexcept {
    constexpr size_t kBlock = 32 / sizeof(Code);
    size_t i = 0;
    if (Stream) {
        i = head_to_align32(out, sizeof(Code), n);
        for (size_t k = 0; k < i; ++k) out[k] = static_cast<Code>(quantize_one(x[k], p));
    }
    for (; i + kBlock <= n; i += kBlock) {
        uint32_t unsure;
        __m256i packed;
        if constexpr (sizeof(Code) == 1) {
            uint32_t u0, u1, u2, u3;
            const __m256i a = lanes(x + i, &u0), b = lanes(x + i + 8, &u1);
            const __m256i c = lanes(x + i + 16, &u2), d = lanes(x + i + 24, &u3);
            unsure = u0 | (u1 << 8) | (u2 << 16) | (u3 << 24);
            packed = pack_u8(a, b, c, d);
        } else {
            uint32_t u0, u1;
            const __m256i a = lanes(x + i, &u0), b = lanes(x + i + 8, &u1);
            unsure = u0 | (u1 << 8);
            packed = pack_u16(a, b);
        }
        if (unsure) {  // rare: fix the lanes in a scratch block, then store it whole
            alignas(32) Code block[kBlock];
            _mm256_store_si256(reinterpret_cast<__m256i*>(block), packed);
            for (; unsure; unsure &= unsure - 1) {
                const unsigned lane = static_cast<unsigned>(__builtin_ctz(unsure));
                block[lane] = static_cast<Code>(quantize_one(x[i + lane], p));
            }
            packed = _mm256_load_si256(reinterpret_cast<const __m256i*>(block));
        }
        if (Stream)
            _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), packed);
        else
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
    }
    for (; i < n; ++i) out[i] = static_cast<Code>(quantize_one(x[i], p));
    if (Stream) _mm_sfence();
}

template <class Code, class Lanes>
void quantize_any(const float* x, size_t n, const AffineParams& p, Code* out, const Lanes& lanes) noexcept {
    const bool stream = n * sizeof(Code) >= kStreamBytes && head_to_align32(out, sizeof(Code), n) < n;
    if (stream)
        quantize_blocks<Code, true>(x, n, p, out, lanes);
    else
        quantize_blocks<Code, false>(x, n, p, out, lanes);
}

// Dequantize eight codes (widened to int32) in float64, as the serial kernel does.
struct Affine8 {
    __m256d scale, min;
    Affine8(double mn, double sc) : scale(_mm256_set1_pd(sc)), min(_mm256_set1_pd(mn)) {}
    __m256d lo(__m256i q) const noexcept {
        return _mm256_add_pd(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(q)), scale), min);
    }
    __m256d hi(__m256i q) const noexcept {
        return _mm256_add_pd(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(q, 1)), scale), min);
    }
    __m256 to_f32(__m256i q) const noexcept {
        return _mm256_set_m128(_mm256_cvtpd_ps(hi(q)), _mm256_cvtpd_ps(lo(q)));
    }
    // cvtpd_epi32 rounds half to even and gives INT32_MIN out of range, like round_to_i32.
    __m256i to_i32(__m256i q) const noexcept {
        return _mm256_set_m128i(_mm256_cvtpd_epi32(hi(q)), _mm256_cvtpd_epi32(lo(q)));
    }
};

template <class Code>
inline __m256i widen8(const Code* q) noexcept {
    if constexpr (sizeof(Code) == 1)
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
    else
        return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}

template <class Code, class Out, bool Stream>
void dequantize_blocks(const Code* q, size_t n, double min, double scale, Out* out,
                       void (*serial)(const Code*, size_t, double, double, Out*) noexcept) noexcept {
    const Affine8 affine(min, scale);
    size_t i = 0;
    if (Stream) {
        i = head_to_align32(out, sizeof(Out), n);
        serial(q, i, min, scale, out);
    }
    for (; i + 8 <= n; i += 8) {
        const __m256i codes = widen8(q + i);
        __m256i value;
        if constexpr (std::is_floating_point_v<Out>)
            value = _mm256_castps_si256(affine.to_f32(codes));
        else
            value = affine.to_i32(codes);
        if (Stream)
            _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), value);
        else
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), value);
    }
    serial(q + i, n - i, min, scale, out + i);
    if (Stream) _mm_sfence();
}

template <class Code, class Out>
void dequantize_any(const Code* q, size_t n, double min, double scale, Out* out,
                    void (*serial)(const Code*, size_t, double, double, Out*) noexcept) noexcept {
    if (n * sizeof(Out) >= kStreamBytes && head_to_align32(out, sizeof(Out), n) < n)
        dequantize_blocks<Code, Out, true>(q, n, min, scale, out, serial);
    else
        dequantize_blocks<Code, Out, false>(q, n, min, scale, out, serial);
}

}  // namespace

void quantize_u8_f32_avx2(const float* x, size_t n, const AffineParams& p, uint8_t* out) noexcept {
    F32Plan plan;
    if (plan_f32(p, &plan))
        quantize_any(x, n, p, out, LanesF32(plan, p.qmax));
    else
        quantize_any(x, n, p, out, LanesF64(p, threshold_f64(p)));
}

void quantize_u16_f32_avx2(const float* x, size_t n, const AffineParams& p, uint16_t* out) noexcept {
    quantize_any(x, n, p, out, LanesF64(p, threshold_f64(p)));
}

void dequantize_f32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, float* out) noexcept {
    dequantize_any(q, n, min, scale, out, dequantize_f32_u8_serial);
}
void dequantize_f32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, float* out) noexcept {
    dequantize_any(q, n, min, scale, out, dequantize_f32_u16_serial);
}
void dequantize_i32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, int32_t* out) noexcept {
    dequantize_any(q, n, min, scale, out, dequantize_i32_u8_serial);
}
void dequantize_i32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, int32_t* out) noexcept {
    dequantize_any(q, n, min, scale, out, dequantize_i32_u16_serial);
}

}  // namespace qshard
QSHARD_AVX2_END
