// kernel_check: every kernel, through the C++ API the bindings use (qshard/ops.hpp), over
// deterministic inputs of many lengths and offsets, printed as one FNV-1a hash of the output
// bytes per (instruction set, operation):
//
//   serial quantize_u8 3f2a...
//   avx2   quantize_u8 3f2a...
//
// Built natively and cross-built for aarch64 (.ci/arm64), where only the serial kernels exist
// (CMakeLists.txt adds the AVX2 files on x86 alone): the serial hashes of both builds must be equal,
// and on x86-64 every instruction set's hashes must equal the serial ones. Inputs are made with
// integer arithmetic, exact float operations (ldexp among them) and bit patterns only, never a
// rounded libm function such as exp or log, so they are the same bits on every machine.
// Exit code 1 if an operation threw where it must not, or did not where it must.
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "qshard/f16.hpp"
#include "qshard/ops.hpp"
#include "qshard/parallel.hpp"

namespace {

using qshard::AffineParams;
using qshard::Kernels;

// FNV-1a, 64 bits.
struct Hash {
    uint64_t state = 14695981039346656037ull;
    void bytes(const void* data, size_t n) {
        const auto* p = static_cast<const unsigned char*>(data);
        for (size_t i = 0; i < n; ++i) state = (state ^ p[i]) * 1099511628211ull;
    }
    template <class T>
    void value(const T& v) { bytes(&v, sizeof v); }
};

struct Rng {  // splitmix64
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    float unit() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1), exact
};

