// Convolution family: Conv and ConvTranspose, 1-D to 3-D, import handlers and kernels (see
// op_import.hpp). Every GEMM runs on gemm_packed, i.e. on the tiles chosen for this CPU
// (cpu_kernels(); HEPINFER_NN_KERNELS=avx512|avx2|portable).
//
// Conv with constant weights and at least kRowFormChannels output channels per group runs in the
// row form (conv_rows): the weights are packed once at import as a dense layer's right operand
// [(taps, C_g), M_g], and the im2col rows of the output positions of one or several events (the
// batch folded into the rows) are its left operand; see "Convolutions with the output positions
// as GEMM rows" below. Otherwise Conv is im2col + GEMM with the output positions as columns: for
// every event and group, out[Mg, P] = W[Mg, Cg * K] col[Cg * K, P] with P the output positions
// and K the kernel taps, the weights read in place as the GEMM's left operand and the bias and
// fused activation applied in the GEMM epilogue. That im2col matrix is built line by line (a run
// of output positions along the last axis reads a run of input elements at the stride, so only
// the ends of a line need bounds checks), straight into the panel layout the GEMM micro-kernel
// reads, in blocks of output positions that keep it in L2. Pointwise convolutions (kernel 1,
// stride 1, no padding) multiply the input planes directly; convolutions with one output channel
// per group (depthwise) are summed directly, tap by tap, over whole lines.
// ConvTranspose with constant weights is the row form too (conv_transpose_rows: input positions
// x (taps, output channels), then col2im on channel runs); with computed weights GEMM + col2im:
// col[Mg * K, P_in] = W_g^T X_g, scattered into the output.
#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <memory>
#include <string>
#include <vector>

#include "nn/conv_geometry.hpp"
#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

using std::size_t;

inline size_t uz(I64 v) { return static_cast<size_t>(v); }

/// Writes `count` values into row `q0` onwards of the GEMM's panel layout (position q of a
/// block at panels[(q / 16) * ps + q % 16], ps = Kc * 16 floats per panel): src[t * stride]
/// for t < count, or zeros when src is null.
inline void put_panel(float* row, I64 ps, I64 q0, const float* src, I64 stride, I64 count) {
  I64 q = q0;
  while (count > 0) {
    const I64 in_panel = std::min<I64>(count, 16 - (q & 15));
    float* dst = row + (q >> 4) * ps + (q & 15);
    if (!src) {
      for (I64 t = 0; t < in_panel; ++t) dst[t] = 0.0f;
    } else if (stride == 1) {
      std::memcpy(dst, src, uz(in_panel) * sizeof(float));
      src += in_panel;
    } else {
      for (I64 t = 0; t < in_panel; ++t) dst[t] = src[t * stride];
      src += in_panel * stride;
    }
    q += in_panel;
    count -= in_panel;
  }
}

/// im2col for output positions [p0, p1) from one group's input planes xg [Cg][n_in], straight
/// into the packed-panel layout that gemm_packed reads (the Cg * n_k rows of panel j hold the
/// positions p0 + 16 j ... p0 + 16 j + 15, zero past p1): one copy instead of im2col + pack.
void im2col_panels(const Window3& w, const float* xg, I64 Cg, I64 p0, I64 p1, float* panels) {
  const I64 Di = w.in[0], Hi = w.in[1], Wi = w.in[2], Ho = w.out[1], Wo = w.out[2];
  const I64 pin = w.n_in(), Kc = Cg * w.n_k(), ps = Kc * 16, blk = p1 - p0;
  if (blk % 16) std::fill(panels + (blk / 16) * ps, panels + (blk / 16 + 1) * ps, 0.0f);
  const I64 line0 = p0 / Wo;
  float* row = panels;
  for (I64 c = 0; c < Cg; ++c) {
    const float* xc = xg + c * pin;
    for (I64 kd = 0; kd < w.k[0]; ++kd)
      for (I64 kh = 0; kh < w.k[1]; ++kh)
        for (I64 kw = 0; kw < w.k[2]; ++kw, row += 16) {
          const I64 base = kw * w.d[2] - w.pb[2];  // iw = ow * s + base
          I64 lo_all, hi_all;
          valid_taps(base, Wo, w.s[2], Wi, lo_all, hi_all);
          I64 od = line0 / Ho, oh = line0 % Ho;
          for (I64 p = p0; p < p1;) {
            const I64 lb = p - (p % Wo), a = p - lb, b = std::min(Wo, p1 - lb);
            const I64 q = p - p0;
            const I64 id = od * w.s[0] + kd * w.d[0] - w.pb[0], ih = oh * w.s[1] + kh * w.d[1] - w.pb[1];
            if (id < 0 || id >= Di || ih < 0 || ih >= Hi) {
              put_panel(row, ps, q, nullptr, 0, b - a);
            } else {
              const float* src = xc + (id * Hi + ih) * Wi;  // src[ow * s + base]
              const I64 lo = std::clamp(lo_all, a, b), hi = std::clamp(hi_all, lo, b);
              put_panel(row, ps, q, nullptr, 0, lo - a);
              if (hi > lo) put_panel(row, ps, q + (lo - a), src + (lo * w.s[2] + base), w.s[2], hi - lo);
              put_panel(row, ps, q + (hi - a), nullptr, 0, b - hi);
            }
            p = lb + b;
            if (++oh == Ho) {
              oh = 0;
              ++od;
            }
          }
        }
  }
}

/// Sizes of the input planes with the window's padding on every side.
inline void padded_sizes(const Window3& w, I64& Dp, I64& Hp, I64& Wp) {
  Dp = w.in[0] + w.pb[0] + w.pe[0];
  Hp = w.in[1] + w.pb[1] + w.pe[1];
  Wp = w.in[2] + w.pb[2] + w.pe[2];
}

