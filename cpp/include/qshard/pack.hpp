// qshard/pack.hpp: the shard writer of a tfjs weight group.
//
// A group's weights are concatenated in manifest order and cut into shards of shard_size bytes,
// named group{G}-shard{i}of{N}.bin (1-based), the last one shorter; a tensor may span shards.
// The total is known before the first byte (shape x itemsize, string bytes counted by the
// caller), so N and every name are fixed up front and nothing is renamed. Memory stays at two
// shard buffers whatever the group's size: codes are quantized straight into one while the other,
// full, is written to its file by a background thread (so computing and writing overlap).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "qshard/affine.hpp"
#include "qshard/dispatch.hpp"

namespace qshard {

std::string shard_name(unsigned group_number, uint64_t shard_index, uint64_t shard_count);

class ShardWriter {
public:
    // Files go to `folder` (which must exist); they are created exclusively (an existing file
    // is an error, never overwritten). Throws std::invalid_argument for a bad size.
    ShardWriter(std::string folder, unsigned group_number, uint64_t total_bytes, uint64_t shard_size);
    ~ShardWriter();
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    const std::vector<std::string>& names() const noexcept { return names_; }
    uint64_t written() const noexcept { return written_; }
    uint64_t total() const noexcept { return total_; }

    void append(const void* data, size_t bytes);
    // Codes of x with the given parameters (qmax 255: 1 byte each, 65535: 2 bytes).
    void append_quantized(const Kernels& k, const float* x, size_t n, const AffineParams& p, unsigned threads);
    void append_float16(const Kernels& k, const float* x, size_t n, unsigned threads);
    // n elements of element_bytes each, made by produce(first, count, out): it writes elements
    // first..first+count-1 to out, a span of the shard buffer (or a small scratch when an element
    // straddles two shards), so a caller can compute straight into the buffer.
    using Producer = std::function<void(size_t first, size_t count, uint8_t* out)>;
    void append_produced(size_t n, size_t element_bytes, const Producer& produce);
    // Flushes the last shard and checks that exactly total_bytes arrived.
    void finish();
    // Waits for a write in flight and drops its error: call before removing a failed output, so
    // no background write creates a file after the cleanup.
    void abort() noexcept;

private:
    template <class Produce>
    void append_elements(size_t n, size_t element_bytes, Produce produce);
    void flush();
    void wait_pending();  // rethrows a failed background write
    void check_room(size_t bytes) const;

    std::string folder_;
    std::vector<std::string> names_;
    std::vector<uint8_t> buffer_, spare_;  // being filled / being written
    size_t fill_ = 0;
    uint64_t total_, written_ = 0, next_shard_ = 0;
    bool finished_ = false;
    std::future<void> pending_;  // declared last: joined before the buffers are freed
};

}  // namespace qshard
