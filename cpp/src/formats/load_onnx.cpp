// The ONNX reader: an .onnx file (formats/onnx_proto) becomes the NN engine's graph IR (nn/graph.hpp).
// Tensors (inline or external data files, checked to stay inside the model's folder), graph
// inputs and outputs, Constant nodes and the import driver are here; each other node goes to
// its op's import handler in the engine's op table (nn/op_import.hpp), which sees it through
// OnnxImportContext. The graph then goes through the engine's passes (nn/passes.hpp) and a
// dry run (nn/executor.hpp), as Forest::load hands its IR to the forest engine.
#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/file.hpp"
#include "formats/onnx_proto.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/nn.hpp"
#include "nn/executor.hpp"
#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/passes.hpp"

namespace hepinfer {

namespace nn {
namespace {

using I64 = std::int64_t;

std::string node_label(const onnx::Node& n) { return "node '" + n.name + "' (" + n.op_type + ")"; }

[[noreturn]] void fail_node(const std::string& source, const onnx::Node& n, const std::string& msg) {
  throw ModelFormatError(source + ": " + node_label(n) + ": " + msg);
}

bool elem_type_of(std::int32_t t, ElementType& out) {
  switch (t) {
    case onnx::kFloat: out = ElementType::Float32; return true;
    case onnx::kInt64:
    case onnx::kInt32: out = ElementType::Int64; return true;
    case onnx::kBool: out = ElementType::Bool; return true;
    default: return false;
  }
}

std::string read_file(const std::string& path, const char* what) {
  return hepinfer::read_file(path, "cannot open " + std::string(what) + " '" + path + "'");
}

/// The size of the external data file `path` after checking that it may be read: its real path
/// (symlinks resolved) must be a regular file inside the real model folder `data_dir`, as
/// onnxruntime requires. A symlink pointing out of the folder (to any file of the machine) or
/// to a device (/dev/zero reads forever) is refused; a symlink from inside the folder to a
/// regular file inside it is allowed, as onnxruntime 1.32 allows it (the onnx 1.23 checker
/// refuses every symlink; the target of such a link is as much the model's as the link). `fail` throws.
struct ExternalFile {
  std::filesystem::path real;
  std::uint64_t size = 0;
};
template <class Fail>
ExternalFile external_file(const std::string& path, const std::string& data_dir, const Fail& fail) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::canonical(data_dir.empty() ? fs::path(".") : fs::path(data_dir), ec);
  if (ec) fail("cannot resolve the external data folder '" + data_dir + "': " + ec.message());
  const fs::path real = fs::canonical(path, ec);
  if (ec) fail("cannot open external data file '" + path + "': " + ec.message());
  // inside: `dir` is a prefix of `real`, component by component
  auto d = dir.begin(), r = real.begin();
  for (; d != dir.end() && r != real.end() && *d == *r; ++d, ++r) {
  }
  if (d != dir.end() || r == real.end())
    fail("external data file '" + path + "' resolves to '" + real.string() +
         "', which is outside the model's folder '" + dir.string() + "'");
  if (!fs::is_regular_file(real, ec))
    fail("external data file '" + path + "' resolves to '" + real.string() + "', which is not a regular file");
  const std::uintmax_t size = fs::file_size(real, ec);
  if (ec) fail("cannot read the size of external data file '" + path + "': " + ec.message());
  return {real, static_cast<std::uint64_t>(size)};
}

/// Converts an ONNX tensor into a constant Value with its own storage.
std::shared_ptr<Value> tensor_value(const onnx::Tensor& t, const std::string& where, const std::string& data_dir,
                                    std::vector<std::shared_ptr<std::vector<I64>>>& storage) {
  auto fail = [&](const std::string& msg) -> void {
    throw ModelFormatError(where + ": tensor '" + t.name + "': " + msg);
  };
  ElementType et;
  if (!elem_type_of(t.data_type, et))
    fail(std::string("element type ") + onnx::data_type_name(t.data_type) + " (" + std::to_string(t.data_type) +
         ") is not supported (float32, int64, int32 and bool are)");
  if (t.has_segment) fail("segmented tensors are not supported");
  Shape s;
  for (I64 d : t.dims) {
    if (d < 0) fail("negative dimension " + std::to_string(d));
    if (s.rank >= kMaxRank) fail("rank above 8");
    s.push(d);
  }
  double total = 1;
  for (int i = 0; i < s.rank; ++i) total *= static_cast<double>(s[i]);
  if (total > 4e9) fail("more than 4e9 elements");
  const std::size_t n = s.numel();

  // Find the data and check that it holds exactly n values BEFORE allocating: a file may
  // declare dims of 10^6 x 10^6 with no bytes behind them.
  std::string external;
  const std::string* raw = &t.raw_data;
  if (t.external) {
    std::string location;
    std::size_t offset = 0, length = std::string::npos;
    for (const auto& [k, val] : t.external_data) {
      try {
        if (k == "location") location = val;
        else if (k == "offset") offset = static_cast<std::size_t>(std::stoull(val));
        else if (k == "length") length = static_cast<std::size_t>(std::stoull(val));
      } catch (const std::exception&) {
        fail("external_data " + k + " = '" + val + "' is not a number");
      }
    }
    if (location.empty()) fail("external data without a location");
    if (location.find("..") != std::string::npos || location[0] == '/')
      fail("external data location '" + location + "' must be a relative path inside the model's folder");
    const std::string path = data_dir.empty() ? location : data_dir + "/" + location;
    // Checked before anything is read: the expected byte count (a length that cannot be this
    // tensor's is refused whatever the file holds), then the file itself (see external_file).
    const std::size_t expected = n * (t.data_type == onnx::kInt32  ? 4
                                      : t.data_type == onnx::kBool ? 1
                                                                   : element_size(et));
    try {
      checked_numel(et, s);  // the per-tensor load limit, before reading gigabytes from a file
    } catch (const OpError& e) {
      fail(e.what());
    }
    const ExternalFile file = external_file(path, data_dir, fail);
    const std::uint64_t file_size = file.size;
    if (offset > file_size)
      fail("external data offset " + std::to_string(offset) + " is past the end of '" + path + "' (" +
           std::to_string(file_size) + " bytes)");
    if (length == std::string::npos) length = static_cast<std::size_t>(file_size - offset);
    if (length > file_size - offset)
      fail("external data length " + std::to_string(length) + " at offset " + std::to_string(offset) +
           " runs past the end of '" + path + "' (" + std::to_string(file_size) + " bytes)");
    if (length != expected)
      fail("raw data has " + std::to_string(length) + " bytes, expected " + std::to_string(expected) + " for shape " +
           s.str() + " (external data in '" + path + "')");
    // only offset .. offset + length is read (one small tensor in a large file costs its own size)
    std::ifstream f(file.real, std::ios::binary);  // the checked file, not the name again
    if (!f) fail("cannot open external data file '" + path + "'");
    external.resize(length);
    f.seekg(static_cast<std::streamoff>(offset));
    if (length && !f.read(&external[0], static_cast<std::streamsize>(length)))
      fail("cannot read " + std::to_string(length) + " bytes at offset " + std::to_string(offset) + " of '" + path +
           "'");
    raw = &external;
  }
  const std::size_t es_onnx = t.data_type == onnx::kInt32 ? 4 : t.data_type == onnx::kBool ? 1 : element_size(et);
  const bool from_raw = !raw->empty() || t.external;
  if (from_raw) {
    if (raw->size() != n * es_onnx)
      fail("raw data has " + std::to_string(raw->size()) + " bytes, expected " + std::to_string(n * es_onnx) +
           " for shape " + s.str());
  } else {
    std::size_t have = 0;
    switch (t.data_type) {
      case onnx::kFloat: have = t.float_data.size(); break;
      case onnx::kInt64: have = t.int64_data.size(); break;
      default: have = t.int32_data.size(); break;  // int32, bool
    }
    if (have != n)
      fail("holds " + std::to_string(have) + " values, expected " + std::to_string(n) + " for shape " + s.str());
  }

  auto v = std::make_shared<Value>();
  auto buf = std::make_shared<std::vector<I64>>();
  storage.push_back(buf);
  v->buf = buf.get();
  void* dst = v->alloc(et, s);
  if (from_raw) {
    if (t.data_type == onnx::kInt32) {
      for (std::size_t i = 0; i < n; ++i) {
        std::int32_t x;
        std::memcpy(&x, raw->data() + 4 * i, 4);
        static_cast<I64*>(dst)[i] = x;
      }
    } else if (n) {
      std::memcpy(dst, raw->data(), n * es_onnx);
    }
    if (et == ElementType::Bool)
      for (std::size_t i = 0; i < n; ++i)
        static_cast<unsigned char*>(dst)[i] = static_cast<unsigned char*>(dst)[i] != 0;
    return v;
  }
  switch (t.data_type) {
    case onnx::kFloat:
      if (n) std::memcpy(dst, t.float_data.data(), n * 4);
      break;
    case onnx::kInt64:
      if (n) std::memcpy(dst, t.int64_data.data(), n * 8);
      break;
    case onnx::kInt32:
      for (std::size_t i = 0; i < n; ++i) static_cast<I64*>(dst)[i] = t.int32_data[i];
      break;
    case onnx::kBool:
      for (std::size_t i = 0; i < n; ++i) static_cast<unsigned char*>(dst)[i] = t.int32_data[i] != 0;
      break;
    default: break;
  }
  return v;
}

/// Attribute access with a record of which ones were read: any left unread is unsupported.
class Attrs {
 public:
  Attrs(const onnx::Node& n, const std::string& source) : n_(n), source_(source) {
    for (const auto& a : n.attributes) {
      if (!a.ref_attr_name.empty()) fail("attribute '" + a.name + "' refers to a function attribute");
      if (a.n_graphs) fail("attribute '" + a.name + "' holds a list of sub-graphs (not supported)");
      if (a.g && n.op_type != "If")
        fail("attribute '" + a.name + "' holds a sub-graph (of the control-flow operators only If is supported)");
    }
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_node(source_, n_, msg); }
  const onnx::Attribute* get(const char* name) {
    for (const auto& a : n_.attributes)
      if (a.name == name) {
        used_.insert(a.name);
        return &a;
      }
    return nullptr;
  }
  bool has(const char* name) const {
    for (const auto& a : n_.attributes)
      if (a.name == name) return true;
    return false;
  }
  I64 i(const char* name, I64 def) {
    const auto* a = get(name);
    if (!a) return def;
    if (a->type != onnx::kAttrInt && a->type != onnx::kAttrUndefined)
      fail(std::string("attribute ") + name + " is not an int");
    return a->i;
  }
  float f(const char* name, float def) {
    const auto* a = get(name);
    if (!a) return def;
    if (a->type != onnx::kAttrFloat && a->type != onnx::kAttrUndefined)
      fail(std::string("attribute ") + name + " is not a float");
    return a->f;
  }
  std::string s(const char* name, const std::string& def) {
    const auto* a = get(name);
    return a ? a->s : def;
  }
  std::vector<I64> ints(const char* name) {
    const auto* a = get(name);
    return a ? a->ints : std::vector<I64>{};
  }
  std::vector<float> floats(const char* name) {
    const auto* a = get(name);
    return a ? a->floats : std::vector<float>{};
  }
  std::vector<std::string> strings(const char* name) {
    const auto* a = get(name);
    return a ? a->strings : std::vector<std::string>{};
  }
  void ignore(const char* name) { (void)get(name); }
  void finish() const {
    for (const auto& a : n_.attributes)
      if (!used_.count(a.name)) fail("attribute '" + a.name + "' is not supported");
  }

