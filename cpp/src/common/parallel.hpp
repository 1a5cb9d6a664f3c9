// The one thread pool of the CPU engines: forests, DisCo, the jagged kernels and the ONNX
// networks all split their work with parallel_for below.
//
// Threads are started per call (no pool lives between calls). A thread that cannot be
// started (std::thread throws std::system_error when the process hits a virtual-memory or
// process limit, common on grid sites) is not an error: the work runs on the threads that
// did start and on the calling thread, which always works too, so the call completes even
// when no extra thread starts at all. An exception thrown by the work is rethrown on the
// caller once every thread has been joined.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>

namespace hepinfer {
namespace parallel {

/// The thread count a user's `n_threads` asks for: n_threads > 0 is that many, <= 0 is one
/// per hardware thread (1 where the hardware does not say).
std::size_t resolve_threads(int n_threads) noexcept;

/// Runs worker(w) on the calling thread (w = 0) and on up to n_workers - 1 new threads
/// (w = 1, 2, ...; the indices of the threads that started are contiguous). Threads that
/// cannot be started are skipped, so `worker` must not rely on any other worker running:
/// hand work out dynamically (parallel_for does). The first exception thrown by a worker is
/// rethrown after all threads are joined; `stop`, when given, is set as soon as one throws.
/// Returns the number of workers that ran (>= 1).
std::size_t run_workers(std::size_t n_workers, const std::function<void(std::size_t)>& worker,
                        std::atomic<bool>* stop = nullptr);

/// Runs body(worker, begin, end) over [0, n) in chunks of `chunk` items ([0, chunk),
/// [chunk, 2 chunk), ...; the last one shorter), handed out in order to up to `n_workers`
/// workers (never more than there are chunks). `worker` (< n_workers) identifies the thread
/// for per-thread scratch; the calling thread is worker 0. body is called once per chunk,
/// so it should loop over its range itself. After an exception no further chunk is started;
/// the first exception is rethrown once all threads are joined.
template <class Body>
void parallel_for(std::size_t n, std::size_t chunk, std::size_t n_workers, Body&& body) {
  if (n == 0) return;
  if (chunk == 0) chunk = 1;
  const std::size_t n_chunks = n / chunk + (n % chunk != 0 ? 1 : 0);
  n_workers = std::max<std::size_t>(1, std::min(n_workers, n_chunks));
  if (n_workers == 1) {  // no thread to start: run in order on the caller
    for (std::size_t c = 0; c < n_chunks; ++c) body(std::size_t{0}, c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  run_workers(n_workers, [&](std::size_t w) {
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      body(w, c * chunk, std::min(n, (c + 1) * chunk));
    }
  }, &stop);
}

/// Test hook: after `n` successful thread starts within one run_workers call, every further
/// start fails as if the system had refused it (std::system_error, EAGAIN). -1 (the default)
/// turns it off. Process-wide; for tests only.
void set_thread_start_limit_for_testing(int n) noexcept;

}  // namespace parallel
}  // namespace hepinfer
