// Evaluation of every supported ONNX operator on Values. Ops check that their inputs fit
// and throw OpError otherwise (the executor adds the node name and op). Semantics follow
// the ONNX operator specification (numpy-style multidirectional broadcasting).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "nn/graph.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {

void Shape::push(std::int64_t v) {
  if (rank >= kMaxRank) throw OpError("tensor rank above " + std::to_string(kMaxRank) + " is not supported");
  d[rank++] = v;
}

std::string printable(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string r;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

namespace {

using I64 = std::int64_t;
using U8 = unsigned char;

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  Shape o;
  o.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < o.rank; ++i) {
    const int ia = i - (o.rank - a.rank), ib = i - (o.rank - b.rank);
    const I64 da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da == db || db == 1) o[i] = da;
    else if (da == 1) o[i] = db;
    else throw OpError("shapes " + a.str() + " and " + b.str() + " cannot be broadcast together");
  }
  return o;
}

/// Element strides of `s` seen in the output shape `o` (0 along broadcast dimensions).
void bcast_strides(const Shape& o, const Shape& s, I64* st) {
  I64 stride = 1;
  for (int i = o.rank - 1; i >= 0; --i) {
    const int is = i - (o.rank - s.rank);
    if (is >= 0 && s[is] != 1) {
      st[i] = stride;
      stride *= s[is];
    } else {
      st[i] = 0;
      if (is >= 0) stride *= s[is];
    }
  }
}

/// Calls f(out_index, offsets[]) for every element of `o` in row-major order, with the
/// offsets of each operand given by their strides (in elements, may be 0 or negative).
template <int NOps, typename F>
void for_each_index(const Shape& o, const I64 (&st)[NOps][kMaxRank], const I64 (&base)[NOps], F&& f) {
  const std::size_t total = o.numel();
  if (total == 0) return;
  if (o.rank == 0) {
    I64 off[NOps];
    for (int k = 0; k < NOps; ++k) off[k] = base[k];
    const I64 zero[NOps][kMaxRank] = {};
    f(std::size_t{0}, off, zero, 1, 0);
    return;
  }
  const int last = o.rank - 1;
  const I64 inner = o[last];
  I64 idx[kMaxRank] = {};
  I64 off[NOps];
  for (int k = 0; k < NOps; ++k) off[k] = base[k];
  for (std::size_t done = 0; done < total; done += static_cast<std::size_t>(inner)) {
    f(done, off, st, inner, last);
    // advance the outer counter
    for (int d = last - 1; d >= 0; --d) {
      ++idx[d];
      for (int k = 0; k < NOps; ++k) off[k] += st[k][d];
      if (idx[d] < o[d]) break;
      for (int k = 0; k < NOps; ++k) off[k] -= st[k][d] * o[d];
      idx[d] = 0;
    }
  }
}

template <typename T, typename R, typename F>
void binary_loop(const Value& a, const Value& b, Value& o, ElementType out_type, F f) {
  const Shape os = broadcast_shapes(a.shape, b.shape);
  R* dst = static_cast<R*>(o.alloc(out_type, os));
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  const std::size_t n = o.numel;
  if (a.shape == b.shape) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = f(pa[i], pb[i]);
    return;
  }
  if (b.numel == 1) {
    const T bv = pb[0];
    for (std::size_t i = 0; i < n; ++i) dst[i] = f(pa[i], bv);
    return;
  }
  if (a.numel == 1) {
    const T av = pa[0];
    for (std::size_t i = 0; i < n; ++i) dst[i] = f(av, pb[i]);
    return;
  }
  I64 st[2][kMaxRank];
  bcast_strides(os, a.shape, st[0]);
  bcast_strides(os, b.shape, st[1]);
  const I64 base[2] = {0, 0};
  for_each_index<2>(os, st, base, [&](std::size_t o0, const I64* off, const I64 (&s)[2][kMaxRank], I64 inner, int last) {
    const T* xa = pa + off[0];
    const T* xb = pb + off[1];
    const I64 sa = s[0][last], sb = s[1][last];
    R* d = dst + o0;
    for (I64 j = 0; j < inner; ++j) d[j] = f(xa[j * sa], xb[j * sb]);
  });
}

template <typename T>
T apply_bin(BinOp op, T x, T y) {
  switch (op) {
    case BinOp::Add: return x + y;
    case BinOp::Sub: return x - y;
    case BinOp::Mul: return x * y;
    case BinOp::Div:
      if constexpr (std::is_integral_v<T>) {
        if (y == 0) throw DataError("integer division by zero");
      }
      return x / y;
    case BinOp::Pow: return static_cast<T>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    case BinOp::Max:
      if constexpr (std::is_floating_point_v<T>) {
        if (x != x || y != y) return std::numeric_limits<T>::quiet_NaN();
      }
      return x > y ? x : y;
    case BinOp::Min:
      if constexpr (std::is_floating_point_v<T>) {
        if (x != x || y != y) return std::numeric_limits<T>::quiet_NaN();
      }
      return x < y ? x : y;
    case BinOp::Mod: return x;
  }
  return x;
}

void op_binary(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  Value& o = out(n, ws, 0);
  if (n.bin == BinOp::Pow) {
    require_type(a, ElementType::Float32, "base");
    if (b.type == ElementType::Float32) {
      const float* pb = b.f();
      if (b.numel == 1 && pb[0] == 2.0f) {
        binary_loop<float, float>(a, b, o, ElementType::Float32, [](float x, float) { return x * x; });
        return;
      }
      binary_loop<float, float>(a, b, o, ElementType::Float32, [](float x, float y) { return std::pow(x, y); });
      return;
    }
    require_type(b, ElementType::Int64, "exponent");
    // int exponent: convert to float into scratch-free form by element-wise lambda on the original types
    const Shape os = broadcast_shapes(a.shape, b.shape);
    float* dst = static_cast<float*>(o.alloc(ElementType::Float32, os));
    I64 st[2][kMaxRank];
    bcast_strides(os, a.shape, st[0]);
    bcast_strides(os, b.shape, st[1]);
    const I64 base[2] = {0, 0};
    const float* pa = a.f();
    const I64* pi = b.i64();
    for_each_index<2>(os, st, base, [&](std::size_t o0, const I64* off, const I64 (&s)[2][kMaxRank], I64 inner, int last) {
      for (I64 j = 0; j < inner; ++j)
        dst[o0 + static_cast<std::size_t>(j)] =
            std::pow(pa[off[0] + j * s[0][last]], static_cast<float>(pi[off[1] + j * s[1][last]]));
    });
    return;
  }
  if (a.type != b.type)
    throw OpError(std::string("operands have different types (") + type_name(a.type) + ", " + type_name(b.type) + ")");
  const BinOp op = n.bin;
  if (a.type == ElementType::Float32) {
    switch (op) {
      case BinOp::Add: binary_loop<float, float>(a, b, o, a.type, [](float x, float y) { return x + y; }); return;
      case BinOp::Sub: binary_loop<float, float>(a, b, o, a.type, [](float x, float y) { return x - y; }); return;
      case BinOp::Mul: binary_loop<float, float>(a, b, o, a.type, [](float x, float y) { return x * y; }); return;
      case BinOp::Div: binary_loop<float, float>(a, b, o, a.type, [](float x, float y) { return x / y; }); return;
      default: binary_loop<float, float>(a, b, o, a.type, [op](float x, float y) { return apply_bin(op, x, y); }); return;
    }
  }
  if (a.type == ElementType::Int64) {
    binary_loop<I64, I64>(a, b, o, a.type, [op](I64 x, I64 y) { return apply_bin(op, x, y); });
    return;
  }
  throw OpError("arithmetic on bool tensors is not supported");
}