float from_bits(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// Named distributions that stress different parts of the kernels (as tests/conftest.py's).
const char* const kDistributions[] = {"uniform", "positive", "negative", "constant", "ties",   "huge",
                                      "tiny",    "subnormal", "narrow", "sparse",   "zeros",  "bits"};

float sample(const std::string& d, Rng& rng) {
    if (d == "uniform") return -3.0f + 10.0f * rng.unit();
    if (d == "positive") return 1000.0f + 0.5f * rng.unit();
    if (d == "negative") return -(0.25f + 8.0f * rng.unit());
    if (d == "constant") return 0.375f;
    if (d == "ties") return static_cast<float>(static_cast<int>(rng.next() % 161) - 80) / 2.0f;
    if (d == "huge") return std::ldexp(rng.unit() - 0.5f, 126);  // ldexp is exact
    if (d == "tiny") return std::ldexp(rng.unit() - 0.5f, -120);
    if (d == "subnormal") return from_bits(static_cast<uint32_t>(rng.next()) & 0x807fffffu);
    if (d == "narrow") return 1.0f + std::ldexp(rng.unit(), -20);
    if (d == "sparse") return rng.next() % 10 ? 0.0f : rng.unit() - 0.5f;
    if (d == "zeros") return rng.next() % 2 ? 0.0f : -0.0f;
    // "bits": any pattern, NaN and Inf included (the quantizers must refuse those).
    return from_bits(static_cast<uint32_t>(rng.next()));
}

class Checker {
  public:
    explicit Checker(const Kernels& k) : k_(k) {}

    // One buffer of `n` floats at `offset` floats into an allocation (unaligned views).
    void run(const std::string& dist, size_t n, size_t offset, unsigned threads, uint64_t seed) {
        Rng rng{seed};
        std::vector<float> storage(n + offset + 1);
        float* x = storage.data() + offset;
        for (size_t i = 0; i < n; ++i) x[i] = sample(dist, rng);

        const qshard::MinMaxKeys keys = qshard::minmax(k_, x, n, threads);
        hash("minmax").value(keys.lo);
        hash("minmax").value(keys.hi);
        const bool finite = n == 0 || (keys.lo >= qshard::kKeyMinusInf && keys.hi <= qshard::kKeyPlusInf);

        for (uint32_t qmax : {255u, 65535u}) {
            const std::string name = qmax == 255 ? "u8" : "u16";
            const unsigned width = qmax == 255 ? 1 : 2;
            std::vector<unsigned char> codes(n * width + 1);
            AffineParams p;
            try {
                p = qshard::quantize(k_, x, n, qmax, codes.data(), threads);
            } catch (const std::invalid_argument&) {
                if (finite) fail("quantize_" + name + " refused finite input", dist, n);
                continue;
            }
            if (!finite) fail("quantize_" + name + " accepted NaN/Inf", dist, n);
            Hash& q = hash("quantize_" + name);
            q.value(p.min);
            q.value(p.max);
            q.value(p.scale);
            q.bytes(codes.data(), n * width);

            std::vector<float> back(n + 1);
            qshard::dequantize(k_, codes.data(), n, width, p.min, p.scale, false, back.data(), threads);
            hash("dequantize_f32_" + name).bytes(back.data(), n * sizeof(float));
            for (bool half_up : {false, true}) {
                std::vector<int32_t> ints(n + 1);
                qshard::dequantize(k_, codes.data(), n, width, p.min, p.scale, true, ints.data(), threads,
                                   half_up);
                hash(std::string("dequantize_i32_") + name + (half_up ? "_half_up" : "_half_even"))
                    .bytes(ints.data(), n * sizeof(int32_t));
            }
        }

        std::vector<uint16_t> halves(n + 1);
        qshard::f16_from_f32(k_, x, n, halves.data(), threads);
        hash("f16_from_f32").bytes(halves.data(), n * sizeof(uint16_t));
        std::vector<float> widened(n + 1);
        qshard::f32_from_f16(k_, halves.data(), n, widened.data(), threads);
        hash("f32_from_f16").bytes(widened.data(), n * sizeof(float));
        // The other stored forms the chunk loop widens: bfloat16 (the top half of x) and float64
        // values up to half a float32 step away from x, rounded back (NaN lanes left out: a NaN
        // tensor is never quantized, so its payload is no result).
        for (size_t i = 0; i < n; ++i) {
            uint32_t bits;
            std::memcpy(&bits, x + i, sizeof bits);
            halves[i] = static_cast<uint16_t>(bits >> 16);
        }
        k_.f32_from_bf16(halves.data(), n, widened.data());
        hash("f32_from_bf16").bytes(widened.data(), n * sizeof(float));
        std::vector<double> doubles(n + 1);
        for (size_t i = 0; i < n; ++i)
            doubles[i] = std::isnan(x[i]) ? 0.0 : static_cast<double>(x[i]) * (1.0 + std::ldexp(i % 5, -26));
        k_.f32_from_f64(doubles.data(), n, widened.data());
        hash("f32_from_f64").bytes(widened.data(), n * sizeof(float));

        hash("ceiling_read").value(qshard::ceiling_read(k_, x, n, threads));
        // The other memory-ceiling probes only move bytes in a kernel's pattern for `qshard bench`;
        // what they write is no result (the AVX2 ones saturate where the serial ones truncate), so
        // they are run (for crashes) but not hashed.
        std::vector<unsigned char> narrow(n * 2 + 1);
        qshard::ceiling_narrow(k_, x, n, 2, narrow.data(), threads);
        std::vector<uint32_t> wide(n + 1);
        qshard::ceiling_widen(k_, narrow.data(), n, 2, wide.data(), threads);
    }

    // Every float16 value to float32, and affine parameters over a grid of ranges.
    void exhaustive() {
        std::vector<uint16_t> all(65536);
        for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
        std::vector<float> out(65536);
        qshard::f32_from_f16(k_, all.data(), all.size(), out.data(), 1);
        hash("f32_from_f16_all").bytes(out.data(), out.size() * sizeof(float));
        Rng rng{7};
        for (int i = 0; i < 20000; ++i) {
            double lo = sample(kDistributions[i % 9], rng), hi = sample(kDistributions[(i / 9) % 9], rng);
            if (lo > hi) std::swap(lo, hi);
            for (uint32_t qmax : {255u, 65535u}) {
                const AffineParams p = qshard::affine_params(lo, hi, qmax);
                hash("affine_params").value(p.min);
                hash("affine_params").value(p.max);
                hash("affine_params").value(p.scale);
            }
        }
    }

    void print() const {
        for (const auto& [op, h] : hashes_) std::printf("%-6s %-28s %016" PRIx64 "\n", k_.name, op.c_str(), h.state);
    }

    bool ok() const { return ok_; }

  private:
    Hash& hash(const std::string& op) { return hashes_[op]; }
    void fail(const std::string& what, const std::string& dist, size_t n) {
        std::fprintf(stderr, "%s: %s (%s, n=%zu)\n", k_.name, what.c_str(), dist.c_str(), n);
        ok_ = false;
    }

    const Kernels& k_;
    std::map<std::string, Hash> hashes_;
    bool ok_ = true;
};

}  // namespace

int main() {
    // Lengths around every vector width (8, 16, 32 lanes), each at offsets 0..7 into one buffer,
    // and one buffer long enough to be split over threads.
    const size_t lengths[] = {0,   1,   2,   3,   7,   8,    9,    15,   16,   17,   31,   32,  33,
                              63,  64,  65,  255, 256, 257, 1000, 4093, 4094, 4095, 4096, 4097, 4098, 4099};
    const size_t long_length = 3 * qshard::kMinPerThread + 3;  // three ranges with three threads
    bool ok = true;
    for (const std::string& isa : qshard::available_isas()) {
        Checker check(qshard::kernels_for(isa));
        uint64_t seed = 1;
        for (const char* dist : kDistributions) {
            for (size_t n : lengths)
                for (size_t offset = 0; offset < 8; ++offset) check.run(dist, n, offset, 1, seed++);
            for (unsigned threads : {1u, 3u}) check.run(dist, long_length, 1, threads, seed);
            ++seed;
        }
        check.exhaustive();
        check.print();
        ok = ok && check.ok();
    }
    return ok ? 0 : 1;
}
