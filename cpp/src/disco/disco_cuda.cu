// CUDA distance correlation and its gradient (hepinfer::disco::distance_correlation_device).
//
// The CPU engine's O(n^2) two-pass sweep (disco.cpp, vector-valued path) as tiled kernels: one
// thread per event i keeps its row sums in registers while the block walks the events j in tiles
// staged in shared memory; 1-D x and y get a specialised kernel. Sums over events are two-stage
// tree reductions with a fixed grid, so results are reproducible run to run. Inputs are checked on
// the device (first bad index found with atomicMin) and only scalars cross to the host; gradients
// are written straight into the caller's device buffers. The per-pair arithmetic is in
// cpp/src/disco_gpu_logic.hpp, shared with the host-side test.
//
// Why O(n^2) and not the CPU's O(n log n) sort-and-sweep: the dominance sweep that gives
// sum_ij w_i w_j a_ij b_ij in O(n log n) is a sequence of data-dependent stable splits; it has no
// device port here yet. The tiled kernel does ~20 flops per pair and is the faster choice for
// small n; for very large n (see benchmarks/gpu.py) the CPU path can win, and callers choose by
// device (there is no automatic fallback, so a device request never silently runs elsewhere).
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/cuda_util.cuh"
#include "disco/disco_gpu_logic.hpp"
#include "hepinfer/disco.hpp"
#include "hepinfer/errors.hpp"

namespace hepinfer::disco {
namespace {

namespace g = hepinfer::disco::gpu;
constexpr int kThreads = 256;
constexpr int kReduceBlocks = 256;
constexpr int kMaxTerms = 8;
constexpr std::size_t kSharedBytes = 48 * 1024;
constexpr unsigned long long kNone = ~0ull;

// ---- input checks: first non-finite x / y element, first non-finite or negative weight
__global__ void check_kernel(const double* x, long long nx, const double* y, long long ny, const double* w, long long n,
                             unsigned long long* first) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < nx || i < ny || i < n;
       i += stride) {
    if (i < nx && !isfinite(x[i])) atomicMin(first + 0, static_cast<unsigned long long>(i));
    if (i < ny && !isfinite(y[i])) atomicMin(first + 1, static_cast<unsigned long long>(i));
    if (w != nullptr && i < n && (!isfinite(w[i]) || w[i] < 0))
      atomicMin(first + 2, static_cast<unsigned long long>(i));
  }
}

// ---- sums over events of w_i * p_k[i] * q_k[i] (null p/q/w read as 1), k < n_terms
struct Terms {
  const double* p[kMaxTerms];
  const double* q[kMaxTerms];
  int n_terms;
};

__device__ void block_sum(double (*sh)[kThreads], double* acc, int n_terms) {
  for (int k = 0; k < n_terms; ++k) sh[k][threadIdx.x] = acc[k];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s)
      for (int k = 0; k < n_terms; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + s];
    __syncthreads();
  }
}

__global__ void reduce_partial(Terms t, const double* w, long long n, double* partial) {
  __shared__ double sh[kMaxTerms][kThreads];
  double acc[kMaxTerms] = {};
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kThreads) {
    const double wi = w != nullptr ? w[i] : 1.0;
    for (int k = 0; k < t.n_terms; ++k) {
      double v = wi;
      if (t.p[k] != nullptr) v *= t.p[k][i];
      if (t.q[k] != nullptr) v *= t.q[k][i];
      acc[k] += v;
    }
  }
  block_sum(sh, acc, t.n_terms);
  if (threadIdx.x == 0)
    for (int k = 0; k < t.n_terms; ++k) partial[blockIdx.x * kMaxTerms + k] = sh[k][0];
}

__global__ void reduce_final(const double* partial, int n_blocks, int n_terms, double* out) {
  __shared__ double sh[kMaxTerms][kThreads];
  double acc[kMaxTerms] = {};
  for (int b = static_cast<int>(threadIdx.x); b < n_blocks; b += kThreads)
    for (int k = 0; k < n_terms; ++k) acc[k] += partial[b * kMaxTerms + k];
  block_sum(sh, acc, n_terms);
  if (threadIdx.x == 0)
    for (int k = 0; k < n_terms; ++k) out[k] = sh[k][0];
}

