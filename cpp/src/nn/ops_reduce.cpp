// Reduction family: ops that combine elements along axes: ReduceSum/Mean/Max/Min/Prod/L2/
// SumSquare, Softmax and LogSoftmax, BatchNormalization, LayerNormalization and TopK. Import
// handlers and kernels (see op_import.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "nn/attention.hpp"
#include "nn/broadcast.hpp"
#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HEPINFER_LN_X86 1
#define HEPINFER_LN_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace hepinfer::nn {
namespace {

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
  if (inner == 1 && !log) {  // rows of contiguous values: the vectorised row softmax
    for (std::size_t o = 0; o < outer; ++o) softmax_row(x + o * len, d + o * len, len);
    return;
  }
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
    const float init = op == ReduceOp::Max    ? -std::numeric_limits<float>::infinity()
                       : op == ReduceOp::Min  ? std::numeric_limits<float>::infinity()
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
    for_each_index<2>(a.shape, st, base,
                      [&](std::size_t, const I64* off, const I64(&s)[2][kMaxRank], I64 inner, int last) {
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
    const I64 init = op == ReduceOp::Max    ? std::numeric_limits<I64>::min()
                     : op == ReduceOp::Min  ? std::numeric_limits<I64>::max()
                     : op == ReduceOp::Prod ? 1
                                            : 0;
    for (std::size_t i = 0; i < on; ++i) d[i] = init;
    I64 ost[kMaxRank];
    contiguous_strides(full, ost);
    I64 cnt[kMaxRank] = {};
    for (std::size_t e = 0; e < a.numel; ++e) {
      I64 off = 0;
      for (int i = 0; i < r; ++i) off += red[i] ? 0 : cnt[i] * ost[i];
      const I64 v = a.i64()[e];
      I64& y = d[off];
      y = op == ReduceOp::Sum    ? y + v
          : op == ReduceOp::Prod ? y * v
          : op == ReduceOp::Max  ? std::max(y, v)
                                 : std::min(y, v);
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

// One row of LayerNormalization: a first mean m, then the deviations d = x - m in a second pass
// (exact where x is within a factor 2 of m) whose sum corrects the mean (mean = m + sum d / n)
// and whose squares give the variance (sum d^2 - (sum d)^2 / n) / n, the corrected two-pass
// form: rows with a large offset (x ~ 300 +- 5) keep float32 accuracy, which a plain float sum
// of x loses. Then (x - mean) / sqrt(var + eps) * scale + bias.
void layernorm_row_portable(const float* x, float* d, std::size_t len, const float* scale, const float* bias,
                            float eps) {
  float m = 0.0f;
  for (std::size_t j = 0; j < len; ++j) m += x[j];
  m /= static_cast<float>(len);
  float sd = 0.0f, sq = 0.0f;
  for (std::size_t j = 0; j < len; ++j) {
    const float t = x[j] - m;
    sd += t;
    sq += t * t;
  }
  const float n = static_cast<float>(len);
  const float mean = m + sd / n;
  const float inv = 1.0f / std::sqrt(std::max(sq - sd * sd / n, 0.0f) / n + eps);
  for (std::size_t j = 0; j < len; ++j) d[j] = (x[j] - mean) * inv * scale[j] + (bias ? bias[j] : 0.0f);
}

#ifdef HEPINFER_LN_X86
HEPINFER_LN_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The same passes eight lanes wide, two accumulators per sum (a row of a transformer is 64 to
// 1024 wide: the serial sum of the scalar form was the cost, 3x onnxruntime's time in ParT).
HEPINFER_LN_AVX2 void layernorm_row_avx2(const float* x, float* d, std::size_t len, const float* scale,
                                         const float* bias, float eps) {
  std::size_t j = 0;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (; j + 16 <= len; j += 16) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + j));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + j + 8));
  }
  if (j + 8 <= len) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + j));
    j += 8;
  }
  float m = hsum8(_mm256_add_ps(s0, s1));
  for (; j < len; ++j) m += x[j];
  const float n = static_cast<float>(len);
  m /= n;
  const __m256 vm = _mm256_set1_ps(m);
  __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
  s0 = _mm256_setzero_ps();
  s1 = _mm256_setzero_ps();
  for (j = 0; j + 16 <= len; j += 16) {
    const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm);
    const __m256 b = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vm);
    d0 = _mm256_add_ps(d0, a);
    d1 = _mm256_add_ps(d1, b);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  if (j + 8 <= len) {
    const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm);
    d0 = _mm256_add_ps(d0, a);
    s0 = _mm256_fmadd_ps(a, a, s0);
    j += 8;
  }
  float sd = hsum8(_mm256_add_ps(d0, d1)), sq = hsum8(_mm256_add_ps(s0, s1));
  for (; j < len; ++j) {
    const float t = x[j] - m;
    sd += t;
    sq += t * t;
  }
  const float mean = m + sd / n;
  const float inv = 1.0f / std::sqrt(std::max(sq - sd * sd / n, 0.0f) / n + eps);
  const __m256 mu = _mm256_set1_ps(mean), vi = _mm256_set1_ps(inv);
  for (j = 0; j + 8 <= len; j += 8) {
    const __m256 t =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), mu), vi), _mm256_loadu_ps(scale + j));
    _mm256_storeu_ps(d + j, bias ? _mm256_add_ps(t, _mm256_loadu_ps(bias + j)) : t);
  }
  for (; j < len; ++j) d[j] = (x[j] - mean) * inv * scale[j] + (bias ? bias[j] : 0.0f);
}
#endif

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
  const float* sc = scale.f();
  const float* bs = bias ? bias->f() : nullptr;
  const float eps = n.alpha;
  if (inner == 0) return;
