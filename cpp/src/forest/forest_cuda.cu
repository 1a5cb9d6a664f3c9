// CUDA evaluation of a Forest (hepinfer::ForestGPU, see hepinfer/forest_gpu.hpp).
//
// One thread per row walks every tree of the model in order (so its margins are summed in the
// CPU engine's order and come out bit-identical); a block's rows are first staged in shared memory
// (coalesced loads of the row-major input, converted to the model's comparison type, rows padded
// to an odd stride against bank conflicts). All threads of a warp walk the same tree at the same
// time, so the node reads near the root are broadcasts and deeper ones fall in the same few cache
// lines. The per-row logic (decisions, leaf sums, output transform) is in
// cpp/src/forest_gpu_layout.hpp, shared with the host-side test.
#include <cuda_runtime.h>

#include <string>
#include <type_traits>
#include <vector>

#include "common/cuda_util.cuh"
#include "forest/forest_gpu_layout.hpp"
#include "hepinfer/forest_gpu.hpp"

namespace hepinfer {

namespace {

constexpr int kLocalGroups = 8;  // margins of up to this many outputs stay in registers
constexpr std::size_t kSharedBytes = 48 * 1024;

template <typename T>
__global__ void convert_kernel(const double* in, T* out, long long n, int float32_inputs) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = gpu::stage_value<T>(in[i], float32_inputs != 0);
}

// rows: n_rows x nf row-major (type In). kStaged: through shared memory; otherwise In == T and
// the rows are read where they are.
template <typename T, typename In, bool kStaged>
__global__ void forest_kernel(gpu::View f, const In* __restrict__ rows, long long n_rows, int float32_inputs,
                              int probability, double* __restrict__ margins_scratch, double* __restrict__ out) {
  extern __shared__ unsigned char smem_raw[];
  const int nf = f.n_features;
  const long long r0 = static_cast<long long>(blockIdx.x) * blockDim.x;
  const long long r = r0 + threadIdx.x;
  const T* row;
  if constexpr (kStaged) {
    T* s = reinterpret_cast<T*>(smem_raw);
    const int stride = nf + ((nf & 1) == 0 ? 1 : 0);
    const long long nr = n_rows - r0 < blockDim.x ? n_rows - r0 : blockDim.x;
    const long long count = nr * nf;
    const In* src = rows + r0 * nf;
    for (long long k = threadIdx.x; k < count; k += blockDim.x)
      s[(k / nf) * stride + k % nf] = gpu::stage_value<T>(src[k], float32_inputs != 0);
    __syncthreads();
    row = s + static_cast<long long>(threadIdx.x) * stride;
  } else {
    row = reinterpret_cast<const T*>(rows) + r * nf;
  }
  if (r >= n_rows) return;
  const int ng = f.n_groups;
  double local[kLocalGroups];
  double* m = ng <= kLocalGroups ? local : margins_scratch + r * ng;
  gpu::row_margins(f, row, 1, m);
  const int no = gpu::n_outputs(f, probability != 0);
  double* o = out + r * no;
  if (probability) {
    gpu::row_transform(f, m, o);
  } else {
    for (int g = 0; g < ng; ++g) o[g] = m[g];
  }
}

template <typename T>
const T* data_or_null(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

}  // namespace

struct ForestGPU::Impl {
  Device device;
  gpu::Layout host;  // kept for n_outputs and the sizes
  cuda::DeviceBuffer<gpu::Node> nodes;
  cuda::DeviceBuffer<double> thr_d, value, linear, base_margin;
  cuda::DeviceBuffer<std::uint32_t> roots, categories;
  cuda::DeviceBuffer<std::int32_t> group;
  cuda::DeviceBuffer<gpu::Special> specials;
  gpu::View view{};