// ---- the pair sweeps. DX/DY > 0: compile-time dimensions (the 1-D kernel); 0: runtime dx, dy.
// Shared tile per column event: x (dx), y (dy), w, and for pass 2 R^a/rdiv, R^b/rdiv.
template <int DX, int DY, bool kPass2>
__global__ void __launch_bounds__(kThreads)
    sweep_kernel(const double* __restrict__ x, int dx_rt, const double* __restrict__ y, int dy_rt,
                 const double* __restrict__ w, long long n, int tile, const double* __restrict__ Ra,
                 const double* __restrict__ Rb, double rdiv, double ca, double cb, double* __restrict__ out_a,
                 double* __restrict__ out_b, double* __restrict__ out_c, double* __restrict__ gc,
                 double* __restrict__ gxx) {
  extern __shared__ double sm[];
  const int dx = DX > 0 ? DX : dx_rt, dy = DY > 0 ? DY : dy_rt;
  const int width = dx + dy + (kPass2 ? 3 : 1);
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = i < n;
  double xi_reg[DX > 0 ? DX : 1], yi_reg[DY > 0 ? DY : 1];
  const double* xi = active ? x + i * dx : x;
  const double* yi = active ? y + i * dy : y;
  if (DX > 0) {
    for (int t = 0; t < DX; ++t) xi_reg[t] = xi[t];
    xi = xi_reg;
  }
  if (DY > 0) {
    for (int t = 0; t < DY; ++t) yi_reg[t] = yi[t];
    yi = yi_reg;
  }
  double ra = 0, rb = 0;
  g::Pass2 acc;
  double gc_reg[DX > 0 ? DX : 1] = {}, gxx_reg[DX > 0 ? DX : 1] = {};
  double* gci = nullptr;
  double* gxxi = nullptr;
  double rai = 0, rbi = 0;
  if (kPass2 && active) {
    rai = Ra[i] / rdiv;
    rbi = Rb[i] / rdiv;
    if (gc != nullptr) {
      if (DX > 0) {
        gci = gc_reg;
        gxxi = gxx_reg;
      } else {
        gci = gc + i * dx;
        gxxi = gxx + i * dx;
        for (int t = 0; t < dx; ++t) gci[t] = gxxi[t] = 0;
      }
    }
  }
  for (long long j0 = 0; j0 < n; j0 += tile) {
    const int m = static_cast<int>(n - j0 < tile ? n - j0 : tile);
    __syncthreads();
    for (int k = static_cast<int>(threadIdx.x); k < m; k += blockDim.x) {
      const long long j = j0 + k;
      double* s = sm + static_cast<long long>(k) * width;
      for (int t = 0; t < dx; ++t) s[t] = x[j * dx + t];
      for (int t = 0; t < dy; ++t) s[dx + t] = y[j * dy + t];
      s[dx + dy] = w != nullptr ? w[j] : 1.0;
      if (kPass2) {
        s[dx + dy + 1] = Ra[j] / rdiv;
        s[dx + dy + 2] = Rb[j] / rdiv;
      }
    }
    __syncthreads();
    if (!active) continue;
    for (int k = 0; k < m; ++k) {
      const double* s = sm + static_cast<long long>(k) * width;
      if (kPass2)
        g::pass2_pair(xi, s, dx, yi, s + dx, dy, s[dx + dy], rai, s[dx + dy + 1], rbi, s[dx + dy + 2], ca, cb, acc, gci,
                      gxxi);
      else g::pass1_pair(xi, s, dx, yi, s + dx, dy, s[dx + dy], ra, rb);
    }
  }
  if (!active) return;
  if (kPass2) {
    out_a[i] = acc.sxy;
    out_b[i] = acc.sxx;
    out_c[i] = acc.syy;
    if (DX > 0 && gc != nullptr)
      for (int t = 0; t < DX; ++t) {
        gc[i * DX + t] = gc_reg[t];
        gxx[i * DX + t] = gxx_reg[t];
      }
  } else {
    out_a[i] = ra;
    out_b[i] = rb;
  }
}

