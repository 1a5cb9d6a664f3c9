// Kernels of the fused attention-model nodes (see attention.hpp): scaled dot-product attention
// per (batch, head) slice, the erf GELU and the row softmax shared with the Softmax op. AVX2/FMA
// versions where the CPU has them (HEPINFER_NN_KERNELS=portable turns them off), plain C++ else.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "nn/attention.hpp"
#include "nn/graph.hpp"
#include "nn/op_util.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HEPINFER_ATTN_X86 1
#define HEPINFER_ATTN_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace hepinfer::nn {
namespace {

#ifdef HEPINFER_ATTN_X86
// exp on 8 floats: Cephes' range reduction and polynomial (about 1 ulp); 0 below -87.3 (where
// float exp leaves the normal range), +inf above 88.7, NaN in, NaN out
HEPINFER_ATTN_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.7f);
  __m256 xc = _mm256_min_ps(hi, x);  // NaN stays (min/max return the second operand on NaN)
  xc = _mm256_max_ps(lo, xc);
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  return _mm256_blendv_ps(y, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
}

// erf on 8 floats (N. Juffa's single-precision erf, about 1 ulp): odd polynomial below
// |x| = 0.9277, 1 - exp(polynomial) above
HEPINFER_ATTN_AVX2 inline __m256 erf8(__m256 a) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_andnot_ps(sign, a);
  const __m256 s = _mm256_mul_ps(a, a);
  __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(-1.72853470e-5f), t, _mm256_set1_ps(3.83197126e-4f));
  const __m256 u = _mm256_fmadd_ps(_mm256_set1_ps(-3.88396438e-3f), t, _mm256_set1_ps(2.42546219e-2f));
  r = _mm256_fmadd_ps(r, s, u);
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-1.06777877e-1f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-6.34846687e-1f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-1.28717512e-1f));
  r = _mm256_fmsub_ps(r, t, t);
  __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f), exp8(r));
  big = _mm256_or_ps(big, _mm256_and_ps(sign, a));
  __m256 q = _mm256_set1_ps(-5.96761703e-4f);
  q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(4.99119423e-3f));
  q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(-2.67681349e-2f));
  q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(1.12819925e-1f));
  q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(-3.76125336e-1f));
  q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(1.28379166e-1f));
  const __m256 small = _mm256_fmadd_ps(q, a, a);
  // NaN: the comparison is false, the small branch keeps it
  return _mm256_blendv_ps(small, big, _mm256_cmp_ps(t, _mm256_set1_ps(0.927734375f), _CMP_GT_OQ));
}

HEPINFER_ATTN_AVX2 void softmax_row_avx2(const float* x, float* d, std::size_t len) {
  std::size_t j = 0;
  __m256 vm = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (; j + 8 <= len; j += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + j), vm);  // NaN ignored, as std::max
  float buf[8];
  _mm256_storeu_ps(buf, vm);
  float mx = buf[0];
  for (int k = 1; k < 8; ++k) mx = std::max(mx, buf[k]);
  for (; j < len; ++j) mx = std::max(mx, x[j]);
  const __m256 m = _mm256_set1_ps(mx);
  __m256 vs = _mm256_setzero_ps();
  for (j = 0; j + 8 <= len; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
    _mm256_storeu_ps(d + j, e);
    vs = _mm256_add_ps(vs, e);
  }
  if (j < len) {
    const auto rest = static_cast<int>(len - j);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), lane);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, keep), m));
    _mm256_maskstore_ps(d + j, keep, e);
    vs = _mm256_add_ps(vs, _mm256_and_ps(e, _mm256_castsi256_ps(keep)));
  }
  _mm256_storeu_ps(buf, vs);
  float sum = 0.0f;
  for (float b : buf) sum += b;
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (j = 0; j + 8 <= len; j += 8) _mm256_storeu_ps(d + j, _mm256_mul_ps(_mm256_loadu_ps(d + j), inv));
  for (; j < len; ++j) d[j] *= 1.0f / sum;
}

HEPINFER_ATTN_AVX2 void gelu_avx2(const float* x, float* y, std::size_t n, float c, float c1, float c2) {
  const __m256 vc = _mm256_set1_ps(1.0f / c), v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = erf8(_mm256_mul_ps(v, vc));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(v, _mm256_add_ps(e, v1)), v2));
  }
  for (; i < n; ++i) y[i] = x[i] * (std::erf(x[i] * (1.0f / c)) + c1) * c2;
}

