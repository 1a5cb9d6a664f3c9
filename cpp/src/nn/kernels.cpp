// Dense kernels of the nn engine.
//
// GEMM: C = act(A B + bias) with A [M, K] row-major and B either pre-packed (dense layers: the
// weights are packed once at load) or packed on the fly, one panel at a time (convolutions,
// MatMul of two computed tensors). B is held as panels of kPanel = 16 columns, each a
// contiguous [K][16] block zero-padded past N, so the micro-kernel never needs masks: an
// MR x 16 tile of C is 2 * MR AVX2 accumulators (MR = 6: 12 of the 16 ymm registers, 2 for
// the B row, 1 for the broadcast A value), updated with FMA for every k; the bias and the
// activation are applied on the tile in registers before it is stored. Rows are processed in
// blocks of kRowBlock so that the block of A stays in L1/L2 while every panel passes over it.
// Where the FMA units are 512 bits wide (AMD Zen 5+, Intel server cores since Skylake-SP) the
// dense layers use 12 x 32 AVX-512 tiles instead (two panels at once, K- and row-blocked: see
// block_avx512), with the same k-ascending FMA chains, so both widths give the same bits.
// The SIMD code is compiled with target attributes and the kernel set is chosen once per
// process from cpuid (vendor, family, model; choose_kernels, cpu_kernels() reports it;
// HEPINFER_NN_KERNELS=avx512|avx2|portable overrides), so a baseline x86-64 build runs
// everywhere; the portable fallback sums in the same order without fused multiply-adds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hepinfer/nn.hpp"
#include "nn/graph.hpp"
#include "nn/recurrent_cells.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HEPINFER_NN_X86 1
#endif

namespace hepinfer::nn {

float activate_one(float x, Act act, float alpha, float beta) {
  switch (act) {
    case Act::None: return x;
    case Act::Relu: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case Act::LeakyRelu: return x < 0.0f ? alpha * x : x;
    case Act::Elu: return x < 0.0f ? alpha * (std::exp(x) - 1.0f) : x;
    case Act::Selu: return x > 0.0f ? beta * x : beta * (alpha * std::exp(x) - alpha);
    case Act::Gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Act::GeluTanh: return 0.5f * x * (1.0f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Act::Sigmoid: return x >= 0.0f ? 1.0f / (1.0f + std::exp(-x)) : std::exp(x) / (1.0f + std::exp(x));
    case Act::Tanh: return std::tanh(x);
    case Act::Exp: return std::exp(x);
    case Act::Log: return std::log(x);
    case Act::Sqrt: return std::sqrt(x);
    case Act::Abs: return std::fabs(x);
    case Act::Neg: return -x;
    case Act::Erf: return std::erf(x);
    case Act::Reciprocal: return 1.0f / x;
    case Act::Floor: return std::floor(x);
    case Act::Ceil: return std::ceil(x);
    case Act::Softplus: return x > 20.0f ? x : std::log1p(std::exp(x));
    case Act::Clip: return x != x ? x : std::min(std::max(x, alpha), beta);
    case Act::HardSigmoid: return x != x ? x : std::max(0.0f, std::min(1.0f, alpha * x + beta));
    case Act::Sin: return std::sin(x);
    case Act::Cos: return std::cos(x);
    case Act::Sign: return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;
    case Act::Silu: return x * (x >= 0.0f ? 1.0f / (1.0f + std::exp(-x)) : std::exp(x) / (1.0f + std::exp(x)));
    case Act::Round: return std::nearbyint(x);
    case Act::Mish: return x * std::tanh(x > 20.0f ? x : std::log1p(std::exp(x)));
    case Act::HardSwish: return x != x ? x : x * std::max(0.0f, std::min(1.0f, x * (1.0f / 6.0f) + 0.5f));
    case Act::Softsign: return x / (1.0f + std::fabs(x));
    case Act::Celu: return x > 0.0f ? x : x != x ? x : alpha * std::expm1(x / alpha);
    case Act::ThresholdedRelu: return x > alpha ? x : 0.0f;
    case Act::Shrink: return x < -beta ? x + alpha : x > beta ? x - alpha : 0.0f;  // alpha: bias, beta: lambd
    case Act::Tan: return std::tan(x);
    case Act::Asin: return std::asin(x);
    case Act::Acos: return std::acos(x);
    case Act::Atan: return std::atan(x);
    case Act::Sinh: return std::sinh(x);
    case Act::Cosh: return std::cosh(x);
    case Act::Asinh: return std::asinh(x);
    case Act::Acosh: return std::acosh(x);
    case Act::Atanh: return std::atanh(x);
  }
  return x;
}

#ifdef HEPINFER_NN_X86
#define HEPINFER_NN_AVX2 __attribute__((target("avx2,fma")))
#define HEPINFER_NN_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma,popcnt")))
namespace {

/// exp(x) for x in [-88.37, 88.37] (inputs are clamped there; NaN stays NaN): 2^n * p(r) with
/// r = x - n ln 2 (ln 2 split in two for exactness) and a degree-6 polynomial, max error ~2 ulp.
HEPINFER_NN_AVX2 inline __m256 exp_avx2(__m256 x) {
  // min/max return the second operand when either is NaN: keep x second so NaN passes through
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x);
  const __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_cvttps_epi32(fx);  // NaN -> INT_MIN; y is NaN then anyway
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

/// Whether act_avx2 handles `act` (the others go through activate_one).
inline bool has_act_avx2(Act act) {
  switch (act) {
    case Act::None:
    case Act::Relu:
    case Act::LeakyRelu:
    case Act::Elu:
    case Act::Sigmoid:
    case Act::Tanh:
    case Act::Clip:
    case Act::HardSigmoid:
    case Act::Exp:
    case Act::Softplus:
    case Act::Silu:
    case Act::GeluTanh:
    case Act::Mish: return true;
    default: return false;
  }
}

/// sigmoid(x) on 8 values: e = exp(-|x|) <= 1; 1 / (1 + e) for x >= 0, e / (1 + e) below.
HEPINFER_NN_AVX2 inline __m256 sigmoid_avx2(__m256 x) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 e = exp_avx2(_mm256_sub_ps(zero, ax));
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
  return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
}

/// log(1 + exp(x)) on 8 values as max(x, 0) + log1p(u), u = exp(-|x|) in (0, 1], with
/// log1p(u) = 2 atanh(s), s = u / (2 + u) in (0, 1/3]: the odd series to s^15 (relative error
/// < 2e-9, no cancellation for small u); x > 20 gives x (as activate_one).
HEPINFER_NN_AVX2 inline __m256 softplus_avx2(__m256 x) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 u = exp_avx2(_mm256_sub_ps(zero, ax));
  const __m256 s = _mm256_div_ps(u, _mm256_add_ps(u, _mm256_set1_ps(2.0f)));
  const __m256 z = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 15.0f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 13.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 11.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 9.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f));
  const __m256 l = _mm256_mul_ps(_mm256_add_ps(s, s), p);
  const __m256 r = _mm256_add_ps(_mm256_max_ps(x, zero), l);
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

