// CUDA backend of the NN executor (see cpp/src/nn/cuda_plan.hpp): a tiled shared-memory GEMM
// with the bias + activation epilogue fused, broadcasting elementwise ops (per-jet operands
// indexed by each particle row's jet), segment reductions over the jets' offsets (Deep Sets
// pooling without padding), softmax lines and strided copies (Concat). The per-element math is
// in nn_math.cuh, shared with the host reference backend that the CPU tests run.
//
// Why hand-written and not cuBLAS: the layers of HEP taggers are small (K, N <= 256), where a
// cuBLAS call plus a separate bias/activation kernel costs two launches per layer and a round
// trip of the activations through memory; one kernel with the epilogue fused does one, and the
// build needs nothing beyond the CUDA runtime (no cuBLAS in wheels or CI).
//
// Every call owns a stream (blocking, so it also orders after the legacy default stream) and
// takes its scratch from the device's stream-ordered pool (cudaMallocAsync), so one shared
// DeviceModel serves many threads without locks.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "common/cuda_util.cuh"
#include "hepinfer/errors.hpp"
#include "nn/cuda_plan.hpp"
#include "nn/nn_math.cuh"

namespace hepinfer::nn::gpu {
namespace {

using I64 = std::int64_t;

/// HEPINFER_CUDA_CHECK with a description of the step instead of the call's text.
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) hepinfer::cuda::throw_cuda_error(e, what, "nn_kernels.cu", 0);
}

// ---- kernels
constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each

__global__ void __launch_bounds__(kThreads)
    dense_kernel(const float* __restrict__ A, const float* __restrict__ W, const float* __restrict__ bias,
                 float* __restrict__ C, I64 M, I64 N, I64 K, I64 ldw, int act, float alpha, float beta) {
  __shared__ float As[kBK][kBM + 1];  // A tile, transposed
  __shared__ float Ws[kBK][kBN];
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  const I64 m0 = static_cast<I64>(blockIdx.y) * kBM, n0 = static_cast<I64>(blockIdx.x) * kBN;
  float acc[4][4] = {};
  for (I64 k0 = 0; k0 < K; k0 += kBK) {
    for (int l = static_cast<int>(threadIdx.x); l < kBM * kBK; l += kThreads) {
      const int mm = l / kBK, kk = l % kBK;
      const I64 gm = m0 + mm, gk = k0 + kk;
      As[kk][mm] = gm < M && gk < K ? A[gm * K + gk] : 0.0f;
    }
    for (int l = static_cast<int>(threadIdx.x); l < kBK * kBN; l += kThreads) {
      const int kk = l / kBN, nn = l % kBN;
      const I64 gk = k0 + kk, gn = n0 + nn;
      Ws[kk][nn] = gk < K && gn < N ? W[gk * ldw + gn] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const I64 m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < M && n < N) C[m * N + n] = dense_epilogue(acc[i][j], bias[n], act, alpha, beta);
    }
}

__global__ void elementwise_kernel(const Elementwise e) {
  for (I64 i = static_cast<I64>(blockIdx.x) * blockDim.x + threadIdx.x; i < e.numel;
       i += static_cast<I64>(gridDim.x) * blockDim.x)
    e.out[i] = ew_element(e, i);
}

__global__ void softmax_kernel(const float* x, float* y, I64 outer, I64 len, I64 inner, bool log) {
  const I64 t = static_cast<I64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= outer * inner) return;
  const I64 o = t / inner, i = t % inner;
  softmax_line(x + o * len * inner + i, y + o * len * inner + i, len, inner, log);
}

__global__ void reduce_kernel(const float* x, float* y, const I64* offsets, I64 segments, I64 len, I64 inner, int op) {
  const I64 t = static_cast<I64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= segments * inner) return;
  const I64 s = t / inner, i = t % inner;
  const I64 b = offsets ? offsets[s] : s * len, e = offsets ? offsets[s + 1] : (s + 1) * len;
  y[t] = reduce_line(op, x + i, b, e, inner);
}

__global__ void copy2d_kernel(const float* src, float* dst, I64 outer, I64 chunk, I64 src_stride, I64 dst_stride) {
  for (I64 t = static_cast<I64>(blockIdx.x) * blockDim.x + threadIdx.x; t < outer * chunk;
       t += static_cast<I64>(gridDim.x) * blockDim.x) {
    const I64 o = t / chunk, j = t % chunk;
    dst[o * dst_stride + j] = src[o * src_stride + j];
  }
}

unsigned blocks_for(I64 n, int threads) {
  const I64 b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 16 ? b : 65535 * 16);
}