 private:
  const onnx::Node& n_;
  const std::string& source_;
  std::set<std::string> used_;
};

struct Builder {
  Graph& g;
  const onnx::Model& m;
  const std::string& data_dir;
  std::unordered_map<std::string, int> ids;

  int id_of(const std::string& name) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    const int id = static_cast<int>(g.meta.size());
    ids.emplace(name, id);
    g.meta.push_back(ValueMeta{name, false, -1, -1});
    g.constants.emplace_back();
    return id;
  }
  int add_constant(const std::string& name, std::shared_ptr<Value> v) {
    const int id = id_of(name);
    g.meta[static_cast<std::size_t>(id)].is_constant = true;
    g.constants[static_cast<std::size_t>(id)] = std::move(v);
    return id;
  }
  const Value* constant(int id) const {
    if (id < 0) return nullptr;
    return g.constants[static_cast<std::size_t>(id)].get();
  }
  std::shared_ptr<Value> scalar_float(float x) {
    auto v = std::make_shared<Value>();
    auto buf = std::make_shared<std::vector<I64>>();
    g.constant_storage.push_back(buf);
    v->buf = buf.get();
    *static_cast<float*>(v->alloc(ElementType::Float32, Shape{})) = x;
    return v;
  }
  std::shared_ptr<Value> ints_value(const std::vector<I64>& xs) {
    auto v = std::make_shared<Value>();
    auto buf = std::make_shared<std::vector<I64>>();
    g.constant_storage.push_back(buf);
    v->buf = buf.get();
    Shape s;
    s.push(static_cast<I64>(xs.size()));
    I64* d = static_cast<I64*>(v->alloc(ElementType::Int64, s));
    std::copy(xs.begin(), xs.end(), d);
    return v;
  }
};

/// ImportContext over an ONNX protobuf node (the op table's handlers see only this).
class OnnxImportContext final : public ImportContext {
 public:
  OnnxImportContext(Builder& b, const onnx::Node& on, std::int64_t opset, Attrs& at, Node& n)
      : b_(b), on_(on), opset_(opset), at_(at), n_(n) {}
  const std::string& op_type() const override { return on_.op_type; }
  std::int64_t opset() const override { return opset_; }
  std::size_t n_inputs() const override { return on_.inputs.size(); }
  bool has_input(std::size_t k) const override { return k < on_.inputs.size() && !on_.inputs[k].empty(); }
  std::size_t n_outputs() const override { return on_.outputs.size(); }
  bool has_output(std::size_t k) const override { return k < on_.outputs.size() && !on_.outputs[k].empty(); }
  const Value* const_input(std::size_t k) const override {
    if (!has_input(k)) return nullptr;
    return b_.constant(b_.id_of(on_.inputs[k]));
  }
  int add_constant(const std::string& suffix, std::shared_ptr<Value> v) override {
    const int id = b_.add_constant(on_.name + "/" + suffix, std::move(v));
    n_.in.push_back(id);
    return id;
  }
  std::shared_ptr<Value> ints_value(const std::vector<std::int64_t>& xs) override { return b_.ints_value(xs); }
  std::shared_ptr<Value> scalar_float(float x) override { return b_.scalar_float(x); }
  bool has(const char* name) const override { return at_.has(name); }
  std::int64_t i(const char* name, std::int64_t def) override { return at_.i(name, def); }
  float f(const char* name, float def) override { return at_.f(name, def); }
  std::string s(const char* name, const std::string& def) override { return at_.s(name, def); }
  std::vector<std::int64_t> ints(const char* name) override { return at_.ints(name); }
  std::vector<float> floats(const char* name) override { return at_.floats(name); }
  std::vector<std::string> strings(const char* name) override { return at_.strings(name); }
  void ignore(const char* name) override { at_.ignore(name); }
  std::shared_ptr<Value> tensor(const char* name) override {
    const onnx::Attribute* a = at_.get(name);
    if (!a) return nullptr;
    return tensor_value(a->t, b_.g.source + ": " + node_label(on_), b_.data_dir, b_.g.constant_storage);
  }
  bool type_from_code(std::int64_t code, ElementType& out) const override {
    return elem_type_of(static_cast<std::int32_t>(code), out);
  }
  std::string type_code_name(std::int64_t code) const override {
    return onnx::data_type_name(static_cast<std::int32_t>(code));
  }
  [[noreturn]] void fail(const std::string& msg) const override { at_.fail(msg); }

