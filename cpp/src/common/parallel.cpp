// The one thread pool (see parallel.hpp).
#include "common/parallel.hpp"

#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace hepinfer {
namespace parallel {

namespace {
std::atomic<int> g_start_limit{-1};
}  // namespace

void set_thread_start_limit_for_testing(int n) noexcept { g_start_limit.store(n); }

std::size_t resolve_threads(int n_threads) noexcept {
  if (n_threads > 0) return static_cast<std::size_t>(n_threads);
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<std::size_t>(hw);
}

std::size_t run_workers(std::size_t n_workers, const std::function<void(std::size_t)>& worker,
                        std::atomic<bool>* stop) {
  std::exception_ptr error;
  std::mutex error_mutex;
  auto guarded = [&](std::size_t w) noexcept {
    try {
      worker(w);
    } catch (...) {
      if (stop != nullptr) stop->store(true, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  if (n_workers > 1) {
    const int limit = g_start_limit.load();
    try {
      pool.reserve(n_workers - 1);
      for (std::size_t w = 1; w < n_workers; ++w) {
        if (limit >= 0 && pool.size() >= static_cast<std::size_t>(limit))
          throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                  "thread start refused by the test hook");
        pool.emplace_back(guarded, w);
      }
    } catch (...) {
      // std::system_error (no thread could be created: address space, process limit) or
      // std::bad_alloc: the threads that did start and this one do all the work.
    }
  }
  guarded(0);
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return pool.size() + 1;
}

}  // namespace parallel
}  // namespace hepinfer
