// A protobuf wire-format reader for the ONNX messages hepinfer needs. Written from the
// protobuf encoding specification: a message is a sequence of (tag varint, payload) where
// tag = field << 3 | wire type; wire types 0 varint, 1 fixed64, 2 length-delimited,
// 5 fixed32 (3/4, the deprecated groups, are rejected). Repeated scalars may be packed.
#include "formats/onnx_proto.hpp"

#include <cstring>

#include "hepinfer/errors.hpp"

namespace hepinfer::nn::onnx {

const char* data_type_name(std::int32_t t) noexcept {
  switch (t) {
    case kFloat: return "float32";
    case kUint8: return "uint8";
    case kInt8: return "int8";
    case kUint16: return "uint16";
    case kInt16: return "int16";
    case kInt32: return "int32";
    case kInt64: return "int64";
    case kString: return "string";
    case kBool: return "bool";
    case kFloat16: return "float16";
    case kDouble: return "float64";
    case kUint32: return "uint32";
    case kUint64: return "uint64";
    default: return "unknown";
  }
}

namespace {

class Reader {
 public:
  Reader(const unsigned char* begin, const unsigned char* end, const unsigned char* origin, const std::string* source,
         const char* message)
      : p_(begin), end_(end), origin_(origin), source_(source), message_(message) {}

  bool done() const noexcept { return p_ >= end_; }

  [[noreturn]] void fail(const std::string& what, std::uint32_t field) const {
    throw ModelFormatError(*source_ + ": malformed ONNX file: " + what + " in " + message_ + " field " +
                           std::to_string(field) + " at byte offset " + std::to_string(p_ - origin_));
  }

  std::uint64_t varint(std::uint32_t field) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail("truncated varint", field);
      const unsigned char b = *p_++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes", field);
  }

  /// Reads the next tag; returns false at the end of the message.
  bool next(std::uint32_t& field, std::uint32_t& wire) {
    if (p_ >= end_) return false;
    const std::uint64_t tag = varint(0);
    field = static_cast<std::uint32_t>(tag >> 3);
    wire = static_cast<std::uint32_t>(tag & 7);
    if (field == 0) fail("field number 0", 0);
    return true;
  }

  /// A length-delimited payload as [begin, end).
  std::pair<const unsigned char*, const unsigned char*> bytes(std::uint32_t field, std::uint32_t wire) {
    if (wire != 2) fail("wire type " + std::to_string(wire) + " where a length-delimited value was expected", field);
    const std::uint64_t n = varint(field);
    if (n > static_cast<std::uint64_t>(end_ - p_))
      fail("length " + std::to_string(n) + " runs past the end of the data (truncated file?)", field);
    const unsigned char* b = p_;
    p_ += n;
    return {b, p_};
  }
  std::string string(std::uint32_t field, std::uint32_t wire) {
    auto [b, e] = bytes(field, wire);
    return std::string(reinterpret_cast<const char*>(b), static_cast<std::size_t>(e - b));
  }
  Reader sub(std::uint32_t field, std::uint32_t wire, const char* message) {
    auto [b, e] = bytes(field, wire);
    return Reader(b, e, origin_, source_, message);
  }