#ifdef HEPINFER_LN_X86
  if (cpu_has_avx2_fma()) {
    for (std::size_t o = 0; o < outer; ++o) layernorm_row_avx2(x + o * inner, d + o * inner, inner, sc, bs, eps);
    return;
  }
#endif
  for (std::size_t o = 0; o < outer; ++o) layernorm_row_portable(x + o * inner, d + o * inner, inner, sc, bs, eps);
}

/// The k best of row x [dim] (element j at x[j * stride]) by `better` (a total order on
/// (value, index)) into kv / order, by insertion into the k best so far.
template <class Better>
void topk_row_general(const float* x, I64 dim, std::size_t k, float* kv, I64* order, const Better& better,
                      std::size_t stride = 1) {
  std::size_t cnt = 0;
  if (k == 0) return;
  for (I64 j = 0; j < dim; ++j) {
    const float u = x[static_cast<std::size_t>(j) * stride];
    if (cnt == k && !better(u, j, kv[k - 1], order[k - 1])) continue;
    std::size_t pos = cnt < k ? cnt++ : k - 1;
    while (pos > 0 && better(u, j, kv[pos - 1], order[pos - 1])) {
      kv[pos] = kv[pos - 1];
      order[pos] = order[pos - 1];
      --pos;
    }
    kv[pos] = u;
    order[pos] = j;
  }
}

/// Smallest (largest = false) or largest k <= 64 of row x [dim] without NaN into kv / order in
/// TopK's order (ties: lower index first), kv and order holding k slots each. The first k
/// elements are insertion-sorted; after them 8 at a time are compared with the worst kept (a
/// candidate mask that only shrinks as the threshold tightens), so most of a row costs one
/// vector compare per 8 elements and only the candidates are inserted. Later elements have
/// higher indices, so a strict comparison keeps the lower index first among equal values.
template <bool Largest>
void topk_row_insert(const float* x, I64 dim, std::size_t k, float* kv, I64* order, I64 j0, I64 j1) {
  for (I64 j = j0; j < j1; ++j) {
    const float u = x[j];
    if (!(Largest ? u > kv[k - 1] : u < kv[k - 1])) continue;
    std::size_t pos = k - 1;
    while (pos > 0 && (Largest ? u > kv[pos - 1] : u < kv[pos - 1])) {
      kv[pos] = kv[pos - 1];
      order[pos] = order[pos - 1];
      --pos;
    }
    kv[pos] = u;
    order[pos] = j;
  }
  (void)dim;
}