  template <typename In>
  void run_device(const In* rows, std::size_t n_rows, double* out, Output output, cudaStream_t stream) const;
};

namespace {
template <typename T>
cuda::DeviceBuffer<T> upload(const std::vector<T>& v) {
  cuda::DeviceBuffer<T> b(v.size());
  b.upload(v.data(), v.size());
  return b;
}
}  // namespace

ForestGPU::ForestGPU(const Forest& forest, Device device) {
  if (device.kind != Device::Kind::CUDA)
    throw DeviceError("ForestGPU needs a CUDA device, got \"cpu\" (use Forest::predict on the CPU)");
  const int n_dev = cuda_device_count();
  if (device.index < 0 || device.index >= n_dev)
    throw DeviceError("ForestGPU on cuda:" + std::to_string(device.index) + " requested but " + std::to_string(n_dev) +
                      " CUDA device(s) are visible");
  auto impl = std::make_shared<Impl>();
  impl->device = device;
  impl->host = gpu::build_layout(forest.ir());
  cuda::DeviceGuard guard(device.index);
  const gpu::Layout& L = impl->host;
  impl->nodes = upload(L.nodes);
  impl->thr_d = upload(L.thr_d);
  impl->value = upload(L.value);
  impl->linear = upload(L.linear);
  impl->base_margin = upload(L.base_margin);
  impl->roots = upload(L.roots);
  impl->categories = upload(L.categories);
  impl->group = upload(L.group);
  impl->specials = upload(L.specials);
  gpu::View v = gpu::host_view(L);
  v.nodes = impl->nodes.get();
  v.thr_d = impl->thr_d.get();
  v.value = impl->value.get();
  v.roots = impl->roots.get();
  v.group = impl->group.get();
  v.specials = impl->specials.get();
  v.categories = impl->categories.get();
  v.linear = impl->linear.get();
  v.base_margin = impl->base_margin.get();
  impl->view = v;
  impl_ = std::move(impl);
}

Device ForestGPU::device() const noexcept { return impl_->device; }
std::int32_t ForestGPU::n_features() const noexcept { return impl_->host.n_features; }
std::int32_t ForestGPU::n_outputs(Output output) const noexcept {
  return gpu::n_outputs(gpu::host_view(impl_->host), output == Output::Probability);
}

template <typename In>
void ForestGPU::Impl::run_device(const In* rows, std::size_t n_rows, double* out, Output output,
                                 cudaStream_t stream) const {
  if (n_rows == 0) return;
  const int nf = host.n_features;
  const bool probability = output == Output::Probability;
  const long long n = static_cast<long long>(n_rows);
  const bool as_double = !host.float32_inputs && std::is_same<In, double>::value;
  const std::size_t item = as_double ? sizeof(double) : sizeof(float);
  const std::size_t stride = static_cast<std::size_t>(nf) + ((nf & 1) == 0 ? 1 : 0);
  int threads = 128;
  while (threads > 32 && static_cast<std::size_t>(threads) * stride * item > kSharedBytes) threads /= 2;
  const bool staged = static_cast<std::size_t>(threads) * stride * item <= kSharedBytes;
  if (!staged) threads = 128;
  const std::size_t smem = staged ? static_cast<std::size_t>(threads) * stride * item : 0;
  cuda::DeviceBuffer<double> scratch(
      host.n_groups > kLocalGroups ? n_rows * static_cast<std::size_t>(host.n_groups) : 0, stream, true);
  const unsigned grid = cuda::blocks_for(n, threads);
  const int f32 = host.float32_inputs ? 1 : 0;
  const int prob = probability ? 1 : 0;
  if (as_double) {
    const double* r = reinterpret_cast<const double*>(rows);
    if (staged)
      forest_kernel<double, double, true><<<grid, threads, smem, stream>>>(view, r, n, f32, prob, scratch.get(), out);
    else forest_kernel<double, double, false><<<grid, threads, 0, stream>>>(view, r, n, f32, prob, scratch.get(), out);
  } else if (staged) {
    forest_kernel<float, In, true><<<grid, threads, smem, stream>>>(view, rows, n, f32, prob, scratch.get(), out);
  } else if constexpr (std::is_same<In, float>::value) {
    forest_kernel<float, float, false><<<grid, threads, 0, stream>>>(view, rows, n, f32, prob, scratch.get(), out);
  } else {
    // wide double rows of a float-comparing model: convert once, then read in place
    cuda::DeviceBuffer<float> conv(n_rows * static_cast<std::size_t>(nf), stream, true);
    const long long count = n * nf;
    convert_kernel<float><<<cuda::blocks_for(count, 256), 256, 0, stream>>>(rows, conv.get(), count, f32);
    HEPINFER_CUDA_CHECK_LAUNCH("convert_kernel");
    forest_kernel<float, float, false>
        <<<grid, threads, 0, stream>>>(view, conv.get(), n, f32, prob, scratch.get(), out);
    HEPINFER_CUDA_CHECK_LAUNCH("forest_kernel");
    HEPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  HEPINFER_CUDA_CHECK_LAUNCH("forest_kernel");
  HEPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
}

namespace {
template <typename In>
void predict_device_impl(const ForestGPU::Impl& impl, const In* rows, std::size_t n_rows, double* out, Output output,
                         void* stream) {
  if (n_rows == 0) return;
  if (rows == nullptr || out == nullptr) throw InputError("ForestGPU::predict_device: null rows or out pointer");
  cuda::DeviceGuard guard(impl.device.index);
  if (stream != nullptr) {
    impl.run_device(rows, n_rows, out, output, static_cast<cudaStream_t>(stream));
    return;
  }
  cuda::StreamGuard s;
  impl.run_device(rows, n_rows, out, output, s.get());
}

template <typename In>
void predict_host_impl(const ForestGPU::Impl& impl, const In* data, const RowLayout& layout, double* out,
                       Output output) {
  const std::size_t n = layout.n_rows;
  if (n == 0) return;
  const std::size_t nf = static_cast<std::size_t>(impl.host.n_features);
  // pack (any strides) into one contiguous block
  std::vector<In> packed(n * nf);
  for (std::size_t r = 0; r < n; ++r) {
    const In* src = data + static_cast<std::ptrdiff_t>(r) * layout.row_stride;
    for (std::size_t j = 0; j < nf; ++j) packed[r * nf + j] = src[static_cast<std::ptrdiff_t>(j) * layout.col_stride];
  }
  const std::size_t no =
      static_cast<std::size_t>(gpu::n_outputs(gpu::host_view(impl.host), output == Output::Probability));
  cuda::DeviceGuard guard(impl.device.index);
  cuda::StreamGuard s;
  cuda::DeviceBuffer<In> d_rows(packed.size(), s.get(), true);
  cuda::DeviceBuffer<double> d_out(n * no, s.get(), true);
  d_rows.upload(packed.data(), packed.size());
  impl.run_device(d_rows.get(), n, d_out.get(), output, s.get());
  d_out.download(out, n * no);
}
}  // namespace

void ForestGPU::predict(const float* data, const RowLayout& layout, double* out, Output output) const {
  predict_host_impl(*impl_, data, layout, out, output);
}
void ForestGPU::predict(const double* data, const RowLayout& layout, double* out, Output output) const {
  predict_host_impl(*impl_, data, layout, out, output);
}
void ForestGPU::predict_device(const float* rows, std::size_t n_rows, double* out, Output output, void* stream) const {
  predict_device_impl(*impl_, rows, n_rows, out, output, stream);
}
void ForestGPU::predict_device(const double* rows, std::size_t n_rows, double* out, Output output, void* stream) const {
  predict_device_impl(*impl_, rows, n_rows, out, output, stream);
}

}  // namespace hepinfer
