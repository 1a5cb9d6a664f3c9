// Elementwise family: activations and other unary functions, arithmetic (Add ... Pow),
// variadic Max/Min/Sum/Mean, comparisons, logical ops, Not, Where, Cast, Identity and Dropout
// (inference: an Identity). Import handlers and kernels (see op_import.hpp); broadcasting
// follows numpy (broadcast.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "nn/broadcast.hpp"
#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

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
  for_each_index<2>(os, st, base, [&](std::size_t o0, const I64* off, const I64(&s)[2][kMaxRank], I64 inner, int last) {
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
    for_each_index<2>(os, st, base,
                      [&](std::size_t o0, const I64* off, const I64(&s)[2][kMaxRank], I64 inner, int last) {
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
      default:
        binary_loop<float, float>(a, b, o, a.type, [op](float x, float y) { return apply_bin(op, x, y); });
        return;
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
      for_each_index<1>(os, st, base,
                        [&](std::size_t o0, const I64* off, const I64(&str)[1][kMaxRank], I64 inner, int last) {
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
  else binary_loop<U8, U8>(a, b, o, ElementType::Bool, [op](U8 x, U8 y) { return U8(apply_cmp(op, x, y)); });
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
    for_each_index<3>(os, st, base,
                      [&](std::size_t o0, const I64* off, const I64(&s)[3][kMaxRank], I64 inner, int last) {
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
  if (a.type == ElementType::Int64 &&
      (n.act == Act::Neg || n.act == Act::Abs || n.act == Act::Relu || n.act == Act::Sign)) {
    I64* d = static_cast<I64*>(o.alloc(a.type, a.shape));
    for (std::size_t i = 0; i < a.numel; ++i) {
      const I64 v = a.i64()[i];
      d[i] = n.act == Act::Neg    ? -v
             : n.act == Act::Abs  ? (v < 0 ? -v : v)
             : n.act == Act::Relu ? std::max<I64>(v, 0)
                                  : (v > 0) - (v < 0);
    }
    return;
  }
  require_type(a, ElementType::Float32, "input");
  float* d = static_cast<float*>(o.alloc(a.type, a.shape));
  std::memcpy(d, a.data, a.numel * 4);
  activate(d, a.numel, n.act, n.alpha, n.beta);
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
      if (a.type == ElementType::Int64)
        conv(static_cast<float*>(d), [&](std::size_t i) { return static_cast<float>(a.i64()[i]); });
      else conv(static_cast<float*>(d), [&](std::size_t i) { return a.b()[i] ? 1.0f : 0.0f; });
      break;
    case ElementType::Int64:
      if (a.type == ElementType::Float32)
        conv(static_cast<I64*>(d), [&](std::size_t i) {
          const float v = a.f()[i];
          return v != v                        ? std::numeric_limits<I64>::min()
                 : v >= 9.2233720368547758e18f ? std::numeric_limits<I64>::min()
                 : v < -9.2233720368547758e18f ? std::numeric_limits<I64>::min()
                                               : static_cast<I64>(v);
        });
      else conv(static_cast<I64*>(d), [&](std::size_t i) { return static_cast<I64>(a.b()[i] != 0); });
      break;
    case ElementType::Bool:
      if (a.type == ElementType::Float32)
        conv(static_cast<U8*>(d), [&](std::size_t i) { return U8(a.f()[i] != 0.0f); });
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

// ---- import handlers

const std::map<std::string, Act>& unary_ops() {
  static const std::map<std::string, Act> m = {{"Neg", Act::Neg},
                                               {"Relu", Act::Relu},
                                               {"LeakyRelu", Act::LeakyRelu},
                                               {"Elu", Act::Elu},
                                               {"Selu", Act::Selu},
                                               {"Gelu", Act::Gelu},
                                               {"Sigmoid", Act::Sigmoid},
                                               {"Tanh", Act::Tanh},
                                               {"Exp", Act::Exp},
                                               {"Log", Act::Log},
                                               {"Sqrt", Act::Sqrt},
                                               {"Abs", Act::Abs},
                                               {"Erf", Act::Erf},
                                               {"Reciprocal", Act::Reciprocal},
                                               {"Floor", Act::Floor},
                                               {"Ceil", Act::Ceil},
                                               {"Softplus", Act::Softplus},
                                               {"HardSigmoid", Act::HardSigmoid},
                                               {"Sin", Act::Sin},
                                               {"Cos", Act::Cos},
                                               {"Sign", Act::Sign},
                                               {"Round", Act::Round},
                                               {"Clip", Act::Clip}};
  return m;
}
const std::map<std::string, BinOp>& binary_ops() {
  static const std::map<std::string, BinOp> m = {
      {"Add", BinOp::Add}, {"Sub", BinOp::Sub}, {"Mul", BinOp::Mul}, {"Div", BinOp::Div}, {"Pow", BinOp::Pow}};
  return m;
}
const std::map<std::string, BinOp>& variadic_ops() {
  static const std::map<std::string, BinOp> m = {
      {"Max", BinOp::Max}, {"Min", BinOp::Min}, {"Sum", BinOp::Add}, {"Mean", BinOp::Add}};
  return m;
}
const std::map<std::string, CmpOp>& compare_ops() {
  static const std::map<std::string, CmpOp> m = {{"Equal", CmpOp::Equal},
                                                 {"Less", CmpOp::Less},
                                                 {"Greater", CmpOp::Greater},
                                                 {"LessOrEqual", CmpOp::LessOrEqual},
                                                 {"GreaterOrEqual", CmpOp::GreaterOrEqual}};
  return m;
}
const std::map<std::string, LogicOp>& logical_ops() {
  static const std::map<std::string, LogicOp> m = {{"And", LogicOp::And}, {"Or", LogicOp::Or}, {"Xor", LogicOp::Xor}};
  return m;
}

void import_binary(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Binary;
  n.run = op_binary;
  n.bin = binary_ops().at(at.op_type());
}

void import_variadic(ImportContext& at, Node& n) {
  at.need_inputs(1, 64);
  at.need_outputs(1);
  n.op = Op::Variadic;
  n.run = op_variadic;
  n.bin = variadic_ops().at(at.op_type());
  n.i0 = at.op_type() == "Mean";
}

void import_compare(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Compare;
  n.run = op_compare;
  n.cmp = compare_ops().at(at.op_type());
}

void import_logical(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Logical;
  n.run = op_logical;
  n.logic = logical_ops().at(at.op_type());
}

void import_not(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Not;
  n.run = op_not;
}

void import_where(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Where;
  n.run = op_where;
}

// Unary functions and activations; a Clip's constant min/max inputs (opset >= 11) are read by
// the finalize step of constant folding (passes.cpp).
void import_unary(ImportContext& at, Node& n) {
  const std::string& t = at.op_type();
  at.need_outputs(1);
  n.op = Op::Unary;
  n.run = op_unary;
  n.act = unary_ops().at(t);
  if (t == "LeakyRelu") n.alpha = at.f("alpha", 0.01f);
  else if (t == "Elu") n.alpha = at.f("alpha", 1.0f);
  else if (t == "Selu") {
    n.alpha = at.f("alpha", 1.67326319217681884765625f);
    n.beta = at.f("gamma", 1.05070102214813232421875f);
  } else if (t == "HardSigmoid") {
    n.alpha = at.f("alpha", 0.2f);
    n.beta = at.f("beta", 0.5f);
  } else if (t == "Gelu") {
    const std::string ap = at.s("approximate", "none");
    if (ap == "tanh") n.act = Act::GeluTanh;
    else if (ap != "none") at.fail("approximate '" + ap + "' is not supported");
  }
  if (t == "Clip") {
    n.alpha = -std::numeric_limits<float>::infinity();
    n.beta = std::numeric_limits<float>::infinity();
    if (at.opset() < 11) {
      at.need_inputs(1, 1);
      n.alpha = at.f("min", n.alpha);
      n.beta = at.f("max", n.beta);
    } else {
      at.need_inputs(1, 3);  // constant min/max are read after constant folding (finalize)
      n.i0 = 1;
    }
  } else {
    at.need_inputs(1, 1);
  }
}

void import_cast(ImportContext& at, Node& n) {
  at.need_outputs(1);
  n.op = Op::Cast;
  n.run = op_cast;
  at.ignore("saturate");
  at.need_inputs(1, 1);
  const I64 to = at.i("to", -1);
  if (!at.type_from_code(to, n.to)) at.fail("cast to " + at.type_code_name(to) + " is not supported");
}

void import_identity(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Identity;
  n.run = op_identity;
}

// Dropout at inference: the data passes through, the optional mask is all true.
void import_dropout(ImportContext& at, Node& n) {
  at.need_inputs(1, 3);
  at.need_outputs(2);
  n.op = Op::Identity;
  n.run = op_identity;
  at.ignore("seed");
  at.ignore("ratio");
  if (at.i("is_test", 1) == 0) at.fail("is_test = 0 (training) is not supported");
  if (at.has_input(2)) {
    const Value* tm = at.const_input(2);
    if (!tm || tm->numel != 1 || tm->b()[0]) at.fail("training_mode must be a constant false");
  }
  n.in.resize(1);
}

}  // namespace

void add_elementwise_ops(OpTable& t) {
  for (const auto& kv : unary_ops()) t[kv.first] = import_unary;
  for (const auto& kv : binary_ops()) t[kv.first] = import_binary;
  for (const auto& kv : variadic_ops()) t[kv.first] = import_variadic;
  for (const auto& kv : compare_ops()) t[kv.first] = import_compare;
  for (const auto& kv : logical_ops()) t[kv.first] = import_logical;
  t["Not"] = import_not;
  t["Where"] = import_where;
  t["Cast"] = import_cast;
  t["Identity"] = import_identity;
  t["Dropout"] = import_dropout;
}

}  // namespace hepinfer::nn
