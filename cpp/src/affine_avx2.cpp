// AVX2 affine kernels. Quantize estimates t = (x - min) / scale as fma(x, 1/scale, -min/scale)
// instead of dividing, and proves per lane that the estimate rounds like the serial kernel; lanes it
// cannot prove are recomputed by quantize_one before the block is stored. (The fused multiply-add
// is fine here: only the estimate uses it, and its error is bounded below. The serial kernel,
// whose bytes are the definition, never fuses.)
//
// Error bounds, with u the unit roundoff, T = qmax + 1 >= |t| for x in range and M = |min| / scale:
//   serial:  t = fl64(fl64(x - min) / scale), within 2.01 u64 T of the exact quotient.
//   float64 lanes: r = fl64(1/scale), c = fl64(-min * r), t' = fl64(x * r + c):
//            |t' - exact| <= (2T + 2M + 1) * 1.01 u64.
//   float32 lanes (uint8 only): the same with float32 r and c, adding 2.01 u64 T for the serial
//            side: (2T + 2M + 1) * 1.01 u32 + 2.01 u64 T.
// Each kernel doubles its bound E and sends a lane to the serial kernel when its estimate lies
// within E of a half-integer; elsewhere both round to the same integer.
// Zero-point lanes (uint8 and uint16 when min = -zp * scale exactly, i.e. the nudged range that
//   every zero-crossing tensor gets): t = x / scale + zp up to 2^-35. With r_hi = f32(1/scale) and
//   r_lo = f32(1/scale - r_hi), k = rint(f32(x * r_hi)) and the residual
//   e = fma(x, r_lo, fma(x, r_hi, -k)) equals t - zp - k within 2^-23.9 whatever qmax is (|e| < 1,
//   so each fma rounds by at most 2^-25). If |e| < 0.5 - 2^-20 the code is k + zp; otherwise the
//   lane goes to the serial kernel (about one lane in 500 000).
// Out-of-range values: estimates below 0 or above qmax become 0 / qmax in the saturating packs,
// exactly as the serial kernel's clip does, as long as they stay far from int32 overflow. When
// the parameters came from the data's own min/max (AffineParams::clip false) no value is more
// than half a step outside [min, max], so nothing else is needed; otherwise the input is first
// clipped (in float32) to [below, above], the float32 neighbours just outside [min, max].
#include <cmath>
#include <limits>
#include <type_traits>

#include "qshard/affine.hpp"
#include "isa_avx2.hpp"

namespace qshard {
namespace {

struct Plan {
    float below, above;        // clip bounds for the float32 input
    double inverse_scale, offset, threshold;
    bool float32_lanes;        // uint8 with a tight float32 bound
    bool zero_point_lanes;     // min == -zp * scale exactly (the nudged range)
    float inverse_hi, inverse_lo;
    int32_t zero_point;
};

// Called outside the AVX2 region on purpose (plain double arithmetic).
bool make_plan(const AffineParams& p, Plan* plan) noexcept {
    const double u32 = 0x1p-24, u64 = 0x1p-53;
    const float inf = std::numeric_limits<float>::infinity();
    // Largest float32 below min and smallest above max (min, max are float64).
    float below = static_cast<float>(p.min);
    if (!(static_cast<double>(below) < p.min)) below = std::nextafter(below, -inf);
    float above = static_cast<float>(p.max);
    if (!(static_cast<double>(above) > p.max)) above = std::nextafter(above, inf);
    const double inverse = 1.0 / p.scale;
    const double t_below = (static_cast<double>(below) - p.min) * inverse;
    const double t_above = (static_cast<double>(above) - p.min) * inverse;
    // The estimates of the clipped extremes must stay far from int32 overflow; parameters where
    // they do not (only hand-made ones) are left to the serial kernel.
    if (!(t_below > -0x1p28 && t_above < 0x1p28) || !std::isfinite(inverse)) return false;
    const double t = static_cast<double>(p.qmax) + 1.0, m = std::fabs(p.min) * inverse;
    plan->below = below;
    plan->above = above;
    plan->inverse_scale = inverse;
    plan->offset = -p.min * inverse;
    plan->threshold = 0.5 - 2.0 * (2 * t + 2 * m + 1) * 1.01 * u64;
    plan->float32_lanes = false;
    plan->zero_point_lanes = false;
    if (p.qmax == 255) {
        const float rf = static_cast<float>(inverse), cf = static_cast<float>(plan->offset);
        const double bound = 2.0 * ((2 * t + 2 * m + 1) * 1.01 * u32 + 2.01 * u64 * t);
        // Both below and above must convert exactly-enough: keep |t| well inside float32 integers.
        if (std::isnormal(rf) && std::isfinite(cf) && bound <= 0x1p-10 && t_below > -0x1p20 && t_above < 0x1p20) {
            plan->float32_lanes = true;
            plan->threshold = 0.5 - bound;
            return true;
        }
    }
    const double zero_point = std::nearbyint(-p.min * inverse);
    const float inverse_hi = static_cast<float>(inverse);
    const float inverse_lo = static_cast<float>(inverse - static_cast<double>(inverse_hi));
    if (zero_point >= 0 && zero_point <= p.qmax && -zero_point * p.scale == p.min && inverse > 0x1p-100 &&
        inverse < 0x1p100 && t_below > -0x1p20 && t_above < 0x1p20) {
        plan->zero_point_lanes = true;
        plan->inverse_hi = inverse_hi;
        plan->inverse_lo = inverse_lo;
        plan->zero_point = static_cast<int32_t>(zero_point);
        plan->threshold = 0.5 - 0x1p-20;
    }
    return true;
}

}  // namespace
}  // namespace qshard

