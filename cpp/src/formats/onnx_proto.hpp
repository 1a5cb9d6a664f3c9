#pragma once
// The parts of the ONNX protobuf schema (onnx.proto3) that hepinfer reads, decoded with a
// small wire-format reader. Unknown fields are skipped; truncated or malformed input throws
// ModelFormatError naming the message, field and byte offset.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hepinfer::nn::onnx {

// TensorProto.DataType values used here
enum DataType : std::int32_t {
  kUndefined = 0,
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
};
const char* data_type_name(std::int32_t t) noexcept;

struct Tensor {
  std::string name;
  std::int32_t data_type = kUndefined;
  std::vector<std::int64_t> dims;
  std::string raw_data;
  std::vector<float> float_data;
  std::vector<std::int32_t> int32_data;  // also bool, int8/16, uint8/16 (as int32)
  std::vector<std::int64_t> int64_data;
  std::vector<double> double_data;
  std::vector<std::uint64_t> uint64_data;
  bool external = false;  // data_location == EXTERNAL
  std::vector<std::pair<std::string, std::string>> external_data;
  bool has_segment = false;
};

enum AttributeType : std::int32_t {
  kAttrUndefined = 0,
  kAttrFloat = 1,
  kAttrInt = 2,
  kAttrString = 3,
  kAttrTensor = 4,
  kAttrGraph = 5,
  kAttrFloats = 6,
  kAttrInts = 7,
  kAttrStrings = 8,
  kAttrTensors = 9,
  kAttrGraphs = 10,
  kAttrSparseTensor = 11,
  kAttrSparseTensors = 12,
  kAttrTypeProto = 13,
  kAttrTypeProtos = 14,
};

struct Graph;

/// Sub-graphs (GRAPH attributes, the branches of If) nest at most this deep.
constexpr int kMaxGraphDepth = 8;

struct Attribute {
  std::string name;
  std::int32_t type = kAttrUndefined;
  float f = 0.0f;
  std::int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<std::int64_t> ints;
  std::vector<std::string> strings;
  std::string ref_attr_name;
  std::shared_ptr<Graph> g;  // a GRAPH attribute (field g), parsed
  int n_graphs = 0;          // GRAPHS lists: counted, not read (no op that hepinfer reads has them)
};

struct Node {
  std::vector<std::string> inputs, outputs;
  std::string name, op_type, domain;
  std::vector<Attribute> attributes;
};

struct Dim {
  std::int64_t value = -1;  // -1 when symbolic/unknown
  std::string param;
};

struct ValueInfo {
  std::string name;
  std::int32_t elem_type = kUndefined;
  bool is_tensor = false;
  bool has_shape = false;
  std::vector<Dim> dims;
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;
  std::vector<Tensor> initializers;
  std::vector<ValueInfo> inputs, outputs, value_info;
  int n_sparse_initializers = 0;
};

struct Model {
  std::int64_t ir_version = 0;
  std::vector<std::pair<std::string, std::int64_t>> opsets;
  std::string producer_name, producer_version;
  bool has_graph = false;
  Graph graph;
  int n_functions = 0;
};

/// Decodes a serialized ModelProto. `source` names the file in error messages.
Model parse_model(const unsigned char* data, std::size_t size, const std::string& source);

}  // namespace hepinfer::nn::onnx
