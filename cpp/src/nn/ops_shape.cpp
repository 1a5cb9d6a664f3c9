// Shape family: ops that move, select or describe elements without computing on them: Concat,
// Reshape, Flatten, Squeeze/Unsqueeze, Transpose, Gather/GatherElements/GatherND, Slice,
// Expand, Tile, Shape, Size, ConstantOfShape, Range and Split. Import handlers and kernels
// (see op_import.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
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

void op_transpose(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const int r = a.shape.rank;
  I64 perm[kMaxRank];
  if (n.has_v0) {
    if (static_cast<int>(n.v0.size()) != r)
      throw OpError("perm has " + std::to_string(n.v0.size()) + " entries for an input of rank " + std::to_string(r));
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
      B = static_cast<std::size_t>(gsize[0]), R = static_cast<std::size_t>(gsize[2]),
      C = static_cast<std::size_t>(gsize[1]);
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
  // the indices checked and made non-negative once, not once per outer slice (ParticleNet's
  // neighbour gathers: 1600 indices for each of up to 128 channel rows)
  std::vector<I64>& at = ws.scratch_i;
  at.resize(ni);
  for (std::size_t j = 0; j < ni; ++j) at[j] = fix_index(idx.i64()[j], dim);
  const U8* src = a.b();
  const auto ud = static_cast<std::size_t>(dim);
  // single elements of 4 or 8 bytes: fixed-size copies (plain loads and stores, no memcpy call)
  const auto elements = [&](auto word) {
    using W = decltype(word);
    for (std::size_t o = 0; o < outer; ++o) {
      const U8* so = src + o * ud * sizeof(W);
      U8* dst = d + o * ni * sizeof(W);
      for (std::size_t j = 0; j < ni; ++j)
        std::memcpy(dst + j * sizeof(W), so + static_cast<std::size_t>(at[j]) * sizeof(W), sizeof(W));
    }
  };
  if (inner == 4) {
    elements(std::uint32_t{});
    return;
  }
  if (inner == 8) {
    elements(std::uint64_t{});
    return;
  }
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < ni; ++j)
      std::memcpy(d + (o * ni + j) * inner, src + (o * ud + static_cast<std::size_t>(at[j])) * inner, inner);
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
      std::memcpy(d + (bb * per_batch_idx + j) * slice,
                  a.b() + (bb * data_batch + static_cast<std::size_t>(off)) * slice, slice);
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
void tile_block(T* dst, const T* src, const Shape& is, const Shape& os, const I64* rep, const I64* ist, const I64* ost,
                int dim) {
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
      tile_block(dst + i * static_cast<std::size_t>(ost[dim]), src + i * static_cast<std::size_t>(ist[dim]), is, os,
                 rep, ist, ost, dim + 1);
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
    const I64 cnt =
        std::max<I64>(0, static_cast<I64>(std::ceil(static_cast<double>(b - a) / static_cast<double>(step))));
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
  if (sizes.size() != no)
    throw OpError("split has " + std::to_string(sizes.size()) + " sizes for " + std::to_string(no) + " outputs");
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

// ---- import handlers

void import_concat(ImportContext& at, Node& n) {
  at.need_inputs(1, 1024);
  at.need_outputs(1);
  n.op = Op::Concat;
  n.run = op_concat;
  if (!at.has("axis")) at.fail("axis is required");
  n.axis = at.i("axis", 0);
}

void import_reshape(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Reshape;
  n.run = op_reshape;
  n.i0 = at.i("allowzero", 0);
}

void import_flatten(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Flatten;
  n.run = op_flatten;
  n.axis = at.i("axis", 1);
}

// Squeeze and Unsqueeze: axes as an attribute before opset 13, as an input from 13 on.
void import_squeeze(ImportContext& at, Node& n) {
  const bool squeeze = at.op_type() == "Squeeze";
  at.need_outputs(1);
  n.op = squeeze ? Op::Squeeze : Op::Unsqueeze;
  n.run = squeeze ? op_squeeze : op_unsqueeze;
  if (at.opset() < 13) {
    at.need_inputs(1, 1);
    if (at.has("axes")) {
      n.v0 = at.ints("axes");
      n.has_v0 = true;
    }
    if (!squeeze && !n.has_v0) at.fail("axes is required");
  } else {
    at.need_inputs(squeeze ? 1 : 2, 2);
  }
}

void import_transpose(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Transpose;
  n.run = op_transpose;
  if (at.has("perm")) {
    n.v0 = at.ints("perm");
    n.has_v0 = true;
  }
}

void import_gather(ImportContext& at, Node& n) {
  const bool plain = at.op_type() == "Gather";
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = plain ? Op::Gather : Op::GatherElements;
  n.run = plain ? op_gather : op_gather_elements;
  n.axis = at.i("axis", 0);
}

void import_gather_nd(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::GatherND;
  n.run = op_gather_nd;
  n.i0 = at.i("batch_dims", 0);
}

// Slice: starts/ends/axes as attributes before opset 10, as inputs (with steps) from 10 on.
void import_slice(ImportContext& at, Node& n) {
  at.need_outputs(1);
  n.op = Op::Slice;
  n.run = op_slice;
  if (at.opset() < 10) {
    at.need_inputs(1, 1);
    n.v0 = at.ints("starts");
    n.v1 = at.ints("ends");
    n.v2 = at.ints("axes");
    n.has_v0 = true;
  } else {
    at.need_inputs(3, 5);
  }
}

void import_expand(ImportContext& at, Node& n) {
  const bool expand = at.op_type() == "Expand";
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = expand ? Op::Expand : Op::Tile;
  n.run = expand ? op_expand : op_tile;
}

void import_shape(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::ShapeOf;
  n.run = op_shape;
  n.i0 = at.i("start", 0);
  n.i1 = at.i("end", std::numeric_limits<I64>::max());
}

void import_size(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Size;
  n.run = op_size;
}

void import_constant_of_shape(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::ConstantOfShape;
  n.run = op_constant_of_shape;
  if (auto v = at.tensor("value")) {
    if (v->numel != 1) at.fail("value must hold one element");
    n.constant = v;
  } else {
    n.constant = at.scalar_float(0.0f);
  }
}

void import_range(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Range;
  n.run = op_range;
}

// Split: sizes as an attribute before opset 13, as an input from 13 on, or equal parts
// (num_outputs from opset 18 allows a shorter last part).
void import_split(ImportContext& at, Node& n) {
  n.op = Op::Split;
  n.run = op_split;
  n.axis = at.i("axis", 0);
  n.i0 = at.has("num_outputs") ? 1 : 0;
  at.ignore("num_outputs");
  if (at.opset() < 13) {
    at.need_inputs(1, 1);
    if (at.has("split")) {
      n.v0 = at.ints("split");
      n.has_v0 = true;
    }
  } else {
    at.need_inputs(1, 2);
  }
  if (at.n_outputs() == 0) at.fail("has no outputs");
}

}  // namespace

void add_shape_ops(OpTable& t) {
  t["Concat"] = import_concat;
  t["Reshape"] = import_reshape;
  t["Flatten"] = import_flatten;
  t["Squeeze"] = import_squeeze;
  t["Unsqueeze"] = import_squeeze;
  t["Transpose"] = import_transpose;
  t["Gather"] = import_gather;
  t["GatherElements"] = import_gather;
  t["GatherND"] = import_gather_nd;
  t["Slice"] = import_slice;
  t["Expand"] = import_expand;
  t["Tile"] = import_expand;
  t["Shape"] = import_shape;
  t["Size"] = import_size;
  t["ConstantOfShape"] = import_constant_of_shape;
  t["Range"] = import_range;
  t["Split"] = import_split;
}

}  // namespace hepinfer::nn