void op_variadic(const Node& n, Workspace& ws) {
  // Max, Min, Sum, Mean over any number of broadcastable inputs
  Shape os = in(n, ws, 0).shape;
  const ElementType t = in(n, ws, 0).type;
  for (std::size_t k = 1; k < n.in.size(); ++k) {
    const Value& v = in(n, ws, k);
    if (v.type != t) throw OpError("inputs have different element types");
    os = broadcast_shapes(os, v.shape);
  }
  if (t == ElementType::Bool) throw OpError("bool inputs are not supported");
  Value& o = out(n, ws, 0);
  void* dst = o.alloc(t, os);
  const std::size_t total = os.numel();
  for (std::size_t k = 0; k < n.in.size(); ++k) {
    const Value& v = in(n, ws, k);
    I64 st[1][kMaxRank];
    bcast_strides(os, v.shape, st[0]);
    const I64 base[1] = {0};
    const BinOp op = n.bin;
    const bool first = k == 0;
    auto body = [&](auto* d, const auto* s) {
      for_each_index<1>(os, st, base, [&](std::size_t o0, const I64* off, const I64 (&str)[1][kMaxRank], I64 inner,
                                          int last) {
        for (I64 j = 0; j < inner; ++j) {
          auto x = s[off[0] + j * str[0][last]];
          auto& y = d[o0 + static_cast<std::size_t>(j)];
          y = first ? x : apply_bin(op, y, x);
        }
      });
    };
    if (t == ElementType::Float32) body(static_cast<float*>(dst), v.f());
    else body(static_cast<I64*>(dst), v.i64());
  }
  if (n.i0 == 1) {  // Mean
    const float inv = static_cast<float>(n.in.size());
    if (t == ElementType::Float32)
      for (std::size_t i = 0; i < total; ++i) static_cast<float*>(dst)[i] /= inv;
    else
      for (std::size_t i = 0; i < total; ++i) static_cast<I64*>(dst)[i] /= static_cast<I64>(n.in.size());
  }
}

template <typename T>
bool apply_cmp(CmpOp op, T x, T y) {
  switch (op) {
    case CmpOp::Equal: return x == y;
    case CmpOp::Less: return x < y;
    case CmpOp::Greater: return x > y;
    case CmpOp::LessOrEqual: return x <= y;
    case CmpOp::GreaterOrEqual: return x >= y;
  }
  return false;
}

void op_compare(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  if (a.type != b.type)
    throw OpError(std::string("operands have different types (") + type_name(a.type) + ", " + type_name(b.type) + ")");
  const CmpOp op = n.cmp;
  Value& o = out(n, ws, 0);
  if (a.type == ElementType::Float32)
    binary_loop<float, U8>(a, b, o, ElementType::Bool, [op](float x, float y) { return U8(apply_cmp(op, x, y)); });
  else if (a.type == ElementType::Int64)
    binary_loop<I64, U8>(a, b, o, ElementType::Bool, [op](I64 x, I64 y) { return U8(apply_cmp(op, x, y)); });
  else
    binary_loop<U8, U8>(a, b, o, ElementType::Bool, [op](U8 x, U8 y) { return U8(apply_cmp(op, x, y)); });
}

void op_logical(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  require_type(a, ElementType::Bool, "input A");
  require_type(b, ElementType::Bool, "input B");
  const LogicOp op = n.logic;
  binary_loop<U8, U8>(a, b, out(n, ws, 0), ElementType::Bool, [op](U8 x, U8 y) {
    return U8(op == LogicOp::And ? (x && y) : op == LogicOp::Or ? (x || y) : (bool(x) != bool(y)));
  });
}

void op_not(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Bool, "input");
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(ElementType::Bool, a.shape));
  for (std::size_t i = 0; i < a.numel; ++i) d[i] = !a.b()[i];
}

void op_where(const Node& n, Workspace& ws) {
  const Value& c = in(n, ws, 0);
  const Value& x = in(n, ws, 1);
  const Value& y = in(n, ws, 2);
  require_type(c, ElementType::Bool, "condition");
  if (x.type != y.type) throw OpError("X and Y have different element types");
  const Shape os = broadcast_shapes(broadcast_shapes(c.shape, x.shape), y.shape);
  void* dst = out(n, ws, 0).alloc(x.type, os);
  I64 st[3][kMaxRank];
  bcast_strides(os, c.shape, st[0]);
  bcast_strides(os, x.shape, st[1]);
  bcast_strides(os, y.shape, st[2]);
  const I64 base[3] = {0, 0, 0};
  auto body = [&](auto* d, const auto* px, const auto* py) {
    const U8* pc = c.b();
    for_each_index<3>(os, st, base, [&](std::size_t o0, const I64* off, const I64 (&s)[3][kMaxRank], I64 inner, int last) {
      for (I64 j = 0; j < inner; ++j)
        d[o0 + static_cast<std::size_t>(j)] =
            pc[off[0] + j * s[0][last]] ? px[off[1] + j * s[1][last]] : py[off[2] + j * s[2][last]];
    });
  };
  if (x.type == ElementType::Float32) body(static_cast<float*>(dst), x.f(), y.f());
  else if (x.type == ElementType::Int64) body(static_cast<I64*>(dst), x.i64(), y.i64());
  else body(static_cast<U8*>(dst), x.b(), y.b());
}

void op_unary(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  Value& o = out(n, ws, 0);
  if (a.type == ElementType::Int64 && (n.act == Act::Neg || n.act == Act::Abs || n.act == Act::Relu ||
                                       n.act == Act::Sign)) {
    I64* d = static_cast<I64*>(o.alloc(a.type, a.shape));
    for (std::size_t i = 0; i < a.numel; ++i) {
      const I64 v = a.i64()[i];
      d[i] = n.act == Act::Neg ? -v : n.act == Act::Abs ? (v < 0 ? -v : v) : n.act == Act::Relu ? std::max<I64>(v, 0)
                                                                                                 : (v > 0) - (v < 0);
    }
    return;
  }
  require_type(a, ElementType::Float32, "input");
  float* d = static_cast<float*>(o.alloc(a.type, a.shape));
  std::memcpy(d, a.data, a.numel * 4);
  activate(d, a.numel, n.act, n.alpha, n.beta);
}

void op_softmax(const Node& n, Workspace& ws, bool log) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Float32, "input");
  float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, a.shape));
  if (a.numel == 0) return;
  const I64 axis = norm_axis(n.axis, std::max(a.shape.rank, 1));
  std::size_t outer = 1, len = 1, inner = 1;
  for (int i = 0; i < a.shape.rank; ++i) {
    const auto di = static_cast<std::size_t>(a.shape[i]);
    if (i < axis) outer *= di;
    else if (i == axis || n.i0 /* coerce to 2-D (opset < 13) */) len *= di;
    else inner *= di;
  }
  const float* x = a.f();
  for (std::size_t o = 0; o < outer; ++o) {
    for (std::size_t in_ = 0; in_ < inner; ++in_) {
      const std::size_t base = o * len * inner + in_;
      float mx = -std::numeric_limits<float>::infinity();
      for (std::size_t j = 0; j < len; ++j) mx = std::max(mx, x[base + j * inner]);
      float sum = 0.0f;
      for (std::size_t j = 0; j < len; ++j) {
        const float e = std::exp(x[base + j * inner] - mx);
        d[base + j * inner] = e;
        sum += e;
      }
      if (log) {
        const float ls = std::log(sum);
        for (std::size_t j = 0; j < len; ++j) d[base + j * inner] = x[base + j * inner] - mx - ls;
      } else {
        const float inv = 1.0f / sum;
        for (std::size_t j = 0; j < len; ++j) d[base + j * inner] *= inv;
      }
    }
  }
}

void op_concat(const Node& n, Workspace& ws) {
  const Value& first = in(n, ws, 0);
  const int rank = first.shape.rank;
  const I64 axis = norm_axis(n.axis, rank);
  Shape os = first.shape;
  os[static_cast<int>(axis)] = 0;
  for (std::size_t k = 0; k < n.in.size(); ++k) {
    const Value& v = in(n, ws, k);
    if (v.type != first.type) throw OpError("inputs have different element types");
    if (v.shape.rank != rank) throw OpError("inputs have different ranks");
    for (int i = 0; i < rank; ++i)
      if (i != axis && v.shape[i] != first.shape[i])
        throw OpError("input shapes " + first.shape.str() + " and " + v.shape.str() + " differ outside the axis");
    os[static_cast<int>(axis)] += v.shape[static_cast<int>(axis)];
  }
  const std::size_t es = element_size(first.type);
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(first.type, os));
  std::size_t outer = 1, inner = es;
  for (int i = 0; i < rank; ++i) {
    if (i < axis) outer *= static_cast<std::size_t>(os[i]);
    else if (i > axis) inner *= static_cast<std::size_t>(os[i]);
  }
  const std::size_t row = static_cast<std::size_t>(os[static_cast<int>(axis)]) * inner;
  std::size_t pos = 0;
  for (std::size_t k = 0; k < n.in.size(); ++k) {
    const Value& v = in(n, ws, k);
    const std::size_t chunk = static_cast<std::size_t>(v.shape[static_cast<int>(axis)]) * inner;
    if (chunk == 0) continue;
    for (std::size_t o = 0; o < outer; ++o) std::memcpy(d + o * row + pos, v.b() + o * chunk, chunk);
    pos += chunk;
  }
}