/// Lanes of x where the vector form of `act` is not accurate (exp under- or overflow, NaN):
/// act_avx2 recomputes them with activate_one.
HEPINFER_NN_AVX2 inline int scalar_lanes_avx2(__m256 x, Act act) {
  switch (act) {
    case Act::Exp: {
      const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ),
                                      _mm256_cmp_ps(x, _mm256_set1_ps(88.0f), _CMP_LE_OQ));
      return ~_mm256_movemask_ps(ok) & 0xff;
    }
    case Act::Softplus:
    case Act::Mish: return ~_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ)) & 0xff;
    default: return 0;
  }
}

/// The activation on 8 values; NaN in, NaN out (as activate_one).
HEPINFER_NN_AVX2 inline __m256 act_avx2(__m256 x, Act act, float alpha, float beta) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  switch (act) {
    case Act::Relu: return _mm256_max_ps(zero, x);
    case Act::LeakyRelu:
      return _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(alpha)), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    case Act::Elu: {
      const __m256 e = _mm256_mul_ps(_mm256_set1_ps(alpha), _mm256_sub_ps(exp_avx2(x), one));
      return _mm256_blendv_ps(x, e, _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    }
    case Act::Sigmoid: return sigmoid_avx2(x);
    case Act::Silu: return _mm256_mul_ps(x, sigmoid_avx2(x));
    case Act::GeluTanh: {
      // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
      const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
      const __m256 u =
          _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
      const __m256 t = act_avx2(u, Act::Tanh, 0.0f, 0.0f);
      return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(one, t));
    }
    case Act::Exp:
    case Act::Softplus:
    case Act::Mish: {
      // Mish: x tanh(softplus(x))
      const __m256 r = act == Act::Exp        ? exp_avx2(x)
                       : act == Act::Softplus ? softplus_avx2(x)
                                              : _mm256_mul_ps(x, act_avx2(softplus_avx2(x), Act::Tanh, 0.0f, 0.0f));
      const int bad = scalar_lanes_avx2(x, act);
      if (__builtin_expect(bad == 0, 1)) return r;
      alignas(32) float xs[8], rs[8];
      _mm256_store_ps(xs, x);
      _mm256_store_ps(rs, r);
      for (int j = 0; j < 8; ++j)
        if (bad & (1 << j)) rs[j] = activate_one(xs[j], act, alpha, beta);
      return _mm256_load_ps(rs);
    }
    case Act::Tanh: {
      // |x| < 0.625: odd polynomial; above: 1 - 2 / (exp(2|x|) + 1); sign restored
      const __m256 sign = _mm256_set1_ps(-0.0f);
      const __m256 ax = _mm256_andnot_ps(sign, x);
      const __m256 z = _mm256_mul_ps(x, x);
      __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
      const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
      const __m256 e = exp_avx2(_mm256_add_ps(ax, ax));
      __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
      big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
      return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
    }
    case Act::Clip: return _mm256_min_ps(_mm256_set1_ps(beta), _mm256_max_ps(_mm256_set1_ps(alpha), x));
    case Act::HardSigmoid:
      return _mm256_min_ps(one, _mm256_max_ps(zero, _mm256_fmadd_ps(_mm256_set1_ps(alpha), x, _mm256_set1_ps(beta))));
    default: return x;
  }
}

HEPINFER_NN_AVX2 void activate_avx2(float* x, std::size_t n, Act act, float alpha, float beta) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, act_avx2(_mm256_loadu_ps(x + i), act, alpha, beta));
  if (i < n) {
    alignas(32) float t[8] = {};
    for (std::size_t j = i; j < n; ++j) t[j - i] = x[j];
    _mm256_store_ps(t, act_avx2(_mm256_load_ps(t), act, alpha, beta));
    for (std::size_t j = i; j < n; ++j) x[j] = t[j - i];
  }
}

}  // namespace
#endif

#ifdef HEPINFER_NN_X86
namespace {

/// lstm_cell_default on 8 columns at a time; the last partial group through zero-padded copies.
/// g and x: the four gates' 8 columns at g + q * gs and x + q * gs (x may be null).
HEPINFER_NN_AVX2 inline void lstm_cols_avx2(const float* g, const float* x, std::size_t gs, float* c, float* h) {
  __m256 v[4];
#pragma GCC unroll 4
  for (std::size_t q = 0; q < 4; ++q) {
    v[q] = _mm256_loadu_ps(g + q * gs);
    if (x) v[q] = _mm256_add_ps(v[q], _mm256_loadu_ps(x + q * gs));
  }
  const __m256 i = sigmoid_avx2(v[0]), o = sigmoid_avx2(v[1]), f = sigmoid_avx2(v[2]);
  const __m256 cc = act_avx2(v[3], Act::Tanh, 0.0f, 0.0f);
  const __m256 cn = _mm256_add_ps(_mm256_mul_ps(f, _mm256_loadu_ps(c)), _mm256_mul_ps(i, cc));
  _mm256_storeu_ps(c, cn);
  _mm256_storeu_ps(h, _mm256_mul_ps(o, act_avx2(cn, Act::Tanh, 0.0f, 0.0f)));
}

HEPINFER_NN_AVX2 void lstm_cell_avx2(std::size_t H, const float* g, const float* x, float* c, float* h, float* y) {
  std::size_t j = 0;
  for (; j + 8 <= H; j += 8) {
    lstm_cols_avx2(g + j, x ? x + j : nullptr, H, c + j, h + j);
    if (y) std::memcpy(y + j, h + j, 8 * sizeof(float));
  }
  if (j < H) {
    const std::size_t n = H - j;
    alignas(32) float gt[4 * 8] = {}, xt[4 * 8] = {}, ct[8] = {}, ht[8];
    for (std::size_t q = 0; q < 4; ++q)
      for (std::size_t k = 0; k < n; ++k) {
        gt[q * 8 + k] = g[q * H + j + k];
        if (x) xt[q * 8 + k] = x[q * H + j + k];
      }
    for (std::size_t k = 0; k < n; ++k) ct[k] = c[j + k];
    lstm_cols_avx2(gt, x ? xt : nullptr, 8, ct, ht);
    for (std::size_t k = 0; k < n; ++k) {
      c[j + k] = ct[k];
      h[j + k] = ht[k];
      if (y) y[j + k] = ht[k];
    }
  }
}

// The same formulas 16 wide (AVX-512F only): the same operations in the same order, so the
// values are those of the 8-wide forms bit for bit.
HEPINFER_NN_AVX512 inline __m512 or512(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
HEPINFER_NN_AVX512 inline __m512 and512(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

/// exp_avx2 on 16 values.
HEPINFER_NN_AVX512 inline __m512 exp_avx512(__m512 x) {
  // (the masked min/max: GCC 12's unmasked forms pass an undefined vector, see tile_avx512)
  const auto all = static_cast<__mmask16>(0xFFFF);
  x = _mm512_mask_min_ps(x, all, _mm512_set1_ps(88.3762626647949f), x);
  x = _mm512_mask_max_ps(x, all, _mm512_set1_ps(-88.3762626647949f), x);
  const __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                         _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i n = _mm512_cvttps_epi32(fx);
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

/// sigmoid_avx2 on 16 values.
HEPINFER_NN_AVX512 inline __m512 sigmoid_avx512(__m512 x) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 ax = and512(_mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)), x);
  const __m512 e = exp_avx512(_mm512_sub_ps(zero, ax));
  const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ), s, _mm512_mul_ps(e, s));
}

