// Dense kernels of the nn engine: a register-blocked GEMM with fused bias + activation, an
// AVX2/FMA version chosen at run time (__builtin_cpu_supports) and a portable fallback.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "nn/graph.hpp"

#if defined(__x86_64__) || defined(__i386__)
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
    case Act::GeluTanh:
      return 0.5f * x * (1.0f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
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
    case Act::Round: return std::nearbyint(x);
  }
  return x;
}

void activate(float* x, std::size_t n, Act act, float alpha, float beta) {
  switch (act) {
    case Act::None: return;
    case Act::Relu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? 0.0f : x[i];
      return;
    case Act::LeakyRelu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? alpha * x[i] : x[i];
      return;
    default:
      for (std::size_t i = 0; i < n; ++i) x[i] = activate_one(x[i], act, alpha, beta);
  }
}

namespace {

void gemm_portable(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* B,
                   std::size_t ldb, float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act,
                   float alpha, float beta) {
  for (std::size_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    const float br = bias_row ? bias_row[i] : 0.0f;
    // accumulate without bias first (the order of the vector kernel)
    for (std::size_t j = 0; j < N; ++j) c[j] = 0.0f;
    const float* a = A + i * lda;
    for (std::size_t k = 0; k < K; ++k) {
      const float av = a[k];
      const float* b = B + k * ldb;
      for (std::size_t j = 0; j < N; ++j) c[j] += av * b[j];
    }
    if (bias_col)
      for (std::size_t j = 0; j < N; ++j) c[j] += bias_col[j];
    if (bias_row)
      for (std::size_t j = 0; j < N; ++j) c[j] += br;
    activate(c, N, act, alpha, beta);
  }
}

#ifdef HEPINFER_NN_X86
#define HEPINFER_NN_AVX2 __attribute__((target("avx2,fma")))

HEPINFER_NN_AVX2 inline __m256i lane_mask(std::ptrdiff_t n_valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<std::ptrdiff_t>(n_valid, 8))), idx);
}

// MR rows x (NV * 8) columns of C, of which `ncols` are valid.
template <int MR, int NV>
HEPINFER_NN_AVX2 void block(std::size_t K, const float* A, std::size_t lda, const float* B, std::size_t ldb, float* C,
                            std::size_t ldc, std::ptrdiff_t ncols, const float* bias_col, const float* bias_row,
                            Act act, float alpha, float beta) {
  __m256 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  __m256i mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(ncols - v * 8);
  if (MR == 4 && NV == 2 && ncols == 16) {
    // named accumulators: GCC keeps them in registers (an array of __m256 gets spilled)
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    const float* a0 = A;
    const float* a1 = A + lda;
    const float* a2 = A + 2 * lda;
    const float* a3 = A + 3 * lda;
    for (std::size_t k = 0; k < K; ++k) {
      const __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
      __m256 a = _mm256_broadcast_ss(a0 + k);
      c00 = _mm256_fmadd_ps(a, b0, c00);
      c01 = _mm256_fmadd_ps(a, b1, c01);
      a = _mm256_broadcast_ss(a1 + k);
      c10 = _mm256_fmadd_ps(a, b0, c10);
      c11 = _mm256_fmadd_ps(a, b1, c11);
      a = _mm256_broadcast_ss(a2 + k);
      c20 = _mm256_fmadd_ps(a, b0, c20);
      c21 = _mm256_fmadd_ps(a, b1, c21);
      a = _mm256_broadcast_ss(a3 + k);
      c30 = _mm256_fmadd_ps(a, b0, c30);
      c31 = _mm256_fmadd_ps(a, b1, c31);
    }
    acc[0][0] = c00;
    acc[0][NV > 1 ? 1 : 0] = c01;
    acc[MR > 1 ? 1 : 0][0] = c10;
    acc[MR > 1 ? 1 : 0][NV > 1 ? 1 : 0] = c11;
    acc[MR > 2 ? 2 : 0][0] = c20;
    acc[MR > 2 ? 2 : 0][NV > 1 ? 1 : 0] = c21;
    acc[MR > 3 ? 3 : 0][0] = c30;
    acc[MR > 3 ? 3 : 0][NV > 1 ? 1 : 0] = c31;
  } else if (MR == 1 && NV == 4 && ncols == 32) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (std::size_t k = 0; k < K; ++k) {
      const __m256 a = _mm256_broadcast_ss(A + k);
      const float* b = B + k * ldb;
      c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b), c0);
      c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 8), c1);
      c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 16), c2);
      c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 24), c3);
    }
    acc[0][0] = c0;
    acc[0][NV > 1 ? 1 : 0] = c1;
    acc[0][NV > 2 ? 2 : 0] = c2;
    acc[0][NV > 3 ? 3 : 0] = c3;
  } else if (ncols == NV * 8) {
    for (std::size_t k = 0; k < K; ++k) {
      __m256 b[NV];
      for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(B + k * ldb + v * 8);
      for (int r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
      }
    }
  } else {
    for (std::size_t k = 0; k < K; ++k) {
      __m256 b[NV];
      for (int v = 0; v < NV; ++v) b[v] = _mm256_maskload_ps(B + k * ldb + v * 8, mask[v]);
      for (int r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
      }
    }
  }
  if (bias_col) {
    for (int v = 0; v < NV; ++v) {
      const __m256 bc = _mm256_maskload_ps(bias_col + v * 8, mask[v]);
      for (int r = 0; r < MR; ++r) acc[r][v] = _mm256_add_ps(acc[r][v], bc);
    }
  }
  if (bias_row) {
    for (int r = 0; r < MR; ++r) {
      const __m256 br = _mm256_set1_ps(bias_row[r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_add_ps(acc[r][v], br);
    }
  }
  if (act == Act::Relu) {
    // max(x, 0) with NaN kept: max_ps returns the second operand when either is NaN
    const __m256 z = _mm256_setzero_ps();
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_max_ps(z, acc[r][v]);
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + v * 8;
      if (ncols >= (v + 1) * 8) _mm256_storeu_ps(c, acc[r][v]);
      else if (ncols > v * 8) _mm256_maskstore_ps(c, mask[v], acc[r][v]);
    }
    if (act != Act::None && act != Act::Relu)
      activate(C + r * ldc, static_cast<std::size_t>(std::min<std::ptrdiff_t>(ncols, NV * 8)), act, alpha, beta);
  }
}