void op_reshape(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& s = in(n, ws, 1);
  require_type(s, ElementType::Int64, "shape");
  if (s.shape.rank != 1) throw OpError("shape must be 1-dimensional");
  Shape os;
  int infer = -1;
  std::size_t known = 1;
  for (std::size_t i = 0; i < s.numel; ++i) {
    I64 v = s.i64()[i];
    if (v == 0 && !n.i0) {
      if (static_cast<int>(i) >= a.shape.rank) throw OpError("0 in shape refers to a missing input dimension");
      v = a.shape[static_cast<int>(i)];
    }
    if (v == -1) {
      if (infer >= 0) throw OpError("more than one -1 in shape");
      infer = os.rank;
      os.push(1);
      continue;
    }
    if (v < 0) throw OpError("negative dimension " + std::to_string(v) + " in shape");
    os.push(v);
    known *= static_cast<std::size_t>(v);
  }
  if (infer >= 0) {
    if (known == 0) {
      if (a.numel != 0) throw OpError("cannot infer -1 with a zero-size target");
      os[infer] = 0;
    } else {
      if (a.numel % known) throw OpError("cannot reshape " + a.shape.str() + " to " + os.str());
      os[infer] = static_cast<I64>(a.numel / known);
    }
  }
  if (os.numel() != a.numel) throw OpError("cannot reshape " + a.shape.str() + " to " + os.str());
  out(n, ws, 0).alias(a, os);
}

void op_flatten(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  I64 axis = n.axis < 0 ? n.axis + a.shape.rank : n.axis;
  if (axis < 0 || axis > a.shape.rank) throw OpError("axis out of range");
  Shape os;
  std::size_t outer = 1;
  for (int i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(a.shape[i]);
  os.push(static_cast<I64>(outer));
  os.push(outer ? static_cast<I64>(a.numel / outer) : [&] {
    I64 r = 1;
    for (int i = static_cast<int>(axis); i < a.shape.rank; ++i) r *= a.shape[i];
    return r;
  }());
  out(n, ws, 0).alias(a, os);
}

void axes_of(const Node& n, Workspace& ws, std::vector<I64>& axes, bool& given) {
  given = false;
  if (n.has_v0) {
    axes = n.v0;
    given = true;
  } else if (const Value* v = opt_in(n, ws, 1)) {
    read_ints(*v, axes, "axes");
    given = true;
  } else {
    axes.clear();
  }
}

void op_squeeze(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  std::vector<I64>& axes = ws.scratch_i;
  bool given;
  axes_of(n, ws, axes, given);
  bool drop[kMaxRank] = {};
  if (axes.empty()) {
    for (int i = 0; i < a.shape.rank; ++i) drop[i] = a.shape[i] == 1;
  } else {
    for (I64 ax : axes) {
      const I64 x = norm_axis(ax, a.shape.rank, "squeeze axis");
      if (a.shape[static_cast<int>(x)] != 1)
        throw OpError("cannot squeeze axis " + std::to_string(ax) + " of shape " + a.shape.str());
      drop[x] = true;
    }
  }
  Shape os;
  for (int i = 0; i < a.shape.rank; ++i)
    if (!drop[i]) os.push(a.shape[i]);
  out(n, ws, 0).alias(a, os);
}

void op_unsqueeze(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  std::vector<I64>& axes = ws.scratch_i;
  bool given;
  axes_of(n, ws, axes, given);
  if (!given) throw OpError("axes are missing");
  const int rank = a.shape.rank + static_cast<int>(axes.size());
  if (rank > kMaxRank) throw OpError("rank above 8");
  bool ins[kMaxRank] = {};
  for (I64 ax : axes) {
    const I64 x = norm_axis(ax, rank, "unsqueeze axis");
    if (ins[x]) throw OpError("repeated axis");
    ins[x] = true;
  }
  Shape os;
  int j = 0;
  for (int i = 0; i < rank; ++i) os.push(ins[i] ? 1 : a.shape[j++]);
  out(n, ws, 0).alias(a, os);
}

/// dst (contiguous, shape os) = src with element strides st (offset base), element size es.
template <typename T>
void strided_copy_t(T* dst, const T* src, const Shape& os, const I64* st, I64 base) {
  I64 s[1][kMaxRank] = {};
  for (int i = 0; i < os.rank; ++i) s[0][i] = st[i];
  const I64 b[1] = {base};
  for_each_index<1>(os, s, b, [&](std::size_t o0, const I64* off, const I64 (&str)[1][kMaxRank], I64 inner, int last) {
    const I64 sl = str[0][last];
    const T* p = src + off[0];
    T* d = dst + o0;
    if (sl == 1) std::memcpy(d, p, static_cast<std::size_t>(inner) * sizeof(T));
    else
      for (I64 j = 0; j < inner; ++j) d[j] = p[j * sl];
  });
}

void strided_copy(Value& o, const Value& a, const Shape& os, const I64* st, I64 base) {
  void* d = o.alloc(a.type, os);
  switch (element_size(a.type)) {
    case 4: strided_copy_t(static_cast<float*>(d), a.f(), os, st, base); break;
    case 8: strided_copy_t(static_cast<I64*>(d), a.i64(), os, st, base); break;
    default: strided_copy_t(static_cast<U8*>(d), a.b(), os, st, base); break;
  }
}

void contiguous_strides(const Shape& s, I64* st) {
  I64 stride = 1;
  for (int i = s.rank - 1; i >= 0; --i) {
    st[i] = stride;
    stride *= s[i];
  }
}

void op_transpose(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const int r = a.shape.rank;
  I64 perm[kMaxRank];
  if (n.has_v0) {
    if (static_cast<int>(n.v0.size()) != r) throw OpError("perm has " + std::to_string(n.v0.size()) +
                                                         " entries for an input of rank " + std::to_string(r));
    bool seen[kMaxRank] = {};
    for (int i = 0; i < r; ++i) {
      const I64 p = n.v0[static_cast<std::size_t>(i)];
      if (p < 0 || p >= r || seen[p]) throw OpError("perm is not a permutation");
      seen[p] = true;
      perm[i] = p;
    }
  } else {
    for (int i = 0; i < r; ++i) perm[i] = r - 1 - i;
  }
  I64 ist[kMaxRank], st[kMaxRank];
  contiguous_strides(a.shape, ist);
  Shape os;
  for (int i = 0; i < r; ++i) {
    os.push(a.shape[static_cast<int>(perm[i])]);
    st[i] = ist[perm[i]];
  }
  if (a.type == ElementType::Float32 && a.numel > 0) {
    // output dims that are consecutive input dims merge: many permutations are then a batch of
    // 2-D transposes [B, R, C] -> [B, C, R], done in cache-sized tiles
    int gs[kMaxRank], ng = 0;  // first input dim of each output group
    I64 gsize[kMaxRank];
    for (int i = 0; i < r; ++i) {
      if (i > 0 && perm[i] == perm[i - 1] + 1) {
        gsize[ng - 1] *= a.shape[static_cast<int>(perm[i])];
      } else {
        gs[ng] = static_cast<int>(perm[i]);
        gsize[ng++] = a.shape[static_cast<int>(perm[i])];
      }
    }
    std::size_t B = 0, R = 0, C = 0;
    if (ng == 2 && gs[0] > gs[1]) {
      B = 1, R = static_cast<std::size_t>(gsize[1]), C = static_cast<std::size_t>(gsize[0]);
    } else if (ng == 3 && gs[0] < gs[2] && gs[2] < gs[1]) {
      B = static_cast<std::size_t>(gsize[0]), R = static_cast<std::size_t>(gsize[2]), C = static_cast<std::size_t>(gsize[1]);
    }
    if (B > 0) {
      float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, os));
      const float* x = a.f();
      constexpr std::size_t T = 16;
      for (std::size_t b = 0; b < B; ++b) {
        const float* xb = x + b * R * C;
        float* db = d + b * R * C;
        for (std::size_t r0 = 0; r0 < R; r0 += T)
          for (std::size_t c0 = 0; c0 < C; c0 += T) {
            const std::size_t r1 = std::min(R, r0 + T), c1 = std::min(C, c0 + T);
            for (std::size_t c = c0; c < c1; ++c)
              for (std::size_t i = r0; i < r1; ++i) db[c * R + i] = xb[i * C + c];
          }
      }
      return;
    }
  }
  strided_copy(out(n, ws, 0), a, os, st, 0);
}

