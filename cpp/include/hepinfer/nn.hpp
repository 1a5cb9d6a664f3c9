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
/// \endcode

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"

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
class Graph;  // internal
}

/// Options for Model::load.
struct ModelOptions {
  /// Folder that external-data file names (TensorProto.external_data "location") are relative
  /// to; empty = the model file's folder (or the working directory for in-memory models).
  std::string external_data_dir;
  /// Fuse Gemm/MatMul + bias + activation and pre-pack weights (off only for testing).
  bool optimize = true;
};

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

 private:
  explicit Model(std::shared_ptr<const nn::Graph> g) : graph_(std::move(g)) {}
  std::shared_ptr<const nn::Graph> graph_;
};

}  // namespace hepinfer