#ifdef HEPINFER_LN_X86
/// Whether row x [n] holds a NaN (AVX2).
__attribute__((target("avx2"))) bool row_has_nan_avx2(const float* x, I64 n) {
  I64 j = 0;
  __m256 any = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    any = _mm256_or_ps(any, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  bool nan = _mm256_movemask_ps(any) != 0;
  for (; j < n; ++j) nan = nan || x[j] != x[j];
  return nan;
}

/// topk_row_insert from element k on, 8 candidates at a time (AVX2); the row holds no NaN.
template <bool Largest>
__attribute__((target("avx2"))) void topk_row_avx2(const float* x, I64 dim, std::size_t k, float* kv, I64* order) {
  I64 j = static_cast<I64>(k);
  for (; j + 8 <= dim; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    const __m256 t = _mm256_set1_ps(kv[k - 1]);
    unsigned m = static_cast<unsigned>(
        _mm256_movemask_ps(Largest ? _mm256_cmp_ps(v, t, _CMP_GT_OQ) : _mm256_cmp_ps(v, t, _CMP_LT_OQ)));
    while (m) {
      const I64 jj = j + __builtin_ctz(m);
      m &= m - 1;
      topk_row_insert<Largest>(x, dim, k, kv, order, jj, jj + 1);
    }
  }
  topk_row_insert<Largest>(x, dim, k, kv, order, j, dim);
}
#endif

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
#ifdef HEPINFER_LN_X86
    if (inner == 1 && kk > 0 && cpu_has_avx2_fma()) {  // rows without NaN: vector candidate masks
      for (std::size_t o = 0; o < outer; ++o) {
        const float* row = x + o * static_cast<std::size_t>(dim);
        if (row_has_nan_avx2(row, dim)) {
          topk_row_general(row, dim, kk, kv.data(), order.data(), better);
        } else {
          // the first k elements sorted (stable: ties keep the lower index first)
          for (std::size_t j = 0; j < kk; ++j) {
            std::size_t pos = j;
            while (pos > 0 && (largest ? row[j] > kv[pos - 1] : row[j] < kv[pos - 1])) {
              kv[pos] = kv[pos - 1];
              order[pos] = order[pos - 1];
              --pos;
            }
            kv[pos] = row[j];
            order[pos] = static_cast<I64>(j);
          }
          if (largest) topk_row_avx2<true>(row, dim, kk, kv.data(), order.data());
          else topk_row_avx2<false>(row, dim, kk, kv.data(), order.data());
        }
        std::copy(kv.begin(), kv.begin() + static_cast<std::ptrdiff_t>(kk), vals + o * kk);
        if (idx) std::copy(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kk), idx + o * kk);
      }
      return;
    }
