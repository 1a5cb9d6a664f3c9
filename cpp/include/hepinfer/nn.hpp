#pragma once
/// \file nn.hpp
/// Neural-network inference from ONNX files: MLPs, Deep Sets / energy-flow networks,
/// EdgeConv (ParticleNet-like) graph networks, autoencoders.
///
/// The core reads `.onnx` files itself (a small protobuf wire-format reader, no protobuf
/// library), checks every node against the implemented operator set at load time
/// (hepinfer::ModelFormatError names the node and its op otherwise), folds constant
/// sub-graphs, pre-packs dense weights and fuses Gemm/MatMul + bias + activation.
/// A Model is immutable after load; all compute methods are const and thread-safe.
/// Each thread evaluates with its own scratch memory (taken from a small pool inside the
/// model), so repeated calls with the same shapes allocate nothing after the first.
///
/// \code
///   const auto model = hepinfer::Model::load("tagger.onnx");
///   std::vector<float> out(n_rows * model.output_size_per_row());
///   model.predict(rows, n_rows, out.data());            // one float input, one float output
///   model.predict_one(row, out.data());                 // one event
///
///   // a set/graph model on jets of variable length (offsets + columns, as awkward/uproot hold them)
///   hepinfer::JaggedJets jets;
///   jets.n_jets = n_jets;
///   jets.offsets = offsets;                             // n_jets + 1 int64 entries
///   jets.particles = {{"features", {{"pt", pt, hepinfer::ValueType::Float32, 1, n_particles},
///                                   {"eta", eta, hepinfer::ValueType::Float32, 1, n_particles}}}};
///   std::vector<hepinfer::OutputTensor> scores;
///   model.predict_jagged(jets, scores);                 // one row per jet, no padded work
/// \endcode

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/device.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/jagged.hpp"