 private:
  Builder& b_;
  const onnx::Node& on_;
  std::int64_t opset_;
  Attrs& at_;
  Node& n_;
};

/// Turns a Constant node into a constant value named by its output.
void import_constant(Builder& b, const onnx::Node& on, Attrs& at) {
  const std::string& src = b.g.source;
  if (on.outputs.empty() || on.outputs.size() > 1) at.fail("has " + std::to_string(on.outputs.size()) + " outputs");
  std::shared_ptr<Value> v;
  if (const auto* a = at.get("value")) {
    v = tensor_value(a->t, src + ": " + node_label(on), b.data_dir, b.g.constant_storage);
  } else if (const auto* a2 = at.get("value_float")) {
    v = b.scalar_float(a2->f);
  } else if (const auto* a3 = at.get("value_floats")) {
    v = std::make_shared<Value>();
    auto buf = std::make_shared<std::vector<I64>>();
    b.g.constant_storage.push_back(buf);
    v->buf = buf.get();
    Shape s;
    s.push(static_cast<I64>(a3->floats.size()));
    float* d = static_cast<float*>(v->alloc(ElementType::Float32, s));
    std::copy(a3->floats.begin(), a3->floats.end(), d);
  } else if (const auto* a4 = at.get("value_int")) {
    v = b.ints_value({a4->i});
    v->shape = Shape{};
  } else if (const auto* a5 = at.get("value_ints")) {
    v = b.ints_value(a5->ints);
  } else {
    at.fail("needs a value, value_float(s) or value_int(s) attribute (string and sparse constants are not supported)");
  }
  at.finish();
  b.add_constant(on.outputs[0], v);
}

/// Translates one ONNX node into a Node through its op table handler (attributes parsed and
/// checked). Returns false for a Constant node, which is turned into a constant value instead.
bool translate(Builder& b, const onnx::Node& on, std::int64_t opset, Node& n) {
  Attrs at(on, b.g.source);
  const std::string& t = on.op_type;
  n.op_type = t;
  n.name = on.name;
  if (t == "Constant") {
    import_constant(b, on, at);
    return false;
  }
  const auto it = op_table().find(t);
  if (it == op_table().end()) at.fail("operator '" + t + "' is not supported by hepinfer");
  OnnxImportContext ctx(b, on, opset, at, n);
  it->second(ctx, n);
  at.finish();
  return true;
}

}  // namespace

