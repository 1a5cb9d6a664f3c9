#pragma once
// The operator table: how an ONNX node becomes a Node, one handler per op type.
//
// Each op family lives in one file (`nn/ops_<family>.cpp`) that holds both its import handlers
// (attribute parsing and checks) and its kernels, and lists them in an `add_<family>_ops`
// function; op_table.cpp calls every family's function once. Adding an op is adding a handler
// and a kernel to one family file and one line to its table.
//
// Handlers see the node through ImportContext, not the ONNX protobuf structures: the format
// reader (formats/) implements it, the engine does not include any format header.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "nn/graph.hpp"

namespace hepinfer::nn {

/// One ONNX node as an import handler sees it: its inputs (and which are load-time constants),
/// its outputs and its attributes. Attributes not read by the handler are reported as
/// unsupported when it returns.
class ImportContext {
 public:
  virtual ~ImportContext() = default;
  virtual const std::string& op_type() const = 0;
  /// The model's default-domain opset.
  virtual std::int64_t opset() const = 0;
  /// Number of inputs as written in the node (absent optional inputs count as written).
  virtual std::size_t n_inputs() const = 0;
  /// Input k is given (not beyond the list and not an empty name).
  virtual bool has_input(std::size_t k) const = 0;
  virtual std::size_t n_outputs() const = 0;
  virtual bool has_output(std::size_t k) const = 0;
  /// Input k when it is a constant known at load (an initializer or a Constant node), else null.
  virtual const Value* const_input(std::size_t k) const = 0;
  /// Appends a load-time constant as a new input of the node (e.g. an attribute that a later
  /// opset turned into an input). Returns its value id.
  virtual int add_constant(const std::string& suffix, std::shared_ptr<Value> v) = 0;
  /// A constant 1-D int64 tensor / float scalar owned by the graph (for add_constant).
  virtual std::shared_ptr<Value> ints_value(const std::vector<std::int64_t>& xs) = 0;
  virtual std::shared_ptr<Value> scalar_float(float x) = 0;

  // attributes (each read marks the attribute as supported)
  virtual bool has(const char* name) const = 0;
  virtual std::int64_t i(const char* name, std::int64_t def) = 0;
  virtual float f(const char* name, float def) = 0;
  virtual std::string s(const char* name, const std::string& def) = 0;
  virtual std::vector<std::int64_t> ints(const char* name) = 0;
  virtual std::vector<float> floats(const char* name) = 0;
  /// A list-of-strings attribute (empty when absent). The default refuses: the ONNX reader
  /// must override it for ops that read such lists (LSTM/GRU/RNN activations).
  virtual std::vector<std::string> strings(const char* name) {
    fail(std::string("reading the string-list attribute '") + name + "' is not supported by this reader");
    return {};
  }
  /// Marks an attribute as read without using it.
  virtual void ignore(const char* name) = 0;
  /// A tensor attribute as a load-time constant owned by the graph, or null when absent.
  virtual std::shared_ptr<Value> tensor(const char* name) = 0;

  /// The element type of an ONNX type code (an attribute such as Cast's `to`); false when
  /// hepinfer does not compute in that type.
  virtual bool type_from_code(std::int64_t code, ElementType& out) const = 0;
  /// The name of an ONNX type code, for messages ("float16").
  virtual std::string type_code_name(std::int64_t code) const = 0;

  /// Throws ModelFormatError naming the model and the node.
  [[noreturn]] virtual void fail(const std::string& msg) const = 0;

  /// Checks that between lo and hi inputs are given (trailing optional inputs may be absent).
  void need_inputs(std::size_t lo, std::size_t hi) const {
    std::size_t count = 0;
    for (std::size_t k = 0; k < n_inputs(); ++k)
      if (has_input(k)) count = k + 1;
    if (count < lo || n_inputs() > hi)
      fail("has " + std::to_string(n_inputs()) + " inputs; expected " + std::to_string(lo) +
           (hi != lo ? " to " + std::to_string(hi) : ""));
  }
  /// Checks that there are between 1 and hi outputs.
  void need_outputs(std::size_t hi) const {
    if (n_outputs() == 0 || n_outputs() > hi) fail("has " + std::to_string(n_outputs()) + " outputs");
  }
};

/// Fills `n` (op, attributes; n.run for ops without an Op of their own) from the ONNX node, or
/// calls ctx.fail. n.in/n.out/n.name/n.op_type are set by the caller.
using ImportFn = void (*)(ImportContext& ctx, Node& n);

/// Import handlers by ONNX op type.
using OpTable = std::unordered_map<std::string, ImportFn>;

/// The table of every supported op (built once, thread-safe).
const OpTable& op_table();

// ---- one per family file; each adds its handlers to the table
void add_conv_ops(OpTable& t);         // ops_conv.cpp
void add_elementwise_ops(OpTable& t);  // ops_elementwise.cpp
void add_shape_ops(OpTable& t);        // ops_shape.cpp
void add_linear_ops(OpTable& t);       // ops_linear.cpp
void add_reduce_ops(OpTable& t);       // ops_reduce.cpp
void add_rnn_ops(OpTable& t);          // ops_rnn.cpp
void add_pool_ops(OpTable& t);         // ops_pool.cpp
void add_resize_ops(OpTable& t);       // ops_resize.cpp
void add_index_ops(OpTable& t);        // ops_index.cpp
void add_misc_ops(OpTable& t);         // ops_misc.cpp

}  // namespace hepinfer::nn
