#include "qshard/pack.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "qshard/ops.hpp"

namespace qshard {

std::string shard_name(unsigned group_number, uint64_t shard_index, uint64_t shard_count) {
    return "group" + std::to_string(group_number) + "-shard" + std::to_string(shard_index) + "of" +
           std::to_string(shard_count) + ".bin";
}

ShardWriter::ShardWriter(std::string folder, unsigned group_number, uint64_t total_bytes, uint64_t shard_size)
    : folder_(std::move(folder)), total_(total_bytes) {
    if (shard_size == 0) throw std::invalid_argument("shard size must be > 0");
    if (shard_size > (uint64_t{1} << 40)) throw std::invalid_argument("shard size is absurdly large");
    const uint64_t count = (total_bytes + shard_size - 1) / shard_size;
    for (uint64_t i = 0; i < count; ++i) names_.push_back(shard_name(group_number, i + 1, count));
    const uint64_t buffer_bytes = total_bytes < shard_size ? total_bytes : shard_size;
    buffer_.resize(static_cast<size_t>(buffer_bytes));
}

ShardWriter::~ShardWriter() {
    if (pending_.valid()) pending_.wait();  // never free a buffer a write is still reading
}

namespace {

void write_file(const std::string& path, const uint8_t* data, size_t bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), path);
    size_t done = 0;
    while (done < bytes) {
        const ssize_t n = ::write(fd, data + done, bytes - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int error = errno;
            ::close(fd);
            throw std::system_error(error, std::generic_category(), path);
        }
        done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) throw std::system_error(errno, std::generic_category(), path);
}

}  // namespace

void ShardWriter::abort() noexcept {
    if (pending_.valid()) pending_.wait();
    pending_ = std::future<void>();
    finished_ = true;
}

void ShardWriter::wait_pending() {
    if (pending_.valid()) pending_.get();
}

void ShardWriter::check_room(size_t bytes) const {
    if (finished_) throw std::logic_error("the shard writer is already finished");
    if (bytes > total_ - written_)
        throw std::invalid_argument("more bytes appended than the group's declared total (" +
                                    std::to_string(total_) + ")");
}

void ShardWriter::flush() {
    if (fill_ == 0) return;
    wait_pending();  // one write in flight at most; an earlier failure surfaces here
    const std::string path = folder_ + "/" + names_.at(static_cast<size_t>(next_shard_));
    const size_t bytes = fill_;
    buffer_.swap(spare_);
    if (buffer_.size() < spare_.size()) buffer_.resize(spare_.size());
    const uint8_t* data = spare_.data();
    pending_ = std::async(std::launch::async, [path, data, bytes] { write_file(path, data, bytes); });
    ++next_shard_;
    fill_ = 0;
}

void ShardWriter::append(const void* data, size_t bytes) {
    check_room(bytes);
    const uint8_t* src = static_cast<const uint8_t*>(data);
    while (bytes) {
        const size_t room = buffer_.size() - fill_;
        const size_t take = bytes < room ? bytes : room;
        std::memcpy(buffer_.data() + fill_, src, take);
        fill_ += take;
        written_ += take;
        src += take;
        bytes -= take;
        if (fill_ == buffer_.size()) flush();
    }
}

// produce(first, count, out) writes `count` elements starting at element `first` into out.
// Whole elements go straight into the buffer; one that straddles two shards goes through a
// small scratch buffer and is split.
template <class Produce>
void ShardWriter::append_elements(size_t n, size_t element_bytes, Produce produce) {
    check_room(n * element_bytes);
    size_t first = 0;
    while (first < n) {
        const size_t room = buffer_.size() - fill_;
        const size_t whole = room / element_bytes;
        if (whole > 0) {
            const size_t count = n - first < whole ? n - first : whole;
            produce(first, count, buffer_.data() + fill_);
            fill_ += count * element_bytes;
            written_ += count * element_bytes;
            first += count;
        } else {
            uint8_t scratch[8];
            produce(first, 1, scratch);
            std::memcpy(buffer_.data() + fill_, scratch, room);
            fill_ += room;
            written_ += room;
            flush();
            std::memcpy(buffer_.data(), scratch + room, element_bytes - room);
            fill_ = element_bytes - room;
            written_ += element_bytes - room;
            first += 1;
        }
        if (fill_ == buffer_.size()) flush();
    }
}

namespace {

// Two-byte codes land at odd offsets after odd-sized tensors (bool, uint8): the kernels then
// write into an aligned scratch chunk that is copied into place.
template <class Kernel>
void into_bytes(uint8_t* out, size_t count, Kernel kernel) {
    if (reinterpret_cast<uintptr_t>(out) % alignof(uint16_t) == 0) {
        kernel(0, count, reinterpret_cast<uint16_t*>(out));
        return;
    }
    constexpr size_t kChunk = size_t{1} << 15;
    std::vector<uint16_t> scratch(count < kChunk ? count : kChunk);
    for (size_t begin = 0; begin < count; begin += kChunk) {
        const size_t part = count - begin < kChunk ? count - begin : kChunk;
        kernel(begin, part, scratch.data());
        std::memcpy(out + 2 * begin, scratch.data(), 2 * part);
    }
}

}  // namespace

void ShardWriter::append_quantized(const Kernels& k, const float* x, size_t n, const AffineParams& p,
                                   unsigned threads) {
    if (p.qmax == 255) {
        append_elements(n, 1, [&](size_t first, size_t count, uint8_t* out) {
            quantize_with(k, x + first, count, p, out, threads);
        });
    } else {
        append_elements(n, 2, [&](size_t first, size_t count, uint8_t* out) {
            into_bytes(out, count, [&](size_t begin, size_t part, uint16_t* codes) {
                quantize_with(k, x + first + begin, part, p, codes, threads);
            });
        });
    }
}

void ShardWriter::append_float16(const Kernels& k, const float* x, size_t n, unsigned threads) {
    append_elements(n, 2, [&](size_t first, size_t count, uint8_t* out) {
        into_bytes(out, count, [&](size_t begin, size_t part, uint16_t* halves) {
            f16_from_f32(k, x + first + begin, part, halves, threads);
        });
    });
}

void ShardWriter::append_produced(size_t n, size_t element_bytes, const Producer& produce) {
    if (element_bytes == 0 || element_bytes > 8) throw std::invalid_argument("element size must be 1..8 bytes");
    append_elements(n, element_bytes, produce);
}

void ShardWriter::finish() {
    if (finished_) return;
    if (written_ != total_)
        throw std::logic_error("the group was declared as " + std::to_string(total_) + " bytes but " +
                               std::to_string(written_) + " were appended");
    flush();
    wait_pending();
    finished_ = true;
}

}  // namespace qshard