namespace {

bool default_domain(const onnx::Node& on) { return on.domain.empty() || on.domain == "ai.onnx"; }

/// Checks every node's operator before any is translated: a node in another domain or with an
/// op type missing from the op table fails the load, and all such nodes are named at once (a
/// model that needs several missing operators says so in one message, not one per attempt).
void check_operators(const std::vector<onnx::Node>& nodes, const std::string& source) {
  std::vector<const onnx::Node*> bad;
  for (const auto& on : nodes)
    if (!default_domain(on) || (on.op_type != "Constant" && on.op_type != "If" && !op_table().count(on.op_type)))
      bad.push_back(&on);
  if (bad.empty()) return;
  if (bad.size() == 1) {
    const onnx::Node& on = *bad[0];
    if (!default_domain(on))
      fail_node(source, on, "operator domain '" + on.domain + "' is not supported (only the default ONNX domain is)");
    fail_node(source, on, "operator '" + on.op_type + "' is not supported by hepinfer");
  }
  constexpr std::size_t kListed = 50;  // a message, not a dump of a large model
  std::string list;
  for (std::size_t i = 0; i < bad.size() && i < kListed; ++i) {
    const onnx::Node& on = *bad[i];
    list += (i ? ", node '" : "node '") + on.name + "' (" + on.op_type +
            (default_domain(on) ? "" : " in domain '" + on.domain + "'") + ")";
  }
  if (bad.size() > kListed) list += " and " + std::to_string(bad.size() - kListed) + " more";
  throw ModelFormatError(source + ": " + std::to_string(bad.size()) +
                         " nodes use operators that hepinfer does not support: " + list);
}

/// Adds ONNX nodes to the graph. The nodes of an If's branches are inlined: each runs under
/// a guard (the If's condition and the branch's polarity, plus the guards of enclosing Ifs), its
/// outputs are renamed to names unique in the graph (a branch's names may repeat outer ones;
/// outer-scope names are read as they are), and a select node (run_if_select) copies the taken
/// branch's outputs into the If's outputs.
struct Inliner {
  Builder& b;
  const std::string& source;
  std::set<std::string>& defined;
  struct Scope {
    std::string prefix;  // of node names in the branch: "<if name>/then_branch/"
    std::unordered_map<std::string, std::string> renamed;
  };
  std::vector<Scope> scopes;
  int counter;