/// act_avx2's tanh on 16 values.
HEPINFER_NN_AVX512 inline __m512 tanh_avx512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 ax = and512(_mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)), x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 e = exp_avx512(_mm512_add_ps(ax, ax));
  __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
  big = or512(big, and512(sign, x));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), big, small);
}

/// lstm_cell_default 16 columns at a time, the last group masked.
HEPINFER_NN_AVX512 void lstm_cell_avx512(std::size_t H, const float* g, const float* x, float* c, float* h, float* y) {
  for (std::size_t j = 0; j < H; j += 16) {
    const auto m = static_cast<__mmask16>(H - j >= 16 ? 0xFFFFu : (1u << (H - j)) - 1u);
    __m512 v[4];
#pragma GCC unroll 4
    for (std::size_t q = 0; q < 4; ++q) {
      v[q] = _mm512_maskz_loadu_ps(m, g + q * H + j);
      if (x) v[q] = _mm512_add_ps(v[q], _mm512_maskz_loadu_ps(m, x + q * H + j));
    }
    const __m512 i = sigmoid_avx512(v[0]), o = sigmoid_avx512(v[1]), f = sigmoid_avx512(v[2]);
    const __m512 cc = tanh_avx512(v[3]);
    const __m512 cn = _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, c + j)), _mm512_mul_ps(i, cc));
    const __m512 hn = _mm512_mul_ps(o, tanh_avx512(cn));
    _mm512_mask_storeu_ps(c + j, m, cn);
    _mm512_mask_storeu_ps(h + j, m, hn);
    if (y) _mm512_mask_storeu_ps(y + j, m, hn);
  }
}

bool use_avx512_tiles() noexcept;  // the CPU's kernel choice (below)

}  // namespace
#endif

void lstm_cell_default(std::size_t H, const float* g, const float* x, float* c, float* h, float* y) {
#ifdef HEPINFER_NN_X86
  if (use_avx512_tiles()) {
    lstm_cell_avx512(H, g, x, c, h, y);
    return;
  }
  if (cpu_has_avx2_fma()) {
    lstm_cell_avx2(H, g, x, c, h, y);
    return;
  }
#endif
  for (std::size_t j = 0; j < H; ++j) {
    float gi = g[j], go = g[H + j], gf = g[2 * H + j], gc = g[3 * H + j];
    if (x) {
      gi += x[j];
      go += x[H + j];
      gf += x[2 * H + j];
      gc += x[3 * H + j];
    }
    gi = activate_one(gi, Act::Sigmoid, 0.0f, 0.0f);
    go = activate_one(go, Act::Sigmoid, 0.0f, 0.0f);
    gf = activate_one(gf, Act::Sigmoid, 0.0f, 0.0f);
    gc = activate_one(gc, Act::Tanh, 0.0f, 0.0f);
    c[j] = gf * c[j] + gi * gc;
    h[j] = go * activate_one(c[j], Act::Tanh, 0.0f, 0.0f);
    if (y) y[j] = h[j];
  }
}

void activate(float* x, std::size_t n, Act act, float alpha, float beta) {
#ifdef HEPINFER_NN_X86
  if (act != Act::None && has_act_avx2(act) && cpu_has_avx2_fma()) {
    activate_avx2(x, n, act, alpha, beta);
    return;
  }
#endif
  switch (act) {
    case Act::None: return;
    case Act::Relu:
      // NaN stays NaN (x < 0 is false for NaN)
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? 0.0f : x[i];
      return;
    case Act::LeakyRelu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? alpha * x[i] : x[i];
      return;
    default:
      for (std::size_t i = 0; i < n; ++i) x[i] = activate_one(x[i], act, alpha, beta);
  }
}

std::size_t packed_panels_size(std::size_t K, std::size_t N) noexcept { return (N + kPanel - 1) / kPanel * K * kPanel; }

void pack_panels(std::size_t K, std::size_t N, const float* B, std::size_t ldb, float* dst) {
  for (std::size_t j0 = 0; j0 < N; j0 += kPanel) {
    const std::size_t w = std::min<std::size_t>(kPanel, N - j0);
    for (std::size_t k = 0; k < K; ++k) {
      const float* src = B + k * ldb + j0;
      float* d = dst + k * kPanel;
      for (std::size_t j = 0; j < w; ++j) d[j] = src[j];
      for (std::size_t j = w; j < kPanel; ++j) d[j] = 0.0f;
    }
    dst += K * kPanel;
  }
}

namespace {

bool use_avx512_tiles() noexcept;  // the CPU's kernel choice (below)

constexpr std::size_t kRowBlock = 96;  // rows of A per block (a multiple of 6)

struct Epilogue {
  const float* bias_col;  // kPanel values for this panel (padded) or null
  const float* bias_row;  // one value per row of the tile or null
  bool accumulate;        // add to C instead of overwriting (K blocks after the first)
  bool finish;            // apply biases and activation (last K block)
  Act act;
  float alpha, beta;
};

/// The tile rows [0, rows) x cols [0, ncols) of a kPanel-wide result held in `t` (row-major,
/// kPanel floats per row) go to C with biases / accumulation / activation (portable).
void store_tile(float* t, std::size_t rows, std::size_t ncols, float* C, std::size_t ldc, const Epilogue& e) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* c = C + r * ldc;
    float* s = t + r * kPanel;
    for (std::size_t j = 0; j < ncols; ++j) {
      float v = s[j];
      if (e.accumulate) v += c[j];
      if (e.finish) {
        if (e.bias_col) v += e.bias_col[j];
        if (e.bias_row) v += e.bias_row[r];
      }
      s[j] = v;
    }
  }
  // the activation over whole tile rows (vectorised; columns past ncols are not stored)
  if (e.finish && e.act != Act::None) activate(t, rows * kPanel, e.act, e.alpha, e.beta);
  for (std::size_t r = 0; r < rows; ++r) std::memcpy(C + r * ldc, t + r * kPanel, ncols * sizeof(float));
}

void tile_portable(std::size_t rows, std::size_t K, const float* A, std::size_t lda, const float* Bp, float* C,
                   std::size_t ldc, std::size_t ncols, const Epilogue& e) {
  float t[6 * kPanel];
  for (std::size_t r = 0; r < rows; ++r) {
    float* acc = t + r * kPanel;
    for (std::size_t j = 0; j < kPanel; ++j) acc[j] = 0.0f;
    const float* a = A + r * lda;
    for (std::size_t k = 0; k < K; ++k) {
      const float av = a[k];
      const float* b = Bp + k * kPanel;
      for (std::size_t j = 0; j < kPanel; ++j) acc[j] += av * b[j];
    }
  }
  store_tile(t, rows, ncols, C, ldc, e);
}