I64 fix_index(I64 i, I64 dim) {
  const I64 j = i < 0 ? i + dim : i;
  if (j < 0 || j >= dim)
    throw DataError("index " + std::to_string(i) + " is out of range for a dimension of size " + std::to_string(dim));
  return j;
}

void op_gather(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& idx = in(n, ws, 1);
  require_type(idx, ElementType::Int64, "indices");
  const I64 axis = norm_axis(n.axis, a.shape.rank);
  Shape os;
  std::size_t outer = 1, inner = element_size(a.type);
  for (int i = 0; i < axis; ++i) {
    os.push(a.shape[i]);
    outer *= static_cast<std::size_t>(a.shape[i]);
  }
  for (int i = 0; i < idx.shape.rank; ++i) os.push(idx.shape[i]);
  for (int i = static_cast<int>(axis) + 1; i < a.shape.rank; ++i) {
    os.push(a.shape[i]);
    inner *= static_cast<std::size_t>(a.shape[i]);
  }
  const I64 dim = a.shape[static_cast<int>(axis)];
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(a.type, os));
  const std::size_t ni = idx.numel;
  for (std::size_t j = 0; j < ni; ++j) (void)fix_index(idx.i64()[j], dim);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < ni; ++j) {
      const I64 k = fix_index(idx.i64()[j], dim);
      std::memcpy(d + (o * ni + j) * inner, a.b() + (o * static_cast<std::size_t>(dim) + static_cast<std::size_t>(k)) * inner,
                  inner);
    }
}

void op_gather_elements(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& idx = in(n, ws, 1);
  require_type(idx, ElementType::Int64, "indices");
  if (idx.shape.rank != a.shape.rank) throw OpError("data and indices have different ranks");
  const int r = a.shape.rank;
  const I64 axis = norm_axis(n.axis, r);
  for (int i = 0; i < r; ++i)
    if (i != axis && idx.shape[i] > a.shape[i]) throw OpError("indices shape exceeds data shape");
  I64 ast[kMaxRank];
  contiguous_strides(a.shape, ast);
  const std::size_t es = element_size(a.type);
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(a.type, idx.shape));
  I64 cnt[kMaxRank] = {};
  const I64 dim = a.shape[static_cast<int>(axis)];
  for (std::size_t e = 0; e < idx.numel; ++e) {
    I64 off = 0;
    for (int i = 0; i < r; ++i) off += (i == axis ? fix_index(idx.i64()[e], dim) : cnt[i]) * ast[i];
    std::memcpy(d + e * es, a.b() + static_cast<std::size_t>(off) * es, es);
    for (int i = r - 1; i >= 0; --i) {
      if (++cnt[i] < idx.shape[i]) break;
      cnt[i] = 0;
    }
  }
}

// GatherND with batch_dims = n.i0
void op_gather_nd(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& idx = in(n, ws, 1);
  require_type(idx, ElementType::Int64, "indices");
  const int r = a.shape.rank, q = idx.shape.rank;
  const I64 b = n.i0;
  if (q < 1 || b < 0 || b >= std::min(r, q)) throw OpError("batch_dims does not fit the ranks of data and indices");
  const I64 last = idx.shape[q - 1];
  if (last < 1 || b + last > r) throw OpError("the last dimension of indices is larger than the rank of data");
  for (int i = 0; i < b; ++i)
    if (a.shape[i] != idx.shape[i]) throw OpError("batch dimensions of data and indices differ");
  Shape os;
  for (int i = 0; i < q - 1; ++i) os.push(idx.shape[i]);
  std::size_t slice = element_size(a.type);
  for (int i = static_cast<int>(b + last); i < r; ++i) {
    os.push(a.shape[i]);
    slice *= static_cast<std::size_t>(a.shape[i]);
  }
  std::size_t batch = 1, per_batch_idx = 1, data_batch = 1;
  for (int i = 0; i < b; ++i) batch *= static_cast<std::size_t>(a.shape[i]);
  for (int i = static_cast<int>(b); i < q - 1; ++i) per_batch_idx *= static_cast<std::size_t>(idx.shape[i]);
  I64 st[kMaxRank];
  {
    I64 s = 1;
    for (int i = static_cast<int>(b + last) - 1; i >= b; --i) {
      st[i] = s;
      s *= a.shape[i];
    }
    data_batch = static_cast<std::size_t>(s);
  }
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(a.type, os));
  const I64* ip = idx.i64();
  for (std::size_t bb = 0; bb < batch; ++bb)
    for (std::size_t j = 0; j < per_batch_idx; ++j) {
      const I64* t = ip + (bb * per_batch_idx + j) * static_cast<std::size_t>(last);
      I64 off = 0;
      for (I64 k = 0; k < last; ++k) off += fix_index(t[k], a.shape[static_cast<int>(b + k)]) * st[b + k];
      std::memcpy(d + (bb * per_batch_idx + j) * slice, a.b() + (bb * data_batch + static_cast<std::size_t>(off)) * slice, slice);
    }
}

void op_slice(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const int r = a.shape.rank;
  std::vector<I64>& tmp = ws.scratch_i;
  I64 starts[kMaxRank], ends[kMaxRank], steps[kMaxRank];
  bool set[kMaxRank] = {};
  std::size_t na;
  I64 sv[kMaxRank], ev[kMaxRank], av[kMaxRank], pv[kMaxRank];
  if (n.has_v0) {  // opset < 10: attributes
    na = n.v0.size();
    if (na > kMaxRank || n.v1.size() != na) throw OpError("starts and ends differ in length");
    for (std::size_t i = 0; i < na; ++i) {
      sv[i] = n.v0[i];
      ev[i] = n.v1[i];
      av[i] = n.v2.empty() ? static_cast<I64>(i) : n.v2[i];
      pv[i] = 1;
    }
    if (!n.v2.empty() && n.v2.size() != na) throw OpError("axes differ in length from starts");
  } else {
    read_ints(in(n, ws, 1), tmp, "starts");
    na = tmp.size();
    if (na > kMaxRank) throw OpError("too many starts");
    std::copy(tmp.begin(), tmp.end(), sv);
    read_ints(in(n, ws, 2), tmp, "ends");
    if (tmp.size() != na) throw OpError("starts and ends differ in length");
    std::copy(tmp.begin(), tmp.end(), ev);
    if (const Value* axv = opt_in(n, ws, 3)) {
      read_ints(*axv, tmp, "axes");
      if (tmp.size() != na) throw OpError("axes differ in length from starts");
      std::copy(tmp.begin(), tmp.end(), av);
    } else {
      for (std::size_t i = 0; i < na; ++i) av[i] = static_cast<I64>(i);
    }
    if (const Value* stv = opt_in(n, ws, 4)) {
      read_ints(*stv, tmp, "steps");
      if (tmp.size() != na) throw OpError("steps differ in length from starts");
      std::copy(tmp.begin(), tmp.end(), pv);
    } else {
      for (std::size_t i = 0; i < na; ++i) pv[i] = 1;
    }
  }
  for (int i = 0; i < r; ++i) {
    starts[i] = 0;
    ends[i] = a.shape[i];
    steps[i] = 1;
  }
  for (std::size_t k = 0; k < na; ++k) {
    const int ax = static_cast<int>(norm_axis(av[k], r));
    if (set[ax]) throw OpError("repeated axis in slice");
    set[ax] = true;
    const I64 dim = a.shape[ax];
    I64 step = pv[k];
    if (step == 0) throw OpError("slice step 0");
    // a step longer than the axis takes at most one element, whatever its size: shorten it to
    // the axis length so that the element count and the strides below cannot overflow
    const I64 longest = std::max<I64>(dim, 1);
    if (step > longest) step = longest;
    if (step < -longest) step = -longest;
    I64 s = sv[k], e = ev[k];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = std::clamp<I64>(s, 0, dim);
      e = std::clamp<I64>(e, 0, dim);
    } else {
      s = std::clamp<I64>(s, 0, dim - 1);
      e = std::clamp<I64>(e, -1, dim - 1);
    }
    // handle huge values before adding dim (INT64_MIN/MAX as used by exporters)
    if (sv[k] <= std::numeric_limits<I64>::min() / 2) s = step > 0 ? 0 : -1;
    if (ev[k] <= std::numeric_limits<I64>::min() / 2) e = step > 0 ? 0 : -1;
    starts[ax] = s;
    ends[ax] = e;
    steps[ax] = step;
  }
  I64 ist[kMaxRank], st[kMaxRank];
  contiguous_strides(a.shape, ist);
  Shape os;
  I64 base = 0;
  for (int i = 0; i < r; ++i) {
    I64 cnt = steps[i] > 0 ? (ends[i] - starts[i] + steps[i] - 1) / steps[i]
                           : (starts[i] - ends[i] + (-steps[i]) - 1) / (-steps[i]);
    if (cnt < 0) cnt = 0;
    os.push(cnt);
    st[i] = ist[i] * steps[i];
    if (cnt > 0) base += starts[i] * ist[i];
  }
  strided_copy(out(n, ws, 0), a, os, st, base);
}