HEPINFER_NN_AVX2 void gemm_avx2(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                                const float* B, std::size_t ldb, float* C, std::size_t ldc, const float* bias_col,
                                const float* bias_row, Act act, float alpha, float beta) {
  std::size_t i = 0;
  for (; i + 4 <= M; i += 4) {
    for (std::size_t j = 0; j < N; j += 16) {
      block<4, 2>(K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, static_cast<std::ptrdiff_t>(std::min<std::size_t>(N - j, 16)),
                  bias_col ? bias_col + j : nullptr, bias_row ? bias_row + i : nullptr, act, alpha, beta);
    }
  }
  for (; i < M; ++i) {
    for (std::size_t j = 0; j < N; j += 32) {
      const std::ptrdiff_t left = static_cast<std::ptrdiff_t>(std::min<std::size_t>(N - j, 32));
      if (left > 16)
        block<1, 4>(K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, left, bias_col ? bias_col + j : nullptr,
                    bias_row ? bias_row + i : nullptr, act, alpha, beta);
      else
        block<1, 2>(K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, left, bias_col ? bias_col + j : nullptr,
                    bias_row ? bias_row + i : nullptr, act, alpha, beta);
    }
  }
}
#endif

}  // namespace

bool cpu_has_avx2_fma() noexcept {
#ifdef HEPINFER_NN_X86
  // HEPINFER_DISABLE_AVX2=1 forces the portable kernels (the tests check both).
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("HEPINFER_DISABLE_AVX2") == nullptr;
  return has;
#else
  return false;
#endif
}

void gemm(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* B,
          std::size_t ldb, float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act,
          float alpha, float beta) {
  if (M == 0 || N == 0) return;
#ifdef HEPINFER_NN_X86
  if (cpu_has_avx2_fma()) {
    gemm_avx2(M, N, K, A, lda, B, ldb, C, ldc, bias_col, bias_row, act, alpha, beta);
    return;
  }
#endif
  gemm_portable(M, N, K, A, lda, B, ldb, C, ldc, bias_col, bias_row, act, alpha, beta);
}

}  // namespace hepinfer::nn