#ifdef HEPINFER_NN_X86
/// MR rows x 16 columns (NV = 2 vectors; NV = 1 when at most 8 columns are valid).
template <int MR, int NV>
HEPINFER_NN_AVX2 void tile_avx2(std::size_t K, const float* A, std::size_t lda, const float* Bp, float* C,
                                std::size_t ldc, std::size_t ncols, const Epilogue& e) {
  __m256 acc[MR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* a[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) a[r] = A + static_cast<std::size_t>(r) * lda;
  for (std::size_t k = 0; k < K; ++k) {
    __m256 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(Bp + k * kPanel + 8 * static_cast<std::size_t>(v));
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a[r] + k);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, b[v], acc[r][v]);
    }
  }
  const bool full = ncols == static_cast<std::size_t>(8 * NV);
  if (full && has_act_avx2(e.act)) {
    const bool accumulate = e.accumulate, apply = e.finish && e.act != Act::None;
    const Act act = e.act;
    const float alpha = e.alpha, beta = e.beta;
    const float* bias_col = e.finish ? e.bias_col : nullptr;
    const float* bias_row = e.finish ? e.bias_row : nullptr;
    if (accumulate) {  // K blocks after the first: C holds the partial sum
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v)
          acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_loadu_ps(C + static_cast<std::size_t>(r) * ldc + 8 * v));
    }
    if (bias_col) {
      __m256 bc[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) bc[v] = _mm256_loadu_ps(bias_col + 8 * v);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_add_ps(acc[r][v], bc[v]);
    }
    if (bias_row) {
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m256 br = _mm256_set1_ps(bias_row[r]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_add_ps(acc[r][v], br);
      }
    }
    if (apply) {
      if (act == Act::Relu) {
        // max(0, x) keeps NaN: max_ps returns its second operand when either is NaN
        const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_max_ps(z, acc[r][v]);
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + static_cast<std::size_t>(r) * ldc + 8 * v, acc[r][v]);
    if (apply && act != Act::Relu)  // on the stored tile (still in L1): keeps acc in registers above
      for (int r = 0; r < MR; ++r) activate_avx2(C + static_cast<std::size_t>(r) * ldc, 8 * NV, act, alpha, beta);
    return;
  }
  alignas(32) float t[MR * kPanel];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_store_ps(t + r * kPanel + 8 * v, acc[r][v]);
  store_tile(t, MR, ncols, C, ldc, e);
}

template <int NV>
HEPINFER_NN_AVX2 void rows_avx2(std::size_t rows, std::size_t K, const float* A, std::size_t lda, const float* Bp,
                                float* C, std::size_t ldc, std::size_t ncols, Epilogue e) {
  const float* bias_row = e.bias_row;
  std::size_t i = 0;
  for (; i + 6 <= rows; i += 6) {
    e.bias_row = bias_row ? bias_row + i : nullptr;
    tile_avx2<6, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e);
  }
  e.bias_row = bias_row ? bias_row + i : nullptr;
  switch (rows - i) {
    case 5: tile_avx2<5, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e); break;
    case 4: tile_avx2<4, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e); break;
    case 3: tile_avx2<3, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e); break;
    case 2: tile_avx2<2, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e); break;
    case 1: tile_avx2<1, NV>(K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, e); break;
    default: break;
  }
}

/// One row of C over NP panels at once (2 * NP independent accumulators: for a single event
/// the FMA latency chain, not the throughput, is the limit). c receives min(ncols, NP * 16)
/// values; bias (may be null) is panel-padded.
template <int NP>
HEPINFER_NN_AVX2 void row_panels_avx2(std::size_t K, const float* a, const float* panels, float* c, std::size_t ncols,
                                      const float* bias, Act act, float alpha, float beta) {
  __m256 acc[NP][2];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
  const std::size_t stride = K * kPanel;
  for (std::size_t k = 0; k < K; ++k) {
    const __m256 av = _mm256_broadcast_ss(a + k);
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const float* b = panels + static_cast<std::size_t>(p) * stride + k * kPanel;
      acc[p][0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b), acc[p][0]);
      acc[p][1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 8), acc[p][1]);
    }
  }
  alignas(32) float t[NP * kPanel];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      __m256 x = acc[p][v];
      if (bias) x = _mm256_add_ps(x, _mm256_loadu_ps(bias + p * kPanel + 8 * v));
      if (act == Act::Relu) x = _mm256_max_ps(_mm256_setzero_ps(), x);
      _mm256_store_ps(t + p * kPanel + 8 * v, x);
    }
  if (act != Act::None && act != Act::Relu) activate(t, NP * kPanel, act, alpha, beta);
  std::memcpy(c, t, std::min<std::size_t>(ncols, NP * kPanel) * sizeof(float));
}

// ---- dense layers fed by ReLU outputs
// A ReLU zeroes about half of a layer's inputs. When the weights are finite, fma(0, w, acc)
// leaves acc unchanged (bar the sign of a zero sum), so a row can skip its zero inputs and sum
// only the others, in the same k-ascending order with the same FMAs: the same values as the
// dense tiles for fewer multiply-adds. Each row's non-zero inputs are first gathered into a
// list (AVX-512 compress where present, a branch-free loop otherwise), then up to four panels
// (64 columns: eight independent accumulators, enough to hide the FMA latency) are summed
// over that list.

/// The non-zero entries of a[0, K) (NaN counts as non-zero) -> val/idx; returns their number.
/// val and idx hold K + 16 entries.
HEPINFER_NN_AVX512 inline std::size_t gather_nonzero_avx512(const float* a, std::size_t K, float* val,
                                                            std::uint32_t* idx) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 zero = _mm512_setzero_ps();
  std::size_t n = 0;
  for (std::size_t k0 = 0; k0 < K; k0 += 16) {
    const std::size_t w = std::min<std::size_t>(16, K - k0);
    const auto valid = static_cast<__mmask16>((1u << w) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(valid, a + k0);
    const __mmask16 nz = _mm512_mask_cmp_ps_mask(valid, v, zero, _CMP_NEQ_UQ);
    _mm512_storeu_ps(val + n, _mm512_maskz_compress_ps(nz, v));
    const __m512i k = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(k0)));
    _mm512_storeu_si512(idx + n, _mm512_maskz_compress_epi32(nz, k));
    n += static_cast<std::size_t>(__builtin_popcount(nz));
  }
  return n;
}

HEPINFER_NN_AVX2 inline std::size_t gather_nonzero(const float* a, std::size_t K, float* val, std::uint32_t* idx) {
  std::size_t n = 0;
  for (std::size_t k = 0; k < K; ++k) {
    val[n] = a[k];
    idx[n] = static_cast<std::uint32_t>(k);
    n += a[k] != 0.0f ? 1 : 0;  // NaN != 0: kept
  }
  return n;
}