__global__ void grad_kernel(const double* gc, const double* gxx, const double* w, long long n, int dx, g::Centring c,
                            g::Value r, double* grad_dcor2, double* grad_dcov) {
  const long long k = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n * dx) return;
  const double wi = w != nullptr ? w[k / dx] : 1.0;
  g::grad_element(gc[k], gxx[k], wi, c, r, grad_dcov ? grad_dcov + k : nullptr, grad_dcor2 ? grad_dcor2 + k : nullptr);
}

std::string fmt(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return std::to_string(v);
}

double read_one(const double* p, cudaStream_t s) {
  double v = 0;
  HEPINFER_CUDA_CHECK(cudaMemcpyAsync(&v, p, sizeof(double), cudaMemcpyDeviceToHost, s));
  HEPINFER_CUDA_CHECK(cudaStreamSynchronize(s));
  return v;
}

/// Sums of `terms` over n events into host values.
std::vector<double> reduce(const Terms& terms, const double* w, long long n, double* partial, double* result,
                           cudaStream_t s) {
  const int blocks = static_cast<int>(std::min<long long>(kReduceBlocks, (n + kThreads - 1) / kThreads));
  reduce_partial<<<blocks, kThreads, 0, s>>>(terms, w, n, partial);
  HEPINFER_CUDA_CHECK_LAUNCH("reduce_partial");
  reduce_final<<<1, kThreads, 0, s>>>(partial, blocks, terms.n_terms, result);
  HEPINFER_CUDA_CHECK_LAUNCH("reduce_final");
  std::vector<double> out(static_cast<std::size_t>(terms.n_terms));
  HEPINFER_CUDA_CHECK(cudaMemcpyAsync(out.data(), result, out.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
  HEPINFER_CUDA_CHECK(cudaStreamSynchronize(s));
  return out;
}

template <bool kPass2>
void launch_sweep(int dx, int dy, const double* x, const double* y, const double* w, long long n, const double* Ra,
                  const double* Rb, double rdiv, double ca, double cb, double* oa, double* ob, double* oc, double* gc,
                  double* gxx, cudaStream_t s) {
  const int width = dx + dy + (kPass2 ? 3 : 1);
  long long tile = static_cast<long long>(kSharedBytes / (sizeof(double) * static_cast<std::size_t>(width)));
  tile = std::min<long long>(tile, kThreads);
  if (tile < 1)
    throw DeviceError("distance correlation on the GPU: x and y have too many columns (" + std::to_string(dx) + " + " +
                      std::to_string(dy) + ") for a shared-memory tile");
  const std::size_t smem = static_cast<std::size_t>(tile) * static_cast<std::size_t>(width) * sizeof(double);
  const unsigned grid = cuda::blocks_for(n, kThreads);
  const int t = static_cast<int>(tile);
  if (dx == 1 && dy == 1)
    sweep_kernel<1, 1, kPass2>
        <<<grid, kThreads, smem, s>>>(x, dx, y, dy, w, n, t, Ra, Rb, rdiv, ca, cb, oa, ob, oc, gc, gxx);
  else
    sweep_kernel<0, 0, kPass2>
        <<<grid, kThreads, smem, s>>>(x, dx, y, dy, w, n, t, Ra, Rb, rdiv, ca, cb, oa, ob, oc, gc, gxx);
  HEPINFER_CUDA_CHECK_LAUNCH("sweep_kernel");
}

Result run(const double* x, std::size_t dx_, const double* y, std::size_t dy_, const double* w, std::size_t n_,
           const Options& o, double* grad_dcor2, double* grad_dcov, cudaStream_t s) {
  if (dx_ == 0) throw InputError("x must have at least one column");
  if (dy_ == 0) throw InputError("y must have at least one column");
  if (o.unbiased) {
    if (n_ < 4)
      throw InputError("the unbiased distance correlation needs at least 4 events, got " + std::to_string(n_));
    if (w != nullptr) throw InputError("the unbiased (U-centred) distance correlation does not support weights");
  } else if (n_ < 2) {
    throw InputError("the distance correlation needs at least 2 events, got " + std::to_string(n_));
  }
  if (n_ >= static_cast<std::size_t>(std::numeric_limits<std::uint32_t>::max()))
    throw InputError("too many events for the distance correlation: " + std::to_string(n_));
  if (x == nullptr || y == nullptr) throw InputError("x and y must not be null pointers");
  const long long n = static_cast<long long>(n_);
  const int dx = static_cast<int>(dx_), dy = static_cast<int>(dy_);

  // checks on the device
  cuda::DeviceBuffer<unsigned long long> first(3, s, true);
  const unsigned long long none[3] = {kNone, kNone, kNone};
  first.upload(none, 3);
  const long long longest = std::max(n * dx, n * dy);
  check_kernel<<<static_cast<unsigned>(std::min<long long>(1024, (longest + kThreads - 1) / kThreads)), kThreads, 0,
                 s>>>(x, n * dx, y, n * dy, w, n, first.get());
  HEPINFER_CUDA_CHECK_LAUNCH("check_kernel");
  unsigned long long bad[3];
  first.download(bad, 3);
  if (w != nullptr && bad[2] != kNone) {
    const double v = read_one(w + bad[2], s);
    throw InputError("weights[" + std::to_string(bad[2]) + "] is " + (std::isfinite(v) ? "negative" : "not finite") +
                     " (" + fmt(v) + ")");
  }
  const char* names[2] = {"x", "y"};
  const double* arrays[2] = {x, y};
  const int dims[2] = {dx, dy};
  for (int a = 0; a < 2; ++a) {
    if (bad[a] == kNone) continue;
    std::string where = std::to_string(bad[a] / static_cast<unsigned long long>(dims[a]));
    if (dims[a] > 1) where += ", " + std::to_string(bad[a] % static_cast<unsigned long long>(dims[a]));
    throw InputError(std::string(names[a]) + "[" + where + "] is not finite (" + fmt(read_one(arrays[a] + bad[a], s)) +
                     ")");
  }

  cuda::DeviceBuffer<double> partial(static_cast<std::size_t>(kReduceBlocks) * kMaxTerms, s, true);
  cuda::DeviceBuffer<double> result(kMaxTerms, s, true);
  Terms wsum{};
  wsum.n_terms = 1;
  const double W = w != nullptr ? reduce(wsum, w, n, partial.get(), result.get(), s)[0] : static_cast<double>(n);
  if (!(W > 0)) throw InputError("the weights sum to zero");
  if (!std::isfinite(W)) throw InputError("the weights sum to infinity");
  const g::Centring cen = g::centring(o.unbiased, W, static_cast<double>(n));

  // pass 1: row sums
  cuda::DeviceBuffer<double> Ra(n_, s, true), Rb(n_, s, true);
  launch_sweep<false>(dx, dy, x, y, w, n, nullptr, nullptr, 1.0, 0.0, 0.0, Ra.get(), Rb.get(), nullptr, nullptr,
                      nullptr, s);
  Terms t1{};
  t1.n_terms = 2;
  t1.p[0] = Ra.get();
  t1.p[1] = Rb.get();
  const std::vector<double> T = reduce(t1, w, n, partial.get(), result.get(), s);
  const double ca = T[0] / cen.tdiv, cb = T[1] / cen.tdiv;

  // pass 2: per-row S sums and the raw gradient sums
  const bool want_grad = grad_dcor2 != nullptr || grad_dcov != nullptr;
  cuda::DeviceBuffer<double> Sxy(n_, s, true), Sxx(n_, s, true), Syy(n_, s, true);
  cuda::DeviceBuffer<double> gc(want_grad ? n_ * dx_ : 0, s, true), gxx(want_grad ? n_ * dx_ : 0, s, true);
  launch_sweep<true>(dx, dy, x, y, w, n, Ra.get(), Rb.get(), cen.rdiv, ca, cb, Sxy.get(), Sxx.get(), Syy.get(),
                     want_grad ? gc.get() : nullptr, want_grad ? gxx.get() : nullptr, s);
  Terms t2{};
  t2.n_terms = 6;
  t2.p[0] = Ra.get(), t2.q[0] = Rb.get();
  t2.p[1] = Ra.get(), t2.q[1] = Ra.get();
  t2.p[2] = Rb.get(), t2.q[2] = Rb.get();
  t2.p[3] = Sxy.get();
  t2.p[4] = Sxx.get();
  t2.p[5] = Syy.get();
  const std::vector<double> S = reduce(t2, w, n, partial.get(), result.get(), s);
  g::Totals tot;
  tot.Ta = T[0];
  tot.Tb = T[1];
  tot.cross_ab = S[0];
  tot.cross_aa = S[1];
  tot.cross_bb = S[2];
  tot.Sxy = S[3];
  tot.Sxx = S[4];
  tot.Syy = S[5];
  const g::Value v = g::assemble(tot, cen);
  if (want_grad) {
    grad_kernel<<<cuda::blocks_for(n * dx, kThreads), kThreads, 0, s>>>(gc.get(), gxx.get(), w, n, dx, cen, v,
                                                                        grad_dcor2, grad_dcov);
    HEPINFER_CUDA_CHECK_LAUNCH("grad_kernel");
  }
  HEPINFER_CUDA_CHECK(cudaStreamSynchronize(s));
  return Result{v.dcov_xy, v.dcov_xx, v.dcov_yy, v.dcor2};
}

}  // namespace

Result distance_correlation_device(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                                   std::size_t n, Device device, const Options& options, double* grad_dcor2,
                                   double* grad_dcov, void* stream) {
  if (device.kind != Device::Kind::CUDA)
    throw DeviceError("distance_correlation_device needs a CUDA device (use distance_correlation_1d/_nd on the CPU)");
  const int n_dev = cuda_device_count();
  if (device.index < 0 || device.index >= n_dev)
    throw DeviceError("distance correlation on cuda:" + std::to_string(device.index) + " requested but " +
                      std::to_string(n_dev) + " CUDA device(s) are visible");
  cuda::DeviceGuard guard(device.index);
  if (stream != nullptr)
    return run(x, dx, y, dy, w, n, options, grad_dcor2, grad_dcov, static_cast<cudaStream_t>(stream));
  cuda::StreamGuard s;
  return run(x, dx, y, dy, w, n, options, grad_dcor2, grad_dcov, s.get());
}

namespace cuda_detail {
Result from_host(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w, std::size_t n,
                 int device, const Options& options, double* grad_dcor2, double* grad_dcov) {
  const int n_dev = cuda_device_count();
  if (device < 0 || device >= n_dev)
    throw DeviceError("distance correlation on cuda:" + std::to_string(device) + " requested but " +
                      std::to_string(n_dev) + " CUDA device(s) are visible");
  if (x == nullptr || y == nullptr) throw InputError("x and y must not be null pointers");
  cuda::DeviceGuard guard(device);
  cuda::StreamGuard s;
  cuda::DeviceBuffer<double> dx_buf(n * dx, s.get(), true), dy_buf(n * dy, s.get(), true),
      dw_buf(w ? n : 0, s.get(), true), g1(grad_dcor2 ? n * dx : 0, s.get(), true),
      g2(grad_dcov ? n * dx : 0, s.get(), true);
  dx_buf.upload(x, n * dx);
  dy_buf.upload(y, n * dy);
  if (w) dw_buf.upload(w, n);
  const Result r = run(dx_buf.get(), dx, dy_buf.get(), dy, w ? dw_buf.get() : nullptr, n, options,
                       grad_dcor2 ? g1.get() : nullptr, grad_dcov ? g2.get() : nullptr, s.get());
  if (grad_dcor2) g1.download(grad_dcor2, n * dx);
  if (grad_dcov) g2.download(grad_dcov, n * dx);
  return r;
}
}  // namespace cuda_detail

}  // namespace hepinfer::disco
