// Index ops: Trilu, ScatterND, ScatterElements, CumSum, ArgMax/ArgMin, OneHot, NonZero.
// Import handlers and kernels in one file (see op_import.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

using U8 = unsigned char;

/// Calls f(typed pointer tag) for the element type of v: float, int64 or bool (as U8).
template <typename F>
void dispatch(ElementType t, F&& f) {
  if (t == ElementType::Float32) f(float{});
  else if (t == ElementType::Int64) f(I64{});
  else f(U8{});
}

/// `idx` as an index into a dimension of size `dim`, negative counting from the end.
I64 wrap_index(I64 idx, I64 dim, const char* what) {
  const I64 i = idx < 0 ? idx + dim : idx;
  if (i < 0 || i >= dim)
    throw DataError(std::string(what) + " " + std::to_string(idx) + " is out of range for a dimension of " +
                    std::to_string(dim));
  return i;
}

// ------------------------------------------------------------------ Trilu
// i0: upper.
void run_trilu(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value* kv = opt_in(n, ws, 1);
  if (kv) require_type(*kv, ElementType::Int64, "k");
  const I64 k = kv ? scalar_int(*kv, "k") : 0;
  if (x.shape.rank < 2) throw OpError("input must have rank >= 2, got " + x.shape.str());
  const I64 R = x.shape[x.shape.rank - 2], C = x.shape[x.shape.rank - 1];
  Value& o = out(n, ws, 0);
  void* dst = o.alloc(x.type, x.shape);
  const std::size_t mats = R > 0 && C > 0 ? x.numel / static_cast<std::size_t>(R * C) : 0;
  dispatch(x.type, [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(x.data);
    T* d = static_cast<T*>(dst);
    for (std::size_t m = 0; m < mats; ++m)
      for (I64 i = 0; i < R; ++i)
        for (I64 j = 0; j < C; ++j) {
          const std::size_t p = m * static_cast<std::size_t>(R * C) + static_cast<std::size_t>(i * C + j);
          const bool keep = n.i0 ? j - i >= k : j - i <= k;
          d[p] = keep ? s[p] : T(0);
        }
  });
}

void import_trilu(ImportContext& at, Node& n) {
  at.need_inputs(1, 2);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_trilu;
  n.i0 = at.i("upper", 1);
}

// ------------------------------------------------------------------ Scatter reductions
// reduction codes: 0 none, 1 add, 2 mul, 3 max, 4 min
I64 parse_reduction(ImportContext& at) {
  const std::string r = at.s("reduction", "none");
  if (r == "none") return 0;
  if (r == "add") return 1;
  if (r == "mul") return 2;
  if (r == "max") return 3;
  if (r == "min") return 4;
  at.fail("reduction '" + r + "' is not supported");
  return -1;  // not reached
}

template <typename T>
inline void reduce_into(T& d, T u, I64 r) {
  switch (r) {
    case 0: d = u; break;
    case 1: d = static_cast<T>(d + u); break;
    case 2: d = static_cast<T>(d * u); break;
    case 3: d = std::max(d, u); break;
    default: d = std::min(d, u); break;
  }
}

void check_reduction_type(ElementType t, I64 r) {
  if (t == ElementType::Bool && r != 0) throw OpError("reductions on bool tensors are not supported");
}

