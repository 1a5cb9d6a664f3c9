#pragma once
// Small helpers shared by the op kernels (ops*.cpp): input/output access and checks that throw
// OpError (the executor adds the node name and op).
#include <algorithm>
#include <string>
#include <vector>

#include "nn/graph.hpp"

namespace hepinfer::nn {

using I64 = std::int64_t;
using U8 = unsigned char;

inline const Value* opt_in(const Node& n, Workspace& ws, std::size_t k) {
  if (k >= n.in.size() || n.in[k] < 0) return nullptr;
  return &ws.values[static_cast<std::size_t>(n.in[k])];
}
inline const Value& in(const Node& n, Workspace& ws, std::size_t k) {
  const Value* v = opt_in(n, ws, k);
  if (!v) throw OpError("input " + std::to_string(k) + " is missing");
  return *v;
}
inline Value* opt_out(const Node& n, Workspace& ws, std::size_t k) {
  if (k >= n.out.size() || n.out[k] < 0) return nullptr;
  return &ws.values[static_cast<std::size_t>(n.out[k])];
}
inline Value& out(const Node& n, Workspace& ws, std::size_t k) { return *opt_out(n, ws, k); }

inline const char* type_name(ElementType t) { return element_type_name(t); }

inline void require_type(const Value& v, ElementType t, const char* what) {
  if (v.type != t) throw OpError(std::string(what) + " must be " + type_name(t) + ", got " + type_name(v.type));
}

inline I64 norm_axis(I64 axis, int rank, const char* what = "axis") {
  const I64 a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= std::max(rank, 0))
    throw OpError(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return a;
}

/// Reads a 1-D (or scalar) int64 tensor into `dst`.
inline void read_ints(const Value& v, std::vector<I64>& dst, const char* what) {
  if (v.type != ElementType::Int64) throw OpError(std::string(what) + " must be int64, got " + type_name(v.type));
  dst.assign(v.i64(), v.i64() + v.numel);
}

inline I64 scalar_int(const Value& v, const char* what) {
  if (v.numel != 1) throw OpError(std::string(what) + " must hold one value, got shape " + v.shape.str());
  if (v.type == ElementType::Int64) return v.i64()[0];
  if (v.type == ElementType::Float32) return static_cast<I64>(v.f()[0]);
  return v.b()[0];
}

/// The axes of Squeeze/Unsqueeze/Reduce*: the attribute (n.v0) or input 1; `given` says
/// whether there were any.
inline void axes_of(const Node& n, Workspace& ws, std::vector<I64>& axes, bool& given) {
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

}  // namespace hepinfer::nn