namespace hepinfer {

/// Element types of a model's inputs and outputs.
enum class ElementType : std::uint8_t { Float32, Int64, Bool };

/// Name of an element type as numpy spells it ("float32", "int64", "bool").
const char* element_type_name(ElementType t) noexcept;

/// A graph input or output as declared in the ONNX file.
struct TensorInfo {
  std::string name;
  ElementType type = ElementType::Float32;
  /// Declared dimensions; -1 where the dimension is symbolic or unknown.
  std::vector<std::int64_t> shape;
  /// Name of each symbolic dimension ("batch", "n_particles"), empty for fixed ones.
  std::vector<std::string> dim_names;
  /// False when the file declares no shape at all for this tensor.
  bool has_shape = true;
};

/// A read-only input: element type, shape and row-major contiguous data (not owned).
struct InputTensor {
  std::string name;  ///< graph input name; empty = by position
  ElementType type = ElementType::Float32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

/// An output: element type, shape and row-major data (owned). Reused buffers keep their capacity.
struct OutputTensor {
  std::string name;
  ElementType type = ElementType::Float32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;
  std::size_t size() const noexcept;
  const float* floats() const noexcept { return reinterpret_cast<const float*>(bytes.data()); }
  const std::int64_t* int64s() const noexcept { return reinterpret_cast<const std::int64_t*>(bytes.data()); }
};

namespace nn {
class Graph;         // internal
struct GraphAccess;  // internal (the CUDA plan)
namespace gpu {
struct DevicePlan;
}

/// The CPU kernels the engine picked at start-up for this process (read-only; for benchmarks
/// and bug reports). kernels: "avx512" (16-wide FMA tiles, chosen where the FMA units are 512
/// bits wide: AMD Zen 5 and later, Intel server cores since Skylake-SP), "avx2" (8-wide tiles:
/// Zen 2-4, Intel client cores, any other AVX2 CPU) or "portable". HEPINFER_NN_KERNELS=
/// avx512|avx2|portable overrides the choice (clamped to what the CPU can run; avx2 on an AVX-512
/// CPU is what a Zen 4 runs: 8-wide tiles, AVX-512 elsewhere); HEPINFER_DISABLE_AVX512=1 (no
/// AVX-512 at all) and HEPINFER_DISABLE_AVX2=1 (portable) still work.
struct CpuKernels {
  std::string kernels;  // avx512 | avx2 | portable
  std::string reason;   // why (the CPU rule or the environment variable that decided)
  std::string vendor;   // cpuid vendor string (GenuineIntel, AuthenticAMD, ...)
  std::string cpu;      // cpuid brand string
  int family = 0;       // cpuid display family (as /proc/cpuinfo's "cpu family")
  int model = 0;        // cpuid display model (as /proc/cpuinfo's "model")
};
const CpuKernels& cpu_kernels() noexcept;
}  // namespace nn

class DeviceModel;

/// Options for Model::load.
struct ModelOptions {
  /// Folder that external-data file names (TensorProto.external_data "location") are relative
  /// to; empty = the model file's folder (or the working directory for in-memory models).
  std::string external_data_dir;
  /// Fuse Gemm/MatMul + bias + activation and pre-pack weights (off only for testing).
  bool optimize = true;
};

/// One per-particle input of Model::predict_jagged: its feature columns, jagged by the
/// jets' offsets. The input's elements per particle (every dimension except batch and
/// particle, in C order: for channels-first [batch, C, particles] the C channels, for
/// [batch, particles, F] the F features) come one column each, in that order.
struct JaggedInput {
  std::string name;                    ///< graph input name
  std::vector<JaggedColumn> features;  ///< one column per element of a particle
};

/// Jets with a variable number of particles, as awkward/uproot hold them: an offsets array
/// of n_jets + 1 entries (particles of jet j are content elements offsets[j] .. offsets[j+1]-1;
/// the offsets need not start at 0) shared by every per-particle input's columns.
struct JaggedJets {
  std::size_t n_jets = 0;
  const void* offsets = nullptr;
  IndexType offsets_type = IndexType::Int64;
  /// Per-particle inputs (every graph input with a particle axis except the mask).
  std::vector<JaggedInput> particles;
  /// Per-jet inputs (graph inputs without a particle axis): shape [n_jets, ...], by name.
  std::vector<InputTensor> jets;
};

/// How Model::predict_jagged reads the graph.
struct JaggedOptions {
  /// Name of the mask input (1 for a real particle, 0 for padding); it is built from the
  /// offsets, never given. Empty: the per-particle input whose name contains "mask"
  /// (case-insensitive), if there is exactly one; none when detect_mask is false.
  std::string mask;
  bool detect_mask = true;
  /// Position of the particle axis in every per-particle input (1 for [batch, particles, F],
  /// 2 for channels-first [batch, C, particles]); 0: each input's one symbolic dimension
  /// after the batch dimension.
  int particle_axis = 0;
  /// Jets are evaluated at length max(n, min_length, 1), slots past n padded with pad_value
  /// and mask 0, exactly as the padded model sees them. -1: the largest k of the graph's
  /// TopK nodes (kNN needs at least k points), which must then be constants.
  std::int64_t min_length = -1;
  float pad_value = 0.0f;
  /// Jets per evaluation are bounded so that jets * length <= chunk_particles (memory bound).
  std::size_t chunk_particles = 2048;
  /// Threads over groups of jets; <= 0: all cores. Results do not depend on it.
  int n_threads = 1;
};

/// What predict_jagged makes of each graph input (see Model::jagged_layout).
struct JaggedInputInfo {
  enum class Role : std::uint8_t { Jet, Particle, Mask };
  std::string name;
  Role role = Role::Jet;
  int particle_axis = -1;      ///< -1 for per-jet inputs
  std::size_t n_features = 0;  ///< elements per particle (Particle, Mask) or per jet (Jet)
};
struct JaggedLayout {
  std::vector<JaggedInputInfo> inputs;  ///< in graph input order
  std::int64_t min_length = 1;          ///< shortest length a jet is evaluated at
};

/// Where the time of one evaluation goes: one entry per node of the loaded (fused) graph.
struct NodeTime {
  std::string name;     ///< the node's name (a fused node keeps the name of its first ONNX node)
  std::string op_type;  ///< the ONNX op type, or the fused chain ("Conv+Relu")
  double seconds = 0;   ///< median over the repeats of the node's wall time in one evaluation
  bool ran = false;     ///< false for a node that an If's branch skipped in every repeat
};

/// A graph input or output as the file declares it (any element type, for description only).
struct OnnxValueSummary {
  std::string name;
  std::string type;                    ///< "float32", "int64", "float16", ... ("?" when not a tensor)
  std::vector<std::int64_t> shape;     ///< -1 where symbolic or unknown
  std::vector<std::string> dim_names;  ///< name of each symbolic dimension, else empty
  bool has_shape = false;
};
/// One node of the top-level graph and whether hepinfer's engine implements its operator.
struct OnnxNodeSummary {
  std::string name, op_type, domain;
  bool supported = false;
};
/// What an ONNX file holds, read without building the graph (what `hepinfer info` prints).
struct OnnxSummary {
  std::string producer;
  std::int64_t ir_version = 0;
  std::int64_t opset = -1;                        ///< default-domain opset, -1 if none is imported
  std::vector<OnnxValueSummary> inputs, outputs;  ///< inputs exclude initializers listed as inputs
  std::vector<OnnxNodeSummary> nodes;
  std::uint64_t n_parameters = 0;  ///< elements in all initializers (external data included)
  std::size_t n_initializers = 0;
};
/// Reads an ONNX file's declarations and node list; throws ModelFormatError for a malformed
/// or truncated file. Does not check that the model loads (Model::load does).
OnnxSummary describe_onnx(const std::string& path);
OnnxSummary describe_onnx_from_memory(const std::string& content, const std::string& source_name = "<memory>");
/// Whether the engine implements operator `op_type` of the default ONNX domain.
bool supports_operator(const std::string& op_type);
/// The operators the engine implements (default domain), sorted.
std::vector<std::string> supported_operators();

/// An ONNX neural network, immutable after load; share it between threads.
class Model {
 public:
  /// Loads an `.onnx` file. Throws ModelFormatError (naming the field, offset, node or op)
  /// for malformed/truncated files, unsupported ops or attributes.
  static Model load(const std::string& path, const ModelOptions& options = {});
  /// Loads a model from the bytes of an `.onnx` file; `source_name` appears in error messages.
  static Model load_from_memory(const std::string& content, const ModelOptions& options = {},
                                const std::string& source_name = "<memory>");