  std::uint64_t scalar_varint(std::uint32_t field, std::uint32_t wire) {
    if (wire != 0) fail("wire type " + std::to_string(wire) + " where a varint was expected", field);
    return varint(field);
  }
  std::uint32_t fixed32(std::uint32_t field) {
    if (end_ - p_ < 4) fail("truncated fixed32", field);
    std::uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  std::uint64_t fixed64(std::uint32_t field) {
    if (end_ - p_ < 8) fail("truncated fixed64", field);
    std::uint64_t v;
    std::memcpy(&v, p_, 8);
    p_ += 8;
    return v;
  }
  float float32(std::uint32_t field, std::uint32_t wire) {
    if (wire != 5) fail("wire type " + std::to_string(wire) + " where a float was expected", field);
    const std::uint32_t u = fixed32(field);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  void skip(std::uint32_t field, std::uint32_t wire) {
    switch (wire) {
      case 0: (void)varint(field); break;
      case 1: (void)fixed64(field); break;
      case 2: (void)bytes(field, wire); break;
      case 5: (void)fixed32(field); break;
      default: fail("unsupported wire type " + std::to_string(wire), field);
    }
  }

  // Repeated scalars, packed or not.
  template <typename T>
  void repeated_varint(std::uint32_t field, std::uint32_t wire, std::vector<T>& out) {
    if (wire == 2) {
      Reader r = sub(field, wire, message_);
      while (!r.done()) out.push_back(static_cast<T>(r.varint(field)));
    } else {
      out.push_back(static_cast<T>(scalar_varint(field, wire)));
    }
  }
  void repeated_float(std::uint32_t field, std::uint32_t wire, std::vector<float>& out) {
    if (wire == 2) {
      auto [b, e] = bytes(field, wire);
      if ((e - b) % 4 != 0) fail("packed float array with a length not a multiple of 4", field);
      const std::size_t n = static_cast<std::size_t>(e - b) / 4;
      const std::size_t old = out.size();
      out.resize(old + n);
      if (n) std::memcpy(out.data() + old, b, n * 4);
    } else {
      out.push_back(float32(field, wire));
    }
  }
  void repeated_double(std::uint32_t field, std::uint32_t wire, std::vector<double>& out) {
    if (wire == 2) {
      auto [b, e] = bytes(field, wire);
      if ((e - b) % 8 != 0) fail("packed double array with a length not a multiple of 8", field);
      const std::size_t n = static_cast<std::size_t>(e - b) / 8;
      const std::size_t old = out.size();
      out.resize(old + n);
      if (n) std::memcpy(out.data() + old, b, n * 8);
    } else if (wire == 1) {
      const std::uint64_t u = fixed64(field);
      double d;
      std::memcpy(&d, &u, 8);
      out.push_back(d);
    } else {
      fail("wire type " + std::to_string(wire) + " where a double was expected", field);
    }
  }

  const char* message() const noexcept { return message_; }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
  const unsigned char* origin_;
  const std::string* source_;
  const char* message_;
};

void read_string_entry(Reader r, std::pair<std::string, std::string>& kv) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    if (f == 1) kv.first = r.string(f, w);
    else if (f == 2) kv.second = r.string(f, w);
    else r.skip(f, w);
  }
}

void read_tensor(Reader r, Tensor& t) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    switch (f) {
      case 1: r.repeated_varint(f, w, t.dims); break;
      case 2: t.data_type = static_cast<std::int32_t>(r.scalar_varint(f, w)); break;
      case 3:
        t.has_segment = true;
        r.skip(f, w);
        break;
      case 4: r.repeated_float(f, w, t.float_data); break;
      case 5: r.repeated_varint(f, w, t.int32_data); break;
      case 7: r.repeated_varint(f, w, t.int64_data); break;
      case 8: t.name = r.string(f, w); break;
      case 9: t.raw_data = r.string(f, w); break;
      case 10: r.repeated_double(f, w, t.double_data); break;
      case 11: r.repeated_varint(f, w, t.uint64_data); break;
      case 13: {
        std::pair<std::string, std::string> kv;
        read_string_entry(r.sub(f, w, "StringStringEntryProto"), kv);
        t.external_data.push_back(std::move(kv));
        break;
      }
      case 14: t.external = r.scalar_varint(f, w) == 1; break;
      default: r.skip(f, w);
    }
  }
}

void read_graph(Reader r, Graph& g, int depth);

void read_attribute(Reader r, Attribute& a, int depth) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    switch (f) {
      case 1: a.name = r.string(f, w); break;
      case 2: a.f = r.float32(f, w); break;
      case 3: a.i = static_cast<std::int64_t>(r.scalar_varint(f, w)); break;
      case 4: a.s = r.string(f, w); break;
      case 5: read_tensor(r.sub(f, w, "TensorProto"), a.t); break;
      case 6:
        if (depth >= kMaxGraphDepth)
          r.fail("sub-graphs nested deeper than " + std::to_string(kMaxGraphDepth) + " levels", f);
        if (a.g) r.fail("a second sub-graph", f);
        a.g = std::make_shared<Graph>();
        read_graph(r.sub(f, w, "GraphProto"), *a.g, depth + 1);
        break;
      case 7: r.repeated_float(f, w, a.floats); break;
      case 8: r.repeated_varint(f, w, a.ints); break;
      case 9: a.strings.push_back(r.string(f, w)); break;
      case 11:
        ++a.n_graphs;
        r.skip(f, w);
        break;
      case 20: a.type = static_cast<std::int32_t>(r.scalar_varint(f, w)); break;
      case 21: a.ref_attr_name = r.string(f, w); break;
      default: r.skip(f, w);
    }
  }
}