// ---- backend
class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, std::uintptr_t wait_for) : device_(device), guard_(device) {
    stream_ = owned_.get();
    if (wait_for) {
      cudaEvent_t ev;
      check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
      check(cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(wait_for)), "cudaEventRecord on the caller's stream");
      check(cudaStreamWaitEvent(stream_, ev, 0), "cudaStreamWaitEvent");
      cudaEventDestroy(ev);
    }
  }
  ~CudaBackend() override {
    for (void* p : blocks_) cudaFreeAsync(p, stream_);
    cudaStreamSynchronize(stream_);
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  void* scratch(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMallocAsync(&p, bytes ? bytes : 8, stream_), "cudaMallocAsync (scratch)");
    blocks_.push_back(p);
    return p;
  }
  /// A device allocation that outlives the backend, freed on its own device when the last
  /// owner lets go.
  std::shared_ptr<void> owned_alloc(std::size_t bytes, const char* what) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes ? bytes : 8), what);
    const int dev = device_;
    return std::shared_ptr<void>(p, [dev](void* q) {
      int prev = 0;
      cudaGetDevice(&prev);
      cudaSetDevice(dev);
      cudaFree(q);
      cudaSetDevice(prev);
    });
  }
  std::shared_ptr<void> persistent(const void* host, std::size_t bytes) override {
    std::shared_ptr<void> owner = owned_alloc(bytes, "cudaMalloc (weights)");
    if (bytes) check(cudaMemcpy(owner.get(), host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (weights)");
    return owner;
  }
  std::shared_ptr<void> keep(const void* src, std::size_t bytes) override {
    std::shared_ptr<void> owner = owned_alloc(bytes, "cudaMalloc (outputs)");
    void* p = owner.get();
    if (bytes) check(cudaMemcpyAsync(p, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync (outputs)");
    return owner;
  }
  void to_backend(void* dst, const void* host, std::size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (inputs)");
  }
  void to_host(void* host, const void* src, std::size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (outputs)");
  }
  void dense(const float* A, I64 M, const DenseWeights& w, float* C) override {
    if (M <= 0 || w.N <= 0) return;
    const dim3 grid(static_cast<unsigned>((w.N + kBN - 1) / kBN), static_cast<unsigned>((M + kBM - 1) / kBM));
    if ((M + kBM - 1) / kBM > 65535) {  // grid.y limit: split the rows
      for (I64 m = 0; m < M; m += kBM * 65535) {
        const I64 rows = M - m < kBM * 65535 ? M - m : kBM * 65535;
        dense(A + m * w.K, rows, w, C + m * w.N);
      }
      return;
    }
    dense_kernel<<<grid, kThreads, 0, stream_>>>(A, w.w, w.bias, C, M, w.N, w.K, w.ldw, w.act, w.alpha, w.beta);
    check(cudaGetLastError(), "dense kernel launch");
  }
  void elementwise(const Elementwise& e) override {
    if (e.numel <= 0) return;
    elementwise_kernel<<<blocks_for(e.numel, 256), 256, 0, stream_>>>(e);
    check(cudaGetLastError(), "elementwise kernel launch");
  }
  void softmax(const float* x, float* y, I64 outer, I64 len, I64 inner, bool log) override {
    const I64 lines = outer * inner;
    if (lines <= 0 || len <= 0) return;
    softmax_kernel<<<static_cast<unsigned>((lines + 127) / 128), 128, 0, stream_>>>(x, y, outer, len, inner, log);
    check(cudaGetLastError(), "softmax kernel launch");
  }
  void reduce(const float* x, float* y, const I64* offsets, I64 segments, I64 len, I64 inner, int op) override {
    const I64 n = segments * inner;
    if (n <= 0) return;
    reduce_kernel<<<static_cast<unsigned>((n + 127) / 128), 128, 0, stream_>>>(x, y, offsets, segments, len, inner, op);
    check(cudaGetLastError(), "reduce kernel launch");
  }
  void copy2d(const float* src, float* dst, I64 outer, I64 chunk, I64 src_stride, I64 dst_stride) override {
    if (outer * chunk <= 0) return;
    copy2d_kernel<<<blocks_for(outer * chunk, 256), 256, 0, stream_>>>(src, dst, outer, chunk, src_stride, dst_stride);
    check(cudaGetLastError(), "copy kernel launch");
  }
  void finish() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (NN evaluation)"); }

 private:
  int device_ = 0;
  hepinfer::cuda::DeviceGuard guard_;  // the thread's previous device comes back at the end of the call
  hepinfer::cuda::StreamGuard owned_;  // blocking: ordered after the legacy default stream too
  cudaStream_t stream_ = nullptr;
  std::vector<void*> blocks_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, std::uintptr_t wait_for) {
  return std::make_unique<CudaBackend>(device, wait_for);
}

}  // namespace hepinfer::nn::gpu