/// Copies one group's input planes xg [Cg][n_in] into `pad` [Cg][Dp][Hp][Wp] with zeros around.
void pad_planes(const Window3& w, const float* xg, I64 Cg, float* pad) {
  I64 Dp, Hp, Wp;
  padded_sizes(w, Dp, Hp, Wp);
  std::fill(pad, pad + Cg * Dp * Hp * Wp, 0.0f);
  const I64 Di = w.in[0], Hi = w.in[1], Wi = w.in[2];
  for (I64 c = 0; c < Cg; ++c)
    for (I64 id = 0; id < Di; ++id)
      for (I64 ih = 0; ih < Hi; ++ih)
        std::memcpy(pad + ((c * Dp + id + w.pb[0]) * Hp + ih + w.pb[1]) * Wp + w.pb[2],
                    xg + ((c * Di + id) * Hi + ih) * Wi, uz(Wi) * sizeof(float));
}

// Short copies (a few floats into a panel row) stay loops: as memcpy calls (GCC's loop
// idiom recognition) they cost more than the copy.
#if defined(__GNUC__) && !defined(__clang__)
#define HEPINFER_NO_MEMCPY_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define HEPINFER_NO_MEMCPY_IDIOM
#endif

/// im2col_panels from zero-padded planes xp [Cg][Dp][Hp][Wp] (pad_planes, or the input itself
/// when there is no padding): every tap reads inside the planes, so the copy has no bounds
/// checks or special cases at all, one load and one store per element.
HEPINFER_NO_MEMCPY_IDIOM void im2col_panels_padded(const Window3& w, const float* xp, I64 Cg, I64 p0, I64 p1,
                                                   float* panels) {
  I64 Dp, Hp, Wp;
  padded_sizes(w, Dp, Hp, Wp);
  const I64 Ho = w.out[1], Wo = w.out[2], Kc = Cg * w.n_k(), ps = Kc * 16, blk = p1 - p0;
  const I64 s0 = w.s[0] * Hp * Wp, s1 = w.s[1] * Wp, s2 = w.s[2];
  if (blk % 16) std::fill(panels + (blk / 16) * ps, panels + (blk / 16 + 1) * ps, 0.0f);
  const I64 line0 = p0 / Wo, ow0 = p0 % Wo;
  float* row = panels;
  for (I64 c = 0; c < Cg; ++c)
    for (I64 kd = 0; kd < w.k[0]; ++kd)
      for (I64 kh = 0; kh < w.k[1]; ++kh)
        for (I64 kw = 0; kw < w.k[2]; ++kw, row += 16) {
          const float* xc = xp + ((c * Dp + kd * w.d[0]) * Hp + kh * w.d[1]) * Wp + kw * w.d[2];
          I64 od = line0 / Ho, oh = line0 % Ho, q = 0, a = ow0;
          while (q < blk) {
            const I64 b = std::min(Wo, a + (blk - q));
            const float* src = xc + od * s0 + oh * s1;
            if (s2 == 1) {  // runs of contiguous input, split where a panel ends
              for (I64 ow = a; ow < b;) {
                const I64 n = std::min(b - ow, 16 - (q & 15));
                float* dst = row + (q >> 4) * ps + (q & 15);
                if (n == 16) {
                  std::memcpy(dst, src + ow, 16 * sizeof(float));  // a fixed size: inlined vector moves
                } else {
                  for (I64 t = 0; t < n; ++t) dst[t] = src[ow + t];
                }
                ow += n;
                q += n;
              }
            } else {
              for (I64 ow = a; ow < b; ++ow, ++q) row[(q >> 4) * ps + (q & 15)] = src[ow * s2];
            }
            a = 0;
            if (++oh == Ho) {
              oh = 0;
              ++od;
            }
          }
        }
}

/// C[M, N] = act(A[M, K] B + bias_row) with B packed in 16-column panels (im2col_panels):
/// gemm_packed, on the GEMM tiles chosen for this CPU (cpu_kernels()).
void conv_gemm(I64 M, I64 N, I64 K, const float* A, const float* panels, float* C, I64 ldc, const float* bias_row,
               const Node& n) {
  gemm_packed(uz(M), uz(N), uz(K), A, uz(K), panels, C, uz(ldc), nullptr, bias_row, n.act, n.alpha, n.beta);
}

/// One output plane o [n_out] of a convolution with one output channel per group: the sum over
/// the group's Cg input planes and the kernel taps, tap by tap over whole output lines.
void conv_direct(const Window3& w, const float* xg, I64 Cg, const float* wm, float* o) {
  const I64 Hi = w.in[1], Wi = w.in[2], Ho = w.out[1], Wo = w.out[2], pin = w.n_in(), nk = w.n_k();
  std::fill(o, o + w.n_out(), 0.0f);
  for (I64 c = 0; c < Cg; ++c) {
    const float* xc = xg + c * pin;
    const float* wc = wm + c * nk;
    for (I64 od = 0; od < w.out[0]; ++od)
      for (I64 oh = 0; oh < Ho; ++oh) {
        float* line = o + (od * Ho + oh) * Wo;
        for (I64 kd = 0; kd < w.k[0]; ++kd) {
          const I64 id = od * w.s[0] + kd * w.d[0] - w.pb[0];
          if (id < 0 || id >= w.in[0]) continue;
          for (I64 kh = 0; kh < w.k[1]; ++kh) {
            const I64 ih = oh * w.s[1] + kh * w.d[1] - w.pb[1];
            if (ih < 0 || ih >= Hi) continue;
            const float* srow = xc + (id * Hi + ih) * Wi;
            for (I64 kw = 0; kw < w.k[2]; ++kw) {
              const float wv = wc[(kd * w.k[1] + kh) * w.k[2] + kw];
              const I64 base = kw * w.d[2] - w.pb[2];
              I64 lo, hi;
              valid_taps(base, Wo, w.s[2], Wi, lo, hi);
              if (w.s[2] == 1) {
                for (I64 ow = lo; ow < hi; ++ow) line[ow] += wv * srow[ow + base];
              } else {
                for (I64 ow = lo; ow < hi; ++ow) line[ow] += wv * srow[ow * w.s[2] + base];
              }
            }
          }
        }
      }
  }
}

void check_float_inputs(const Value& x, const Value& w, const Value* bias) {
  require_type(x, ElementType::Float32, "X");
  require_type(w, ElementType::Float32, "W");
  if (bias) require_type(*bias, ElementType::Float32, "B");
  if (x.shape.rank < 3 || x.shape.rank > 5)
    throw OpError("X must be [N, C, spatial...] with 1 to 3 spatial dimensions, got shape " + x.shape.str());
  if (w.shape.rank != x.shape.rank) throw OpError("W " + w.shape.str() + " must have the rank of X " + x.shape.str());
}

