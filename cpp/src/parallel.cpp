#include "qshard/parallel.hpp"

#include <sched.h>

#include <atomic>
#include <exception>
#include <mutex>
#include <cstdlib>
#include <thread>
#include <vector>

namespace qshard {
namespace {

std::atomic<unsigned> g_threads{0};

unsigned automatic_threads() noexcept {
    if (const char* env = std::getenv("QSHARD_NUM_THREADS")) {
        const long value = std::strtol(env, nullptr, 10);
        if (value > 0 && value <= 1024) return static_cast<unsigned>(value);
    }
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) return static_cast<unsigned>(count);
    }
#endif
    const unsigned hardware = std::thread::hardware_concurrency();
    return hardware ? hardware : 1;
}

}  // namespace

unsigned default_threads() noexcept {
    const unsigned set = g_threads.load(std::memory_order_relaxed);
    if (set) return set;
    // Probed once: a syscall per kernel call adds up when a model is processed in small chunks.
    static const unsigned automatic = automatic_threads();
    return automatic;
}

void set_default_threads(unsigned threads) noexcept { g_threads.store(threads, std::memory_order_relaxed); }

unsigned parallel_for(size_t n, unsigned threads, size_t min_per_thread,
                      const std::function<void(unsigned, size_t, size_t)>& fn) {
    if (threads == 0) threads = default_threads();
    size_t ranges = min_per_thread ? n / min_per_thread : n;
    if (ranges > threads) ranges = threads;
    if (ranges <= 1) {
        fn(0, 0, n);
        return 1;
    }
    size_t chunk = (n + ranges - 1) / ranges;
    chunk = (chunk + 63) & ~size_t{63};
    std::vector<std::thread> workers;
    workers.reserve(ranges - 1);
    unsigned used = 1;
    for (size_t begin = chunk; begin < n; begin += chunk, ++used) {
        const size_t end = begin + chunk < n ? begin + chunk : n;
        workers.emplace_back([&fn, used, begin, end] { fn(used, begin, end); });
    }
    fn(0, 0, chunk < n ? chunk : n);
    for (auto& worker : workers) worker.join();
    return used;
}

unsigned parallel_chunks(size_t chunks, unsigned threads, size_t min_chunks_per_worker,
                         const std::function<void(unsigned, size_t)>& fn) {
    if (threads == 0) threads = default_threads();
    size_t workers = min_chunks_per_worker ? chunks / min_chunks_per_worker : chunks;
    if (workers > threads) workers = threads;
    if (workers <= 1) {
        for (size_t chunk = 0; chunk < chunks; ++chunk) fn(0, chunk);
        return 1;
    }
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_lock;
    auto work = [&](unsigned worker) {
        try {
            for (size_t chunk; !failed.load(std::memory_order_relaxed) && (chunk = next.fetch_add(1)) < chunks;)
                fn(worker, chunk);
        } catch (...) {
            std::lock_guard<std::mutex> guard(error_lock);
            if (!first_error) first_error = std::current_exception();
            failed.store(true);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    try {
        for (unsigned worker = 1; worker < workers; ++worker) pool.emplace_back(work, worker);
    } catch (...) {  // no thread could be started: what was started finishes the job
    }
    work(0);
    for (auto& thread : pool) thread.join();
    if (first_error) std::rethrow_exception(first_error);
    return static_cast<unsigned>(pool.size() + 1);
}

}  // namespace qshard