// ------------------------------------------------------------------ ScatterND
// i0: reduction.
void run_scatter_nd(const Node& n, Workspace& ws) {
  const Value& data = in(n, ws, 0);
  const Value& idx = in(n, ws, 1);
  const Value& upd = in(n, ws, 2);
  require_type(idx, ElementType::Int64, "indices");
  if (upd.type != data.type) throw OpError("updates must have the type of data");
  check_reduction_type(data.type, n.i0);
  const int r = data.shape.rank, q = idx.shape.rank;
  if (q < 1) throw OpError("indices must have rank >= 1");
  const I64 kdim = idx.shape[q - 1];
  if (kdim > r)
    throw OpError("indices' last dimension " + std::to_string(kdim) + " exceeds the rank of data " + std::to_string(r));
  // updates shape = indices.shape[:-1] + data.shape[k:]
  Shape us;
  for (int i = 0; i < q - 1; ++i) us.push(idx.shape[i]);
  for (int i = static_cast<int>(kdim); i < r; ++i) us.push(data.shape[i]);
  if (!(us == upd.shape)) throw OpError("updates " + upd.shape.str() + " must have shape " + us.str());
  void* dst = out(n, ws, 0).alloc(data.type, data.shape);
  if (data.numel) std::memcpy(dst, data.data, data.numel * element_size(data.type));
  std::size_t slice = 1;
  for (int i = static_cast<int>(kdim); i < r; ++i) slice *= static_cast<std::size_t>(data.shape[i]);
  const std::size_t n_upd =
      kdim ? idx.numel / static_cast<std::size_t>(kdim) : upd.numel / std::max<std::size_t>(slice, 1);
  dispatch(data.type, [&](auto tag) {
    using T = decltype(tag);
    T* d = static_cast<T*>(dst);
    const T* u = static_cast<const T*>(upd.data);
    for (std::size_t j = 0; j < n_upd; ++j) {
      std::size_t off = 0;
      for (I64 a = 0; a < kdim; ++a) {
        const I64 dim = data.shape[static_cast<int>(a)];
        off = off * static_cast<std::size_t>(dim) +
              static_cast<std::size_t>(wrap_index(
                  idx.i64()[j * static_cast<std::size_t>(kdim) + static_cast<std::size_t>(a)], dim, "index"));
      }
      for (int a = static_cast<int>(kdim); a < r; ++a) off *= static_cast<std::size_t>(data.shape[a]);
      for (std::size_t e = 0; e < slice; ++e) reduce_into(d[off + e], u[j * slice + e], n.i0);
    }
  });
}

void import_scatter_nd(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_scatter_nd;
  n.i0 = parse_reduction(at);
}

// ------------------------------------------------------------------ ScatterElements
// axis; i0: reduction.
void run_scatter_elements(const Node& n, Workspace& ws) {
  const Value& data = in(n, ws, 0);
  const Value& idx = in(n, ws, 1);
  const Value& upd = in(n, ws, 2);
  require_type(idx, ElementType::Int64, "indices");
  if (upd.type != data.type) throw OpError("updates must have the type of data");
  check_reduction_type(data.type, n.i0);
  const int r = data.shape.rank;
  if (r < 1) throw OpError("data must have rank >= 1");
  if (idx.shape.rank != r || !(idx.shape == upd.shape))
    throw OpError("indices " + idx.shape.str() + " and updates " + upd.shape.str() +
                  " must have one shape of data's rank " + std::to_string(r));
  const int axis = static_cast<int>(norm_axis(n.axis, r));
  for (int i = 0; i < r; ++i)
    if (i != axis && idx.shape[i] > data.shape[i])
      throw OpError("indices " + idx.shape.str() + " exceed data " + data.shape.str() + " along axis " +
                    std::to_string(i));
  void* dst = out(n, ws, 0).alloc(data.type, data.shape);
  if (data.numel) std::memcpy(dst, data.data, data.numel * element_size(data.type));
  I64 dstr[kMaxRank];
  {
    I64 s = 1;
    for (int i = r - 1; i >= 0; --i) {
      dstr[i] = s;
      s *= data.shape[i];
    }
  }
  const I64 dim = data.shape[axis];
  dispatch(data.type, [&](auto tag) {
    using T = decltype(tag);
    T* d = static_cast<T*>(dst);
    const T* u = static_cast<const T*>(upd.data);
    I64 pos[kMaxRank] = {};
    for (std::size_t j = 0; j < idx.numel; ++j) {
      I64 off = 0;
      for (int i = 0; i < r; ++i) off += (i == axis ? wrap_index(idx.i64()[j], dim, "index") : pos[i]) * dstr[i];
      reduce_into(d[off], u[j], n.i0);
      for (int i = r - 1; i >= 0; --i) {
        if (++pos[i] < idx.shape[i]) break;
        pos[i] = 0;
      }
    }
  });
}