/// rows x (up to NP * 16) columns of C, each row summed over the non-zero entries of its row of
/// A (gathered by `gather`). The epilogue is the dense tiles': + bias_col, then the activation.
template <int NP, class Gather>
HEPINFER_NN_AVX2 inline __attribute__((always_inline)) void sparse_rows_body(
    std::size_t rows, std::size_t K, const float* A, std::size_t lda, const float* panels, std::size_t stride, float* C,
    std::size_t ldc, std::size_t ncols, const float* bias, Act act, float alpha, float beta, float* val,
    std::uint32_t* idx, Gather gather) {
  const bool full = ncols >= static_cast<std::size_t>(NP) * kPanel;
  __m256 bv[NP][2];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) bv[p][v] = bias ? _mm256_loadu_ps(bias + p * kPanel + 8 * v) : _mm256_setzero_ps();
  for (std::size_t i = 0; i < rows; ++i) {
    const std::size_t n = gather(A + i * lda, K, val, idx);
    __m256 acc[NP][2];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
    for (std::size_t t = 0; t < n; ++t) {
      const __m256 av = _mm256_broadcast_ss(val + t);
      const float* b = panels + static_cast<std::size_t>(idx[t]) * kPanel;
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        acc[p][0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + static_cast<std::size_t>(p) * stride), acc[p][0]);
        acc[p][1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + static_cast<std::size_t>(p) * stride + 8), acc[p][1]);
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) {
        acc[p][v] = _mm256_add_ps(acc[p][v], bv[p][v]);
        if (act == Act::Relu) acc[p][v] = _mm256_max_ps(_mm256_setzero_ps(), acc[p][v]);
      }
    float* c = C + i * ldc;
    if (full) {
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v) _mm256_storeu_ps(c + p * kPanel + 8 * v, acc[p][v]);
      if (act != Act::None && act != Act::Relu) activate(c, NP * kPanel, act, alpha, beta);
    } else {
      alignas(32) float t[NP * kPanel];
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v) _mm256_store_ps(t + p * kPanel + 8 * v, acc[p][v]);
      if (act != Act::None && act != Act::Relu) activate(t, NP * kPanel, act, alpha, beta);
      std::memcpy(c, t, ncols * sizeof(float));
    }
  }
}

template <int NP>
HEPINFER_NN_AVX512 void sparse_rows_avx512(std::size_t rows, std::size_t K, const float* A, std::size_t lda,
                                           const float* panels, std::size_t stride, float* C, std::size_t ldc,
                                           std::size_t ncols, const float* bias, Act act, float alpha, float beta,
                                           float* val, std::uint32_t* idx) {
  sparse_rows_body<NP>(rows, K, A, lda, panels, stride, C, ldc, ncols, bias, act, alpha, beta, val, idx,
                       gather_nonzero_avx512);
}

template <int NP>
HEPINFER_NN_AVX2 void sparse_rows_avx2(std::size_t rows, std::size_t K, const float* A, std::size_t lda,
                                       const float* panels, std::size_t stride, float* C, std::size_t ldc,
                                       std::size_t ncols, const float* bias, Act act, float alpha, float beta,
                                       float* val, std::uint32_t* idx) {
  sparse_rows_body<NP>(rows, K, A, lda, panels, stride, C, ldc, ncols, bias, act, alpha, beta, val, idx,
                       gather_nonzero);
}

/// Whether a block of A is sparse enough for the row kernel to pay: at least 40% exact zeros
/// in its first rows (a ReLU's output; a dense input has almost none).
HEPINFER_NN_AVX2 bool mostly_zero(const float* A, std::size_t rows, std::size_t K, std::size_t lda) {
  const std::size_t r = std::min<std::size_t>(rows, 12);
  const std::size_t K8 = K / 8 * 8;
  const __m256 zero = _mm256_setzero_ps();
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < r; ++i) {
    const float* a = A + i * lda;
    for (std::size_t k = 0; k < K8; k += 8)
      zeros += static_cast<std::size_t>(__builtin_popcount(
          static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(a + k), zero, _CMP_EQ_OQ)))));
    for (std::size_t k = K8; k < K; ++k) zeros += a[k] == 0.0f ? 1 : 0;
  }
  return zeros * 10 >= r * K * 4;
}

/// rows x N of C, row by row over the non-zero inputs (see above). B's weights must be finite.
void sparse_rows(std::size_t rows, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* panels,
                 float* C, std::size_t ldc, const float* bias_col, Act act, float alpha, float beta) {
  static thread_local std::vector<float> val;
  static thread_local std::vector<std::uint32_t> idx;
  if (val.size() < K + 16) {
    val.resize(K + 16);
    idx.resize(K + 16);
  }
  const bool wide = cpu_has_avx512();
  const std::size_t np = (N + kPanel - 1) / kPanel, stride = K * kPanel;
  // panel groups outermost: a group's weights (K x 64 floats) stay in L1 over the rows; each
  // row's non-zero list is rebuilt per group (cheap next to the sums)
  for (std::size_t p = 0; p < np; p += 4) {
    const std::size_t j0 = p * kPanel;
    const float* b = panels + p * stride;
    const float* bc = bias_col ? bias_col + j0 : nullptr;
    const std::size_t nc = std::min<std::size_t>(N - j0, 4 * kPanel);
    float* c = C + j0;
#define HEPINFER_SPARSE_ROWS(NP)                                                                                       \
  (wide ? sparse_rows_avx512<NP>(rows, K, A, lda, b, stride, c, ldc, nc, bc, act, alpha, beta, val.data(), idx.data()) \
        : sparse_rows_avx2<NP>(rows, K, A, lda, b, stride, c, ldc, nc, bc, act, alpha, beta, val.data(), idx.data()))
    switch (std::min<std::size_t>(4, np - p)) {
      case 4: HEPINFER_SPARSE_ROWS(4); break;
      case 3: HEPINFER_SPARSE_ROWS(3); break;
      case 2: HEPINFER_SPARSE_ROWS(2); break;
      default: HEPINFER_SPARSE_ROWS(1); break;
    }
#undef HEPINFER_SPARSE_ROWS
  }
}

// ---- 16-wide tiles (CPUs with 512-bit FMA units)
// An MR x (16 NP) tile of C: one zmm accumulator per row and panel (MR = 12, NP = 2: 24 of the
// 32 registers, 2 for the B rows, the A values broadcast from memory by the FMAs). A is read in
// place (row-major, the rows' pointers in registers), B is the packed weights: panel p of this
// K block at B + p * bstride. Each output is one FMA chain over k ascending, started from zero
// (or from C, where an earlier K block left its partial sum), so the values are those of the
// 8-wide tiles and of the zero-skipping rows, bit for bit, whatever the blocking.

constexpr std::size_t kMR512 = 12;        // rows per tile
constexpr std::size_t kKBlock512 = 256;   // K per block: a panel pair (K x 32 floats) stays in L1
constexpr std::size_t kRowBlock512 = 96;  // rows per block: their K block of A (~100 KiB) stays in L2