QSHARD_AVX2_BEGIN
namespace qshard {
namespace {

using avx2_detail::head_to_align32;
using avx2_detail::kStreamBytes;

// Eight float32 inputs -> eight int32 estimates of the code (saturated later by the packs),
// and a bit per lane that needs the serial kernel.
template <bool Clip>
struct LanesF32 {
    __m256 below, above, inverse_scale, offset, threshold;
    explicit LanesF32(const Plan& plan)
        : below(_mm256_set1_ps(plan.below)), above(_mm256_set1_ps(plan.above)),
          inverse_scale(_mm256_set1_ps(static_cast<float>(plan.inverse_scale))),
          offset(_mm256_set1_ps(static_cast<float>(plan.offset))),
          threshold(_mm256_set1_ps(static_cast<float>(plan.threshold))) {}

    __m256i operator()(const float* x, __m256* unsure) const noexcept {
        __m256 x_f32x8 = _mm256_loadu_ps(x);
        if constexpr (Clip) x_f32x8 = _mm256_min_ps(_mm256_max_ps(x_f32x8, below), above);
        const __m256 t = _mm256_fmadd_ps(x_f32x8, inverse_scale, offset);
        const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 distance = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, r));
        *unsure = _mm256_cmp_ps(distance, threshold, _CMP_GE_OQ);
        return _mm256_cvtps_epi32(r);
    }
};

template <bool Clip>
struct LanesZeroPoint {
    __m256 below, above, inverse_hi, inverse_lo, threshold;
    __m256i zero_point;
    explicit LanesZeroPoint(const Plan& plan)
        : below(_mm256_set1_ps(plan.below)), above(_mm256_set1_ps(plan.above)),
          inverse_hi(_mm256_set1_ps(plan.inverse_hi)), inverse_lo(_mm256_set1_ps(plan.inverse_lo)),
          threshold(_mm256_set1_ps(static_cast<float>(plan.threshold))),
          zero_point(_mm256_set1_epi32(plan.zero_point)) {}

    __m256i operator()(const float* x, __m256* unsure) const noexcept {
        __m256 x_f32x8 = _mm256_loadu_ps(x);
        if constexpr (Clip) x_f32x8 = _mm256_min_ps(_mm256_max_ps(x_f32x8, below), above);
        const __m256 k = _mm256_round_ps(_mm256_mul_ps(x_f32x8, inverse_hi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 residual = _mm256_fmadd_ps(x_f32x8, inverse_lo, _mm256_fmsub_ps(x_f32x8, inverse_hi, k));
        *unsure = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), residual), threshold, _CMP_GE_OQ);
        return _mm256_add_epi32(_mm256_cvtps_epi32(k), zero_point);
    }
};

template <bool Clip>
struct LanesF64 {
    __m256 below, above;
    __m256d inverse_scale, offset, threshold;
    explicit LanesF64(const Plan& plan)
        : below(_mm256_set1_ps(plan.below)), above(_mm256_set1_ps(plan.above)),
          inverse_scale(_mm256_set1_pd(plan.inverse_scale)), offset(_mm256_set1_pd(plan.offset)),
          threshold(_mm256_set1_pd(plan.threshold)) {}

