// qshard/file_tensor.hpp: a tensor stored as byte ranges of files, quantized into a shard writer
// in one call (the chunk loop of the streaming converter).
//
// Two passes, as tensorflowjs's whole-tensor quantization needs: the minimum and maximum of every
// value, then the codes with the parameters they give. The first pass reads the ranges with pread
// in chunks of kFileChunkElements (a chunk's input, ~128 KiB, stays in L2 while it is widened and
// its min/max found) on up to `threads` workers that take chunks in order. The stored bytes of a
// tensor that fits in the read buffer (read_buffer_bytes(), kReadBufferBytes unless changed) stay
// there, so the second pass quantizes from memory without reading the files again; of a bigger
// tensor, the chunks that fit stay and only the rest is read twice. The second pass splits the
// chunks over the workers again, and the codes go straight into the writer's shard buffer.
// Nothing is mapped: a file truncated under us is an exception naming it, not a SIGBUS.
//
// Memory: the read buffer (kept between calls, so it is not page-faulted in per tensor; a call
// made while another uses it gets its own) plus ~3 chunks per worker.
//
// Bytes: minmax merges order-preserving keys, so the range does not depend on how the chunks fell
// to the threads; codes are per element with fixed parameters. The output therefore equals the
// serial kernels' on the whole tensor, and the chunked Python path's, byte for byte.
//
// Stored forms widened to float32 first: float32 (as is), float16 (exact), bfloat16 (exact),
// float64 (rounded to nearest even, numpy's astype), and tfjs uint8/uint16 affine codes
// (q * scale + min in float64, rounded once to float32: what tfjs and qshard.dequantize compute).
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "qshard/affine.hpp"
#include "qshard/dispatch.hpp"
#include "qshard/minmax.hpp"
#include "qshard/pack.hpp"

namespace qshard {

constexpr size_t kFileChunkElements = size_t{1} << 15;
// Default read buffer: the stored bytes of one tensor up to this size are read once, not twice.
constexpr size_t kReadBufferBytes = size_t{16} << 20;

// The read buffer's size for the calls that start from now on (0: every tensor is read twice).
void set_read_buffer_bytes(size_t bytes) noexcept;
size_t read_buffer_bytes() noexcept;

enum class Stored : int { f32 = 0, f16 = 1, bf16 = 2, f64 = 3, u8 = 4, u16 = 5 };
enum class Target : int { u8 = 0, u16 = 1, f16 = 2 };

size_t stored_bytes(Stored form) noexcept;

struct FilePiece {
    std::string path;
    uint64_t offset = 0;  // first byte in the file
    uint64_t bytes = 0;
};

struct StoredTensor {
    std::vector<FilePiece> pieces;  // the tensor's bytes, in order (a tfjs weight may span shards)
    Stored form = Stored::f32;
    uint64_t count = 0;             // elements; the pieces must hold count * stored_bytes(form)
    double codes_min = 0.0;         // u8 / u16 codes only: value = code * codes_scale + codes_min
    double codes_scale = 1.0;
};

// A file that changed under the reader: a range that ended before its last byte (the file is
// shorter than when the tensor was planned), or a path where a FIFO or device now stands.
class ChangedFile : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;  // what(): "<path>: ..."
};

struct FileQuantized {
    bool written = false;  // false: refused (NaN / Inf), and nothing was appended
    MinMaxKeys keys;       // of the float32 values; empty keys for an empty tensor
    AffineParams params;   // u8 / u16: what the codes were made with (min 0, scale 1 when empty)
};

// The keys of the values' minimum and maximum (the first pass alone).
MinMaxKeys minmax_file(const Kernels& k, const StoredTensor& t, unsigned threads);

// Both passes. The range comes first; the tensor is refused, before a byte is appended, when it
// holds NaN or Inf and the target is u8/u16 (no affine parameters exist for them), or when it
// holds NaN, the target is f16 and refuse_nan is set (float16 can store NaN: the caller decides).
// Read failures throw std::system_error (errno, path) or ChangedFile.
FileQuantized append_file(ShardWriter& writer, const Kernels& k, const StoredTensor& t, Target target,
                          bool refuse_nan, unsigned threads);

// A weight written unchanged: the pieces' bytes as they are, read straight into the shard buffer.
// Read failures throw as append_file's do.
void append_file_bytes(ShardWriter& writer, const std::vector<FilePiece>& pieces);

}  // namespace qshard