void import_scatter_elements(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_scatter_elements;
  n.axis = at.i("axis", 0);
  n.i0 = parse_reduction(at);
}

// ------------------------------------------------------------------ CumSum
// i0: exclusive, i1: reverse.
void run_cumsum(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& av = in(n, ws, 1);
  if (av.type != ElementType::Int64) throw OpError("axis must be int64");
  if (av.numel != 1 || av.shape.rank > 1) throw OpError("axis must be a scalar, got shape " + av.shape.str());
  const int r = x.shape.rank;
  if (r < 1) throw OpError("input must have rank >= 1");
  const int axis = static_cast<int>(norm_axis(av.i64()[0], r));
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(x.shape[i]);
  for (int i = axis + 1; i < r; ++i) inner *= static_cast<std::size_t>(x.shape[i]);
  const auto L = static_cast<std::size_t>(x.shape[axis]);
  void* dst = out(n, ws, 0).alloc(x.type, x.shape);
  if (x.type == ElementType::Bool) throw OpError("CumSum of bool tensors is not supported");
  dispatch(x.type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same<T, U8>::value) {
      const T* s = static_cast<const T*>(x.data);
      T* d = static_cast<T*>(dst);
      for (std::size_t o = 0; o < outer; ++o)
        for (std::size_t i = 0; i < inner; ++i) {
          T acc = T(0);
          for (std::size_t l = 0; l < L; ++l) {
            const std::size_t ll = n.i1 ? L - 1 - l : l;
            const std::size_t p = (o * L + ll) * inner + i;
            if (n.i0) {
              d[p] = acc;
              acc = static_cast<T>(acc + s[p]);
            } else {
              acc = static_cast<T>(acc + s[p]);
              d[p] = acc;
            }
          }
        }
    }
  });
}

void import_cumsum(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_cumsum;
  n.i0 = at.i("exclusive", 0);
  n.i1 = at.i("reverse", 0);
}

// ------------------------------------------------------------------ ArgMax / ArgMin
// axis; i0: keepdims, i1: select_last_index, i2: 1 for ArgMin.
void run_argmax(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const int r = x.shape.rank;
  if (r < 1) throw OpError("input must have rank >= 1");
  const int axis = static_cast<int>(norm_axis(n.axis, r));
  const auto L = static_cast<std::size_t>(x.shape[axis]);
  Shape os;
  for (int i = 0; i < r; ++i) {
    if (i != axis) os.push(x.shape[i]);
    else if (n.i0) os.push(1);
  }
  if (L == 0 && x.numel == 0) {
    std::size_t rest = 1;
    for (int i = 0; i < r; ++i)
      if (i != axis) rest *= static_cast<std::size_t>(x.shape[i]);
    if (rest) throw OpError("cannot take the arg" + std::string(n.i2 ? "min" : "max") + " along an empty axis");
  }
  I64* d = static_cast<I64*>(out(n, ws, 0).alloc(ElementType::Int64, os));
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(x.shape[i]);
  for (int i = axis + 1; i < r; ++i) inner *= static_cast<std::size_t>(x.shape[i]);
  if (x.type == ElementType::Bool) throw OpError("ArgMax/ArgMin of bool tensors is not supported");
  dispatch(x.type, [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(x.data);
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t i = 0; i < inner; ++i) {
        std::size_t best = 0;
        T bv = s[o * L * inner + i];
        for (std::size_t l = 1; l < L; ++l) {
          const T v = s[(o * L + l) * inner + i];
          const bool better = n.i2 ? (n.i1 ? v <= bv : v < bv) : (n.i1 ? v >= bv : v > bv);
          if (better) {
            bv = v;
            best = l;
          }
        }
        d[o * inner + i] = static_cast<I64>(best);
      }
  });
}

void import_argmax(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_argmax;
  n.axis = at.i("axis", 0);
  n.i0 = at.i("keepdims", 1);
  n.i1 = at.i("select_last_index", 0);
  n.i2 = at.op_type() == "ArgMin";
}

