#pragma once
// Small CUDA helpers shared by every kernel file under cpp/cuda (forest, DisCo, NN):
//   HEPINFER_CUDA_CHECK(call)  throws hepinfer::DeviceError naming the call, file and line;
//   DeviceBuffer<T>            RAII device memory (cudaMalloc/cudaFree, or stream-ordered);
//   DeviceGuard                selects a device for a scope and restores the previous one;
//   StreamGuard                owns a stream for one call (or borrows a caller's stream).
// Only .cu files include this (it needs the CUDA runtime); the CPU-side API lives in cpp/include.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "hepinfer/errors.hpp"

namespace hepinfer::cuda {

/// Throw DeviceError for a failed CUDA runtime call; `what` is the call's source text.
inline void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so later calls on this thread are not poisoned
  throw DeviceError(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) + ": " +
                    cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, what, file, line);
}

}  // namespace hepinfer::cuda

/// Check a CUDA runtime call: throws hepinfer::DeviceError("CUDA error in <call> at file:line: ...").
#define HEPINFER_CUDA_CHECK(call) ::hepinfer::cuda::check((call), #call, __FILE__, __LINE__)
/// Check the launch of the kernel just issued (configuration errors show up here).
#define HEPINFER_CUDA_CHECK_LAUNCH(name) \
  ::hepinfer::cuda::check(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

namespace hepinfer::cuda {

/// Selects `device` for the lifetime of the guard and restores the previously current device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    HEPINFER_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) HEPINFER_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

/// A stream owned by one call (created blocking, so it also orders after the legacy default
/// stream); destroyed at scope exit. Pass `borrowed` to wrap a caller's stream without owning it.
class StreamGuard {
 public:
  StreamGuard() { HEPINFER_CUDA_CHECK(cudaStreamCreate(&stream_)); }
  static StreamGuard borrowed(cudaStream_t s) { return StreamGuard(s, false); }
  ~StreamGuard() {
    if (owned_ && stream_) cudaStreamDestroy(stream_);
  }
  StreamGuard(StreamGuard&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)), owned_(o.owned_) {}
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
  StreamGuard& operator=(StreamGuard&&) = delete;
  cudaStream_t get() const noexcept { return stream_; }
  void synchronize() const { HEPINFER_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  StreamGuard(cudaStream_t s, bool owned) : stream_(s), owned_(owned) {}
  cudaStream_t stream_ = nullptr;
  bool owned_ = true;
};

/// RAII device array of `n` T. With a stream, memory comes from the device's stream-ordered pool
/// (cudaMallocAsync/cudaFreeAsync on that stream), which is cheap for per-call scratch.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n, cudaStream_t stream = nullptr, bool stream_ordered = false)
      : n_(n), stream_(stream), async_(stream_ordered) {
    if (n == 0) return;
    void* p = nullptr;
    if (async_) HEPINFER_CUDA_CHECK(cudaMallocAsync(&p, n * sizeof(T), stream_));
    else HEPINFER_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    ptr_ = static_cast<T*>(p);
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), n_(std::exchange(o.n_, 0)), stream_(o.stream_), async_(o.async_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      n_ = std::exchange(o.n_, 0);
      stream_ = o.stream_;
      async_ = o.async_;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return n_; }
  std::size_t bytes() const noexcept { return n_ * sizeof(T); }

  /// Copy n host elements in (synchronously when no stream was given).
  void upload(const T* host, std::size_t n) {
    if (n == 0) return;
    if (stream_) HEPINFER_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream_));
    else HEPINFER_CUDA_CHECK(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  /// Copy n elements out to the host (waits for the copy).
  void download(T* host, std::size_t n) const {
    if (n == 0) return;
    if (stream_) {
      HEPINFER_CUDA_CHECK(cudaMemcpyAsync(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost, stream_));
      HEPINFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    } else {
      HEPINFER_CUDA_CHECK(cudaMemcpy(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost));
    }
  }

 private:
  void release() noexcept {
    if (!ptr_) return;
    if (async_) cudaFreeAsync(ptr_, stream_);
    else cudaFree(ptr_);
    ptr_ = nullptr;
  }
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
  cudaStream_t stream_ = nullptr;
  bool async_ = false;
};

/// Blocks of `threads` covering n items (at least one block so empty launches are skipped by callers).
inline unsigned blocks_for(long long n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace hepinfer::cuda
