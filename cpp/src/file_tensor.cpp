#include "qshard/file_tensor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "qshard/parallel.hpp"

namespace qshard {

size_t stored_bytes(Stored form) noexcept {
    switch (form) {
        case Stored::f32: return 4;
        case Stored::f16: return 2;
        case Stored::bf16: return 2;
        case Stored::f64: return 8;
        case Stored::u8: return 1;
        case Stored::u16: return 2;
    }
    return 0;
}

namespace {

// Each worker gets at least this many chunks (kMinPerThread elements), as the kernels' own split.
constexpr size_t kMinChunksPerWorker = kMinPerThread / kFileChunkElements;

// The tensor's files, each opened once for both passes; reads address the pieces as one range.
class RangeReader {
public:
    explicit RangeReader(const std::vector<FilePiece>& pieces) {
        try {
            for (const FilePiece& piece : pieces) {
                if (piece.bytes == 0) continue;
                const int fd = ::open(piece.path.c_str(), O_RDONLY | O_CLOEXEC);
                if (fd < 0) throw std::system_error(errno, std::generic_category(), piece.path);
                fds_.push_back(fd);
                pieces_.push_back(piece);
                starts_.push_back(total_);
                total_ += piece.bytes;
#ifdef POSIX_FADV_SEQUENTIAL
                // A hint for read-ahead from disk (both passes read each file front to back).
                ::posix_fadvise(fd, static_cast<off_t>(piece.offset), static_cast<off_t>(piece.bytes),
                                POSIX_FADV_SEQUENTIAL);
#endif
            }
        } catch (...) {
            close_all();
            throw;
        }
    }
    ~RangeReader() { close_all(); }
    RangeReader(const RangeReader&) = delete;
    RangeReader& operator=(const RangeReader&) = delete;

    uint64_t total() const noexcept { return total_; }

    // Bytes [offset, offset + bytes) of the pieces laid end to end, into dst. Safe to call from
    // several threads at once (pread has no shared file position).
    void read(uint64_t offset, size_t bytes, uint8_t* dst) const {
        size_t index = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin()) - 1;
        while (bytes) {
            const uint64_t within = offset - starts_[index];
            const uint64_t left = pieces_[index].bytes - within;
            const size_t take = bytes < left ? bytes : static_cast<size_t>(left);
            read_piece(index, pieces_[index].offset + within, take, dst);
            dst += take;
            offset += take;
            bytes -= take;
            ++index;
        }
    }

private:
    void read_piece(size_t index, uint64_t at, size_t bytes, uint8_t* dst) const {
        const std::string& path = pieces_[index].path;
        while (bytes) {
            const ssize_t got = ::pread(fds_[index], dst, bytes, static_cast<off_t>(at));
            if (got < 0) {
                if (errno == EINTR) continue;
                throw std::system_error(errno, std::generic_category(), path);
            }
            if (got == 0) {
                struct stat info;
                const std::string now =
                    ::fstat(fds_[index], &info) == 0 ? std::to_string(info.st_size) + " bytes" : "fewer bytes";
                throw TruncatedFile(path + ": file ends early: byte " + std::to_string(at) +
                                    " of it is missing (the file holds " + now +
                                    " now; was it changed while qshard read it?)");
            }
            dst += got;
            at += static_cast<uint64_t>(got);
            bytes -= static_cast<size_t>(got);
        }
    }

    void close_all() noexcept {
        for (int fd : fds_) ::close(fd);
        fds_.clear();
    }

    std::vector<int> fds_;
    std::vector<FilePiece> pieces_;
    std::vector<uint64_t> starts_;
    uint64_t total_ = 0;
};

// A tensor's values as float32, chunk by chunk: read, then widened into a buffer of the worker's.
// A tensor of one chunk is read once: the second pass reuses the first pass's values.
class Values {
public:
    Values(const Kernels& k, const StoredTensor& t, unsigned threads)
        : k_(k), t_(t), reader_(t.pieces), item_(stored_bytes(t.form)) {
        if (item_ == 0) throw std::invalid_argument("unknown stored form");
        if (t.count > UINT64_MAX / item_ || reader_.total() != t.count * item_)
            throw std::invalid_argument("the file ranges hold " + std::to_string(reader_.total()) +
                                        " bytes, but " + std::to_string(t.count) + " elements need " +
                                        std::to_string(t.count * item_));
        workers_.resize(threads ? threads : default_threads());
    }

    // Elements [first, first + n) with n <= kFileChunkElements; valid until this worker's next call.
    const float* get(unsigned worker, uint64_t first, size_t n) {
        if (kept_) return kept_ + first;
        Buffers& b = workers_.at(worker);
        if (b.raw.empty()) {
            b.raw.resize((kFileChunkElements * item_ + 7) / 8);
            if (t_.form != Stored::f32) b.values.resize(kFileChunkElements);
        }
        reader_.read(first * item_, n * item_, reinterpret_cast<uint8_t*>(b.raw.data()));
        const void* raw = b.raw.data();
        float* out = b.values.data();
        switch (t_.form) {
            case Stored::f32: return static_cast<const float*>(raw);
            case Stored::f16: k_.f32_from_f16(static_cast<const uint16_t*>(raw), n, out); break;
            case Stored::bf16: k_.f32_from_bf16(static_cast<const uint16_t*>(raw), n, out); break;
            case Stored::f64: k_.f32_from_f64(static_cast<const double*>(raw), n, out); break;
            case Stored::u8: k_.dequantize_f32_u8(static_cast<const uint8_t*>(raw), n, t_.codes_min, t_.codes_scale, out); break;
            case Stored::u16: k_.dequantize_f32_u16(static_cast<const uint16_t*>(raw), n, t_.codes_min, t_.codes_scale, out); break;
        }
        return out;
    }