void op_expand(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  std::vector<I64>& tmp = ws.scratch_i;
  read_ints(in(n, ws, 1), tmp, "shape");
  Shape target;
  for (I64 v : tmp) target.push(v);
  const Shape os = broadcast_shapes(a.shape, target);
  I64 st[kMaxRank];
  bcast_strides(os, a.shape, st);
  strided_copy(out(n, ws, 0), a, os, st, 0);
}

/// Tile: the input block is copied once per output position of each dimension, innermost
/// first, then each finished block is replicated with whole-block copies.
template <typename T>
void tile_block(T* dst, const T* src, const Shape& is, const Shape& os, const I64* rep, const I64* ist,
                const I64* ost, int dim) {
  const auto a = static_cast<std::size_t>(is[dim]);
  const auto reps = static_cast<std::size_t>(rep[dim]);
  if (dim == is.rank - 1) {
    if (a == 1) {
      std::fill(dst, dst + reps, src[0]);
      return;
    }
    std::memcpy(dst, src, a * sizeof(T));
  } else {
    for (std::size_t i = 0; i < a; ++i)
      tile_block(dst + i * static_cast<std::size_t>(ost[dim]), src + i * static_cast<std::size_t>(ist[dim]), is, os, rep,
                 ist, ost, dim + 1);
  }
  const std::size_t block = a * static_cast<std::size_t>(ost[dim]);
  for (std::size_t k = 1; k < reps; ++k) std::memcpy(dst + k * block, dst, block * sizeof(T));
}

template <typename T>
void tile_into(T* dst, const T* src, const Shape& is, const Shape& os, const I64* rep) {
  if (is.rank == 0) {
    dst[0] = src[0];
    return;
  }
  I64 ist[kMaxRank], ost[kMaxRank];
  contiguous_strides(is, ist);
  contiguous_strides(os, ost);
  tile_block(dst, src, is, os, rep, ist, ost, 0);
}

void op_tile(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  std::vector<I64>& rep = ws.scratch_i;
  read_ints(in(n, ws, 1), rep, "repeats");
  const int r = a.shape.rank;
  if (static_cast<int>(rep.size()) != r) throw OpError("repeats must have one entry per input dimension");
  Shape os;
  for (int i = 0; i < r; ++i) {
    if (rep[static_cast<std::size_t>(i)] < 0) throw OpError("negative repeat");
    if (a.shape[i] > 0 && rep[static_cast<std::size_t>(i)] > std::numeric_limits<I64>::max() / a.shape[i])
      throw OpError("repeats too large: the output dimension would overflow");
    os.push(a.shape[i] * rep[static_cast<std::size_t>(i)]);
  }
  void* d = out(n, ws, 0).alloc(a.type, os);
  if (os.numel() == 0) return;
  switch (element_size(a.type)) {
    case 4: tile_into(static_cast<float*>(d), a.f(), a.shape, os, rep.data()); break;
    case 8: tile_into(static_cast<I64*>(d), a.i64(), a.shape, os, rep.data()); break;
    default: tile_into(static_cast<U8*>(d), a.b(), a.shape, os, rep.data()); break;
  }
}

void op_shape(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const I64 r = a.shape.rank;
  I64 s = n.i0, e = n.i1 == std::numeric_limits<I64>::max() ? r : n.i1;
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = std::clamp<I64>(s, 0, r);
  e = std::clamp<I64>(e, 0, r);
  Shape os;
  os.push(std::max<I64>(e - s, 0));
  I64* d = static_cast<I64*>(out(n, ws, 0).alloc(ElementType::Int64, os));
  for (I64 i = s; i < e; ++i) d[i - s] = a.shape[static_cast<int>(i)];
}

void op_size(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  I64* d = static_cast<I64*>(out(n, ws, 0).alloc(ElementType::Int64, Shape{}));
  d[0] = static_cast<I64>(a.numel);
}

void op_constant_of_shape(const Node& n, Workspace& ws) {
  std::vector<I64>& tmp = ws.scratch_i;
  read_ints(in(n, ws, 0), tmp, "shape");
  Shape os;
  for (I64 v : tmp) {
    if (v < 0) throw OpError("negative dimension in shape");
    os.push(v);
  }
  const Value& c = *n.constant;
  const std::size_t es = element_size(c.type);
  U8* d = static_cast<U8*>(out(n, ws, 0).alloc(c.type, os));
  for (std::size_t i = 0; i < os.numel(); ++i) std::memcpy(d + i * es, c.data, es);
}

void op_range(const Node& n, Workspace& ws) {
  const Value& s = in(n, ws, 0);
  const Value& l = in(n, ws, 1);
  const Value& dl = in(n, ws, 2);
  if (s.type != l.type || s.type != dl.type) throw OpError("start, limit and delta have different types");
  if (s.numel != 1 || l.numel != 1 || dl.numel != 1) throw OpError("start, limit and delta must be scalars");
  Shape os;
  if (s.type == ElementType::Int64) {
    const I64 a = s.i64()[0], b = l.i64()[0], step = dl.i64()[0];
    if (step == 0) throw OpError("delta is 0");
    const I64 cnt = std::max<I64>(0, static_cast<I64>(std::ceil(static_cast<double>(b - a) / static_cast<double>(step))));
    os.push(cnt);
    I64* d = static_cast<I64*>(out(n, ws, 0).alloc(s.type, os));
    for (I64 i = 0; i < cnt; ++i) d[i] = a + i * step;
  } else if (s.type == ElementType::Float32) {
    const float a = s.f()[0], b = l.f()[0], step = dl.f()[0];
    if (step == 0.0f) throw OpError("delta is 0");
    const double c = std::ceil((static_cast<double>(b) - a) / step);
    if (!(c < 1e9)) throw OpError("range too long");
    const I64 cnt = std::max<I64>(0, static_cast<I64>(c));
    os.push(cnt);
    float* d = static_cast<float*>(out(n, ws, 0).alloc(s.type, os));
    for (I64 i = 0; i < cnt; ++i) d[i] = a + static_cast<float>(i) * step;
  } else {
    throw OpError("bool range");
  }
}

void op_cast(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  Value& o = out(n, ws, 0);
  if (a.type == n.to) {
    o.alias(a, a.shape);
    return;
  }
  void* d = o.alloc(n.to, a.shape);
  const std::size_t cnt = a.numel;
  auto conv = [&](auto* dst, auto f) {
    for (std::size_t i = 0; i < cnt; ++i) dst[i] = f(i);
  };
  switch (n.to) {
    case ElementType::Float32:
      if (a.type == ElementType::Int64) conv(static_cast<float*>(d), [&](std::size_t i) { return static_cast<float>(a.i64()[i]); });
      else conv(static_cast<float*>(d), [&](std::size_t i) { return a.b()[i] ? 1.0f : 0.0f; });
      break;
    case ElementType::Int64:
      if (a.type == ElementType::Float32)
        conv(static_cast<I64*>(d), [&](std::size_t i) {
          const float v = a.f()[i];
          return v != v ? std::numeric_limits<I64>::min()
                        : v >= 9.2233720368547758e18f ? std::numeric_limits<I64>::min()
                        : v < -9.2233720368547758e18f ? std::numeric_limits<I64>::min() : static_cast<I64>(v);
        });
      else conv(static_cast<I64*>(d), [&](std::size_t i) { return static_cast<I64>(a.b()[i] != 0); });
      break;
    case ElementType::Bool:
      if (a.type == ElementType::Float32) conv(static_cast<U8*>(d), [&](std::size_t i) { return U8(a.f()[i] != 0.0f); });
      else conv(static_cast<U8*>(d), [&](std::size_t i) { return U8(a.i64()[i] != 0); });
      break;
  }
}