// ------------------------------------------------------------------ OneHot
// axis.
void run_onehot(const Node& n, Workspace& ws) {
  const Value& idx = in(n, ws, 0);
  const Value& dv = in(n, ws, 1);
  const Value& vals = in(n, ws, 2);
  if (idx.type == ElementType::Bool) throw OpError("indices must be numeric");
  if (dv.numel != 1) throw OpError("depth must hold one value, got shape " + dv.shape.str());
  if (vals.numel != 2 || vals.shape.rank != 1)
    throw OpError("values must be [off_value, on_value], got shape " + vals.shape.str());
  const I64 depth = dv.type == ElementType::Float32 ? static_cast<I64>(dv.f()[0]) : scalar_int(dv, "depth");
  if (depth < 1) throw DataError("depth must be >= 1, got " + std::to_string(depth));
  const int r = idx.shape.rank + 1;
  const int axis = static_cast<int>(norm_axis(n.axis, r));
  Shape os;
  for (int i = 0, j = 0; i < r; ++i) os.push(i == axis ? depth : idx.shape[j++]);
  void* dst = out(n, ws, 0).alloc(vals.type, os);
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(idx.shape[i]);
  for (int i = axis; i < idx.shape.rank; ++i) inner *= static_cast<std::size_t>(idx.shape[i]);
  const auto D = static_cast<std::size_t>(depth);
  dispatch(vals.type, [&](auto tag) {
    using T = decltype(tag);
    const T off = static_cast<const T*>(vals.data)[0], on = static_cast<const T*>(vals.data)[1];
    T* d = static_cast<T*>(dst);
    std::fill(d, d + outer * D * inner, off);
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::size_t p = o * inner + i;
        I64 k;
        if (idx.type == ElementType::Float32) {
          const float f = idx.f()[p];
          if (!(std::fabs(f) < 9.0e18f)) continue;
          k = static_cast<I64>(f);
        } else {
          k = idx.i64()[p];
        }
        if (k < 0) k += depth;
        if (k < 0 || k >= depth) continue;
        d[(o * D + static_cast<std::size_t>(k)) * inner + i] = on;
      }
  });
}

void import_onehot(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_onehot;
  n.axis = at.i("axis", -1);
}

// ------------------------------------------------------------------ NonZero
void run_nonzero(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const int r = x.shape.rank;
  std::size_t nnz = 0;
  dispatch(x.type, [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(x.data);
    for (std::size_t i = 0; i < x.numel; ++i) nnz += s[i] != T(0);
  });
  Shape os;
  os.push(std::max(r, 1));  // a scalar counts as a 1-D tensor of one element (as onnxruntime)
  os.push(static_cast<I64>(nnz));
  I64* d = static_cast<I64*>(out(n, ws, 0).alloc(ElementType::Int64, os));
  dispatch(x.type, [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(x.data);
    I64 pos[kMaxRank] = {};
    std::size_t k = 0;
    for (std::size_t i = 0; i < x.numel; ++i) {
      if (s[i] != T(0)) {
        if (r == 0) d[k] = 0;
        for (int a = 0; a < r; ++a) d[static_cast<std::size_t>(a) * nnz + k] = pos[a];
        ++k;
      }
      for (int a = r - 1; a >= 0; --a) {
        if (++pos[a] < x.shape[a]) break;
        pos[a] = 0;
      }
    }
  });
}

void import_nonzero(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_nonzero;
}

}  // namespace

void add_index_ops(OpTable& t) {
  t["Trilu"] = import_trilu;
  t["ScatterND"] = import_scatter_nd;
  t["ScatterElements"] = import_scatter_elements;
  t["CumSum"] = import_cumsum;
  t["ArgMax"] = import_argmax;
  t["ArgMin"] = import_argmax;
  t["OneHot"] = import_onehot;
  t["NonZero"] = import_nonzero;
}

}  // namespace hepinfer::nn