template <int MR, int NP>
HEPINFER_NN_AVX512 void tile_avx512(std::size_t K, const float* A, std::size_t lda, const float* B, std::size_t bstride,
                                    float* C, std::size_t ldc, std::size_t ncols, const Epilogue& e) {
  __mmask16 mask[NP];
#pragma GCC unroll 2
  for (int p = 0; p < NP; ++p) {
    const std::size_t lo = 16 * static_cast<std::size_t>(p);
    const std::size_t w = ncols > lo ? std::min<std::size_t>(16, ncols - lo) : 0;
    mask[p] = static_cast<__mmask16>((1u << w) - 1u);
  }
  __m512 acc[MR][NP];
  if (e.accumulate) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p)
        acc[r][p] = _mm512_maskz_loadu_ps(mask[p], C + static_cast<std::size_t>(r) * ldc + 16 * p);
  } else {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_ps();
  }
  const float* a0 = A;
  const float* a3 = A + 3 * lda;
  const float* a6 = A + 6 * lda;
  const float* a9 = A + 9 * lda;
  for (std::size_t k = 0; k < K; ++k) {
    __m512 b[NP];
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) b[p] = _mm512_loadu_ps(B + static_cast<std::size_t>(p) * bstride + k * kPanel);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const float* base = r < 3 ? a0 : r < 6 ? a3 : r < 9 ? a6 : a9;
      const __m512 av = _mm512_set1_ps(base[static_cast<std::size_t>(r % 3) * lda + k]);
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_fmadd_ps(av, b[p], acc[r][p]);
    }
  }
  const bool finish = e.finish;
  if (finish && e.bias_col) {
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const __m512 bc = _mm512_loadu_ps(e.bias_col + 16 * p);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) acc[r][p] = _mm512_add_ps(acc[r][p], bc);
    }
  }
  if (finish && e.bias_row) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 br = _mm512_set1_ps(e.bias_row[r]);
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_add_ps(acc[r][p], br);
    }
  }
  if (finish && e.act == Act::Relu) {
    // max(0, x) keeps NaN: max_ps returns its second operand when either is NaN (the masked
    // form: GCC 12's _mm512_max_ps passes an "undefined" vector that -Wmaybe-uninitialized flags)
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p)
        acc[r][p] = _mm512_mask_max_ps(acc[r][p], static_cast<__mmask16>(0xFFFF), _mm512_setzero_ps(), acc[r][p]);
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p)
      _mm512_mask_storeu_ps(C + static_cast<std::size_t>(r) * ldc + 16 * p, mask[p], acc[r][p]);
  if (finish && e.act != Act::None && e.act != Act::Relu)  // on the stored rows, still in L1
    for (int r = 0; r < MR; ++r) activate(C + static_cast<std::size_t>(r) * ldc, ncols, e.act, e.alpha, e.beta);
}

/// rows x ncols (<= 16 NP) of C: tiles of 12 rows, the remainder in tiles of 8, 4, 2 and 1.
template <int NP>
HEPINFER_NN_AVX512 void rows_avx512(std::size_t rows, std::size_t K, const float* A, std::size_t lda, const float* B,
                                    std::size_t bstride, float* C, std::size_t ldc, std::size_t ncols, Epilogue e) {
  const float* bias_row = e.bias_row;
  std::size_t i = 0;
  const auto at = [&](std::size_t r) { e.bias_row = bias_row ? bias_row + r : nullptr; };
  for (; i + kMR512 <= rows; i += kMR512) {
    at(i);
    tile_avx512<12, NP>(K, A + i * lda, lda, B, bstride, C + i * ldc, ldc, ncols, e);
  }
  if (i + 8 <= rows) {
    at(i);
    tile_avx512<8, NP>(K, A + i * lda, lda, B, bstride, C + i * ldc, ldc, ncols, e);
    i += 8;
  }
  if (i + 4 <= rows) {
    at(i);
    tile_avx512<4, NP>(K, A + i * lda, lda, B, bstride, C + i * ldc, ldc, ncols, e);
    i += 4;
  }
  if (i + 2 <= rows) {
    at(i);
    tile_avx512<2, NP>(K, A + i * lda, lda, B, bstride, C + i * ldc, ldc, ncols, e);
    i += 2;
  }
  if (i < rows) {
    at(i);
    tile_avx512<1, NP>(K, A + i * lda, lda, B, bstride, C + i * ldc, ldc, ncols, e);
  }
}

/// gemm_packed's dense blocks with the 16-wide tiles: K in blocks of kKBlock512 (the panel pair
/// of a block stays in L1 while every 12-row tile of the row block passes over it), panel pairs
/// outermost within a K block.
///
/// When A's row stride is a multiple of 4 KiB (1024, 2048, ... inputs), which maps the 12 rows a
/// tile reads to one L1 set (conflict misses), and several panel pairs pass over it, the K
/// block of A is first copied to a buffer with a row stride of kc + 16 floats (M K floats: small
/// next to the N / 32 passes over them).
void block_avx512(std::size_t rows, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* panels,
                  float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act, float alpha,
                  float beta) {
  const std::size_t np = (N + kPanel - 1) / kPanel, stride = K * kPanel;
  const bool copy = np >= 4 && rows >= kMR512 && lda % 1024 == 0;
  static thread_local AlignedFloats a_block;
  for (std::size_t k0 = 0; k0 < K; k0 += kKBlock512) {
    const std::size_t kc = std::min(kKBlock512, K - k0);
    const bool first = k0 == 0, last = k0 + kc >= K;
    const float* a = A + k0;
    std::size_t la = lda;
    if (copy) {
      la = kc + 16;
      if (a_block.size() < rows * la) a_block.resize(rows * la);
      for (std::size_t i = 0; i < rows; ++i) std::memcpy(a_block.data() + i * la, A + i * lda + k0, kc * sizeof(float));
      a = a_block.data();
    }
    for (std::size_t p = 0; p < np; p += 2) {
      const std::size_t j0 = p * kPanel;
      Epilogue e{bias_col ? bias_col + j0 : nullptr, bias_row, !first, last, act, alpha, beta};
      const float* b = panels + p * stride + k0 * kPanel;
      if (p + 1 < np) rows_avx512<2>(rows, kc, a, la, b, stride, C + j0, ldc, std::min(2 * kPanel, N - j0), e);
      else rows_avx512<1>(rows, kc, a, la, b, stride, C + j0, ldc, N - j0, e);
    }
  }
}
#endif

/// rows x ncols (<= kPanel) of C from one packed panel.
void panel_rows(bool avx2, std::size_t rows, std::size_t K, const float* A, std::size_t lda, const float* Bp, float* C,
                std::size_t ldc, std::size_t ncols, const Epilogue& e) {
#ifdef HEPINFER_NN_X86
  if (avx2 && use_avx512_tiles()) {
    rows_avx512<1>(rows, K, A, lda, Bp, K * kPanel, C, ldc, ncols, e);
    return;
  }
  if (avx2) {
    if (ncols > 8) rows_avx2<2>(rows, K, A, lda, Bp, C, ldc, ncols, e);
    else rows_avx2<1>(rows, K, A, lda, Bp, C, ldc, ncols, e);
    return;
  }
#else
  (void)avx2;
#endif
  Epilogue ee = e;
  for (std::size_t i = 0; i < rows; i += 6) {
    ee.bias_row = e.bias_row ? e.bias_row + i : nullptr;
    tile_portable(std::min<std::size_t>(6, rows - i), K, A + i * lda, lda, Bp, C + i * ldc, ldc, ncols, ee);
  }
}

