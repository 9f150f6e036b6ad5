#include "qshard/ops.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "qshard/parallel.hpp"

namespace qshard {

MinMaxKeys minmax(const Kernels& k, const float* x, size_t n, unsigned threads) {
    std::vector<MinMaxKeys> partial(threads ? threads : default_threads());
    const unsigned used = parallel_for(n, static_cast<unsigned>(partial.size()), kMinPerThread,
                                       [&](unsigned index, size_t begin, size_t end) {
                                           k.minmax_f32(x + begin, end - begin, &partial[index]);
                                       });
    MinMaxKeys all;
    for (unsigned i = 0; i < used; ++i) all = merge(all, partial[i]);
    return all;
}

void quantize_with(const Kernels& k, const float* x, size_t n, const AffineParams& p, void* out, unsigned threads) {
    if (!(p.scale > 0.0) || !std::isfinite(p.scale) || !std::isfinite(p.min) || !std::isfinite(p.max))
        throw std::invalid_argument("quantization parameters must be finite with scale > 0");
    if (p.qmax != 255 && p.qmax != 65535) throw std::invalid_argument("qmax must be 255 or 65535");
    parallel_for(n, threads, kMinPerThread, [&](unsigned, size_t begin, size_t end) {
        if (p.qmax == 255)
            k.quantize_u8_f32(x + begin, end - begin, p, static_cast<uint8_t*>(out) + begin);
        else
            k.quantize_u16_f32(x + begin, end - begin, p, static_cast<uint16_t*>(out) + begin);
    });
}

AffineParams quantize(const Kernels& k, const float* x, size_t n, uint32_t qmax, void* out, unsigned threads) {
    AffineParams p;
    p.qmax = qmax;
    if (n == 0) return p;  // min 0, max 0, scale 1
    const MinMaxKeys keys = minmax(k, x, n, threads);
    if (keys.lo < kKeyMinusInf || keys.hi > kKeyPlusInf)
        throw std::invalid_argument("the tensor contains NaN, which has no affine quantization");
    const double lo = key_float(keys.lo), hi = key_float(keys.hi);
    if (std::isinf(lo) || std::isinf(hi))
        throw std::invalid_argument(std::string("the tensor contains ") + (std::isinf(lo) ? "-Inf" : "+Inf") +
                                    ", which has no affine quantization");
    p = affine_params(lo, hi, qmax);
    p.clip = false;  // x is within [lo, hi] by construction
    quantize_with(k, x, n, p, out, threads);
    p.clip = true;
    return p;
}

void dequantize(const Kernels& k, const void* q, size_t n, unsigned code_bytes, double min, double scale,
                bool out_is_int32, void* out, unsigned threads, bool half_up) {
    parallel_for(n, threads, kMinPerThread, [&](unsigned, size_t begin, size_t end) {
        const size_t count = end - begin;
        if (code_bytes == 1) {
            const uint8_t* codes = static_cast<const uint8_t*>(q) + begin;
            if (out_is_int32)
                k.dequantize_i32_u8(codes, count, min, scale, half_up, static_cast<int32_t*>(out) + begin);
            else
                k.dequantize_f32_u8(codes, count, min, scale, static_cast<float*>(out) + begin);
        } else {
            const uint16_t* codes = static_cast<const uint16_t*>(q) + begin;
            if (out_is_int32)
                k.dequantize_i32_u16(codes, count, min, scale, half_up, static_cast<int32_t*>(out) + begin);
            else
                k.dequantize_f32_u16(codes, count, min, scale, static_cast<float*>(out) + begin);
        }
    });
}

void f16_from_f32(const Kernels& k, const float* x, size_t n, uint16_t* out, unsigned threads) {
    parallel_for(n, threads, kMinPerThread,
                 [&](unsigned, size_t begin, size_t end) { k.f16_from_f32(x + begin, end - begin, out + begin); });
}

void f32_from_f16(const Kernels& k, const uint16_t* h, size_t n, float* out, unsigned threads) {
    parallel_for(n, threads, kMinPerThread,
                 [&](unsigned, size_t begin, size_t end) { k.f32_from_f16(h + begin, end - begin, out + begin); });
}

uint32_t ceiling_read(const Kernels& k, const void* in, size_t n, unsigned threads) {
    std::vector<uint32_t> partial(threads ? threads : default_threads(), 0);
    const uint32_t* words = static_cast<const uint32_t*>(in);
    const unsigned used = parallel_for(n, static_cast<unsigned>(partial.size()), kMinPerThread,
                                       [&](unsigned index, size_t begin, size_t end) {
                                           partial[index] = k.ceiling_read(words + begin, end - begin);
                                       });
    uint32_t all = 0;
    for (unsigned i = 0; i < used; ++i) all |= partial[i];
    return all;
}

void ceiling_narrow(const Kernels& k, const void* in, size_t n, unsigned out_bytes, void* out, unsigned threads) {
    parallel_for(n, threads, kMinPerThread, [&](unsigned, size_t begin, size_t end) {
        k.ceiling_narrow(static_cast<const uint8_t*>(in) + 4 * begin, end - begin, out_bytes,
                         static_cast<uint8_t*>(out) + out_bytes * begin);
    });
}

void ceiling_widen(const Kernels& k, const void* in, size_t n, unsigned in_bytes, void* out, unsigned threads) {
    parallel_for(n, threads, kMinPerThread, [&](unsigned, size_t begin, size_t end) {
        k.ceiling_widen(static_cast<const uint8_t*>(in) + in_bytes * begin, end - begin, in_bytes,
                        static_cast<uint8_t*>(out) + 4 * begin);
    });
}

}  // namespace qshard