void op_identity(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  out(n, ws, 0).alias(a, a.shape);
  if (Value* mask = opt_out(n, ws, 1)) {  // Dropout's mask: all kept at inference
    U8* d = static_cast<U8*>(mask->alloc(ElementType::Bool, a.shape));
    std::memset(d, 1, a.numel);
  }
}

void op_reduce(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  std::vector<I64>& axes = ws.scratch_i;
  bool given;
  axes_of(n, ws, axes, given);
  const int r = a.shape.rank;
  bool red[kMaxRank] = {};
  if (axes.empty()) {
    if (n.i1) {  // noop_with_empty_axes
      if (a.type == ElementType::Float32) {
        float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, a.shape));
        std::memcpy(d, a.data, a.numel * 4);
      } else {
        out(n, ws, 0).alias(a, a.shape);
      }
      return;
    }
    for (int i = 0; i < r; ++i) red[i] = true;
  } else {
    for (I64 ax : axes) red[norm_axis(ax, r)] = true;
  }
  Shape os, full;  // full: reduced dims kept as 1
  for (int i = 0; i < r; ++i) {
    full.push(red[i] ? 1 : a.shape[i]);
    if (!red[i]) os.push(a.shape[i]);
    else if (n.i0) os.push(1);
  }
  std::size_t count = 1;
  for (int i = 0; i < r; ++i)
    if (red[i]) count *= static_cast<std::size_t>(a.shape[i]);
  const std::size_t on = full.numel();
  // fast path: the reduced axes are one contiguous run -> [outer, len, inner]
  int first_red = -1, last_red = -1;
  for (int i = 0; i < r; ++i)
    if (red[i]) {
      if (first_red < 0) first_red = i;
      last_red = i;
    }
  bool contiguous = first_red >= 0;
  for (int i = first_red; contiguous && i <= last_red; ++i)
    if (!red[i] && a.shape[i] != 1) contiguous = false;
  const ReduceOp rop = n.reduce;
  if (a.type == ElementType::Float32 && contiguous && a.numel > 0 &&
      (rop == ReduceOp::Sum || rop == ReduceOp::Mean || rop == ReduceOp::SumSquare || rop == ReduceOp::L2)) {
    std::size_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < r; ++i) {
      const auto di = static_cast<std::size_t>(a.shape[i]);
      if (i < first_red) outer *= di;
      else if (i > last_red) inner *= di;
      else len *= di;
    }
    float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, os));
    const float* x = a.f();
    const bool sq = rop == ReduceOp::SumSquare || rop == ReduceOp::L2;
    for (std::size_t o = 0; o < outer; ++o) {
      float* dd = d + o * inner;
      const float* xo = x + o * len * inner;
      if (inner == 1) {
        float acc = 0.0f;
        if (sq)
          for (std::size_t j = 0; j < len; ++j) acc += xo[j] * xo[j];
        else
          for (std::size_t j = 0; j < len; ++j) acc += xo[j];
        dd[0] = acc;
      } else {
        for (std::size_t q = 0; q < inner; ++q) dd[q] = 0.0f;
        for (std::size_t j = 0; j < len; ++j) {
          const float* xr = xo + j * inner;
          if (sq)
            for (std::size_t q = 0; q < inner; ++q) dd[q] += xr[q] * xr[q];
          else
            for (std::size_t q = 0; q < inner; ++q) dd[q] += xr[q];
        }
      }
    }
    if (rop == ReduceOp::Mean) {
      const float c = static_cast<float>(count);
      for (std::size_t i = 0; i < on; ++i) d[i] /= c;
    } else if (rop == ReduceOp::L2) {
      for (std::size_t i = 0; i < on; ++i) d[i] = std::sqrt(d[i]);
    }
    return;
  }
  if (a.type == ElementType::Float32) {
    float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, os));
    const ReduceOp op = n.reduce;
    const float init = op == ReduceOp::Max   ? -std::numeric_limits<float>::infinity()
                       : op == ReduceOp::Min ? std::numeric_limits<float>::infinity()
                       : op == ReduceOp::Prod ? 1.0f
                                             : 0.0f;
    for (std::size_t i = 0; i < on; ++i) d[i] = init;
    // iterate over the input; the output offset uses strides of `full` with 0 for reduced dims
    I64 ost[kMaxRank], st[2][kMaxRank];
    contiguous_strides(full, ost);
    I64 ist[kMaxRank];
    contiguous_strides(a.shape, ist);
    for (int i = 0; i < r; ++i) {
      st[0][i] = red[i] ? 0 : ost[i];
      st[1][i] = ist[i];
    }
    const I64 base[2] = {0, 0};
    const float* x = a.f();
    for_each_index<2>(a.shape, st, base, [&](std::size_t, const I64* off, const I64 (&s)[2][kMaxRank], I64 inner, int last) {
      float* dd = d + off[0];
      const float* xx = x + off[1];
      const I64 so = s[0][last];
      switch (op) {
        case ReduceOp::Sum:
        case ReduceOp::Mean:
          for (I64 j = 0; j < inner; ++j) dd[j * so] += xx[j];
          break;
        case ReduceOp::SumSquare:
        case ReduceOp::L2:
          for (I64 j = 0; j < inner; ++j) dd[j * so] += xx[j] * xx[j];
          break;
        case ReduceOp::Prod:
          for (I64 j = 0; j < inner; ++j) dd[j * so] *= xx[j];
          break;
        case ReduceOp::Max:
          for (I64 j = 0; j < inner; ++j) {
            const float v = xx[j];
            float& y = dd[j * so];
            if (v > y || v != v) y = v != v || y != y ? std::numeric_limits<float>::quiet_NaN() : v;
          }
          break;
        case ReduceOp::Min:
          for (I64 j = 0; j < inner; ++j) {
            const float v = xx[j];
            float& y = dd[j * so];
            if (v < y || v != v) y = v != v || y != y ? std::numeric_limits<float>::quiet_NaN() : v;
          }
          break;
      }
    });
    if (op == ReduceOp::Mean) {
      const float c = static_cast<float>(count);
      for (std::size_t i = 0; i < on; ++i) d[i] /= c;
    } else if (op == ReduceOp::L2) {
      for (std::size_t i = 0; i < on; ++i) d[i] = std::sqrt(d[i]);
    }
  } else if (a.type == ElementType::Int64) {
    I64* d = static_cast<I64*>(out(n, ws, 0).alloc(a.type, os));
    const ReduceOp op = n.reduce;
    if (op != ReduceOp::Sum && op != ReduceOp::Max && op != ReduceOp::Min && op != ReduceOp::Prod)
      throw OpError("this reduction of int64 tensors is not supported");
    const I64 init = op == ReduceOp::Max ? std::numeric_limits<I64>::min()
                     : op == ReduceOp::Min ? std::numeric_limits<I64>::max()
                     : op == ReduceOp::Prod ? 1 : 0;
    for (std::size_t i = 0; i < on; ++i) d[i] = init;
    I64 ost[kMaxRank];
    contiguous_strides(full, ost);
    I64 cnt[kMaxRank] = {};
    for (std::size_t e = 0; e < a.numel; ++e) {
      I64 off = 0;
      for (int i = 0; i < r; ++i) off += red[i] ? 0 : cnt[i] * ost[i];
      const I64 v = a.i64()[e];
      I64& y = d[off];
      y = op == ReduceOp::Sum ? y + v : op == ReduceOp::Prod ? y * v : op == ReduceOp::Max ? std::max(y, v) : std::min(y, v);
      for (int i = r - 1; i >= 0; --i) {
        if (++cnt[i] < a.shape[i]) break;
        cnt[i] = 0;
      }
    }
  } else {
    throw OpError("reduction of bool tensors is not supported");
  }
}

