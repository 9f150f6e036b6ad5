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

// Calls fn(worker, chunk) once for every chunk in 0..chunks-1, on up to `threads` workers (the
// calling thread is worker 0) that take the next chunk as they finish one, so the chunks are
// visited roughly in order (sequential for the page cache) and an early finisher takes more.
// Each worker gets at least `min_chunks_per_worker` chunks' worth of work, so small jobs stay on
// the calling thread. fn may throw (a failed read): the other workers stop taking chunks and the
// first exception is rethrown here, after every worker has finished. Returns the workers used.
unsigned parallel_chunks(size_t chunks, unsigned threads, size_t min_chunks_per_worker,
                         const std::function<void(unsigned, size_t)>& fn);

}  // namespace qshard