#ifdef HEPINFER_NN_X86
/// One output column as dot products: C[i, 0] = act(A[i, :] . w + bias), 8 rows at a time
/// (a last partial group re-reads its final row), so every row is summed in the same order
/// wherever it falls in the batch.
HEPINFER_NN_AVX2 void dot_column_avx2(std::size_t M, std::size_t K, const float* A, std::size_t lda, const float* w,
                                      float bias, float* C, std::size_t ldc, Act act, float alpha, float beta) {
  const std::size_t K8 = K / 8 * 8;
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K - K8)), idx);
  const __m256 wt = _mm256_maskload_ps(w + K8, tail);
  const bool vec_act = has_act_avx2(act);
  for (std::size_t i = 0; i < M; i += 8) {
    const float* a[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) a[r] = A + std::min(i + static_cast<std::size_t>(r), M - 1) * lda;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
    for (std::size_t k = 0; k < K8; k += 8) {
      const __m256 wv = _mm256_loadu_ps(w + k);
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a[r] + k), wv, acc[r]);
    }
    if (K8 < K) {
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) acc[r] = _mm256_fmadd_ps(_mm256_maskload_ps(a[r] + K8, tail), wt, acc[r]);
    }
    // transpose-reduce: lane r of s = sum of acc[r]
    const __m256 h01 = _mm256_hadd_ps(acc[0], acc[1]), h23 = _mm256_hadd_ps(acc[2], acc[3]);
    const __m256 h45 = _mm256_hadd_ps(acc[4], acc[5]), h67 = _mm256_hadd_ps(acc[6], acc[7]);
    const __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
    const __m256 lo = _mm256_permute2f128_ps(q0, q1, 0x20), hi = _mm256_permute2f128_ps(q0, q1, 0x31);
    __m256 s = _mm256_add_ps(_mm256_add_ps(lo, hi), _mm256_set1_ps(bias));
    if (vec_act) s = act_avx2(s, act, alpha, beta);
    alignas(32) float t[8];
    _mm256_store_ps(t, s);
    const std::size_t rows = std::min<std::size_t>(8, M - i);
    for (std::size_t r = 0; r < rows; ++r) C[(i + r) * ldc] = vec_act ? t[r] : activate_one(t[r], act, alpha, beta);
  }
}
#endif

}  // namespace

namespace {

constexpr int kPortable = 0, kAvx2 = 1, kAvx512 = 2;

struct KernelChoice {
  CpuKernels info;
  int level = kPortable;    // the GEMM tiles: kPortable / kAvx2 / kAvx512
  bool avx512_isa = false;  // AVX-512 instructions allowed at all (the zero-skipping gather)
};

#ifdef HEPINFER_NN_X86
/// Whether the FMA units are 512 bits wide (two full-rate 16-wide FMAs per cycle), where the
/// 16-wide tiles double the throughput; on 256-bit FMA units (Zen 4 runs AVX-512 as two halves,
/// Intel client cores have one 512-bit port) they bring nothing and the 8-wide tiles are kept.
bool wide_fma(const std::string& vendor, int family, int model) {
  if (vendor == "AuthenticAMD") return family >= 26;  // Zen 5 (family 1Ah) and later
  if (vendor == "GenuineIntel" && family == 6) {
    switch (model) {
      case 85:  // Skylake-SP / Cascade Lake / Cooper Lake (and Skylake-X)
      case 106:
      case 108:  // Ice Lake-SP / -D
      case 143:  // Sapphire Rapids
      case 207:  // Emerald Rapids
      case 173:
      case 174:  // Granite Rapids
      case 87:
      case 133:  // Xeon Phi
        return true;
      default: return false;  // client cores (Ice/Tiger/Rocket Lake) and unknown models
    }
  }
  return false;
}
#endif

KernelChoice choose_kernels() {
  KernelChoice c;
  int isa = kPortable;
#ifdef HEPINFER_NN_X86
  __builtin_cpu_init();
  unsigned a = 0, b = 0, cc = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &cc, &d)) {
    char v[13] = {};
    std::memcpy(v, &b, 4);
    std::memcpy(v + 4, &d, 4);
    std::memcpy(v + 8, &cc, 4);
    c.info.vendor = v;
  }
  if (__get_cpuid(1, &a, &b, &cc, &d)) {
    const int base_family = static_cast<int>((a >> 8) & 0xf);
    const int base_model = static_cast<int>((a >> 4) & 0xf);
    c.info.family = base_family == 0xf ? base_family + static_cast<int>((a >> 20) & 0xff) : base_family;
    c.info.model =
        base_family == 0x6 || base_family == 0xf ? base_model | static_cast<int>(((a >> 16) & 0xf) << 4) : base_model;
  }
  if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
    unsigned r[12];
    for (unsigned i = 0; i < 3; ++i)
      __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char brand[49] = {};
    std::memcpy(brand, r, 48);
    std::string name = brand;
    const auto first = name.find_first_not_of(' '), last = name.find_last_not_of(' ');
    c.info.cpu = first == std::string::npos ? std::string() : name.substr(first, last - first + 1);
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = kAvx2;
  if (isa == kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) isa = kAvx512;
#endif
  // the CPU rule
  int level = isa;
  std::string reason;
  if (isa == kPortable) {
    reason = "no AVX2/FMA";
  } else if (isa == kAvx2) {
    reason = "AVX2/FMA, no AVX-512";
  } else {
#ifdef HEPINFER_NN_X86
    if (wide_fma(c.info.vendor, c.info.family, c.info.model)) {
      reason = "AVX-512 with 512-bit FMA units";
    } else {
      level = kAvx2;
      reason = "AVX-512 on 256-bit FMA units (or a CPU not known to have 512-bit ones)";
    }
#endif
  }
  bool avx512_isa = isa == kAvx512;
  // overrides (tests): HEPINFER_NN_KERNELS, and the older switches as aliases
  int forced = -1;
  std::string var;
  if (const char* e = std::getenv("HEPINFER_NN_KERNELS"); e != nullptr && *e != '\0') {
    const std::string v = e;
    var = "HEPINFER_NN_KERNELS=" + v;
    if (v == "avx512") forced = kAvx512;
    else if (v == "avx2") forced = kAvx2;
    else if (v == "portable") forced = kPortable;
    else var += " (not one of avx512, avx2, portable: ignored)";
  }
  if (forced < 0 && std::getenv("HEPINFER_DISABLE_AVX2") != nullptr) {
    forced = kPortable;
    var = "HEPINFER_DISABLE_AVX2";
  } else if (forced < 0 && std::getenv("HEPINFER_DISABLE_AVX512") != nullptr) {
    forced = std::min(kAvx2, isa);
    var = "HEPINFER_DISABLE_AVX512";
  }
  if (forced >= 0) {
    level = std::min(forced, isa);
    // "avx2" keeps AVX-512 outside the tiles where the CPU has it (what a Zen 4 runs); the
    // HEPINFER_DISABLE_AVX512 alias takes AVX-512 away altogether (a CPU without it)
    avx512_isa = avx512_isa && forced >= kAvx2 && var != "HEPINFER_DISABLE_AVX512";
    reason = var + (forced > isa ? " (beyond this CPU: clamped)" : "");
  } else if (!var.empty()) {
    reason += "; " + var;
  }
  c.level = level;
  c.avx512_isa = avx512_isa;
  c.info.kernels = level == kAvx512 ? "avx512" : level == kAvx2 ? "avx2" : "portable";
  c.info.reason = reason;
  return c;
}