  std::string resolve(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      const auto f = it->renamed.find(name);
      if (f != it->renamed.end()) return f->second;
    }
    return name;
  }
  /// A graph-unique name for the branch-local `name`, recorded in the innermost scope.
  std::string rename(const std::string& name) {
    std::string r = name + " (" + scopes.back().prefix.substr(0, scopes.back().prefix.size() - 1) + ")";
    while (b.ids.count(r) || defined.count(r)) r = name + " (" + scopes.back().prefix + std::to_string(++counter) + ")";
    scopes.back().renamed[name] = r;
    return r;
  }

  void add(const std::vector<onnx::Node>& nodes, const std::vector<Guard>& guards) {
    for (const auto& on0 : nodes) {
      onnx::Node local;
      const onnx::Node* onp = &on0;
      if (!scopes.empty()) {  // inside a branch: names resolved and renamed
        local.name = scopes.back().prefix + (on0.name.empty() ? on0.op_type : on0.name);
        local.op_type = on0.op_type;
        local.domain = on0.domain;
        local.attributes = on0.attributes;
        for (const auto& name : on0.inputs) local.inputs.push_back(name.empty() ? name : resolve(name));
        for (const auto& name : on0.inputs)
          if (!name.empty() && !defined.count(resolve(name)))
            fail_node(source, local,
                      "input '" + name + "' is not produced by any earlier node, initializer or graph input");
        for (const auto& name : on0.outputs) {
          if (!name.empty() && scopes.back().renamed.count(name))
            fail_node(source, local, "output '" + name + "' is defined twice in the branch");
          local.outputs.push_back(name.empty() ? name : rename(name));
        }
        onp = &local;
      }
      const onnx::Node& on = *onp;
      for (const auto& name : on.inputs)
        if (!name.empty() && !defined.count(name))
          fail_node(source, on, "input '" + name + "' is not produced by any earlier node, initializer or graph input");
      if (on.op_type == "If") {
        add_if(on, guards);
        continue;
      }
      Node n;
      for (const auto& name : on.inputs) n.in.push_back(name.empty() ? -1 : b.id_of(name));
      bool is_node = translate(b, on, b.g.opset, n);
      define_outputs(on, is_node);
      if (!is_node) continue;
      n.out.clear();
      for (const auto& name : on.outputs) n.out.push_back(name.empty() ? -1 : b.id_of(name));
      if (n.name.empty()) n.name = on.outputs.empty() ? "?" : on.outputs[0];
      n.guards = guards;
      b.g.nodes.push_back(std::move(n));
    }
  }