    __m128i half(__m128 x_f32x4, __m256d* unsure) const noexcept {
        const __m256d t = _mm256_fmadd_pd(_mm256_cvtps_pd(x_f32x4), inverse_scale, offset);
        const __m256d r = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256d distance = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(t, r));
        *unsure = _mm256_cmp_pd(distance, threshold, _CMP_GE_OQ);
        return _mm256_cvtpd_epi32(r);
    }

    // The two halves' flags are merged into one vector: in float64 lanes a lane near a tie is
    // so rare (bound ~1e-11) that the caller redoes the whole block when any flag is set.
    __m256i operator()(const float* x, __m256* unsure) const noexcept {
        __m256 x_f32x8 = _mm256_loadu_ps(x);
        if constexpr (Clip) x_f32x8 = _mm256_min_ps(_mm256_max_ps(x_f32x8, below), above);
        __m256d unsure_lo, unsure_hi;
        const __m128i lo = half(_mm256_castps256_ps128(x_f32x8), &unsure_lo);
        const __m128i hi = half(_mm256_extractf128_ps(x_f32x8, 1), &unsure_hi);
        *unsure = _mm256_castpd_ps(_mm256_or_pd(unsure_lo, unsure_hi));
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

template <class Code, bool Stream, bool PerLane, class Lanes>
void quantize_blocks(const float* x, size_t n, const AffineParams& p, Code* out, const Lanes& lanes) noexcept {
    constexpr size_t kBlock = 32 / sizeof(Code);
    size_t i = 0;
    if (Stream) {
        i = head_to_align32(out, sizeof(Code), n);
        for (size_t k = 0; k < i; ++k) out[k] = static_cast<Code>(quantize_one(x[k], p));
    }
    for (; i + kBlock <= n; i += kBlock) {
        // One cache line of input per 16 elements, fetched 1 KiB ahead.
        _mm_prefetch(reinterpret_cast<const char*>(x + i) + 1024, _MM_HINT_T0);
        if (sizeof(Code) == 1) _mm_prefetch(reinterpret_cast<const char*>(x + i) + 1024 + 64, _MM_HINT_T0);
        __m256i packed;
        __m256 u0, u1, u2, u3;
        uint32_t unsure;
        if constexpr (sizeof(Code) == 1) {
            const __m256i a = lanes(x + i, &u0), b = lanes(x + i + 8, &u1);
            const __m256i c = lanes(x + i + 16, &u2), d = lanes(x + i + 24, &u3);
            packed = pack_u8(a, b, c, d);
            if (PerLane)
                unsure = static_cast<uint32_t>(_mm256_movemask_ps(u0)) | (_mm256_movemask_ps(u1) << 8) |
                         (_mm256_movemask_ps(u2) << 16) | (static_cast<uint32_t>(_mm256_movemask_ps(u3)) << 24);
            else
                unsure = _mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(u0, u1), _mm256_or_ps(u2, u3))) ? ~0u : 0u;
        } else {
            const __m256i a = lanes(x + i, &u0), b = lanes(x + i + 8, &u1);
            packed = pack_u16(a, b);
            if (PerLane)
                unsure = static_cast<uint32_t>(_mm256_movemask_ps(u0)) | (_mm256_movemask_ps(u1) << 8);
            else
                unsure = _mm256_movemask_ps(_mm256_or_ps(u0, u1)) ? 0xffffu : 0u;
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

template <class Code, bool PerLane, class Lanes>
void run_lanes(const float* x, size_t n, const AffineParams& p, Code* out, const Lanes& lanes, bool stream) noexcept {
    if (stream)
        quantize_blocks<Code, true, PerLane>(x, n, p, out, lanes);
    else
        quantize_blocks<Code, false, PerLane>(x, n, p, out, lanes);
}

template <class Code, bool Clip>
void run_plan(const float* x, size_t n, const AffineParams& p, Code* out, const Plan& plan, bool stream) noexcept {
    if (plan.zero_point_lanes)
        run_lanes<Code, true>(x, n, p, out, LanesZeroPoint<Clip>(plan), stream);
    else if (plan.float32_lanes)
        run_lanes<Code, true>(x, n, p, out, LanesF32<Clip>(plan), stream);
    else
        run_lanes<Code, false>(x, n, p, out, LanesF64<Clip>(plan), stream);
}

template <class Code>
void quantize_any(const float* x, size_t n, const AffineParams& p, Code* out,
                  void (*serial)(const float*, size_t, const AffineParams&, Code*) noexcept) noexcept {
    Plan plan;
    if (!make_plan(p, &plan)) return serial(x, n, p, out);
    const bool stream = n * sizeof(Code) >= kStreamBytes && head_to_align32(out, sizeof(Code), n) < n;
    if (p.clip)
        run_plan<Code, true>(x, n, p, out, plan, stream);
    else
        run_plan<Code, false>(x, n, p, out, plan, stream);
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
    // Math.round: floor, plus one where the (exact) fraction is >= 0.5.
    static __m128i half_up(__m256d v) noexcept {
        const __m256d r = _mm256_floor_pd(v);
        const __m256d up = _mm256_and_pd(_mm256_cmp_pd(_mm256_sub_pd(v, r), _mm256_set1_pd(0.5), _CMP_GE_OQ),
                                         _mm256_set1_pd(1.0));
        return _mm256_cvtpd_epi32(_mm256_add_pd(r, up));
    }
    __m256i to_i32_half_up(__m256i q) const noexcept {
        return _mm256_set_m128i(half_up(hi(q)), half_up(lo(q)));
    }
};

template <class Code>
inline __m256i widen8(const Code* q) noexcept {
    if constexpr (sizeof(Code) == 1)
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
    else
        return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}

// Serial kernels of both output types, with one signature (the rounding flag is ignored for float32).
template <class Code, class Out>
struct SerialDequantize {
    void (*f32)(const Code*, size_t, double, double, float*) noexcept;
    void (*i32)(const Code*, size_t, double, double, bool, int32_t*) noexcept;
    bool half_up;
    void operator()(const Code* q, size_t n, double min, double scale, Out* out) const noexcept {
        if constexpr (std::is_floating_point_v<Out>)
            f32(q, n, min, scale, out);
        else
            i32(q, n, min, scale, half_up, out);
    }
};

template <class Code, class Out, bool Stream, bool HalfUp>
void dequantize_blocks(const Code* q, size_t n, double min, double scale, Out* out,
                       const SerialDequantize<Code, Out>& serial) noexcept {
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
        else if constexpr (HalfUp)
            value = affine.to_i32_half_up(codes);
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
                    const SerialDequantize<Code, Out>& serial) noexcept {
    const bool stream = n * sizeof(Out) >= kStreamBytes && head_to_align32(out, sizeof(Out), n) < n;
    if (serial.half_up) {
        if (stream)
            dequantize_blocks<Code, Out, true, true>(q, n, min, scale, out, serial);
        else
            dequantize_blocks<Code, Out, false, true>(q, n, min, scale, out, serial);
    } else {
        if (stream)
            dequantize_blocks<Code, Out, true, false>(q, n, min, scale, out, serial);
        else
            dequantize_blocks<Code, Out, false, false>(q, n, min, scale, out, serial);
    }
}

}  // namespace

void quantize_u8_f32_avx2(const float* x, size_t n, const AffineParams& p, uint8_t* out) noexcept {
    quantize_any(x, n, p, out, quantize_u8_f32_serial);
}

void quantize_u16_f32_avx2(const float* x, size_t n, const AffineParams& p, uint16_t* out) noexcept {
    quantize_any(x, n, p, out, quantize_u16_f32_serial);
}

void dequantize_f32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, float* out) noexcept {
    dequantize_any(q, n, min, scale, out,
                   SerialDequantize<uint8_t, float>{dequantize_f32_u8_serial, dequantize_i32_u8_serial, false});
}
void dequantize_f32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, float* out) noexcept {
    dequantize_any(q, n, min, scale, out,
                   SerialDequantize<uint16_t, float>{dequantize_f32_u16_serial, dequantize_i32_u16_serial, false});
}
void dequantize_i32_u8_avx2(const uint8_t* q, size_t n, double min, double scale, bool half_up,
                            int32_t* out) noexcept {
    dequantize_any(q, n, min, scale, out,
                   SerialDequantize<uint8_t, int32_t>{dequantize_f32_u8_serial, dequantize_i32_u8_serial, half_up});
}
void dequantize_i32_u16_avx2(const uint16_t* q, size_t n, double min, double scale, bool half_up,
                             int32_t* out) noexcept {
    dequantize_any(q, n, min, scale, out,
                   SerialDequantize<uint16_t, int32_t>{dequantize_f32_u16_serial, dequantize_i32_u16_serial, half_up});
}

}  // namespace qshard
QSHARD_AVX2_END