void check_kernel_shape(const Node& n, const Value& w) {
  if (n.v0.empty()) return;
  bool ok = n.v0.size() == static_cast<size_t>(w.shape.rank - 2);
  for (size_t k = 0; ok && k < n.v0.size(); ++k) ok = w.shape[static_cast<int>(k) + 2] == n.v0[k];
  if (!ok) throw OpError("W " + w.shape.str() + " does not match kernel_shape");
}

// ---- Convolutions with the output positions as GEMM rows
// With constant weights and several output channels per group, Conv and ConvTranspose run as
// the product of a dense layer: the weights are packed once at import as the GEMM's right
// operand (panels of 16 output columns, pack_conv_weights / pack_conv_transpose_weights), the
// left operand's rows are output (Conv) or input (ConvTranspose) positions of a few events at
// once, so that at batch 256 a small grid still makes a large GEMM, and the result
// [position][channel] is written back channel-first. Conv's im2col rows come from a
// channel-last, zero-padded copy of the input, where a row is k_d * k_h contiguous runs of
// k_w * C_g floats (no bounds checks); ConvTranspose adds each row's taps (C_out floats each)
// into a channel-last output (col2im on contiguous runs).

/// Output channels per group from which the row form is used (below, the planes-as-columns form
/// keeps its 16-wide panels full), and the row form for at most kDotColumns output channels per
/// group over at least kDotMinLength inputs (C_g times taps): each output a dot product of an
/// im2col row with the weights (gemm_columns), where the 16-wide panels would be mostly padding.
constexpr I64 kRowFormChannels = 16;
constexpr I64 kDotMinLength = 64;

/// Positions per GEMM of a pointwise Conv in the planes-as-columns form: the input planes are
/// packed one panel pair (32 positions x C_g) at a time right before the GEMM over all output
/// channels reads it, so the pair stays in L1 while it is used. Packing all P positions first
/// sent C_g x P floats (1.6 MiB for ParticleNet's last EdgeConv, 256 channels x 1600 edges)
/// out to L3 and back once per row block of the GEMM (~5% of ParticleNet's convolution time).
/// Every output is the same FMA chain over the input channels whatever the split, so the values
/// do not change.
constexpr I64 kPointwiseColumns = 32;

/// Whether Conv weights [Mo][Cg][k...] with G groups run in the row form.
inline bool conv_row_form(const Value& w, I64 G) {
  I64 nk = 1;
  for (int i = 2; i < w.shape.rank; ++i) nk *= w.shape[i];
  const I64 Mg = w.shape[0] / G;
  return Mg >= kRowFormChannels || (Mg >= 1 && Mg <= kDotColumns && w.shape[1] * nk >= kDotMinLength);
}

/// GEMM rows per chunk for a row length K: a chunk of A (~512 KiB) stays in L2.
inline I64 rows_per_chunk(I64 K) { return std::max<I64>(12, (I64{1} << 17) / std::max<I64>(K, 1)); }

/// `total` rows in chunks of at most about `max_rows`, of equal size in multiples of 12 (the
/// GEMM's tile height: no chunk ends on a thin tile that the others do not have).
inline I64 balanced_chunk(I64 total, I64 max_rows) {
  const I64 chunks = (total + max_rows - 1) / max_rows;
  return std::max<I64>(1, ((total + chunks - 1) / chunks + 11) / 12 * 12);
}

/// The floats of one group's packed right operand.
inline size_t group_panels(const PackedDense& p) { return packed_panels_size(uz(p.K), uz(p.N)); }

/// Conv weights W [M][C_g][k...] as G right operands B_g [(taps, c)][M / G], packed.
std::shared_ptr<const PackedDense> pack_conv_weights(const Value& w, I64 G) {
  const I64 Mo = w.shape[0], Cg = w.shape[1], Mg = Mo / G;
  I64 nk = 1;
  for (int i = 2; i < w.shape.rank; ++i) nk *= w.shape[i];
  auto p = std::make_shared<PackedDense>();
  p->K = Cg * nk;
  p->N = Mg;
  const size_t per = group_panels(*p);
  p->panels.assign(per * uz(G), 0.0f);
  std::vector<float> b(uz(p->K * Mg));
  for (I64 g = 0; g < G; ++g) {
    for (I64 m = 0; m < Mg; ++m)
      for (I64 c = 0; c < Cg; ++c)
        for (I64 t = 0; t < nk; ++t) b[uz((t * Cg + c) * Mg + m)] = w.f()[((g * Mg + m) * Cg + c) * nk + t];
    pack_panels(uz(p->K), uz(Mg), b.data(), uz(Mg), p->panels.data() + uz(g) * per);
  }
  if (Mg <= kDotColumns) {  // gemm_columns: per group, Mg columns of K contiguous weights
    p->cols.resize(uz(G * Mg * p->K));
    for (I64 g = 0; g < G; ++g)
      for (I64 m = 0; m < Mg; ++m)
        for (I64 c = 0; c < Cg; ++c)
          for (I64 t = 0; t < nk; ++t)
            p->cols[uz(((g * Mg + m) * nk + t) * Cg + c)] = w.f()[((g * Mg + m) * Cg + c) * nk + t];
  }
  return p;
}

/// ConvTranspose weights W [C][M_g][k...] as G right operands B_g [c][(taps, m)], packed.
std::shared_ptr<const PackedDense> pack_conv_transpose_weights(const Value& w, I64 G) {
  const I64 C = w.shape[0], Cg = C / G, Mg = w.shape[1];
  I64 nk = 1;
  for (int i = 2; i < w.shape.rank; ++i) nk *= w.shape[i];
  auto p = std::make_shared<PackedDense>();
  p->K = Cg;
  p->N = nk * Mg;
  const size_t per = group_panels(*p);
  p->panels.assign(per * uz(G), 0.0f);
  std::vector<float> b(uz(Cg * p->N));
  for (I64 g = 0; g < G; ++g) {
    for (I64 c = 0; c < Cg; ++c)
      for (I64 m = 0; m < Mg; ++m)
        for (I64 t = 0; t < nk; ++t) b[uz(c * p->N + t * Mg + m)] = w.f()[((g * Cg + c) * Mg + m) * nk + t];
    pack_panels(uz(Cg), uz(p->N), b.data(), uz(p->N), p->panels.data() + uz(g) * per);
  }
  return p;
}