  void define_outputs(const onnx::Node& on, bool is_node) {
    for (const auto& name : on.outputs) {
      if (name.empty()) continue;
      if (defined.count(name) && is_node) fail_node(source, on, "output '" + name + "' is defined twice");
      defined.insert(name);
    }
  }

  void add_if(const onnx::Node& on, const std::vector<Guard>& guards) {
    Attrs at(on, source);
    const onnx::Attribute* br[2] = {at.get("then_branch"), at.get("else_branch")};
    at.finish();
    const char* br_name[2] = {"then_branch", "else_branch"};
    for (int k = 0; k < 2; ++k) {
      if (!br[k]) at.fail(std::string("has no ") + br_name[k] + " attribute");
      if (!br[k]->g || (br[k]->type != onnx::kAttrGraph && br[k]->type != onnx::kAttrUndefined))
        at.fail(std::string("attribute ") + br_name[k] + " is not a graph");
    }
    if (on.inputs.size() != 1 || on.inputs[0].empty())
      at.fail("needs exactly one input (the condition), has " + std::to_string(on.inputs.size()));
    if (on.outputs.empty()) at.fail("has no outputs");
    const std::size_t k_out = on.outputs.size();
    for (int k = 0; k < 2; ++k) {
      const onnx::Graph& bg = *br[k]->g;
      if (bg.outputs.size() != k_out)
        at.fail(std::string(br_name[k]) + " has " + std::to_string(bg.outputs.size()) + " outputs, the If has " +
                std::to_string(k_out));
      if (!bg.inputs.empty()) at.fail(std::string(br_name[k]) + " declares inputs (an If branch takes none)");
      if (bg.n_sparse_initializers) at.fail(std::string(br_name[k]) + " has sparse initializers (not supported)");
      check_operators(bg.nodes, source);
    }
    for (std::size_t j = 0; j < k_out; ++j) {
      const onnx::ValueInfo &t = br[0]->g->outputs[j], &e = br[1]->g->outputs[j];
      if (t.is_tensor && e.is_tensor && t.elem_type != onnx::kUndefined && e.elem_type != onnx::kUndefined &&
          t.elem_type != e.elem_type)
        at.fail("output " + std::to_string(j) + " is " + onnx::data_type_name(t.elem_type) + " in then_branch but " +
                onnx::data_type_name(e.elem_type) + " in else_branch");
    }
    const int cond = b.id_of(on.inputs[0]);
    Node sel;
    sel.op = Op::Kernel;
    sel.run = run_if_select;
    sel.op_type = "If";
    sel.name = on.name.empty() ? on.outputs[0] : on.name;
    sel.in.assign(1 + 2 * k_out, -1);
    sel.in[0] = cond;
    for (int k = 0; k < 2; ++k) {
      const onnx::Graph& bg = *br[k]->g;
      scopes.push_back(Scope{sel.name + "/" + br_name[k] + "/", {}});
      for (const auto& t : bg.initializers) {
        if (t.name.empty()) at.fail(std::string("an initializer of ") + br_name[k] + " has no name");
        const std::string name = rename(t.name);
        b.add_constant(name, tensor_value(t, source, b.data_dir, b.g.constant_storage));
        defined.insert(name);
      }
      std::vector<Guard> inner = guards;
      inner.push_back(Guard{cond, k == 0});
      add(bg.nodes, inner);
      for (std::size_t j = 0; j < k_out; ++j) {
        const std::string& name = bg.outputs[j].name;
        const std::string r = resolve(name);
        if (name.empty() || !defined.count(r))
          at.fail(std::string(br_name[k]) + " output '" + name + "' is never produced");
        sel.in[1 + static_cast<std::size_t>(k) * k_out + j] = b.id_of(r);
      }
      scopes.pop_back();
    }
    define_outputs(on, true);
    for (const auto& name : on.outputs) sel.out.push_back(name.empty() ? -1 : b.id_of(name));
    sel.guards = guards;
    b.g.nodes.push_back(std::move(sel));
  }
};