    // After the first pass of a one-chunk tensor: serve the values it read from now on.
    void keep(const float* values) noexcept { kept_ = values; }

    // Aligned room for two-byte codes whose place in the shard buffer is at an odd address.
    uint16_t* code_scratch(unsigned worker) {
        Buffers& b = workers_.at(worker);
        if (b.codes.empty()) b.codes.resize(kFileChunkElements);
        return b.codes.data();
    }

private:
    struct Buffers {
        std::vector<uint64_t> raw;  // stored bytes of one chunk (8-byte aligned for any form)
        std::vector<float> values;  // widened, for forms other than float32
        std::vector<uint16_t> codes;
    };
    const Kernels& k_;
    const StoredTensor& t_;
    RangeReader reader_;
    const size_t item_;
    std::vector<Buffers> workers_;
    const float* kept_ = nullptr;
};

size_t chunk_count(uint64_t n) noexcept { return static_cast<size_t>((n + kFileChunkElements - 1) / kFileChunkElements); }

size_t chunk_length(uint64_t n, size_t chunk) noexcept {
    const uint64_t begin = static_cast<uint64_t>(chunk) * kFileChunkElements;
    return static_cast<size_t>(n - begin < kFileChunkElements ? n - begin : kFileChunkElements);
}

MinMaxKeys first_pass(const Kernels& k, Values& values, uint64_t count, unsigned threads) {
    MinMaxKeys all;
    const size_t chunks = chunk_count(count);
    if (chunks == 1) {
        const float* x = values.get(0, 0, static_cast<size_t>(count));
        k.minmax_f32(x, static_cast<size_t>(count), &all);
        values.keep(x);
        return all;
    }
    std::vector<MinMaxKeys> partial(threads ? threads : default_threads());
    const unsigned used = parallel_chunks(chunks, threads, kMinChunksPerWorker, [&](unsigned worker, size_t chunk) {
        const size_t n = chunk_length(count, chunk);
        const float* x = values.get(worker, static_cast<uint64_t>(chunk) * kFileChunkElements, n);
        MinMaxKeys keys;
        k.minmax_f32(x, n, &keys);
        partial[worker] = merge(partial[worker], keys);
    });
    for (unsigned i = 0; i < used; ++i) all = merge(all, partial[i]);
    return all;
}

}  // namespace

MinMaxKeys minmax_file(const Kernels& k, const StoredTensor& t, unsigned threads) {
    Values values(k, t, threads);
    return first_pass(k, values, t.count, threads);
}

FileQuantized append_file(ShardWriter& writer, const Kernels& k, const StoredTensor& t, Target target,
                          bool refuse_nan, unsigned threads) {
    Values values(k, t, threads);
    FileQuantized result;
    result.keys = first_pass(k, values, t.count, threads);
    const bool has_nan = result.keys.lo < kKeyMinusInf || result.keys.hi > kKeyPlusInf;
    const bool has_inf = result.keys.lo == kKeyMinusInf || result.keys.hi == kKeyPlusInf;
    if (target == Target::f16 ? has_nan && refuse_nan : has_nan || has_inf) return result;

    const size_t code_bytes = target == Target::u8 ? 1 : 2;
    AffineParams& p = result.params;
    p.qmax = target == Target::u16 ? 65535 : 255;
    if (target != Target::f16 && t.count > 0)
        p = affine_params(key_float(result.keys.lo), key_float(result.keys.hi), p.qmax);
    // p.clip stays on: a file rewritten between the passes may hold values outside [lo, hi].
    writer.append_produced(static_cast<size_t>(t.count), code_bytes, [&](size_t first, size_t count, uint8_t* out) {
        parallel_chunks(chunk_count(count), threads, kMinChunksPerWorker, [&](unsigned worker, size_t chunk) {
            const size_t n = chunk_length(count, chunk);
            const size_t begin = chunk * kFileChunkElements;
            const float* x = values.get(worker, first + begin, n);
            uint8_t* dst = out + begin * code_bytes;
            if (target == Target::u8) {
                k.quantize_u8_f32(x, n, p, dst);
                return;
            }
            // Two-byte codes land at odd addresses after odd-sized tensors (bool, uint8).
            const bool aligned = reinterpret_cast<uintptr_t>(dst) % alignof(uint16_t) == 0;
            uint16_t* codes = aligned ? reinterpret_cast<uint16_t*>(dst) : values.code_scratch(worker);
            if (target == Target::u16)
                k.quantize_u16_f32(x, n, p, codes);
            else
                k.f16_from_f32(x, n, codes);
            if (!aligned) std::memcpy(dst, codes, 2 * n);
        });
    });
    result.written = true;
    return result;
}

}  // namespace qshard