#define HEPINFER_ATTN_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

// exp8 and erf8 on 16 floats (the same constants and steps)
HEPINFER_ATTN_AVX512 inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f), hi = _mm512_set1_ps(88.7f);
  __m512 xc = _mm512_min_ps(hi, x);
  xc = _mm512_max_ps(lo, xc);
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), y,
                              _mm512_set1_ps(std::numeric_limits<float>::infinity()));
}

HEPINFER_ATTN_AVX512 inline __m512 erf16(__m512 a) {
  const __m512 t = _mm512_abs_ps(a);
  const __m512 s = _mm512_mul_ps(a, a);
  __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(-1.72853470e-5f), t, _mm512_set1_ps(3.83197126e-4f));
  const __m512 u = _mm512_fmadd_ps(_mm512_set1_ps(-3.88396438e-3f), t, _mm512_set1_ps(2.42546219e-2f));
  r = _mm512_fmadd_ps(r, s, u);
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-1.06777877e-1f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-6.34846687e-1f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-1.28717512e-1f));
  r = _mm512_fmsub_ps(r, t, t);
  const __m512 big_abs = _mm512_sub_ps(_mm512_set1_ps(1.0f), exp16(r));
  // sign of a onto 1 - exp(r) (which is >= 0)
  const __m512 big = _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_castps_si512(big_abs), _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN))));
  __m512 q = _mm512_set1_ps(-5.96761703e-4f);
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(4.99119423e-3f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(-2.67681349e-2f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(1.12819925e-1f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(-3.76125336e-1f));
  q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(1.28379166e-1f));
  const __m512 small = _mm512_fmadd_ps(q, a, a);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, _mm512_set1_ps(0.927734375f), _CMP_GT_OQ), small, big);
}

HEPINFER_ATTN_AVX512 void gelu_avx512(const float* x, float* y, std::size_t n, float c, float c1, float c2) {
  const __m512 vc = _mm512_set1_ps(1.0f / c), v1 = _mm512_set1_ps(c1), v2 = _mm512_set1_ps(c2);
  for (std::size_t i = 0; i < n; i += 16) {
    const auto k = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 e = erf16(_mm512_mul_ps(v, vc));
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_mul_ps(v, _mm512_add_ps(e, v1)), v2));
  }
}

HEPINFER_ATTN_AVX512 void softmax_row_avx512(const float* x, float* d, std::size_t len) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m512 vm = _mm512_set1_ps(ninf);
  for (std::size_t j = 0; j < len; j += 16) {
    const auto k = static_cast<__mmask16>(len - j >= 16 ? 0xffff : (1u << (len - j)) - 1);
    vm = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(ninf), k, x + j), vm);  // NaN ignored
  }
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
  __m512 vs = _mm512_setzero_ps();
  for (std::size_t j = 0; j < len; j += 16) {
    const auto k = static_cast<__mmask16>(len - j >= 16 ? 0xffff : (1u << (len - j)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m)));
    _mm512_mask_storeu_ps(d + j, k, e);
    vs = _mm512_add_ps(vs, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
  for (std::size_t j = 0; j < len; j += 16) {
    const auto k = static_cast<__mmask16>(len - j >= 16 ? 0xffff : (1u << (len - j)) - 1);
    _mm512_mask_storeu_ps(d + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + j), inv));
  }
}
#endif

void softmax_row_portable(const float* x, float* d, std::size_t len) {
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < len; ++j) mx = std::max(mx, x[j]);
  float sum = 0.0f;
  for (std::size_t j = 0; j < len; ++j) {
    d[j] = std::exp(x[j] - mx);
    sum += d[j];
  }
  const float inv = 1.0f / sum;
  for (std::size_t j = 0; j < len; ++j) d[j] *= inv;
}