#endif
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t in_ = 0; in_ < inner; ++in_) {
        const float* base = x + o * static_cast<std::size_t>(dim) * inner + in_;
        topk_row_general(base, dim, kk, kv.data(), order.data(), better, inner);
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

// ---- import handlers

void run_softmax(const Node& n, Workspace& ws) { op_softmax(n, ws, false); }
void run_log_softmax(const Node& n, Workspace& ws) { op_softmax(n, ws, true); }

const std::map<std::string, ReduceOp>& reduce_ops() {
  static const std::map<std::string, ReduceOp> m = {{"ReduceSum", ReduceOp::Sum},
                                                    {"ReduceMean", ReduceOp::Mean},
                                                    {"ReduceMax", ReduceOp::Max},
                                                    {"ReduceMin", ReduceOp::Min},
                                                    {"ReduceProd", ReduceOp::Prod},
                                                    {"ReduceL2", ReduceOp::L2},
                                                    {"ReduceSumSquare", ReduceOp::SumSquare}};
  return m;
}

// Reduce*: axes as an attribute, or as an input from opset 13 (ReduceSum) / 18 (the others).
void import_reduce(ImportContext& at, Node& n) {
  const std::string& t = at.op_type();
  at.need_outputs(1);
  n.op = Op::Reduce;
  n.run = op_reduce;
  n.reduce = reduce_ops().at(t);
  n.i0 = at.i("keepdims", 1);
  const bool axes_as_input = t == "ReduceSum" ? at.opset() >= 13 : at.opset() >= 18;
  if (axes_as_input) {
    at.need_inputs(1, 2);
    n.i1 = at.i("noop_with_empty_axes", 0);
  } else {
    at.need_inputs(1, 1);
    if (at.has("axes")) {
      n.v0 = at.ints("axes");
      n.has_v0 = true;
    }
  }
}

void import_softmax(ImportContext& at, Node& n) {
  const bool plain = at.op_type() == "Softmax";
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = plain ? Op::Softmax : Op::LogSoftmax;
  n.run = plain ? run_softmax : run_log_softmax;
  n.axis = at.i("axis", at.opset() < 13 ? 1 : -1);
  n.i0 = at.opset() < 13;
}

// BatchNormalization (inference): scale, B, mean and var must be constants; the finalize step
// of constant folding (passes.cpp) turns them into a per-channel scale and shift.
void import_batchnorm(ImportContext& at, Node& n) {
  at.need_inputs(5, 5);
  if (at.n_outputs() > 1) at.fail("training-mode outputs (running mean/var) are not supported");
  n.op = Op::BatchNorm;
  n.run = op_batchnorm;
  const float eps = at.f("epsilon", 1e-5f);
  at.ignore("momentum");
  if (at.i("training_mode", 0) != 0) at.fail("training_mode = 1 is not supported");
  if (at.i("spatial", 1) != 1) at.fail("spatial = 0 is not supported");
  at.ignore("is_test");
  n.alpha = eps;  // scale, B, mean, var are read after constant folding (finalize)
}

void import_layernorm(ImportContext& at, Node& n) {
  at.need_inputs(2, 3);
  if (at.n_outputs() > 1) {
    for (std::size_t k = 1; k < at.n_outputs(); ++k)
      if (at.has_output(k)) at.fail("the Mean and InvStdDev outputs are not supported");
  }
  n.op = Op::LayerNorm;
  n.run = op_layernorm;
  n.axis = at.i("axis", -1);
  n.alpha = at.f("epsilon", 1e-5f);
  at.ignore("stash_type");
}

// TopK: K as an attribute before opset 10 (it becomes a constant input), as an input from 10 on.
void import_topk(ImportContext& at, Node& n) {
  at.need_outputs(2);
  n.op = Op::TopK;
  n.run = op_topk;
  n.axis = at.i("axis", -1);
  n.i1 = at.i("largest", 1);
  n.i2 = at.i("sorted", 1);
  if (at.opset() < 10) {
    at.need_inputs(1, 1);
    const I64 k = at.i("k", -1);
    if (k < 0) at.fail("k is required");
    n.i3 = k;
    at.add_constant("k", at.ints_value({k}));
  } else {
    at.need_inputs(2, 2);
  }
}

}  // namespace

void add_reduce_ops(OpTable& t) {
  for (const auto& kv : reduce_ops()) t[kv.first] = import_reduce;
  t["Softmax"] = import_softmax;
  t["LogSoftmax"] = import_softmax;
  t["BatchNormalization"] = import_batchnorm;
  t["LayerNormalization"] = import_layernorm;
  t["TopK"] = import_topk;
}

}  // namespace hepinfer::nn