TensorInfo info_of(const onnx::ValueInfo& v, const std::string& source, const char* what) {
  TensorInfo t;
  t.name = v.name;
  if (!v.is_tensor) throw ModelFormatError(source + ": graph " + what + " '" + v.name + "' is not a tensor");
  if (!elem_type_of(v.elem_type, t.type) || v.elem_type == onnx::kInt32)
    throw ModelFormatError(source + ": graph " + what + " '" + v.name + "' has element type " +
                           onnx::data_type_name(v.elem_type) + " (hepinfer supports float32, int64 and bool)");
  t.has_shape = v.has_shape;
  for (const auto& d : v.dims) {
    t.shape.push_back(d.param.empty() && d.value >= 0 ? d.value : -1);
    t.dim_names.push_back(d.param);
  }
  if (t.shape.size() > static_cast<std::size_t>(kMaxRank))
    throw ModelFormatError(source + ": graph " + what + " '" + v.name + "' has rank above 8");
  return t;
}

std::shared_ptr<Graph> build(const onnx::Model& m, const std::string& source, const ModelOptions& opt,
                             const std::string& data_dir) {
  auto gp = std::make_shared<Graph>();
  Graph& g = *gp;
  g.source = source;
  g.producer = m.producer_name + (m.producer_version.empty() ? "" : " " + m.producer_version);
  g.opset = -1;
  for (const auto& [domain, version] : m.opsets)
    if (domain.empty() || domain == "ai.onnx") g.opset = version;
  if (g.opset < 0) throw ModelFormatError(source + ": the model imports no default-domain (ai.onnx) opset");
  if (g.opset < 6 || g.opset > 23)
    throw ModelFormatError(source + ": opset " + std::to_string(g.opset) + " is not supported (6 to 23 are)");
  if (m.graph.n_sparse_initializers) throw ModelFormatError(source + ": sparse initializers are not supported");
  Builder b{g, m, data_dir, {}};
  for (const auto& t : m.graph.initializers) {
    if (t.name.empty()) throw ModelFormatError(source + ": an initializer has no name");
    b.add_constant(t.name, tensor_value(t, source, data_dir, g.constant_storage));
  }
  for (const auto& vi : m.graph.inputs) {
    if (vi.name.empty()) throw ModelFormatError(source + ": a graph input has no name");
    const int id = b.id_of(vi.name);
    if (g.meta[static_cast<std::size_t>(id)].is_constant) continue;  // an initializer listed as input (IR < 4)
    g.meta[static_cast<std::size_t>(id)].input_index = static_cast<int>(g.inputs.size());
    g.inputs.push_back(info_of(vi, source, "input"));
    g.input_ids.push_back(id);
  }
  check_operators(m.graph.nodes, source);
  std::set<std::string> defined;
  for (const auto& kv : b.ids) defined.insert(kv.first);
  Inliner in{b, source, defined, {}, 0};
  in.add(m.graph.nodes, {});
  for (const auto& vi : m.graph.outputs) {
    if (!defined.count(vi.name)) throw ModelFormatError(source + ": graph output '" + vi.name + "' is never produced");
    g.outputs.push_back(info_of(vi, source, "output"));
    g.output_ids.push_back(b.id_of(vi.name));
  }
  if (g.outputs.empty()) throw ModelFormatError(source + ": the graph has no outputs");
  run_passes(g, opt.optimize);
  return gp;
}

}  // namespace

}  // namespace nn