/// dst[j * ldd + i] = src[i * lds + j] (+ bias[j] where bias is given) for i < rows, j < cols.
void transpose_scalar(const float* src, I64 lds, I64 rows, I64 cols, float* dst, I64 ldd, const float* bias) {
  for (I64 i0 = 0; i0 < rows; i0 += 16) {
    const I64 i1 = std::min(rows, i0 + 16);
    for (I64 j = 0; j < cols; ++j) {
      const float b = bias ? bias[j] : 0.0f;
      for (I64 i = i0; i < i1; ++i) dst[j * ldd + i] = src[i * lds + j] + b;
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
/// transpose_scalar in 8 x 8 blocks of AVX registers (the same values).
__attribute__((target("avx2"))) void transpose_avx2(const float* src, I64 lds, I64 rows, I64 cols, float* dst, I64 ldd,
                                                    const float* bias) {
  const I64 r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (I64 i = 0; i < r8; i += 8)
    for (I64 j = 0; j < c8; j += 8) {
      const float* s = src + i * lds + j;
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(s + k * lds);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      __m256 o[8];
      o[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
      o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
      o[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
      o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
      o[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
      o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
      o[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
      o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
      float* d = dst + j * ldd + i;
      for (int k = 0; k < 8; ++k) {
        const __m256 v = bias ? _mm256_add_ps(o[k], _mm256_set1_ps(bias[j + k])) : o[k];
        _mm256_storeu_ps(d + k * ldd, v);
      }
    }
  if (c8 < cols) transpose_scalar(src + c8, lds, r8, cols - c8, dst + c8 * ldd, ldd, bias ? bias + c8 : nullptr);
  if (r8 < rows) transpose_scalar(src + r8 * lds, lds, rows - r8, cols, dst + r8, ldd, bias);
}
#endif

/// dst[j * ldd + i] = src[i * lds + j] (+ bias[j] where bias is given): a block of a
/// channel-first / channel-last conversion.
void transpose(const float* src, I64 lds, I64 rows, I64 cols, float* dst, I64 ldd, const float* bias) {
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_avx2_fma()) {
    transpose_avx2(src, lds, rows, cols, dst, ldd, bias);
    return;
  }
#endif
  transpose_scalar(src, lds, rows, cols, dst, ldd, bias);
}

/// Copies channels [c0, c0 + Cg) of events [b0, b1) of x [Nb][C][Di][Hi][Wi] into
/// xh [b1 - b0][Dp][Hp][Wp][Cg], zero in the window's padding.
void to_channels_last_padded(const Window3& w, const float* x, I64 C, I64 c0, I64 Cg, I64 b0, I64 b1, float* xh) {
  I64 Dp, Hp, Wp;
  padded_sizes(w, Dp, Hp, Wp);
  const I64 Di = w.in[0], Hi = w.in[1], Wi = w.in[2], pin = w.n_in();
  const I64 line = Wp * Cg, plane = Dp * Hp * line;
  for (I64 b = b0; b < b1; ++b) {
    float* e = xh + (b - b0) * plane;
    const float* xb = x + (b * C + c0) * pin;
    for (I64 dp = 0; dp < Dp; ++dp)
      for (I64 hp = 0; hp < Hp; ++hp) {
        float* row = e + (dp * Hp + hp) * line;
        const I64 id = dp - w.pb[0], ih = hp - w.pb[1];
        if (id < 0 || id >= Di || ih < 0 || ih >= Hi) {
          std::fill(row, row + line, 0.0f);
          continue;
        }
        std::fill(row, row + w.pb[2] * Cg, 0.0f);
        std::fill(row + (w.pb[2] + Wi) * Cg, row + line, 0.0f);
        transpose(xb + (id * Hi + ih) * Wi, pin, Cg, Wi, row + w.pb[2] * Cg, Cg, nullptr);
      }
  }
}

/// im2col rows [r0, r1) of a chunk (row r: event r / P of the chunk, output position r % P)
/// from xh (to_channels_last_padded) into A [r1 - r0][K], K ordered (kd, kh, kw, c).
void im2col_rows(const Window3& w, const float* xh, I64 Cg, I64 r0, I64 r1, float* A) {
  I64 Dp, Hp, Wp;
  padded_sizes(w, Dp, Hp, Wp);
  const I64 P = w.n_out(), Ho = w.out[1], Wo = w.out[2], K = Cg * w.n_k();
  const I64 line = Wp * Cg, plane = Dp * Hp * line;
  const bool runs = w.d[2] == 1;  // the k_w taps of one (kd, kh) are one run of k_w * Cg floats
  const size_t run = uz(runs ? w.k[2] * Cg : Cg) * sizeof(float);
  for (I64 r = r0; r < r1; ++r) {
    const I64 e = r / P, p = r % P;
    const I64 od = p / (Ho * Wo), oh = p / Wo % Ho, ow = p % Wo;
    const float* base = xh + e * plane + (od * w.s[0] * Hp + oh * w.s[1]) * line + ow * w.s[2] * Cg;
    float* a = A + (r - r0) * K;
    for (I64 kd = 0; kd < w.k[0]; ++kd)
      for (I64 kh = 0; kh < w.k[1]; ++kh) {
        const float* src = base + (kd * w.d[0] * Hp + kh * w.d[1]) * line;
        if (runs) {
          std::memcpy(a, src, run);
          a += w.k[2] * Cg;
        } else {
          for (I64 kw = 0; kw < w.k[2]; ++kw, a += Cg) std::memcpy(a, src + kw * w.d[2] * Cg, run);
        }
      }
  }
}

/// Writes rows [r0, r1) of a chunk's channel-last result Cm [r1 - r0][Mg] (row r: event
/// b0 + r / P, position r % P), plus bias (may be null), into channels [m0, m0 + Mg) of
/// out [Nb][Mo][P].
void store_channels_first(const float* Cm, I64 Mg, I64 r0, I64 r1, I64 P, I64 Mo, I64 m0, I64 b0, const float* bias,
                          float* out) {
  for (I64 r = r0; r < r1;) {
    const I64 e = r / P, p = r % P, n = std::min(r1 - r, P - p);  // a run of positions of one event
    transpose(Cm + (r - r0) * Mg, Mg, n, Mg, out + ((b0 + e) * Mo + m0) * P + p, P, bias);
    r += n;
  }
}

/// Conv in the row form (see above); needs n.dense from pack_conv_weights.
void conv_rows(const Node& n, const Window3& win, const float* x, I64 Nb, I64 C, I64 G, const float* bias, float* d,
               Workspace& ws) {
  const PackedDense& pw = *n.dense;
  const I64 Cg = C / G, Mg = pw.N, Mo = Mg * G, P = win.n_out(), K = pw.K;
  I64 Dp, Hp, Wp;
  padded_sizes(win, Dp, Hp, Wp);
  const I64 plane = Dp * Hp * Wp * Cg;
  const I64 R = rows_per_chunk(K);
  const I64 epc = std::clamp<I64>(R / P, 1, Nb);  // events per chunk
  const I64 rows = std::min(R + 11, epc * P);     // A's rows: a balanced chunk may pass R by up to 11
  const I64 nb = (Mg + 15) / 16 * 16;
  std::vector<float>& s = ws.scratch;
  const size_t need = uz(epc * plane + rows * K + rows * Mg + nb);
  if (s.size() < need) s.resize(need);
  float* xh = s.data();
  float* A = xh + epc * plane;
  float* Cm = A + rows * K;
  float* bp = Cm + rows * Mg;
  const size_t per = group_panels(pw);
  for (I64 g = 0; g < G; ++g) {
    std::fill(bp, bp + nb, 0.0f);
    if (bias) std::copy(bias + g * Mg, bias + (g + 1) * Mg, bp);
    const float* panels = pw.panels.data() + uz(g) * per;
    for (I64 b0 = 0; b0 < Nb; b0 += epc) {
      const I64 b1 = std::min(Nb, b0 + epc), total = (b1 - b0) * P, step = std::min(rows, balanced_chunk(total, R));
      to_channels_last_padded(win, x, C, g * Cg, Cg, b0, b1, xh);
      for (I64 r0 = 0; r0 < total; r0 += step) {
        const I64 r1 = std::min(total, r0 + step);
        im2col_rows(win, xh, Cg, r0, r1, A);
        if (!pw.cols.empty())
          gemm_columns(uz(r1 - r0), uz(Mg), uz(K), A, uz(K), pw.cols.data() + uz(g * Mg * K), Cm, uz(Mg),
                       bias ? bias + g * Mg : nullptr, n.act, n.alpha, n.beta);
        else
          gemm_packed(uz(r1 - r0), uz(Mg), uz(K), A, uz(K), panels, Cm, uz(Mg), bias ? bp : nullptr, nullptr, n.act,
                      n.alpha, n.beta);
        store_channels_first(Cm, Mg, r0, r1, P, Mo, g * Mg, b0, nullptr, d);
      }
    }
  }
}

/// Adds rows [r0, r1) of a chunk's col [r1 - r0][(taps, Mg)] (row r: event r / P_in of the
/// chunk, input position r % P_in) into acc [event][P][Mg]: input position i and tap t land on
/// output position i * s + t * d - pb.
void col2im_rows(const Window3& w, const float* col, I64 Mg, I64 r0, I64 r1, float* acc) {
  const I64 Pin = w.n_in(), P = w.n_out(), Hi = w.in[1], Wi = w.in[2], Ho = w.out[1], Wo = w.out[2];
  const I64 N = w.n_k() * Mg;
  for (I64 r = r0; r < r1; ++r) {
    const I64 e = r / Pin, i = r % Pin;
    const I64 id = i / (Hi * Wi), ih = i / Wi % Hi, iw = i % Wi;
    const float* c = col + (r - r0) * N;
    float* ae = acc + e * P * Mg;
    for (I64 kd = 0; kd < w.k[0]; ++kd) {
      const I64 od = id * w.s[0] + kd * w.d[0] - w.pb[0];
      if (od < 0 || od >= w.out[0]) continue;
      for (I64 kh = 0; kh < w.k[1]; ++kh) {
        const I64 oh = ih * w.s[1] + kh * w.d[1] - w.pb[1];
        if (oh < 0 || oh >= Ho) continue;
        for (I64 kw = 0; kw < w.k[2]; ++kw) {
          const I64 ow = iw * w.s[2] + kw * w.d[2] - w.pb[2];
          if (ow < 0 || ow >= Wo) continue;
          float* dst = ae + ((od * Ho + oh) * Wo + ow) * Mg;
          const float* src = c + ((kd * w.k[1] + kh) * w.k[2] + kw) * Mg;
          for (I64 m = 0; m < Mg; ++m) dst[m] += src[m];
        }
      }
    }
  }
}

/// ConvTranspose in the row form (see above); needs n.dense from pack_conv_transpose_weights.
void conv_transpose_rows(const Node& n, const Window3& win, const float* x, I64 Nb, I64 C, I64 G, const float* bias,
                         float* d, Workspace& ws) {
  const PackedDense& pw = *n.dense;
  const I64 Cg = C / G, N = pw.N, nk = win.n_k(), Mg = N / nk, Mo = Mg * G, P = win.n_out(), Pin = win.n_in();
  const I64 R = rows_per_chunk(N);
  const I64 epc = std::clamp<I64>(R / std::max<I64>(Pin, 1), 1, Nb);  // events per chunk
  const I64 rows = std::min(R + 11, epc * Pin);
  std::vector<float>& s = ws.scratch;
  const size_t need = uz(epc * Pin * Cg + rows * N + epc * P * Mg);
  if (s.size() < need) s.resize(need);
  float* A = s.data();
  float* col = A + epc * Pin * Cg;
  float* acc = col + rows * N;
  const size_t per = group_panels(pw);
  for (I64 g = 0; g < G; ++g) {
    const float* panels = pw.panels.data() + uz(g) * per;
    for (I64 b0 = 0; b0 < Nb; b0 += epc) {
      const I64 b1 = std::min(Nb, b0 + epc), total = (b1 - b0) * Pin;
      for (I64 b = b0; b < b1; ++b)  // A [(event, input position)][c]: the input channel-last
        transpose(x + (b * C + g * Cg) * Pin, Pin, Cg, Pin, A + (b - b0) * Pin * Cg, Cg, nullptr);
      std::fill(acc, acc + (b1 - b0) * P * Mg, 0.0f);
      const I64 step = std::min(rows, balanced_chunk(total, R));
      for (I64 r0 = 0; r0 < total; r0 += step) {
        const I64 r1 = std::min(total, r0 + step);
        gemm_packed(uz(r1 - r0), uz(N), uz(Cg), A + r0 * Cg, uz(Cg), panels, col, uz(N), nullptr, nullptr, Act::None,
                    0.0f, 0.0f);
        col2im_rows(win, col, Mg, r0, r1, acc);
      }
      store_channels_first(acc, Mg, 0, (b1 - b0) * P, P, Mo, g * Mg, b0, bias ? bias + g * Mg : nullptr, d);
    }
  }
}

// Conv. node: v0 kernel_shape (may be empty), v1 strides, v2 pads, v3 dilations, i0 group,
// i1 auto_pad; act/alpha/beta: a fused activation.
void run_conv(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& w = in(n, ws, 1);
  const Value* bias = opt_in(n, ws, 2);
  check_float_inputs(x, w, bias);
  check_kernel_shape(n, w);
  const I64 Nb = x.shape[0], C = x.shape[1], Mo = w.shape[0], G = n.i0;
  if (G < 1 || C % G != 0 || Mo % G != 0 || w.shape[1] * G != C)
    throw OpError("X has " + std::to_string(C) + " channels; W " + w.shape.str() + " with group " + std::to_string(G) +
                  " needs " + std::to_string(w.shape[1] * G) +
                  (Mo % G ? " and output channels divisible by group" : ""));
  if (bias && (bias->shape.rank != 1 || bias->shape[0] != Mo))
    throw OpError("B has shape " + bias->shape.str() + "; expected [" + std::to_string(Mo) + "]");
  const int sd = x.shape.rank - 2;
  const Window3 win = make_window(n, sd, &x.shape.d[2], &w.shape.d[2], false);
  Shape os;
  os.push(Nb);
  os.push(Mo);
  for (int i = 0; i < sd; ++i) os.push(win.out[3 - sd + i]);
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const I64 Cg = C / G, Mg = Mo / G, P = win.n_out(), Pin = win.n_in(), nk = win.n_k(), Kc = Cg * nk;
  if (Nb == 0 || P == 0 || Mo == 0) return;
  const float* bf = bias ? bias->f() : nullptr;
  bool pointwise = nk == 1;
  for (int j = 0; j < 3; ++j) pointwise = pointwise && win.s[j] == 1 && win.pb[j] == 0 && win.pe[j] == 0;
  I64 Dp, Hp, Wp;
  padded_sizes(win, Dp, Hp, Wp);
  const bool padded = win.pb[0] + win.pe[0] + win.pb[1] + win.pe[1] + win.pb[2] + win.pe[2] > 0;
  const I64 pad_size = padded ? Cg * Dp * Hp * Wp : 0;
  const bool use_padded = pad_size <= 4 * Cg * Pin + (I64{1} << 16);
  const PackedDense* pw = n.dense.get();
  if (!pointwise && use_padded && pw && pw->K == Kc && pw->N == Mg && Kc > 0) {
    conv_rows(n, win, x.f(), Nb, C, G, bf, d, ws);
    return;
  }
  if (Mg == 1) {  // depthwise and single-channel outputs: direct sums, then bias and activation
    for (I64 b = 0; b < Nb; ++b)
      for (I64 g = 0; g < G; ++g) {
        float* o = d + (b * Mo + g) * P;
        conv_direct(win, x.f() + (b * C + g * Cg) * Pin, Cg, w.f() + g * Kc, o);
        if (bf)
          for (I64 p = 0; p < P; ++p) o[p] += bf[g];
        activate(o, uz(P), n.act, n.alpha, n.beta);
      }
    return;
  }
  // output positions per im2col block: the block ([Kc, blk] floats) stays within ~512 KiB
  const I64 blk = pointwise ? P : std::min(P, std::max<I64>(64, (I64{1} << 17) / std::max<I64>(Kc, 1) / 16 * 16));
  std::vector<float>& col = ws.scratch;
  const I64 col_size = Kc * ((blk + 15) / 16) * 16;
  // the input planes zero-padded once per event and group (no padding: read in place), unless
  // the padding would make them much larger than the input
  const I64 need = col_size + (use_padded ? pad_size : 0);
  if (pointwise) {
    const size_t pw_need = packed_panels_size(uz(Cg), uz(std::min(P, kPointwiseColumns))) + 16;
    if (col.size() < pw_need) col.resize(pw_need);
  } else if (col.size() < uz(need)) {
    col.resize(uz(need));
  }
  for (I64 b = 0; b < Nb; ++b)
    for (I64 g = 0; g < G; ++g) {
      const float* xg = x.f() + (b * C + g * Cg) * Pin;
      const float* wg = w.f() + g * Mg * Kc;
      float* dg = d + (b * Mo + g * Mg) * P;
      const float* bg = bf ? bf + g * Mg : nullptr;
      if (pointwise) {  // the input planes are the GEMM's right operand, packed a panel pair at a time
        // 64-byte aligned: the tiles' full-width loads of the pair then never split a cache line
        float* cp = reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(col.data()) + 63) & ~std::uintptr_t{63});
        for (I64 c0 = 0; c0 < P; c0 += kPointwiseColumns) {
          const I64 nc = std::min(kPointwiseColumns, P - c0);
          pack_panels(uz(Cg), uz(nc), xg + c0, uz(P), cp);
          conv_gemm(Mg, nc, Cg, wg, cp, dg + c0, P, bg, n);
        }
        continue;
      }
      float* pad = col.data() + col_size;
      if (use_padded && padded) pad_planes(win, xg, Cg, pad);
      for (I64 p0 = 0; p0 < P; p0 += blk) {
        const I64 p1 = std::min(P, p0 + blk);
        if (use_padded) im2col_panels_padded(win, padded ? pad : xg, Cg, p0, p1, col.data());
        else im2col_panels(win, xg, Cg, p0, p1, col.data());
        conv_gemm(Mg, p1 - p0, Kc, wg, col.data(), dg + p0, P, bg, n);
      }
    }
}

void import_window_attributes(ImportContext& at, Node& n) {
  n.i1 = parse_auto_pad(at);
  n.v0 = at.ints("kernel_shape");
  n.v1 = at.ints("strides");
  n.v2 = at.ints("pads");
  n.v3 = at.ints("dilations");
  n.i0 = at.i("group", 1);
  if (n.i0 < 1) at.fail("group must be >= 1, got " + std::to_string(n.i0));
  check_window_attributes(at, n.v0, n);
}

/// With constant weights: the attributes' number of spatial dimensions must be W's.
void check_weight_rank(ImportContext& at, const Node& n, const Value& w) {
  const std::size_t sd = std::max({n.v1.size(), n.v2.size() / 2, n.v3.size()});
  if (sd != 0 && static_cast<int>(sd) + 2 != w.shape.rank)
    at.fail("strides, pads or dilations are given for " + std::to_string(sd) + " spatial dimensions; W " +
            w.shape.str() + " has " + std::to_string(w.shape.rank - 2));
}

void import_conv(ImportContext& at, Node& n) {
  at.need_inputs(2, 3);
  at.need_outputs(1);
  n.op = Op::Conv;
  n.run = run_conv;
  import_window_attributes(at, n);
  if (const Value* w = at.const_input(1)) {
    if (w->shape.rank < 3 || w->shape.rank > 5)
      at.fail("W has shape " + w->shape.str() + "; expected [M, C/group, k1...] with 1 to 3 spatial dimensions");
    check_weight_rank(at, n, *w);
    if (!n.v0.empty() && w->shape.rank != static_cast<int>(n.v0.size()) + 2)
      at.fail("W " + w->shape.str() + " does not match kernel_shape");
    for (std::size_t k = 0; k < n.v0.size(); ++k)
      if (w->shape[static_cast<int>(k) + 2] != n.v0[k]) at.fail("W " + w->shape.str() + " does not match kernel_shape");
    if (w->shape[0] % n.i0 != 0)
      at.fail("group " + std::to_string(n.i0) + " does not divide the " + std::to_string(w->shape[0]) +
              " output channels of W " + w->shape.str());
    // pointwise convolutions (1 x 1 kernel, stride 1, no padding) multiply W [M][C] by the input
    // planes as they are and never read packed weights: none are packed for them, which also
    // keeps the executor's row blocks (sized by the largest packed weights, block_rows) from
    // growing to dozens of events for ParticleNet, whose intermediates are megabytes per event
    bool pointwise = true;
    for (int i = 2; i < w->shape.rank; ++i) pointwise = pointwise && w->shape[i] == 1;
    for (I64 s : n.v1) pointwise = pointwise && s == 1;
    for (I64 p : n.v2) pointwise = pointwise && p == 0;
    if (w->type == ElementType::Float32 && !pointwise && conv_row_form(*w, n.i0)) n.dense = pack_conv_weights(*w, n.i0);
  }
}

// ---- ConvTranspose

/// Adds col [Mg * n_k, n_in] (rows: output channel, then kernel tap) into the output planes
/// o [Mg][n_out]: input position i and tap t land on output i * s + t * d - pb.
void col2im(const Window3& w, const float* col, I64 Mg, float* o) {
  const I64 Hi = w.in[1], Wi = w.in[2], Ho = w.out[1], Wo = w.out[2], pin = w.n_in(), pout = w.n_out();
  const float* row = col;
  for (I64 m = 0; m < Mg; ++m) {
    float* om = o + m * pout;
    for (I64 kd = 0; kd < w.k[0]; ++kd)
      for (I64 kh = 0; kh < w.k[1]; ++kh)
        for (I64 kw = 0; kw < w.k[2]; ++kw) {
          const I64 base = kw * w.d[2] - w.pb[2];  // ow = iw * s + base
          I64 lo, hi;
          valid_taps(base, Wi, w.s[2], Wo, lo, hi);
          for (I64 id = 0; id < w.in[0]; ++id) {
            const I64 od = id * w.s[0] + kd * w.d[0] - w.pb[0];
            if (od < 0 || od >= w.out[0]) continue;
            for (I64 ih = 0; ih < Hi; ++ih) {
              const I64 oh = ih * w.s[1] + kh * w.d[1] - w.pb[1];
              if (oh < 0 || oh >= Ho) continue;
              const float* src = row + (id * Hi + ih) * Wi;
              float* dst = om + (od * Ho + oh) * Wo;
              for (I64 iw = lo; iw < hi; ++iw) dst[iw * w.s[2] + base] += src[iw];
            }
          }
          row += pin;
        }
  }
}

// ConvTranspose. node: v0 output_padding, v1 strides, v2 pads, v3 dilations, i0 group,
// i1 auto_pad, constant: output_shape (null when not given), v… kernel_shape checked at import.
void run_conv_transpose(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& w = in(n, ws, 1);
  const Value* bias = opt_in(n, ws, 2);
  check_float_inputs(x, w, bias);
  const I64 Nb = x.shape[0], C = x.shape[1], G = n.i0;
  if (G < 1 || w.shape[0] != C || C % G != 0)
    throw OpError("X has " + std::to_string(C) + " channels; W " + w.shape.str() +
                  " (for ConvTranspose [C, M/group, k...]) with group " + std::to_string(G) + " does not fit");
  const I64 Cg = C / G, Mg = w.shape[1], Mo = Mg * G;
  if (bias && (bias->shape.rank != 1 || bias->shape[0] != Mo))
    throw OpError("B has shape " + bias->shape.str() + "; expected [" + std::to_string(Mo) + "]");
  const int sd = x.shape.rank - 2;
  const auto usd = static_cast<size_t>(sd);
  if ((!n.v0.empty() && n.v0.size() != usd) || (!n.v1.empty() && n.v1.size() != usd) ||
      (!n.v2.empty() && n.v2.size() != 2 * usd) || (!n.v3.empty() && n.v3.size() != usd))
    throw OpError(
        "strides, pads, dilations or output_padding are given for a different number of spatial dimensions than the "
        "input's " +
        std::to_string(sd));
  const Value* oshape = n.constant.get();
  if (oshape && oshape->numel != usd && oshape->numel != usd + 2)
    throw OpError("output_shape has " + std::to_string(oshape->numel) + " values for " + std::to_string(sd) +
                  " spatial dimensions");
  Window3 win;  // in: X's spatial sizes; out: the result's
  const int off = 3 - sd;
  for (int i = 0; i < sd; ++i) {
    const auto ui = static_cast<size_t>(i);
    const int j = i + off;
    win.in[j] = x.shape[i + 2];
    win.k[j] = w.shape[i + 2];
    win.s[j] = n.v1.empty() ? 1 : n.v1[ui];
    win.d[j] = n.v3.empty() ? 1 : n.v3[ui];
    const I64 adj = n.v0.empty() ? 0 : n.v0[ui];
    if (adj < 0 || (adj >= win.s[j] && adj >= win.d[j]))
      throw OpError("output_padding " + std::to_string(adj) + " must be smaller than the stride or the dilation");
    const I64 full = (win.in[j] - 1) * win.s[j] + adj + (win.k[j] - 1) * win.d[j] + 1;
    I64 pb = n.v2.empty() ? 0 : n.v2[ui], pe = n.v2.empty() ? 0 : n.v2[ui + usd];
    I64 o;
    if (oshape) {
      o = oshape->i64()[oshape->numel - usd + ui];
      const I64 total = std::max<I64>(full - o, 0);
      pb = n.i1 == kSameUpper ? total / 2 : total - total / 2;
      pe = total - pb;
    } else {
      if (n.i1 == kSameUpper || n.i1 == kSameLower) {
        const I64 total = std::max<I64>(full - win.in[j] * win.s[j], 0);
        pb = n.i1 == kSameUpper ? total / 2 : total - total / 2;
        pe = total - pb;
      } else if (n.i1 == kValid) {
        pb = pe = 0;
      }
      o = full - pb - pe;
    }
    if (o < 0) throw OpError("the padding is larger than the output in spatial dimension " + std::to_string(i));
    win.pb[j] = pb;
    win.pe[j] = pe;
    win.out[j] = o;
  }
  Shape os;
  os.push(Nb);
  os.push(Mo);
  for (int i = 0; i < sd; ++i) os.push(win.out[off + i]);
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const I64 P = win.n_out(), Pin = win.n_in(), nk = win.n_k();
  if (Nb == 0 || P == 0 || Mo == 0) return;
  const PackedDense* pw = n.dense.get();
  if (pw && pw->K == Cg && pw->N == nk * Mg && Pin > 0 && Cg > 0) {
    conv_transpose_rows(n, win, x.f(), Nb, C, G, bias ? bias->f() : nullptr, d, ws);
    return;
  }
  // scratch: the group's transposed weights [Mg * nk, Cg], then col [Mg * nk, Pin]
  std::vector<float>& scratch = ws.scratch;
  const I64 wt_size = Mg * nk * Cg;
  if (scratch.size() < uz(wt_size + Mg * nk * Pin)) scratch.resize(uz(wt_size + Mg * nk * Pin));
  float* wt = scratch.data();
  float* col = wt + wt_size;
  for (I64 g = 0; g < G; ++g) {
    for (I64 c = 0; c < Cg; ++c)
      for (I64 r = 0; r < Mg * nk; ++r) wt[r * Cg + c] = w.f()[((g * Cg + c) * Mg) * nk + r];
    for (I64 b = 0; b < Nb; ++b) {
      float* dg = d + (b * Mo + g * Mg) * P;
      for (I64 m = 0; m < Mg; ++m) std::fill(dg + m * P, dg + (m + 1) * P, bias ? bias->f()[g * Mg + m] : 0.0f);
      if (Pin == 0 || Cg == 0) continue;
      gemm(uz(Mg * nk), uz(Pin), uz(Cg), wt, uz(Cg), x.f() + (b * C + g * Cg) * Pin, uz(Pin), col, uz(Pin), nullptr,
           nullptr, Act::None, 0.0f, 0.0f);
      col2im(win, col, Mg, dg);
    }
  }
}

void import_conv_transpose(ImportContext& at, Node& n) {
  at.need_inputs(2, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_conv_transpose;
  import_window_attributes(at, n);
  const std::vector<I64> ks = n.v0;
  n.v0 = at.ints("output_padding");
  if (!n.v0.empty() && !ks.empty() && n.v0.size() != ks.size())
    at.fail("output_padding has " + std::to_string(n.v0.size()) + " values for " + std::to_string(ks.size()) +
            " spatial dimensions");
  for (I64 v : n.v0)
    if (v < 0) at.fail("output_padding must be >= 0");
  if (at.has("output_shape")) {
    const std::vector<I64> os = at.ints("output_shape");
    for (I64 v : os)
      if (v < 0) at.fail("output_shape must be >= 0");
    n.constant = at.ints_value(os);
  }
  if (const Value* w = at.const_input(1)) {
    if (w->shape.rank < 3 || w->shape.rank > 5)
      at.fail("W has shape " + w->shape.str() + "; expected [C, M/group, k1...] with 1 to 3 spatial dimensions");
    check_weight_rank(at, n, *w);
    bool ok = ks.empty() || w->shape.rank == static_cast<int>(ks.size()) + 2;
    for (std::size_t k = 0; ok && k < ks.size(); ++k) ok = w->shape[static_cast<int>(k) + 2] == ks[k];
    if (!ok) at.fail("W " + w->shape.str() + " does not match kernel_shape");
    if (w->shape[0] % n.i0 != 0)
      at.fail("group " + std::to_string(n.i0) + " does not divide the " + std::to_string(w->shape[0]) +
              " input channels of W " + w->shape.str());
    if (w->type == ElementType::Float32 && w->shape[1] >= 1) n.dense = pack_conv_transpose_weights(*w, n.i0);
  }
}

}  // namespace

void add_conv_ops(OpTable& t) {
  t["Conv"] = import_conv;
  t["ConvTranspose"] = import_conv_transpose;
}

}  // namespace hepinfer::nn
