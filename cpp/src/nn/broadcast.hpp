#pragma once
// Loops shared by the op kernels (ops_*.cpp): numpy-style multidirectional broadcasting of
// shapes, iteration over an output with per-operand strides, and strided copies.
#include <algorithm>
#include <cstring>

#include "nn/graph.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {

inline Shape broadcast_shapes(const Shape& a, const Shape& b) {
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
inline void bcast_strides(const Shape& o, const Shape& s, I64* st) {
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

inline void contiguous_strides(const Shape& s, I64* st) {
  I64 stride = 1;
  for (int i = s.rank - 1; i >= 0; --i) {
    st[i] = stride;
    stride *= s[i];
  }
}

/// dst (contiguous, shape os) = src with element strides st (offset base), element size es.
template <typename T>
void strided_copy_t(T* dst, const T* src, const Shape& os, const I64* st, I64 base) {
  I64 s[1][kMaxRank] = {};
  for (int i = 0; i < os.rank; ++i) s[0][i] = st[i];
  const I64 b[1] = {base};
  for_each_index<1>(os, s, b, [&](std::size_t o0, const I64* off, const I64(&str)[1][kMaxRank], I64 inner, int last) {
    const I64 sl = str[0][last];
    const T* p = src + off[0];
    T* d = dst + o0;
    if (sl == 1) std::memcpy(d, p, static_cast<std::size_t>(inner) * sizeof(T));
    else
      for (I64 j = 0; j < inner; ++j) d[j] = p[j * sl];
  });
}

inline void strided_copy(Value& o, const Value& a, const Shape& os, const I64* st, I64 base) {
  void* d = o.alloc(a.type, os);
  switch (element_size(a.type)) {
    case 4: strided_copy_t(static_cast<float*>(d), a.f(), os, st, base); break;
    case 8: strided_copy_t(static_cast<I64*>(d), a.i64(), os, st, base); break;
    default: strided_copy_t(static_cast<U8*>(d), a.b(), os, st, base); break;
  }
}

}  // namespace hepinfer::nn