void op_batchnorm(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Float32, "X");
  if (a.shape.rank < 2) throw OpError("X must have at least 2 dimensions (N, C, ...)");
  const auto C = static_cast<std::size_t>(a.shape[1]);
  if (C != n.f0.size())
    throw OpError("X has " + std::to_string(C) + " channels, the statistics " + std::to_string(n.f0.size()));
  float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, a.shape));
  const std::size_t N = static_cast<std::size_t>(a.shape[0]);
  const std::size_t inner = C ? a.numel / std::max<std::size_t>(N * C, 1) : 0;
  const float* x = a.f();
  for (std::size_t b = 0; b < N; ++b)
    for (std::size_t c = 0; c < C; ++c) {
      const float s = n.f0[c], t = n.f1[c];
      const std::size_t o = (b * C + c) * inner;
      for (std::size_t j = 0; j < inner; ++j) d[o + j] = x[o + j] * s + t;
    }
}

void op_layernorm(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& scale = in(n, ws, 1);
  const Value* bias = opt_in(n, ws, 2);
  require_type(a, ElementType::Float32, "X");
  const I64 axis = norm_axis(n.axis, a.shape.rank);
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < a.shape.rank; ++i) (i < axis ? outer : inner) *= static_cast<std::size_t>(a.shape[i]);
  if (scale.numel != inner || (bias && bias->numel != inner))
    throw OpError("Scale/B have " + std::to_string(scale.numel) + " elements, the normalised dimensions " +
                  std::to_string(inner));
  float* d = static_cast<float*>(out(n, ws, 0).alloc(a.type, a.shape));
  const float* x = a.f();
  const float eps = n.alpha;
  for (std::size_t o = 0; o < outer; ++o) {
    const float* xr = x + o * inner;
    float* dr = d + o * inner;
    float mean = 0.0f;
    for (std::size_t j = 0; j < inner; ++j) mean += xr[j];
    mean /= static_cast<float>(inner);
    float var = 0.0f;
    for (std::size_t j = 0; j < inner; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= static_cast<float>(inner);
    const float inv = 1.0f / std::sqrt(var + eps);
    for (std::size_t j = 0; j < inner; ++j) dr[j] = (xr[j] - mean) * inv * scale.f()[j] + (bias ? bias->f()[j] : 0.0f);
  }
}

void op_topk(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Float32, "X");
  const I64 k = scalar_int(in(n, ws, 1), "K");
  const I64 axis = norm_axis(n.axis, a.shape.rank);
  const I64 dim = a.shape[static_cast<int>(axis)];
  if (k < 0 || k > dim)
    throw OpError("K = " + std::to_string(k) + " but axis " + std::to_string(axis) + " has " + std::to_string(dim) +
                  " elements");
  Shape os = a.shape;
  os[static_cast<int>(axis)] = k;
  float* vals = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  Value* io = opt_out(n, ws, 1);
  I64* idx = io ? static_cast<I64*>(io->alloc(ElementType::Int64, os)) : nullptr;
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < a.shape.rank; ++i) {
    if (i < axis) outer *= static_cast<std::size_t>(a.shape[i]);
    else if (i > axis) inner *= static_cast<std::size_t>(a.shape[i]);
  }
  std::vector<I64>& order = ws.scratch_i;
  order.resize(static_cast<std::size_t>(dim));
  const float* x = a.f();
  const bool largest = n.i1 != 0;
  const auto kk = static_cast<std::size_t>(k);
  // total order: NaN counts as larger than any number; ties keep the lower index first
  auto better = [largest](float u, I64 p, float v, I64 q) {
    const bool un = u != u, vn = v != v;
    if (un || vn) {
      if (un && vn) return p < q;
      return largest ? un : vn;
    }
    if (u != v) return largest ? u > v : u < v;
    return p < q;
  };
  if (kk <= 64) {
    // insertion into the k best so far: most elements fail the test against the worst kept
    std::vector<float>& kv = ws.scratch;
    kv.resize(kk);
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t in_ = 0; in_ < inner; ++in_) {
        const float* base = x + o * static_cast<std::size_t>(dim) * inner + in_;
        std::size_t cnt = 0;
        if (kk > 0) {
          for (I64 j = 0; j < dim; ++j) {
            const float u = base[static_cast<std::size_t>(j) * inner];
            if (cnt == kk && !better(u, j, kv[kk - 1], order[kk - 1])) continue;
            std::size_t pos = cnt < kk ? cnt++ : kk - 1;
            while (pos > 0 && better(u, j, kv[pos - 1], order[pos - 1])) {
              kv[pos] = kv[pos - 1];
              order[pos] = order[pos - 1];
              --pos;
            }
            kv[pos] = u;
            order[pos] = j;
          }
        }
        const std::size_t ob = o * kk * inner + in_;
        for (std::size_t j = 0; j < kk; ++j) {
          vals[ob + j * inner] = kv[j];
          if (idx) idx[ob + j * inner] = order[j];
        }
      }
    return;
  }
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t in_ = 0; in_ < inner; ++in_) {
      const float* base = x + o * static_cast<std::size_t>(dim) * inner + in_;
      for (I64 j = 0; j < dim; ++j) order[static_cast<std::size_t>(j)] = j;
      // total order: NaN counts as larger than any number; ties keep the lower index first
      auto before = [&](I64 p, I64 q) {
        const float u = base[static_cast<std::size_t>(p) * inner], v = base[static_cast<std::size_t>(q) * inner];
        const bool un = u != u, vn = v != v;
        if (un || vn) {
          if (un && vn) return p < q;
          return largest ? un : vn;
        }
        if (u != v) return largest ? u > v : u < v;
        return p < q;
      };
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kk), order.end(), before);
      const std::size_t ob = o * kk * inner + in_;
      for (std::size_t j = 0; j < kk; ++j) {
        vals[ob + j * inner] = base[static_cast<std::size_t>(order[j]) * inner];
        if (idx) idx[ob + j * inner] = order[j];
      }
    }
}

void op_split(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const I64 axis = norm_axis(n.axis, a.shape.rank);
  const I64 dim = a.shape[static_cast<int>(axis)];
  const std::size_t no = n.out.size();
  std::vector<I64>& sizes = ws.scratch_i;
  if (n.has_v0) sizes = n.v0;
  else if (const Value* s = opt_in(n, ws, 1)) read_ints(*s, sizes, "split");
  else {
    sizes.assign(no, 0);
    const I64 chunk = (dim + static_cast<I64>(no) - 1) / static_cast<I64>(no);
    I64 left = dim;
    for (std::size_t i = 0; i < no; ++i) {
      sizes[i] = std::min(chunk, left);
      left -= sizes[i];
    }
    if (n.i0 == 0 && dim % static_cast<I64>(no) != 0)
      throw OpError("axis of size " + std::to_string(dim) + " cannot be split evenly into " + std::to_string(no));
  }
  if (sizes.size() != no) throw OpError("split has " + std::to_string(sizes.size()) + " sizes for " + std::to_string(no) + " outputs");
  I64 total = 0;
  for (I64 s : sizes) {
    if (s < 0) throw OpError("negative split size");
    total += s;
  }
  if (total != dim) throw OpError("split sizes add up to " + std::to_string(total) + ", not " + std::to_string(dim));
  I64 ist[kMaxRank];
  contiguous_strides(a.shape, ist);
  I64 start = 0;
  for (std::size_t k = 0; k < no; ++k) {
    Shape os = a.shape;
    os[static_cast<int>(axis)] = sizes[k];
    if (Value* o = opt_out(n, ws, k)) strided_copy(*o, a, os, ist, start * ist[axis]);
    start += sizes[k];
  }
}

// ---- linear algebra

/// Copies the transposed [rows, cols] matrix src into dst as [cols, rows].
void transpose_into(float* dst, const float* src, std::size_t rows, std::size_t cols) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
}