void read_node(Reader r, Node& n, int depth) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    switch (f) {
      case 1: n.inputs.push_back(r.string(f, w)); break;
      case 2: n.outputs.push_back(r.string(f, w)); break;
      case 3: n.name = r.string(f, w); break;
      case 4: n.op_type = r.string(f, w); break;
      case 5:
        n.attributes.emplace_back();
        read_attribute(r.sub(f, w, "AttributeProto"), n.attributes.back(), depth);
        break;
      case 7: n.domain = r.string(f, w); break;
      default: r.skip(f, w);
    }
  }
}

void read_dim(Reader r, Dim& d) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    if (f == 1) d.value = static_cast<std::int64_t>(r.scalar_varint(f, w));
    else if (f == 2) d.param = r.string(f, w);
    else r.skip(f, w);
  }
}

void read_shape(Reader r, ValueInfo& v) {
  std::uint32_t f, w;
  v.has_shape = true;
  while (r.next(f, w)) {
    if (f == 1) {
      v.dims.emplace_back();
      read_dim(r.sub(f, w, "TensorShapeProto.Dimension"), v.dims.back());
    } else {
      r.skip(f, w);
    }
  }
}

void read_tensor_type(Reader r, ValueInfo& v) {
  std::uint32_t f, w;
  v.is_tensor = true;
  while (r.next(f, w)) {
    if (f == 1) v.elem_type = static_cast<std::int32_t>(r.scalar_varint(f, w));
    else if (f == 2) read_shape(r.sub(f, w, "TensorShapeProto"), v);
    else r.skip(f, w);
  }
}

void read_type(Reader r, ValueInfo& v) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    if (f == 1) read_tensor_type(r.sub(f, w, "TypeProto.Tensor"), v);
    else r.skip(f, w);
  }
}

void read_value_info(Reader r, ValueInfo& v) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    if (f == 1) v.name = r.string(f, w);
    else if (f == 2) read_type(r.sub(f, w, "TypeProto"), v);
    else r.skip(f, w);
  }
}

void read_graph(Reader r, Graph& g, int depth) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    switch (f) {
      case 1:
        g.nodes.emplace_back();
        read_node(r.sub(f, w, "NodeProto"), g.nodes.back(), depth);
        break;
      case 2: g.name = r.string(f, w); break;
      case 5:
        g.initializers.emplace_back();
        read_tensor(r.sub(f, w, "TensorProto"), g.initializers.back());
        break;
      case 11:
        g.inputs.emplace_back();
        read_value_info(r.sub(f, w, "ValueInfoProto"), g.inputs.back());
        break;
      case 12:
        g.outputs.emplace_back();
        read_value_info(r.sub(f, w, "ValueInfoProto"), g.outputs.back());
        break;
      case 13:
        g.value_info.emplace_back();
        read_value_info(r.sub(f, w, "ValueInfoProto"), g.value_info.back());
        break;
      case 15:
        ++g.n_sparse_initializers;
        r.skip(f, w);
        break;
      default: r.skip(f, w);
    }
  }
}

void read_opset(Reader r, std::pair<std::string, std::int64_t>& o) {
  std::uint32_t f, w;
  while (r.next(f, w)) {
    if (f == 1) o.first = r.string(f, w);
    else if (f == 2) o.second = static_cast<std::int64_t>(r.scalar_varint(f, w));
    else r.skip(f, w);
  }
}

}  // namespace

Model parse_model(const unsigned char* data, std::size_t size, const std::string& source) {
  Model m;
  Reader r(data, data + size, data, &source, "ModelProto");
  std::uint32_t f, w;
  while (r.next(f, w)) {
    switch (f) {
      case 1: m.ir_version = static_cast<std::int64_t>(r.scalar_varint(f, w)); break;
      case 2: m.producer_name = r.string(f, w); break;
      case 3: m.producer_version = r.string(f, w); break;
      case 7:
        m.has_graph = true;
        read_graph(r.sub(f, w, "GraphProto"), m.graph, 0);
        break;
      case 8:
        m.opsets.emplace_back();
        read_opset(r.sub(f, w, "OperatorSetIdProto"), m.opsets.back());
        break;
      case 25:
        ++m.n_functions;
        r.skip(f, w);
        break;
      default: r.skip(f, w);
    }
  }
  if (!m.has_graph) throw ModelFormatError(source + ": not an ONNX model (ModelProto has no graph)");
  return m;
}

}  // namespace hepinfer::nn::onnx