const KernelChoice& kernel_choice() {
  static const KernelChoice c = choose_kernels();
  return c;
}

/// The 16-wide GEMM tiles are in use.
bool use_avx512_tiles() noexcept { return kernel_choice().level == kAvx512; }

}  // namespace

const CpuKernels& cpu_kernels() noexcept { return kernel_choice().info; }

bool cpu_has_avx2_fma() noexcept {
  static const bool has = kernel_choice().level >= kAvx2;
  return has;
}

bool cpu_has_avx512() noexcept {
  // AVX-512 instructions may be used (the zero-skipping gather even where the tiles stay 8 wide)
  static const bool has = kernel_choice().avx512_isa;
  return has;
}

void gemm_columns(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* cols,
                  float* C, std::size_t ldc, const float* bias_col, Act act, float alpha, float beta) {
  if (M == 0 || N == 0) return;
#ifdef HEPINFER_NN_X86
  if (cpu_has_avx2_fma()) {
    for (std::size_t j = 0; j < N; ++j)
      dot_column_avx2(M, K, A, lda, cols + j * K, bias_col ? bias_col[j] : 0.0f, C + j, ldc, act, alpha, beta);
    return;
  }
#endif
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (std::size_t k = 0; k < K; ++k) acc += A[i * lda + k] * cols[j * K + k];
      C[i * ldc + j] = activate_one(acc + (bias_col ? bias_col[j] : 0.0f), act, alpha, beta);
    }
}

void gemm_packed(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* panels,
                 float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act, float alpha,
                 float beta, bool b_finite) {
  if (M == 0 || N == 0) return;
  const bool avx2 = cpu_has_avx2_fma();
  const std::size_t np = (N + kPanel - 1) / kPanel;
#ifdef HEPINFER_NN_X86
  if (avx2 && M < 4 && bias_row == nullptr) {  // single events: up to 4 panels per pass
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t p = 0; p < np; p += 4) {
        const std::size_t j0 = p * kPanel;
        const float* a = A + i * lda;
        const float* b = panels + p * K * kPanel;
        float* c = C + i * ldc + j0;
        const float* bc = bias_col ? bias_col + j0 : nullptr;
        switch (std::min<std::size_t>(4, np - p)) {
          case 4: row_panels_avx2<4>(K, a, b, c, N - j0, bc, act, alpha, beta); break;
          case 3: row_panels_avx2<3>(K, a, b, c, N - j0, bc, act, alpha, beta); break;
          case 2: row_panels_avx2<2>(K, a, b, c, N - j0, bc, act, alpha, beta); break;
          default: row_panels_avx2<1>(K, a, b, c, N - j0, bc, act, alpha, beta); break;
        }
      }
    return;
  }
#endif
  // rows fed by a ReLU skip their zero inputs: for 48+ outputs (8 accumulators per row hide the
  // FMA latency when 4 panels are summed at once; fewer panels would stall on it)
  // HEPINFER_NN_NO_ZERO_SKIP=1 keeps every block on the dense tiles (the tests compare both)
  // The zero-skipping rows sum 8 wide: where the 16-wide tiles run, the dense tiles are faster
  // (measured on Ice Lake-SP: MLP 30-64-64-64-1 at batch 10 000 1.3x faster without skipping).
  static const bool no_sparse = std::getenv("HEPINFER_NN_NO_ZERO_SKIP") != nullptr;
  const bool wide = avx2 && use_avx512_tiles();
  const bool try_sparse = !no_sparse && !wide && avx2 && b_finite && bias_row == nullptr && N > 2 * kPanel && K >= 16;
#ifndef HEPINFER_NN_X86
  (void)try_sparse;
#endif
  const std::size_t row_block = wide ? kRowBlock512 : kRowBlock;
  for (std::size_t i0 = 0; i0 < M; i0 += row_block) {
    const std::size_t rows = std::min(row_block, M - i0);
#ifdef HEPINFER_NN_X86
    if (try_sparse && mostly_zero(A + i0 * lda, rows, K, lda)) {
      sparse_rows(rows, N, K, A + i0 * lda, lda, panels, C + i0 * ldc, ldc, bias_col, act, alpha, beta);
      continue;
    }
    if (wide) {
      block_avx512(rows, N, K, A + i0 * lda, lda, panels, C + i0 * ldc, ldc, bias_col,
                   bias_row ? bias_row + i0 : nullptr, act, alpha, beta);
      continue;
    }
#endif
    for (std::size_t p = 0; p < np; ++p) {
      const std::size_t j0 = p * kPanel;
      Epilogue e{bias_col ? bias_col + j0 : nullptr, bias_row ? bias_row + i0 : nullptr, false, true, act, alpha, beta};
      panel_rows(avx2, rows, K, A + i0 * lda, lda, panels + p * K * kPanel, C + i0 * ldc + j0, ldc,
                 std::min(kPanel, N - j0), e);
    }
  }
}

void gemm(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* B, std::size_t ldb,
          float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act, float alpha, float beta) {
  if (M == 0 || N == 0) return;
  const bool avx2 = cpu_has_avx2_fma();
  // K in blocks of kc so that a packed panel (kc x 16 floats) stays in L1
  constexpr std::size_t kKBlock = 256;
  static thread_local AlignedFloats panel;
  const std::size_t kc_max = std::min(K, kKBlock);
  if (panel.size() < std::max<std::size_t>(kc_max, 1) * kPanel) panel.resize(std::max<std::size_t>(kc_max, 1) * kPanel);
  float bias_pad[kPanel];
  for (std::size_t j0 = 0; j0 < N; j0 += kPanel) {
    const std::size_t w = std::min(kPanel, N - j0);
    if (bias_col) {
      for (std::size_t j = 0; j < kPanel; ++j) bias_pad[j] = j < w ? bias_col[j0 + j] : 0.0f;
    }
    std::size_t k0 = 0;
    do {
      const std::size_t kc = std::min(kKBlock, K - k0);
      pack_panels(kc, w, B + k0 * ldb + j0, ldb, panel.data());
      const bool last = k0 + kc >= K;
      Epilogue e{bias_col ? bias_pad : nullptr, bias_row, k0 > 0, last, act, alpha, beta};
      panel_rows(avx2, M, kc, A + k0, lda, panel.data(), C + j0, ldc, w, e);
      k0 += kc;
    } while (k0 < K);
  }
}

}  // namespace hepinfer::nn