void op_dense(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Float32, "input");
  const PackedDense& p = *n.dense;
  if (a.shape.rank < 1 || a.shape[a.shape.rank - 1] != p.K)
    throw OpError("input of shape " + a.shape.str() + " does not fit weights with " + std::to_string(p.K) + " rows");
  Shape os = a.shape;
  os[os.rank - 1] = p.N;
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const std::size_t M = p.K ? a.numel / static_cast<std::size_t>(p.K) : os.numel() / std::max<std::size_t>(1, static_cast<std::size_t>(p.N));
  const auto K = static_cast<std::size_t>(p.K), N = static_cast<std::size_t>(p.N);
  if (p.N <= kDotColumns && p.cols.size() == K * N && p.bias.size() >= N)
    gemm_columns(M, N, K, a.f(), K, p.cols.data(), d, N, p.bias.data(), n.act, n.alpha, n.beta);
  else if (p.panels.size() == packed_panels_size(K, N) && p.bias.size() >= (N + kPanel - 1) / kPanel * kPanel)
    gemm_packed(M, N, K, a.f(), K, p.panels.data(), d, N, p.bias.data(), nullptr, n.act, n.alpha, n.beta, p.finite);
  else
    gemm(M, N, K, a.f(), K, p.w.data(), static_cast<std::size_t>(p.ldb), d, N, p.bias.data(), nullptr, n.act, n.alpha,
         n.beta);
}

void op_gemm(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  const Value* c = opt_in(n, ws, 2);
  require_type(a, ElementType::Float32, "A");
  require_type(b, ElementType::Float32, "B");
  if (a.shape.rank != 2 || b.shape.rank != 2) throw OpError("A and B must be 2-dimensional");
  const bool ta = n.i0 != 0, tb = n.i1 != 0;
  const auto M = static_cast<std::size_t>(ta ? a.shape[1] : a.shape[0]);
  const auto K = static_cast<std::size_t>(ta ? a.shape[0] : a.shape[1]);
  const auto Kb = static_cast<std::size_t>(tb ? b.shape[1] : b.shape[0]);
  const auto N = static_cast<std::size_t>(tb ? b.shape[0] : b.shape[1]);
  if (K != Kb) throw OpError("A " + a.shape.str() + " and B " + b.shape.str() + " do not fit");
  Shape os;
  os.push(static_cast<I64>(M));
  os.push(static_cast<I64>(N));
  std::vector<float>& tmp = ws.scratch;
  tmp.resize((ta ? M * K : 0) + (tb ? K * N : 0));
  const float* A = a.f();
  const float* B = b.f();
  if (ta) {
    transpose_into(tmp.data(), a.f(), K, M);
    A = tmp.data();
  }
  if (tb) {
    transpose_into(tmp.data() + (ta ? M * K : 0), b.f(), N, K);
    B = tmp.data() + (ta ? M * K : 0);
  }
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  gemm(M, N, K, A, K, B, N, d, N, nullptr, nullptr, Act::None, 0.0f, 0.0f);
  const float alpha = n.alpha, beta = n.beta;
  if (alpha != 1.0f)
    for (std::size_t i = 0; i < M * N; ++i) d[i] *= alpha;
  if (c && beta != 0.0f) {
    require_type(*c, ElementType::Float32, "C");
    const Shape bs = broadcast_shapes(os, c->shape);
    if (!(bs == os)) throw OpError("C of shape " + c->shape.str() + " does not broadcast to " + os.str());
    I64 st[1][kMaxRank];
    bcast_strides(os, c->shape, st[0]);
    const I64 base[1] = {0};
    for_each_index<1>(os, st, base, [&](std::size_t o0, const I64* off, const I64 (&s)[1][kMaxRank], I64 inner, int last) {
      for (I64 j = 0; j < inner; ++j) d[o0 + static_cast<std::size_t>(j)] += beta * c->f()[off[0] + j * s[0][last]];
    });
  }
}

void op_matmul(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  require_type(a, ElementType::Float32, "A");
  require_type(b, ElementType::Float32, "B");
  if (a.shape.rank < 1 || b.shape.rank < 1) throw OpError("MatMul of a scalar");
  Shape as = a.shape, bs = b.shape;
  const bool a1 = as.rank == 1, b1 = bs.rank == 1;
  if (a1) {
    as.rank = 2;
    as[1] = as[0];
    as[0] = 1;
  }
  if (b1) {
    bs.rank = 2;
    bs[1] = 1;
  }
  const auto M = static_cast<std::size_t>(as[as.rank - 2]), K = static_cast<std::size_t>(as[as.rank - 1]);
  const auto Kb = static_cast<std::size_t>(bs[bs.rank - 2]), N = static_cast<std::size_t>(bs[bs.rank - 1]);
  if (K != Kb) throw OpError("A " + a.shape.str() + " and B " + b.shape.str() + " do not fit");
  Shape ab, bb;  // batch shapes
  for (int i = 0; i < as.rank - 2; ++i) ab.push(as[i]);
  for (int i = 0; i < bs.rank - 2; ++i) bb.push(bs[i]);
  const Shape batch = broadcast_shapes(ab, bb);
  Shape os = batch;
  if (!a1) os.push(static_cast<I64>(M));
  if (!b1) os.push(static_cast<I64>(N));
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  I64 st[2][kMaxRank];
  bcast_strides(batch, ab, st[0]);
  bcast_strides(batch, bb, st[1]);
  const I64 base[2] = {0, 0};
  const std::size_t nb = batch.numel();
  if (nb == 0 || M == 0 || N == 0) return;
  if (batch.rank == 0) {
    gemm(M, N, K, a.f(), K, b.f(), N, d, N, nullptr, nullptr, Act::None, 0.0f, 0.0f);
    return;
  }
  for_each_index<2>(batch, st, base, [&](std::size_t o0, const I64* off, const I64 (&s)[2][kMaxRank], I64 inner, int last) {
    for (I64 j = 0; j < inner; ++j) {
      const float* A = a.f() + static_cast<std::size_t>(off[0] + j * s[0][last]) * M * K;
      const float* B = b.f() + static_cast<std::size_t>(off[1] + j * s[1][last]) * K * N;
      gemm(M, N, K, A, K, B, N, d + (o0 + static_cast<std::size_t>(j)) * M * N, N, nullptr, nullptr, Act::None, 0.0f,
           0.0f);
    }
  });
}

}  // namespace

void run_node(const Node& n, Workspace& ws) {
  if (n.run) {
    n.run(n, ws);
    return;
  }
  switch (n.op) {
    case Op::Dense: op_dense(n, ws); return;
    case Op::Gemm: op_gemm(n, ws); return;
    case Op::MatMul: op_matmul(n, ws); return;
    case Op::Conv: break;  // run by n.run (ops_conv.cpp)
    case Op::Kernel: break;
    case Op::Binary: op_binary(n, ws); return;
    case Op::Variadic: op_variadic(n, ws); return;
    case Op::Compare: op_compare(n, ws); return;
    case Op::Logical: op_logical(n, ws); return;
    case Op::Not: op_not(n, ws); return;
    case Op::Where: op_where(n, ws); return;
    case Op::Unary: op_unary(n, ws); return;
    case Op::Softmax: op_softmax(n, ws, false); return;
    case Op::LogSoftmax: op_softmax(n, ws, true); return;
    case Op::Concat: op_concat(n, ws); return;
    case Op::Reshape: op_reshape(n, ws); return;
    case Op::Flatten: op_flatten(n, ws); return;
    case Op::Squeeze: op_squeeze(n, ws); return;
    case Op::Unsqueeze: op_unsqueeze(n, ws); return;
    case Op::Transpose: op_transpose(n, ws); return;
    case Op::Gather: op_gather(n, ws); return;
    case Op::GatherElements: op_gather_elements(n, ws); return;
    case Op::GatherND: op_gather_nd(n, ws); return;
    case Op::Slice: op_slice(n, ws); return;
    case Op::Expand: op_expand(n, ws); return;
    case Op::Tile: op_tile(n, ws); return;
    case Op::ShapeOf: op_shape(n, ws); return;
    case Op::Size: op_size(n, ws); return;
    case Op::ConstantOfShape: op_constant_of_shape(n, ws); return;
    case Op::Range: op_range(n, ws); return;
    case Op::Cast: op_cast(n, ws); return;
    case Op::Identity: op_identity(n, ws); return;
    case Op::Reduce: op_reduce(n, ws); return;
    case Op::BatchNorm: op_batchnorm(n, ws); return;
    case Op::LayerNorm: op_layernorm(n, ws); return;
    case Op::TopK: op_topk(n, ws); return;
    case Op::Split: op_split(n, ws); return;
  }
  throw OpError("internal error: unknown op");
}

}  // namespace hepinfer::nn
