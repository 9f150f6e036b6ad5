#include "qshard/file_tensor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
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
                // O_NONBLOCK: a FIFO swapped in for the file since it was checked must not block
                // the open (a regular file's reads ignore the flag).
                const int fd = ::open(piece.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
                if (fd < 0) throw std::system_error(errno, std::generic_category(), piece.path);
                fds_.push_back(fd);
                struct stat info;
                if (::fstat(fd, &info) != 0) throw std::system_error(errno, std::generic_category(), piece.path);
                if (S_ISDIR(info.st_mode)) throw std::system_error(EISDIR, std::generic_category(), piece.path);
                if (!S_ISREG(info.st_mode))
                    throw ChangedFile(piece.path + ": is no longer a regular file (a FIFO, socket or device stands "
                                                   "there now; was it replaced while qshard read it?)");
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
                throw ChangedFile(path + ": file ends early: byte " + std::to_string(at) +
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

// Memory an append_file call works in, kept between calls: a fresh buffer of several MiB per
// tensor would be page-faulted in again each time (~4k faults per 16 MiB).
struct Workspace {
    struct Worker {
        std::vector<uint64_t> raw;  // stored bytes of one chunk not kept (8-byte aligned for any form)
        std::vector<float> values;  // widened, for forms other than float32
        std::vector<uint16_t> codes;
    };
    std::vector<uint64_t> kept;  // the first stored bytes of the tensor, read once for both passes
    std::vector<Worker> workers;
};

std::atomic<size_t> g_read_buffer_bytes{kReadBufferBytes};

// One workspace is kept for the next call; a call made while it is in use gets a fresh one.
class WorkspaceLease {
public:
    WorkspaceLease() {
        std::lock_guard<std::mutex> guard(lock());
        held_ = std::move(spare());
        if (!held_) held_.reset(new Workspace);
    }
    ~WorkspaceLease() {
        std::lock_guard<std::mutex> guard(lock());
        // A workspace bigger than the buffer now allowed is dropped rather than kept.
        if (!spare() && held_->kept.size() * sizeof(uint64_t) <= g_read_buffer_bytes.load()) spare() = std::move(held_);
    }
    WorkspaceLease(const WorkspaceLease&) = delete;
    WorkspaceLease& operator=(const WorkspaceLease&) = delete;
    Workspace& operator*() const noexcept { return *held_; }

private:
    static std::mutex& lock() {
        static std::mutex m;
        return m;
    }
    static std::unique_ptr<Workspace>& spare() {
        static std::unique_ptr<Workspace> w;
        return w;
    }
    std::unique_ptr<Workspace> held_;
};

size_t chunk_count(uint64_t n) noexcept { return static_cast<size_t>((n + kFileChunkElements - 1) / kFileChunkElements); }

size_t chunk_length(uint64_t n, size_t chunk) noexcept {
    const uint64_t begin = static_cast<uint64_t>(chunk) * kFileChunkElements;
    return static_cast<size_t>(n - begin < kFileChunkElements ? n - begin : kFileChunkElements);
}

// A tensor's values as float32, chunk by chunk. The first pass reads every chunk; the chunks that
// fit in the read buffer (all of them when the tensor does, else a prefix) stay there in their
// stored form, so the second pass re-reads only the rest. Chunks are widened into a buffer of
// the worker's each time they are used.
class Values {
public:
    // keep: hold what fits for a second pass (minmax_file alone needs nothing kept).
    Values(const Kernels& k, const StoredTensor& t, unsigned threads, Workspace& space, bool keep)
        : k_(k), t_(t), reader_(t.pieces), item_(stored_bytes(t.form)), space_(space) {
        if (item_ == 0) throw std::invalid_argument("unknown stored form");
        if (t.count > UINT64_MAX / item_ || reader_.total() != t.count * item_)
            throw std::invalid_argument("the file ranges hold " + std::to_string(reader_.total()) +
                                        " bytes, but " + std::to_string(t.count) + " elements need " +
                                        std::to_string(t.count * item_));
        const size_t workers = threads ? threads : default_threads();
        if (space_.workers.size() < workers) space_.workers.resize(workers);
        if (!keep) return;
        const uint64_t budget = g_read_buffer_bytes.load(std::memory_order_relaxed);
        const uint64_t chunks = chunk_count(t.count);
        kept_chunks_ = t.count * item_ <= budget ? chunks : budget / (kFileChunkElements * item_);
        if (kept_chunks_ == 0) return;
        const uint64_t bytes = kept_chunks_ == chunks ? t.count * item_ : kept_chunks_ * kFileChunkElements * item_;
        const size_t words = static_cast<size_t>((bytes + 7) / 8);
        if (space_.kept.size() < words) space_.kept.resize(words);
    }

    // First pass: chunk `chunk` read (into the kept buffer when it has room there) and widened.
    const float* read(unsigned worker, size_t chunk) {
        const size_t n = chunk_length(t_.count, chunk);
        const uint64_t first = static_cast<uint64_t>(chunk) * kFileChunkElements;
        uint8_t* raw = chunk < kept_chunks_ ? kept_at(first) : scratch_raw(worker);
        reader_.read(first * item_, n * item_, raw);
        return widen(worker, raw, n);
    }

    // Second pass: elements [first, first + n), all inside one chunk; valid until this worker's
    // next call. Kept chunks come from memory, the others are read again.
    const float* get(unsigned worker, uint64_t first, size_t n) {
        const uint64_t chunk = first / kFileChunkElements;
        if (chunk < kept_chunks_) return widen(worker, kept_at(first), n);
        uint8_t* raw = scratch_raw(worker);
        reader_.read(first * item_, n * item_, raw);
        return widen(worker, raw, n);
    }

    // Aligned room for two-byte codes whose place in the shard buffer is at an odd address.
    uint16_t* code_scratch(unsigned worker) {
        Workspace::Worker& b = space_.workers.at(worker);
        if (b.codes.size() < kFileChunkElements) b.codes.resize(kFileChunkElements);
        return b.codes.data();
    }

private:
    uint8_t* kept_at(uint64_t first) noexcept { return reinterpret_cast<uint8_t*>(space_.kept.data()) + first * item_; }

    uint8_t* scratch_raw(unsigned worker) {
        Workspace::Worker& b = space_.workers.at(worker);
        const size_t words = (kFileChunkElements * item_ + 7) / 8;
        if (b.raw.size() < words) b.raw.resize(words);
        return reinterpret_cast<uint8_t*>(b.raw.data());
    }

    // Stored bytes as float32 (raw is aligned for its form: an element boundary of an 8-aligned buffer).
    const float* widen(unsigned worker, const uint8_t* raw, size_t n) {
        if (t_.form == Stored::f32) return reinterpret_cast<const float*>(raw);
        Workspace::Worker& b = space_.workers.at(worker);
        if (b.values.size() < kFileChunkElements) b.values.resize(kFileChunkElements);
        float* out = b.values.data();
        switch (t_.form) {
            case Stored::f32: break;
            case Stored::f16: k_.f32_from_f16(reinterpret_cast<const uint16_t*>(raw), n, out); break;
            case Stored::bf16: k_.f32_from_bf16(reinterpret_cast<const uint16_t*>(raw), n, out); break;
            case Stored::f64: k_.f32_from_f64(reinterpret_cast<const double*>(raw), n, out); break;
            case Stored::u8: k_.dequantize_f32_u8(raw, n, t_.codes_min, t_.codes_scale, out); break;
            case Stored::u16: k_.dequantize_f32_u16(reinterpret_cast<const uint16_t*>(raw), n, t_.codes_min, t_.codes_scale, out); break;
        }
        return out;
    }

    const Kernels& k_;
    const StoredTensor& t_;
    RangeReader reader_;
    const size_t item_;
    Workspace& space_;
    uint64_t kept_chunks_ = 0;
};

MinMaxKeys first_pass(const Kernels& k, Values& values, uint64_t count, unsigned threads) {
    std::vector<MinMaxKeys> partial(threads ? threads : default_threads());
    const unsigned used = parallel_chunks(chunk_count(count), threads, kMinChunksPerWorker, [&](unsigned worker, size_t chunk) {
        const size_t n = chunk_length(count, chunk);
        MinMaxKeys keys;
        k.minmax_f32(values.read(worker, chunk), n, &keys);
        partial[worker] = merge(partial[worker], keys);
    });
    MinMaxKeys all;
    for (unsigned i = 0; i < used; ++i) all = merge(all, partial[i]);
    return all;
}

}  // namespace

void set_read_buffer_bytes(size_t bytes) noexcept { g_read_buffer_bytes.store(bytes); }

size_t read_buffer_bytes() noexcept { return g_read_buffer_bytes.load(); }

MinMaxKeys minmax_file(const Kernels& k, const StoredTensor& t, unsigned threads) {
    WorkspaceLease space;
    Values values(k, t, threads, *space, false);
    return first_pass(k, values, t.count, threads);
}

FileQuantized append_file(ShardWriter& writer, const Kernels& k, const StoredTensor& t, Target target,
                          bool refuse_nan, unsigned threads) {
    WorkspaceLease space;
    Values values(k, t, threads, *space, true);
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
        // The span's pieces, one per chunk of the tensor it overlaps (so each is kept or not, whole).
        const size_t first_chunk = first / kFileChunkElements;
        const size_t pieces = (first + count - 1) / kFileChunkElements - first_chunk + 1;
        parallel_chunks(pieces, threads, kMinChunksPerWorker, [&](unsigned worker, size_t piece) {
            const size_t chunk_begin = (first_chunk + piece) * kFileChunkElements;
            const size_t begin = chunk_begin > first ? chunk_begin : first;
            const size_t end = std::min(chunk_begin + kFileChunkElements, first + count);
            const size_t n = end - begin;
            const float* x = values.get(worker, begin, n);
            uint8_t* dst = out + (begin - first) * code_bytes;
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

void append_file_bytes(ShardWriter& writer, const std::vector<FilePiece>& pieces) {
    const RangeReader reader(pieces);
    writer.append_produced(static_cast<size_t>(reader.total()), 1, [&](size_t first, size_t count, uint8_t* out) {
        reader.read(first, count, out);
    });
}

}  // namespace qshard