// ---- public API

// ---- description without building (hepinfer info)

namespace {
OnnxValueSummary value_summary(const nn::onnx::ValueInfo& v) {
  OnnxValueSummary r;
  r.name = v.name;
  r.type = v.is_tensor ? nn::onnx::data_type_name(v.elem_type) : "?";
  r.has_shape = v.has_shape;
  for (const auto& d : v.dims) {
    r.shape.push_back(d.param.empty() && d.value >= 0 ? d.value : -1);
    r.dim_names.push_back(d.param);
  }
  return r;
}
}  // namespace

bool supports_operator(const std::string& op_type) {
  return op_type == "Constant" || op_type == "If" || nn::op_table().count(op_type) > 0;
}

std::vector<std::string> supported_operators() {
  std::vector<std::string> r{"Constant", "If"};
  for (const auto& kv : nn::op_table()) r.push_back(kv.first);
  std::sort(r.begin(), r.end());
  return r;
}

OnnxSummary describe_onnx_from_memory(const std::string& content, const std::string& source_name) {
  OnnxSummary r;
  try {
    const auto m =
        nn::onnx::parse_model(reinterpret_cast<const unsigned char*>(content.data()), content.size(), source_name);
    r.producer = m.producer_name + (m.producer_version.empty() ? "" : " " + m.producer_version);
    r.ir_version = m.ir_version;
    for (const auto& [domain, version] : m.opsets)
      if (domain.empty() || domain == "ai.onnx") r.opset = version;
    std::set<std::string> init;
    for (const auto& t : m.graph.initializers) {
      init.insert(t.name);
      std::uint64_t n = 1;
      for (auto d : t.dims) n *= static_cast<std::uint64_t>(std::max<std::int64_t>(d, 0));
      r.n_parameters += n;
    }
    r.n_initializers = m.graph.initializers.size();
    for (const auto& v : m.graph.inputs)
      if (!init.count(v.name)) r.inputs.push_back(value_summary(v));
    for (const auto& v : m.graph.outputs) r.outputs.push_back(value_summary(v));
    for (const auto& on : m.graph.nodes)
      r.nodes.push_back({on.name, on.op_type, on.domain, nn::default_domain(on) && supports_operator(on.op_type)});
  } catch (const ModelFormatError& e) {
    throw ModelFormatError(nn::printable(e.what()));
  }
  return r;
}

OnnxSummary describe_onnx(const std::string& path) {
  return describe_onnx_from_memory(nn::read_file(path, "model file"), path);
}

Model Model::load(const std::string& path, const ModelOptions& options) {
  const std::string content = nn::read_file(path, "model file");
  ModelOptions opt = options;
  if (opt.external_data_dir.empty()) {
    const auto slash = path.find_last_of('/');
    opt.external_data_dir = slash == std::string::npos ? "." : path.substr(0, slash);
  }
  return load_from_memory(content, opt, path);
}

namespace {
/// While a model loads, no single tensor (initializer, folded constant, dry-run value) may
/// exceed 4 GiB: a file claiming 10^5 x 10^5 shapes is rejected before the allocation.
class LoadSizeGuard {
 public:
  // never raises a lower limit the caller's thread already has (the fuzz harnesses set 16 MiB)
  LoadSizeGuard() : saved_(nn::max_tensor_bytes()) { nn::max_tensor_bytes() = std::min(saved_, std::size_t{1} << 32); }
  ~LoadSizeGuard() { nn::max_tensor_bytes() = saved_; }
  LoadSizeGuard(const LoadSizeGuard&) = delete;
  LoadSizeGuard& operator=(const LoadSizeGuard&) = delete;

 private:
  std::size_t saved_;
};
}  // namespace

Model Model::load_from_memory(const std::string& content, const ModelOptions& options, const std::string& source_name) {
  const LoadSizeGuard size_guard;
  std::shared_ptr<nn::Graph> g;
  try {
    const auto m =
        nn::onnx::parse_model(reinterpret_cast<const unsigned char*>(content.data()), content.size(), source_name);
    g = nn::build(m, source_name, options, options.external_data_dir);
  } catch (const ModelFormatError& e) {
    throw ModelFormatError(nn::printable(e.what()));
  } catch (const nn::OpError& e) {
    throw ModelFormatError(nn::printable(source_name + ": " + e.what()));
  }
  Model model(g);
  nn::dry_run(*g, source_name);
  return model;
}

}  // namespace hepinfer
