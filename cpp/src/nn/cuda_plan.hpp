#pragma once
// The CUDA execution plan of an NN model (internal). A DevicePlan is made once from a loaded
// Graph (Model::to): it checks that every node is of a form the device executor implements
// (DeviceError naming the node and op otherwise) and uploads the dense weights and constant
// operands. The executor (execute / execute_jagged) walks the graph on any Backend: the CUDA
// backend (cpp/cuda/nn_kernels.cu) or the host reference backend here, which runs the same
// per-element functions (cpp/cuda/nn_math.cuh) with plain loops so that the plan logic is
// tested without a GPU (tests/cpp/test_cuda_nn_logic.cpp).
//
// Tensors on the device are float32 (bool and int64 values as 0/1 and integral floats) and of
// two kinds: per-jet ("Jet": a dense tensor [B, ...]) and per-particle ("Particle": logically
// [B, L_b, ...] with a different length per jet, stored as [sum_b L_b, ...] rows, jets one after
// another). Particle tensors exist only in jagged evaluation; ops that are local to a particle
// row keep them per-particle, ReduceSum/Mean/Max/Min over the particle axis turn them into
// per-jet tensors by segment reductions over the offsets, and per-jet tensors broadcast over
// a jet's particles by the row -> jet index.
#include "hepinfer/nn_device_reference.hpp"  // host_reference_predict(_jagged): make_plan + execute on the host backend
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/nn_math.cuh"
#include "nn/graph.hpp"

namespace hepinfer::nn {
/// The graph of a Model (friend of Model).
struct GraphAccess {
  static const std::shared_ptr<const Graph>& of(const Model& m) { return m.graph_; }
};
}  // namespace hepinfer::nn

namespace hepinfer::nn::gpu {

/// Weights of a fused Dense node on a backend: W [K, N] row-major with row stride ldw.
struct DenseWeights {
  const float* w = nullptr;
  const float* bias = nullptr;  // N values
  std::int64_t K = 0, N = 0, ldw = 0;
  int act = 0;
  float alpha = 0.0f, beta = 0.0f;
};

/// What a backend evaluates. Pointers are in the backend's memory (device or host).
class Backend {
 public:
  virtual ~Backend() = default;
  /// Scratch memory for this call (freed when the backend is destroyed).
  virtual void* scratch(std::size_t bytes) = 0;
  /// Memory that outlives the backend (weights), freed when the last owner goes.
  virtual std::shared_ptr<void> persistent(const void* host, std::size_t bytes) = 0;
  /// A copy of backend memory that outlives the backend (outputs left on the device).
  virtual std::shared_ptr<void> keep(const void* src, std::size_t bytes) = 0;
  virtual void to_backend(void* dst, const void* host, std::size_t bytes) = 0;
  virtual void to_host(void* host, const void* src, std::size_t bytes) = 0;
  /// C[M, N] = act(A[M, K] W + bias).
  virtual void dense(const float* A, std::int64_t M, const DenseWeights& w, float* C) = 0;
  virtual void elementwise(const Elementwise& e) = 0;
  /// Softmax of every line of `len` values (stride `inner`) of x [outer, len, inner].
  virtual void softmax(const float* x, float* y, std::int64_t outer, std::int64_t len, std::int64_t inner,
                       bool log) = 0;
  /// y[s, i] = reduce over rows r of segment s of x[r, i] (i < inner). Segment s holds rows
  /// offsets[s] .. offsets[s+1]-1, or s*len .. (s+1)*len-1 when offsets is null.
  virtual void reduce(const float* x, float* y, const std::int64_t* offsets, std::int64_t segments, std::int64_t len,
                      std::int64_t inner, int op) = 0;
  /// dst[o * dst_stride + j] = src[o * src_stride + j] for o < outer, j < chunk.
  virtual void copy2d(const float* src, float* dst, std::int64_t outer, std::int64_t chunk, std::int64_t src_stride,
                      std::int64_t dst_stride) = 0;
  /// Waits until everything issued has finished.
  virtual void finish() = 0;
};

/// Plain loops over the nn_math.cuh functions: the reference for the CUDA kernels.
std::unique_ptr<Backend> make_host_backend();

/// A graph prepared for a backend: weights and constant operands uploaded once.
struct DevicePlan {
  std::shared_ptr<const Graph> graph;
  std::vector<char> host_value;        // per value id: computed on the host (shapes, constants)
  std::vector<DenseWeights> dense;     // per node index (Dense nodes)
  std::vector<const float*> constant;  // per value id: uploaded constant used by a device node
  std::vector<std::pair<const float*, const float*>> batchnorm;  // per node index: scale, shift
  std::vector<std::shared_ptr<void>> storage;                    // owners of the uploaded memory
};

/// Makes the plan (checks every node's op; uploads through `backend`). Throws DeviceError naming
/// the first node whose op the device executor does not implement.
std::shared_ptr<const DevicePlan> make_plan(std::shared_ptr<const Graph> graph, Backend& backend);

/// Checks the plan on the declared input shapes (symbolic batch = 2) without touching memory, so
/// that forms the executor does not implement are reported when the plan is made (DeviceError).
void check_plan(const DevicePlan& plan);

/// Dense evaluation: every input a per-jet (batch) tensor; inputs' data are host pointers
/// (inputs_on_backend false) or backend pointers. Outputs come back to the host.
void execute(const DevicePlan& plan, Backend& backend, const std::vector<InputTensor>& inputs, bool inputs_on_backend,
             std::vector<OutputTensor>& outputs);

/// Outputs left in backend memory (float32 only): the backend-memory pointer of each output,
/// valid until the backend is destroyed, and its shape.
struct BackendOutput {
  std::string name;
  std::vector<std::int64_t> shape;
  float* data = nullptr;
};
void execute_on_backend(const DevicePlan& plan, Backend& backend, const std::vector<InputTensor>& inputs,
                        bool inputs_on_backend, std::vector<BackendOutput>& outputs);

/// Jagged evaluation of a set model (Deep Sets / PFN) with particles as Particle tensors.
void execute_jagged(const DevicePlan& plan, Backend& backend, const JaggedLayout& layout, const JaggedJets& jets,
                    const JaggedOptions& options, std::vector<OutputTensor>& outputs);

#ifdef HEPINFER_WITH_CUDA
/// The CUDA backend (cpp/cuda/nn_kernels.cu) on device `device`: a stream of its own that first
/// waits for `wait_for` (a cudaStream_t, 0 for none); scratch from the device's stream-ordered pool.
std::unique_ptr<Backend> make_cuda_backend(int device, std::uintptr_t wait_for);
#endif

}  // namespace hepinfer::nn::gpu