/// The leading (batch) dimensions of `s` (all but the last two) right-aligned to `lead`, as
/// element strides (0 along broadcast dimensions); `inner` is the element count of the last two.
void lead_strides(const Shape& lead, const Shape& s, std::size_t inner, I64* st) {
  const int ls = s.rank - 2;
  I64 stride = static_cast<I64>(inner);
  for (int i = lead.rank - 1; i >= 0; --i) {
    const int is = i - (lead.rank - ls);
    st[i] = is >= 0 && s[is] != 1 ? stride : 0;
    if (is >= 0) stride *= s[is];
  }
}

/// Broadcasts the leading dimensions (all but the last two) of `s` into `lead`.
void broadcast_lead(Shape& lead, const Shape& s, const char* what) {
  const int ls = std::max(s.rank - 2, 0);
  if (ls > lead.rank) {
    Shape w;
    for (int i = 0; i < ls - lead.rank; ++i) w.push(1);
    for (int i = 0; i < lead.rank; ++i) w.push(lead[i]);
    lead = w;
  }
  for (int i = 0; i < ls; ++i) {
    const int il = i + lead.rank - ls;
    const I64 d = s[i];
    if (lead[il] == d || d == 1) continue;
    if (lead[il] == 1) lead[il] = d;
    else
      throw OpError(std::string("the batch dimensions of ") + what + " " + s.str() + " do not broadcast with " +
                    lead.str());
  }
}

}  // namespace

void softmax_row(const float* x, float* d, std::size_t len) {
#ifdef HEPINFER_ATTN_X86
  if (cpu_has_avx2_fma() && cpu_has_avx512()) {
    softmax_row_avx512(x, d, len);
    return;
  }
  if (cpu_has_avx2_fma()) {
    softmax_row_avx2(x, d, len);
    return;
  }
#endif
  softmax_row_portable(x, d, len);
}

void run_fused_gelu(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  require_type(x, ElementType::Float32, "input");
  Shape s;  // the constants' rank may exceed x's (a (1, 1) constant makes a rank-2 output)
  for (I64 i = x.shape.rank; i < n.i0; ++i) s.push(1);
  for (int i = 0; i < x.shape.rank; ++i) s.push(x.shape[i]);
  float* y = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, s));
  const float* a = x.f();
  const float c = n.f0[0], c1 = n.f0[1], c2 = n.f0[2];
#ifdef HEPINFER_ATTN_X86
  if (cpu_has_avx2_fma() && cpu_has_avx512()) {
    gelu_avx512(a, y, x.numel, c, c1, c2);
    return;
  }
  if (cpu_has_avx2_fma()) {
    gelu_avx2(a, y, x.numel, c, c1, c2);
    return;
  }
#endif
  // x / c as x * (1 / c) (within an ulp; a division per element costs more than the erf)
  const float inv = 1.0f / c;
  for (std::size_t i = 0; i < x.numel; ++i) y[i] = a[i] * (std::erf(a[i] * inv) + c1) * c2;
}

