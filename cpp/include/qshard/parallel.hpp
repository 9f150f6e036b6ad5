// qshard/parallel.hpp: the one place where work is split over threads.
//
// Kernels never spawn threads; callers hand [begin, end) ranges to them through parallel_for.
// A buffer is split into at most `threads` contiguous ranges, each a multiple of 64 elements
// (so vector loops and cache lines line up) and at least `min_per_thread` long, so small
// buffers stay on the calling thread.
#pragma once
#include <cstddef>
#include <functional>

namespace qshard {

// Threads used when a call asks for 0: QSHARD_NUM_THREADS if set, else the cores this process
// may run on.
unsigned default_threads() noexcept;
void set_default_threads(unsigned threads) noexcept;  // 0 restores the automatic choice

constexpr size_t kMinPerThread = size_t{1} << 17;  // elements

// Calls fn(index, begin, end) for each range; index is 0..ranges-1. Returns the range count.
unsigned parallel_for(size_t n, unsigned threads, size_t min_per_thread,
                      const std::function<void(unsigned, size_t, size_t)>& fn);

}  // namespace qshard