  const std::vector<TensorInfo>& inputs() const noexcept;
  const std::vector<TensorInfo>& outputs() const noexcept;
  /// Producer recorded in the file ("pytorch 2.13.0"), and the default-domain opset.
  std::string producer() const;
  std::int64_t opset() const noexcept;
  /// Number of nodes after constant folding and fusion.
  std::size_t n_nodes() const noexcept;

  /// Evaluates the graph. `inputs` are matched by name (or by position where the name is
  /// empty); every graph input must be given once. `outputs` receives every graph output in
  /// declaration order (its buffers are reused). Batch-separable models (every input and
  /// output has the same symbolic first dimension) are split over `n_threads` threads by
  /// rows; the result does not depend on `n_threads`. Throws InputError for wrong names,
  /// element types or shapes (naming the input, or the node where a shape does not fit).
  void predict(const std::vector<InputTensor>& inputs, std::vector<OutputTensor>& outputs, int n_threads = 1) const;

  /// Shortcut for models with one float input [batch, ...] and one float output [batch, ...]:
  /// `x` holds n_rows rows of input_size_per_row() floats, `out` n_rows * output_size_per_row().
  void predict(const float* x, std::size_t n_rows, float* out, int n_threads = 1) const;
  /// One event (batch 1) of a one-input, one-output float model; allocates nothing after warm-up.
  void predict_one(const float* x, float* out) const;
  /// Elements per row of the single input / output (their non-batch dimensions must be fixed).
  std::size_t input_size_per_row() const;
  std::size_t output_size_per_row() const;

  /// True when predict may split the batch over threads (see predict).
  bool batch_separable() const noexcept;

  /// Evaluates a set or graph model (Deep Sets/PFN, ParticleNet-like EdgeConv) on jets of
  /// variable length without padding them to a common size: jets are grouped by their
  /// number of particles n and each group runs through the unmodified graph as a batch of
  /// length n with the mask input all ones. Jets shorter than options.min_length (by
  /// default the k of the graph's kNN TopK) are padded to it exactly as a padded input
  /// would be. The result equals the padded-and-masked model's (up to float rounding) for
  /// models whose particles interact only through masked pooling (sum/mean over the particle
  /// axis with the mask) and kNN in which padded points are pushed far away from real ones;
  /// see the Python docs for the forms that qualify. `outputs` receives every graph output
  /// with one row per jet, in jet order. Throws InputError for bad offsets or columns (naming
  /// the input and jet), inputs that do not match the model, models without a symbolic
  /// particle dimension, and outputs whose shape depends on the number of particles.
  void predict_jagged(const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                      const JaggedOptions& options = {}) const;
  /// How predict_jagged would treat each input (per jet, per particle, mask) under `options`;
  /// throws InputError where the model does not qualify (no symbolic particle axis, ...).
  JaggedLayout jagged_layout(const JaggedOptions& options = {}) const;