void run_fused_attention(const Node& n, Workspace& ws) {
  const Value& q = in(n, ws, 0);
  const Value& kt = in(n, ws, 1);
  const Value& v = in(n, ws, 2);
  const Value* mask = opt_in(n, ws, 3);
  require_type(q, ElementType::Float32, "Q");
  require_type(kt, ElementType::Float32, "K");
  require_type(v, ElementType::Float32, "V");
  if (mask) require_type(*mask, ElementType::Float32, "the mask");
  if (q.shape.rank < 2 || kt.shape.rank < 2 || v.shape.rank < 2)
    throw OpError("attention with a rank-1 operand (Q " + q.shape.str() + ", K " + kt.shape.str() + ", V " +
                  v.shape.str() + ") is not supported");
  const auto T0 = static_cast<std::size_t>(q.shape[q.shape.rank - 2]);
  const auto D = static_cast<std::size_t>(q.shape[q.shape.rank - 1]);
  const auto S = static_cast<std::size_t>(kt.shape[kt.shape.rank - 1]);
  if (kt.shape[kt.shape.rank - 2] != static_cast<I64>(D))
    throw OpError("MatMul of Q " + q.shape.str() + " and K " + kt.shape.str() + ": inner dimensions differ");
  std::size_t T = T0;
  Shape lead;
  broadcast_lead(lead, q.shape, "Q");
  broadcast_lead(lead, kt.shape, "K");
  I64 mt = 0, ms = 0;  // mask strides along rows and columns of the scores
  if (mask) {
    const Shape& m = mask->shape;
    const I64 m_s = m.rank >= 1 ? m[m.rank - 1] : 1, m_t = m.rank >= 2 ? m[m.rank - 2] : 1;
    if (m_s != static_cast<I64>(S) && m_s != 1)
      throw OpError("the mask " + m.str() + " does not broadcast with the scores (" + std::to_string(T0) + ", " +
                    std::to_string(S) + ")");
    if (m_t != static_cast<I64>(T0) && m_t != 1 && T0 != 1)
      throw OpError("the mask " + m.str() + " does not broadcast with the scores (" + std::to_string(T0) + ", " +
                    std::to_string(S) + ")");
    if (T0 == 1 && m_t > 1) T = static_cast<std::size_t>(m_t);
    ms = m_s == 1 ? 0 : 1;
    mt = m_t == 1 ? 0 : m_s;
    if (m.rank > 2) broadcast_lead(lead, m, "the mask");
  }
  if (v.shape[v.shape.rank - 2] != static_cast<I64>(S))
    throw OpError("MatMul of the attention weights (..., " + std::to_string(T) + ", " + std::to_string(S) + ") and V " +
                  v.shape.str() + ": inner dimensions differ");
  broadcast_lead(lead, v.shape, "V");
  const auto DV = static_cast<std::size_t>(v.shape[v.shape.rank - 1]);
  Shape os = lead;
  os.push(static_cast<I64>(T));
  os.push(static_cast<I64>(DV));
  float* o = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const std::size_t n_out = checked_numel(ElementType::Float32, os);
  if (n_out == 0) return;
  if (S == 0) {  // softmax over nothing: no weights, zero sums
    std::fill(o, o + n_out, 0.0f);
    return;
  }
  I64 sq[kMaxRank] = {}, sk[kMaxRank] = {}, sv[kMaxRank] = {}, sm[kMaxRank] = {};
  lead_strides(lead, q.shape, T0 * D, sq);
  lead_strides(lead, kt.shape, D * S, sk);
  lead_strides(lead, v.shape, S * DV, sv);
  if (mask && mask->shape.rank > 2) {
    const Shape& m = mask->shape;
    lead_strides(lead, m, static_cast<std::size_t>(m[m.rank - 2] * m[m.rank - 1]), sm);
  }
  std::vector<float>& p = ws.scratch;
  if (p.size() < T * S + S) p.resize(T * S + S);
  float* row0 = p.data() + T * S;  // the one score row when Q's rows broadcast (T0 == 1 < T)
  const std::size_t n_lead = lead.numel();
  I64 idx[kMaxRank] = {};
  for (std::size_t l = 0; l < n_lead; ++l) {
    I64 oq = 0, ok = 0, ov = 0, om = 0;
    for (int i = 0; i < lead.rank; ++i) {
      oq += idx[i] * sq[i];
      ok += idx[i] * sk[i];
      ov += idx[i] * sv[i];
      om += idx[i] * sm[i];
    }
    float* scores = T0 == T ? p.data() : row0;
    if (D == 0) std::fill(scores, scores + T0 * S, 0.0f);
    else gemm(T0, S, D, q.f() + oq, D, kt.f() + ok, S, scores, S, nullptr, nullptr, Act::None, 0.0f, 0.0f);
    for (std::size_t t = 0; t < T; ++t) {
      float* r = p.data() + t * S;
      const float* src = T0 == T ? r : row0;
      if (mask) {
        const float* m = mask->f() + om + static_cast<I64>(t) * mt;
        if (ms) {
          for (std::size_t j = 0; j < S; ++j) r[j] = src[j] + m[j];
        } else {
          for (std::size_t j = 0; j < S; ++j) r[j] = src[j] + m[0];
        }
      } else if (src != r) {
        std::memcpy(r, src, S * sizeof(float));
      }
      softmax_row(r, r, S);
    }
    gemm(T, DV, S, p.data(), S, v.f() + ov, DV, o + l * T * DV, DV, nullptr, nullptr, Act::None, 0.0f, 0.0f);
    for (int i = lead.rank - 1; i >= 0; --i) {
      if (++idx[i] < lead[i]) break;
      idx[i] = 0;
    }
  }
}

}  // namespace hepinfer::nn