  /// Evaluates `inputs` `repeats` times (after one warm-up) on the calling thread, the whole
  /// batch in one piece, and returns each node's median time in graph order. predict runs a
  /// batch of 256 rows or more of a batch-separable model in row blocks instead, so that its
  /// intermediates stay in cache: the per-node sum can then exceed predict's time. Inputs are
  /// checked as in predict; repeats must be at least 1.
  std::vector<NodeTime> profile(const std::vector<InputTensor>& inputs, int repeats = 10) const;

  /// The model prepared for a CUDA device (weights uploaded once; see DeviceModel). Throws
  /// DeviceError when hepinfer was built without CUDA ("... built without CUDA"), when the
  /// device does not exist, for a CPU `device`, and for a node whose op or form the CUDA
  /// executor does not implement yet (the message names the node and op).
  DeviceModel to(const Device& device) const;

 private:
  friend struct nn::GraphAccess;
  explicit Model(std::shared_ptr<const nn::Graph> g) : graph_(std::move(g)) {}
  std::shared_ptr<const nn::Graph> graph_;
};

/// An output left in device memory by DeviceModel::predict_on_device: float32, row-major,
/// freed when the last copy of `data` goes.
struct DeviceTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::shared_ptr<float> data;  ///< device pointer
  int device = 0;
};

/// A Model on a CUDA device (Model::to). Immutable and thread-safe: every call runs on its own
/// stream with its own scratch memory (stream-ordered allocations from the device's pool).
///
/// Forms evaluated on the device: chains of fused dense layers (Gemm/MatMul + bias +
/// activation) with elementwise ops, Softmax/LogSoftmax, Concat, Reshape/Flatten/(Un)Squeeze,
/// reductions and BatchNormalization (MLPs, autoencoders, padded set models); and, through
/// predict_jagged, Deep Sets / PFN / EFN models: the per-particle network over all particles of
/// the batch at once, the masked sum/mean pooling as segment reductions over the jets' offsets,
/// the per-jet network on the pooled rows. Not yet: EdgeConv / kNN (TopK, Gather), Conv,
/// LayerNormalization, Transpose, Slice and other index ops (Model::to reports the node).
class DeviceModel {
 public:
  const Device& device() const noexcept { return device_; }
  /// The host model it was made from.
  const Model& model() const noexcept { return model_; }

  /// As Model::predict; inputs in host memory are copied to the device, outputs come back
  /// to host memory.
  void predict(const std::vector<InputTensor>& inputs, std::vector<OutputTensor>& outputs) const;
  /// Inputs already in this device's memory (InputTensor::data are device pointers to
  /// contiguous float32 data); outputs stay on the device. `stream` (a cudaStream_t, 0 for
  /// none) is the stream the inputs were produced on: the evaluation waits for it; the call
  /// returns when the outputs are ready.
  void predict_on_device(const std::vector<InputTensor>& inputs, std::vector<DeviceTensor>& outputs,
                         std::uintptr_t stream = 0) const;
  /// As Model::predict_jagged for set models (Deep Sets / PFN) whose per-particle inputs are
  /// [batch, particles, features] (particle axis 1): columns are gathered on the host and
  /// copied in once; every jet is evaluated at its own length (at least options.min_length)
  /// with no padding. options.n_threads and chunk_particles are not used.
  void predict_jagged(const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                      const JaggedOptions& options = {}) const;

 private:
  friend class Model;
  DeviceModel(Model model, Device device, std::shared_ptr<const nn::gpu::DevicePlan> plan)
      : model_(std::move(model)), device_(device), plan_(std::move(plan)) {}
  Model model_;
  Device device_;
  std::shared_ptr<const nn::gpu::DevicePlan> plan_;
};

}  // namespace hepinfer
