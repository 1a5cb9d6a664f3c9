// Recurrent family: the ONNX LSTM, GRU and RNN operators (opsets 7-22), import handlers and
// kernels (see op_import.hpp).
//
// Every direction runs in two stages. First the input projection X W^T + biases for all time
// steps and batch entries at once: one GEMM of [seq * batch, input] by [input, gates * hidden]
// (in the memory order of X, so layout 0 and 1 are both one GEMM). Then one step at a time: one
// GEMM of the hidden state [batch, hidden] by R^T [hidden, gates * hidden] for all gates fused,
// followed by one pass over each batch row that adds the projection, applies the activations
// and updates the state. LSTM and RNN with an input no wider than the state fold the first
// stage into the second (stacked_input: one GEMM of [h, x_t] by [R; W]^T per step), and an
// LSTM with the default activations updates each row in one vectorised pass (lstm_cell_default). Constant weights are packed into GEMM panels once at load; weights
// computed in the graph are packed into the workspace on every call.
//
// sequence_lens (per batch entry) follows onnxruntime: entry b runs its first len_b steps (a
// reverse direction starts at step len_b - 1), Y is zero at later steps, and Y_h/Y_c hold the
// state after the entry's last step (zero when len_b is 0 or the sequence is empty, whatever
// the initial state: onnxruntime 1.32 gives that for LSTM and RNN).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"
#include "nn/recurrent_cells.hpp"

namespace hepinfer::nn {
namespace {

enum class Cell : std::uint8_t { LSTM, GRU, RNN };

/// Gates per cell: LSTM i o f c, GRU z r h, RNN one.
std::size_t gates_of(Cell c) { return c == Cell::LSTM ? 4 : c == Cell::GRU ? 3 : 1; }
/// Activation functions per direction: LSTM f g h, GRU f g, RNN f.
std::size_t acts_of(Cell c) { return c == Cell::LSTM ? 3 : c == Cell::GRU ? 2 : 1; }

/// The activation functions the ONNX recurrent ops name.
enum class RAct : std::int64_t {
  Sigmoid,
  Tanh,
  Relu,
  Affine,
  LeakyRelu,
  ThresholdedRelu,
  ScaledTanh,
  HardSigmoid,
  Elu,
  Softsign,
  Softplus
};

struct RActInfo {
  const char* name;
  RAct act;
  bool uses_alpha, uses_beta;
  float alpha, beta;  // defaults (as onnxruntime's)
};
constexpr RActInfo kActs[] = {
    {"sigmoid", RAct::Sigmoid, false, false, 0.0f, 0.0f},
    {"tanh", RAct::Tanh, false, false, 0.0f, 0.0f},
    {"relu", RAct::Relu, false, false, 0.0f, 0.0f},
    {"affine", RAct::Affine, true, true, 1.0f, 0.0f},
    {"leakyrelu", RAct::LeakyRelu, true, false, 0.01f, 0.0f},
    {"thresholdedrelu", RAct::ThresholdedRelu, true, false, 1.0f, 0.0f},
    {"scaledtanh", RAct::ScaledTanh, true, true, 1.0f, 1.0f},
    {"hardsigmoid", RAct::HardSigmoid, true, true, 0.2f, 0.5f},
    {"elu", RAct::Elu, true, false, 1.0f, 0.0f},
    {"softsign", RAct::Softsign, false, false, 0.0f, 0.0f},
    {"softplus", RAct::Softplus, false, false, 0.0f, 0.0f},
};

/// One activation with its parameters.
struct Fn {
  RAct act = RAct::Sigmoid;
  float alpha = 0.0f, beta = 0.0f;
};

/// Applies `f` to x[0..n) in place.
void apply(const Fn& f, float* x, std::size_t n) {
  switch (f.act) {
    case RAct::Sigmoid: activate(x, n, Act::Sigmoid, 0.0f, 0.0f); return;
    case RAct::Tanh: activate(x, n, Act::Tanh, 0.0f, 0.0f); return;
    case RAct::Relu: activate(x, n, Act::Relu, 0.0f, 0.0f); return;
    case RAct::LeakyRelu: activate(x, n, Act::LeakyRelu, f.alpha, 0.0f); return;
    case RAct::HardSigmoid: activate(x, n, Act::HardSigmoid, f.alpha, f.beta); return;
    case RAct::Elu: activate(x, n, Act::Elu, f.alpha, 0.0f); return;
    case RAct::Softplus: activate(x, n, Act::Softplus, 0.0f, 0.0f); return;
    case RAct::Affine:
      for (std::size_t i = 0; i < n; ++i) x[i] = f.alpha * x[i] + f.beta;
      return;
    case RAct::ThresholdedRelu:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] > f.alpha ? x[i] : (x[i] == x[i] ? 0.0f : x[i]);
      return;
    case RAct::ScaledTanh:
      for (std::size_t i = 0; i < n; ++i) x[i] *= f.beta;
      activate(x, n, Act::Tanh, 0.0f, 0.0f);
      for (std::size_t i = 0; i < n; ++i) x[i] *= f.alpha;
      return;
    case RAct::Softsign:
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::fabs(x[i]));
      return;
  }
}

/// Round a float count up to whole cache lines (scratch buffers start 64-byte apart).
std::size_t lines(std::size_t n) { return (n + 15) / 16 * 16; }

/// Packs B = W^T, W [N, K] row-major, as pack_panels(K, N, W^T) would.
void pack_transposed(std::size_t K, std::size_t N, const float* W, float* dst) {
  for (std::size_t j0 = 0; j0 < N; j0 += kPanel) {
    const std::size_t w = std::min<std::size_t>(kPanel, N - j0);
    for (std::size_t k = 0; k < K; ++k) {
      float* d = dst + k * kPanel;
      for (std::size_t j = 0; j < w; ++j) d[j] = W[(j0 + j) * K + k];
      for (std::size_t j = w; j < kPanel; ++j) d[j] = 0.0f;
    }
    dst += K * kPanel;
  }
}

/// Packs B = [R^T; W^T] ([H + I, N]; R [N, H], W [N, I] row-major) as pack_panels would.
void pack_stacked(std::size_t H, std::size_t I, std::size_t N, const float* R, const float* W, float* dst) {
  const std::size_t K = H + I;
  for (std::size_t j0 = 0; j0 < N; j0 += kPanel) {
    const std::size_t w = std::min<std::size_t>(kPanel, N - j0);
    for (std::size_t k = 0; k < K; ++k) {
      float* d = dst + k * kPanel;
      for (std::size_t j = 0; j < w; ++j) d[j] = k < H ? R[(j0 + j) * H + k] : W[(j0 + j) * I + (k - H)];
      for (std::size_t j = w; j < kPanel; ++j) d[j] = 0.0f;
    }
    dst += K * kPanel;
  }
}

/// The weights of one node as the kernel reads them: per direction the input weights W^T as
/// panels [I, G*H], the recurrent weights R^T as panels [H, G*H] (GRU with
/// linear_before_reset = 0: [H, 2H] for z, r and [H, H] for h apart), the bias added to the
/// input projection and the bias added to the recurrent product (GRU linear_before_reset = 1:
/// Rb of the h gate; otherwise zero, and rbias_used false).
struct Weights {
  std::size_t w_size = 0, r_size = 0, rh_size = 0, bias_size = 0;  // floats per direction
  const float* w = nullptr;                                        // D * w_size
  const float* r = nullptr;                                        // D * r_size
  const float* rh = nullptr;                                       // D * rh_size (GRU, linear_before_reset = 0)
  const float *xbias = nullptr, *rbias = nullptr;                  // D * bias_size each
  std::size_t rw_size = 0;                                         // floats per direction
  const float* rw = nullptr;  // D * rw_size: [R^T; W^T] as panels [H + I, G*H] (stacked_input) or null
  bool rbias_used = false;
  bool finite = false;
};

/// Whether LSTM and RNN steps take their input projection in the step's GEMM, against R and W
/// stacked ([h, x_t] [R; W]^T: K = H + I), instead of projecting all steps first: where the
/// input is no wider than the state, the projection costs little more inside the step GEMM, and
/// the projection of every step ([S * Bt, G * H]: 15 MB for DeepJet's LSTM at batch 256) is
/// neither written nor read back. GRU keeps the projection apart (its h gate adds x W_h^T and
/// the reset gate times h R_h^T separately).
bool stacked_input(Cell cell, std::size_t I, std::size_t H) { return cell != Cell::GRU && I <= H; }

/// Floats needed to pack the weights of one node (all directions).
std::size_t packed_size(Cell cell, bool lbr, std::size_t D, std::size_t I, std::size_t H) {
  const std::size_t G = gates_of(cell), GH = G * H;
  const bool split = cell == Cell::GRU && !lbr;
  const std::size_t r = split ? packed_panels_size(H, 2 * H) + packed_panels_size(H, H) : packed_panels_size(H, GH);
  const std::size_t rw = stacked_input(cell, I, H) ? packed_panels_size(H + I, GH) : 0;
  return D * (packed_panels_size(I, GH) + r + 2 * lines(GH) + rw);
}

/// The pointers into a block of packed_size floats at `base` (as pack_weights fills it).
Weights layout_weights(Cell cell, bool lbr, std::size_t D, std::size_t I, std::size_t H, const float* base,
                       bool has_b) {
  const std::size_t G = gates_of(cell), GH = G * H;
  const bool split = cell == Cell::GRU && !lbr;
  Weights wt;
  wt.w_size = packed_panels_size(I, GH);
  wt.r_size = split ? packed_panels_size(H, 2 * H) : packed_panels_size(H, GH);
  wt.rh_size = split ? packed_panels_size(H, H) : 0;
  wt.bias_size = lines(GH);
  wt.w = base;
  wt.r = wt.w + D * wt.w_size;
  wt.rh = split ? wt.r + D * wt.r_size : nullptr;
  wt.xbias = wt.r + D * (wt.r_size + wt.rh_size);
  wt.rbias = wt.xbias + D * wt.bias_size;
  wt.rbias_used = cell == Cell::GRU && lbr && has_b;
  if (stacked_input(cell, I, H)) {
    wt.rw_size = packed_panels_size(H + I, GH);
    wt.rw = wt.rbias + D * wt.bias_size;
  }
  return wt;
}

/// Packs W [D, G*H, I], R [D, G*H, H] and B [D, 2*G*H] (may be null) into `dst`
/// (packed_size floats) and points `wt` into it.
void pack_weights(Cell cell, bool lbr, std::size_t D, std::size_t I, std::size_t H, const float* W, const float* R,
                  const float* B, float* dst, Weights& wt) {
  const std::size_t G = gates_of(cell), GH = G * H;
  const bool split = cell == Cell::GRU && !lbr;
  wt = layout_weights(cell, lbr, D, I, H, dst, B != nullptr);
  float* w = dst;
  float* r = w + D * wt.w_size;
  float* rh = r + D * wt.r_size;
  float* xb = rh + D * wt.rh_size;
  float* rb = xb + D * wt.bias_size;
  bool finite = true;
  for (std::size_t d = 0; d < D; ++d) {
    const float* Wd = W + d * GH * I;
    const float* Rd = R + d * GH * H;
    for (std::size_t k = 0; k < GH * I; ++k) finite = finite && std::isfinite(Wd[k]);
    pack_transposed(I, GH, Wd, w + d * wt.w_size);
    if (wt.rw) pack_stacked(H, I, GH, Rd, Wd, rb + D * wt.bias_size + d * wt.rw_size);
    if (split) {
      pack_transposed(H, 2 * H, Rd, r + d * wt.r_size);
      pack_transposed(H, H, Rd + 2 * H * H, rh + d * wt.rh_size);
    } else {
      pack_transposed(H, GH, Rd, r + d * wt.r_size);
    }
    float* xbd = xb + d * wt.bias_size;
    float* rbd = rb + d * wt.bias_size;
    std::fill(xbd, xbd + wt.bias_size, 0.0f);
    std::fill(rbd, rbd + wt.bias_size, 0.0f);
    if (B) {
      const float* Wb = B + d * 2 * GH;
      const float* Rb = Wb + GH;
      for (std::size_t j = 0; j < GH; ++j) {
        // GRU linear_before_reset = 1: Rb of the h gate is added to H R_h^T before the reset gate
        const bool inner = cell == Cell::GRU && lbr && j >= 2 * H;
        xbd[j] = inner ? Wb[j] : Wb[j] + Rb[j];
        if (inner) rbd[j] = Rb[j];
      }
    }
  }
  wt.finite = finite;
}

// node: i0 hidden_size, i1 direction (0 forward, 1 reverse, 2 bidirectional), i2 layout,
// i3 flags (1 input_forget, 2 linear_before_reset, 4 clip given), alpha clip;
// v0 activation codes, f0/f1 their alphas/betas (acts_of(cell) per direction);
// dense: the packed weights when W, R and B are constants (panels as Weights, see pack_weights).
constexpr std::int64_t kInputForget = 1, kLinearBeforeReset = 2, kClip = 4;

struct Params {
  Cell cell;
  std::size_t S = 0, Bt = 0, I = 0, H = 0, D = 0, G = 0;
  bool layout1 = false, reverse_only = false, input_forget = false, lbr = false, clip = false;
  float clip_v = 0.0f;
};

inline void clip_to(float* x, std::size_t n, float c) {
  for (std::size_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], -c), c);
}

/// Runs one direction: `rev` steps backwards through each sequence.
/// xp: the input projection [rows, G*H] in X's row order, or null when the projection is part of
/// the step's GEMM (stacked weights, see Weights): then every step copies the rows of X at the
/// step into hx [Bt, H + I] beside the state, and h lives in hx; h, c: the state [Bt, H] (in,
/// out); y: Y or null; lens: per batch entry steps (null: all S).
void run_direction(const Params& p, const Weights& wt, std::size_t d, bool rev, const Fn* fn, const float* P,
                   const float* X, const float* xp, float* h, float* c, float* hr, float* rh, float* tmp, float* hx,
                   float* y, const I64* lens) {
  const std::size_t S = p.S, Bt = p.Bt, H = p.H, I = p.I, GH = p.G * p.H;
  const bool stacked = xp == nullptr;
  const float* R = stacked ? wt.rw + d * wt.rw_size : wt.r + d * wt.r_size;
  const std::size_t KR = stacked ? H + I : H;  // the step GEMM's K
  const float* Rh = wt.rh ? wt.rh + d * wt.rh_size : nullptr;
  const float* rbias = stacked ? wt.xbias + d * wt.bias_size : wt.rbias_used ? wt.rbias + d * wt.bias_size : nullptr;
  const float* Pi = P ? P + d * 3 * H : nullptr;
  const float* Po = Pi ? Pi + H : nullptr;
  const float* Pf = Pi ? Pi + 2 * H : nullptr;
  const bool split = p.cell == Cell::GRU && !p.lbr;
  const bool default_lstm = p.cell == Cell::LSTM && !Pi && !p.clip && !p.input_forget && fn[0].act == RAct::Sigmoid &&
                            fn[1].act == RAct::Tanh && fn[2].act == RAct::Tanh;
  const std::size_t n_hr = split ? 2 * H : GH;
  // the state: h [Bt, H], or in hx with row stride H + I
  float* const hs = stacked ? hx : h;
  const std::size_t ld = stacked ? H + I : H;
  if (stacked)
    for (std::size_t b = 0; b < Bt; ++b) std::copy(h + b * H, h + (b + 1) * H, hx + b * ld);
  // batch entries are independent: blocks of rows run every step in turn, so that a block's
  // state, gate sums and projection rows stay in L2 next to R (~512 KiB in all)
  const std::size_t row_bytes = (2 * n_hr + 4 * H) * sizeof(float);
  const std::size_t block = std::max<std::size_t>(24, (std::size_t{512} << 10) / row_bytes / 6 * 6);
  for (std::size_t b0 = 0; b0 < Bt; b0 += block) {
    const std::size_t b1 = std::min(Bt, b0 + block), nb = b1 - b0;
    for (std::size_t s = 0; s < S; ++s) {
      if (stacked)  // this step's inputs beside the state
        for (std::size_t b = b0; b < b1; ++b) {
          const std::size_t len = lens ? static_cast<std::size_t>(lens[b]) : S;
          if (s >= len) continue;
          const std::size_t t = rev ? len - 1 - s : s;
          const float* xr = X + (p.layout1 ? b * S + t : t * Bt + b) * I;
          std::copy(xr, xr + I, hx + b * ld + H);
        }
      // one GEMM for every gate of every row of the block (rows that have ended are computed and unused)
      gemm_packed(nb, n_hr, KR, hs + b0 * ld, ld, R, hr + b0 * n_hr, n_hr, rbias, nullptr, Act::None, 0.0f, 0.0f,
                  false);
      // GRU with linear_before_reset = 0: the reset gate first, then (r * H) R_h^T
      if (split) {
        for (std::size_t b = b0; b < b1; ++b) {
          const std::size_t len = lens ? static_cast<std::size_t>(lens[b]) : S;
          float* g = hr + b * n_hr;
          float* rhb = rh + b * H;
          const float* hb = h + b * H;
          if (s >= len) {
            std::copy(hb, hb + H, rhb);
            continue;
          }
          const std::size_t t = rev ? len - 1 - s : s;
          const float* x = xp + (p.layout1 ? b * S + t : t * Bt + b) * GH;
          for (std::size_t j = 0; j < 2 * H; ++j) g[j] += x[j];
          if (p.clip) clip_to(g, 2 * H, p.clip_v);
          apply(fn[0], g, 2 * H);
          const float* r = g + H;
          for (std::size_t j = 0; j < H; ++j) rhb[j] = r[j] * hb[j];
        }
        gemm_packed(nb, H, H, rh + b0 * H, H, Rh, tmp + b0 * H, H, nullptr, nullptr, Act::None, 0.0f, 0.0f, false);
      }
      for (std::size_t b = b0; b < b1; ++b) {
        const std::size_t len = lens ? static_cast<std::size_t>(lens[b]) : S;
        if (s >= len) continue;
        const std::size_t t = rev ? len - 1 - s : s;
        const float* x = stacked ? nullptr : xp + (p.layout1 ? b * S + t : t * Bt + b) * GH;
        float* g = hr + b * n_hr;
        float* hb = hs + b * ld;
        // Y [S, D, Bt, H] (layout 0) or [Bt, S, D, H] (layout 1)
        float* yr = y ? y + (p.layout1 ? (b * S + t) * p.D + d : (t * p.D + d) * Bt + b) * H : nullptr;
        if (default_lstm) {
          lstm_cell_default(H, g, x, c + b * H, hb, yr);
          continue;
        }
        if (p.cell == Cell::LSTM) {
          float* cb = c + b * H;
          float* gi = g;
          float* go = g + H;
          float* gf = g + 2 * H;
          float* gc = g + 3 * H;
          if (x)
            for (std::size_t j = 0; j < GH; ++j) g[j] += x[j];
          if (Pi) {
            for (std::size_t j = 0; j < H; ++j) gi[j] += Pi[j] * cb[j];
            if (!p.input_forget)
              for (std::size_t j = 0; j < H; ++j) gf[j] += Pf[j] * cb[j];
          }
          if (p.clip) {
            if (Po) {  // o is clipped once its peephole term (on the new cell state) is added
              clip_to(gi, H, p.clip_v);
              clip_to(gf, 2 * H, p.clip_v);
            } else {
              clip_to(g, GH, p.clip_v);
            }
          }
          if (p.input_forget) {
            apply(fn[0], gi, H);
            for (std::size_t j = 0; j < H; ++j) gf[j] = 1.0f - gi[j];
            if (!Po) apply(fn[0], go, H);
          } else {
            apply(fn[0], g, Po ? H : 3 * H);  // i (and o, f when o has no peephole)
            if (Po) apply(fn[0], gf, H);
          }
          apply(fn[1], gc, H);
          for (std::size_t j = 0; j < H; ++j) cb[j] = gf[j] * cb[j] + gi[j] * gc[j];
          if (Po) {
            for (std::size_t j = 0; j < H; ++j) go[j] += Po[j] * cb[j];
            if (p.clip) clip_to(go, H, p.clip_v);
            apply(fn[0], go, H);
          }
          std::copy(cb, cb + H, tmp);
          apply(fn[2], tmp, H);
          for (std::size_t j = 0; j < H; ++j) hb[j] = go[j] * tmp[j];
        } else if (p.cell == Cell::GRU) {
          float* z = g;
          float* hh;
          if (split) {
            hh = tmp + b * H;
            for (std::size_t j = 0; j < H; ++j) hh[j] += x[2 * H + j];
          } else {
            for (std::size_t j = 0; j < 2 * H; ++j) g[j] += x[j];
            if (p.clip) clip_to(g, 2 * H, p.clip_v);
            apply(fn[0], g, 2 * H);
            const float* r = g + H;
            hh = g + 2 * H;
            for (std::size_t j = 0; j < H; ++j) hh[j] = x[2 * H + j] + r[j] * hh[j];
          }
          if (p.clip) clip_to(hh, H, p.clip_v);
          apply(fn[1], hh, H);
          for (std::size_t j = 0; j < H; ++j) hb[j] = (1.0f - z[j]) * hh[j] + z[j] * hb[j];
        } else {
          if (x)
            for (std::size_t j = 0; j < H; ++j) g[j] += x[j];
          if (p.clip) clip_to(g, H, p.clip_v);
          apply(fn[0], g, H);
          std::copy(g, g + H, hb);
        }
        if (yr) std::copy(hb, hb + H, yr);
      }
    }
  }
  if (stacked)
    for (std::size_t b = 0; b < Bt; ++b) std::copy(hx + b * ld, hx + b * ld + H, h + b * H);
}

/// Writes a state [Bt, H] of direction d into Y_h/Y_c: [D, Bt, H] (layout 0) or [Bt, D, H].
void store_state(const Params& p, std::size_t d, const float* src, float* dst) {
  for (std::size_t b = 0; b < p.Bt; ++b) {
    float* r = dst + (p.layout1 ? b * p.D + d : d * p.Bt + b) * p.H;
    std::copy(src + b * p.H, src + (b + 1) * p.H, r);
  }
}
/// Reads direction d of initial_h/initial_c (same layouts) into a state [Bt, H].
void load_state(const Params& p, std::size_t d, const float* src, float* dst) {
  for (std::size_t b = 0; b < p.Bt; ++b) {
    const float* r = src + (p.layout1 ? b * p.D + d : d * p.Bt + b) * p.H;
    std::copy(r, r + p.H, dst + b * p.H);
  }
}

template <Cell cell>
void run_rnn(const Node& n, Workspace& ws) {
  Params p;
  p.cell = cell;
  p.H = static_cast<std::size_t>(n.i0);
  p.D = n.i1 == 2 ? 2 : 1;
  p.G = gates_of(cell);
  p.layout1 = n.i2 == 1;
  p.reverse_only = n.i1 == 1;
  p.input_forget = (n.i3 & kInputForget) != 0;
  p.lbr = (n.i3 & kLinearBeforeReset) != 0;
  p.clip = (n.i3 & kClip) != 0;
  p.clip_v = n.alpha;
  const std::size_t H = p.H, D = p.D, GH = p.G * H;

  const Value& x = in(n, ws, 0);
  require_type(x, ElementType::Float32, "X");
  if (x.shape.rank != 3) throw OpError("X must have rank 3, got shape " + x.shape.str());
  p.S = static_cast<std::size_t>(x.shape[p.layout1 ? 1 : 0]);
  p.Bt = static_cast<std::size_t>(x.shape[p.layout1 ? 0 : 1]);
  p.I = static_cast<std::size_t>(x.shape[2]);
  const std::size_t S = p.S, Bt = p.Bt, I = p.I;
  auto shape3 = [](std::size_t a, std::size_t b, std::size_t c) {
    Shape s;
    s.push(static_cast<I64>(a));
    s.push(static_cast<I64>(b));
    s.push(static_cast<I64>(c));
    return s;
  };
  auto check = [&](const Value* v, const char* what, const Shape& want) {
    if (!v) return;
    require_type(*v, ElementType::Float32, what);
    if (!(v->shape == want))
      throw OpError(std::string(what) + " has shape " + v->shape.str() + ", expected " + want.str());
  };
  const Value& W = in(n, ws, 1);
  const Value& R = in(n, ws, 2);
  const Value* B = opt_in(n, ws, 3);
  if (W.shape.rank == 3 && static_cast<std::size_t>(W.shape[2]) != I)
    throw OpError("X has input size " + std::to_string(I) + "; W " + W.shape.str() + " takes " +
                  std::to_string(W.shape[2]));
  check(&W, "W", shape3(D, GH, I));
  check(&R, "R", shape3(D, GH, H));
  if (B) {
    require_type(*B, ElementType::Float32, "B");
    Shape want;
    want.push(static_cast<I64>(D));
    want.push(static_cast<I64>(2 * GH));
    if (!(B->shape == want)) throw OpError("B has shape " + B->shape.str() + ", expected " + want.str());
  }
  const Value* lens_v = opt_in(n, ws, 4);
  const Value* h0 = opt_in(n, ws, 5);
  const Value* c0 = cell == Cell::LSTM ? opt_in(n, ws, 6) : nullptr;
  const Value* Pv = cell == Cell::LSTM ? opt_in(n, ws, 7) : nullptr;
  const Shape state = p.layout1 ? shape3(Bt, D, H) : shape3(D, Bt, H);
  check(h0, "initial_h", state);
  check(c0, "initial_c", state);
  if (Pv) {
    require_type(*Pv, ElementType::Float32, "P");
    Shape want;
    want.push(static_cast<I64>(D));
    want.push(static_cast<I64>(3 * H));
    if (!(Pv->shape == want)) throw OpError("P has shape " + Pv->shape.str() + ", expected " + want.str());
  }
  const I64* lens = nullptr;
  if (lens_v) {
    if (lens_v->type != ElementType::Int64) throw OpError("sequence_lens must be int32");
    if (lens_v->shape.rank != 1 || static_cast<std::size_t>(lens_v->shape[0]) != Bt)
      throw OpError("sequence_lens has shape " + lens_v->shape.str() + ", expected [" + std::to_string(Bt) + "]");
    lens = lens_v->i64();
    for (std::size_t b = 0; b < Bt; ++b)
      if (lens[b] < 0 || static_cast<std::size_t>(lens[b]) > S)
        throw DataError("sequence_lens[" + std::to_string(b) + "] = " + std::to_string(lens[b]) + " is outside [0, " +
                        std::to_string(S) + "]");
  }

  // outputs
  Value* Y = opt_out(n, ws, 0);
  Value* Yh = opt_out(n, ws, 1);
  Value* Yc = cell == Cell::LSTM ? opt_out(n, ws, 2) : nullptr;
  float* y = nullptr;
  if (Y) {
    Shape ys;
    for (std::size_t v : p.layout1 ? std::vector<std::size_t>{Bt, S, D, H} : std::vector<std::size_t>{S, D, Bt, H})
      ys.push(static_cast<I64>(v));
    y = static_cast<float*>(Y->alloc(ElementType::Float32, ys));
    if (lens) std::fill(y, y + Y->numel, 0.0f);  // steps past a sequence's end stay zero
  }
  float* yh = Yh ? static_cast<float*>(Yh->alloc(ElementType::Float32, state)) : nullptr;
  float* yc = Yc ? static_cast<float*>(Yc->alloc(ElementType::Float32, state)) : nullptr;

  // scratch: [packed weights] xp (all directions) | hr | h | c | rh | tmp
  const std::size_t rows = S * Bt;
  const bool split = cell == Cell::GRU && !p.lbr;
  const std::size_t n_hr = split ? 2 * H : GH;
  const std::size_t pack = n.dense ? 0 : lines(packed_size(cell, p.lbr, D, I, H));
  const bool stacked = stacked_input(cell, I, H);
  const std::size_t xp_size = stacked ? 0 : lines(rows * GH);
  const std::size_t hr_size = lines(Bt * n_hr), st_size = lines(Bt * H);
  const std::size_t hx_size = stacked ? lines(Bt * (H + I)) : 0;
  const std::size_t total = pack + D * xp_size + hr_size + 4 * st_size + lines(H) + hx_size;
  checked_numel(ElementType::Float32, shape3(total, 1, 1));
  std::vector<float>& sc = ws.scratch;
  if (sc.size() < total + 16) sc.resize(total + 16);
  // 64-byte aligned start
  float* base = sc.data();
  while (reinterpret_cast<std::uintptr_t>(base) % 64) ++base;
  Weights wt;
  if (n.dense) {
    const PackedDense& pd = *n.dense;
    if (static_cast<std::size_t>(pd.K) != I)
      throw OpError("X has input size " + std::to_string(I) + "; W takes " + std::to_string(pd.K));
    wt = layout_weights(cell, p.lbr, D, I, H, pd.panels.data(), B != nullptr);
    wt.finite = pd.finite;
  } else {
    pack_weights(cell, p.lbr, D, I, H, W.f(), R.f(), B ? B->f() : nullptr, base, wt);
  }
  float* xp = base + pack;
  float* hr = xp + D * xp_size;
  float* h = hr + hr_size;
  float* c = h + st_size;
  float* rh = c + st_size;
  float* gtmp = rh + st_size;  // GRU split: (r * H) R_h^T [Bt, H]
  float* tmp = gtmp + st_size;
  float* hx = tmp + lines(H);  // stacked: [Bt, H + I]

  Fn fn[6];
  const std::size_t na = acts_of(cell);
  for (std::size_t k = 0; k < na * D; ++k) {
    fn[k].act = static_cast<RAct>(n.v0[k]);
    fn[k].alpha = n.f0[k];
    fn[k].beta = n.f1[k];
  }
  for (std::size_t d = 0; d < D; ++d) {
    const bool rev = p.reverse_only || d == 1;
    // the input projection of every step and batch entry: one GEMM (stacked: in the steps' GEMMs)
    if (!stacked)
      gemm_packed(rows, GH, I, x.f(), I, wt.w + d * wt.w_size, xp + d * xp_size, GH, wt.xbias + d * wt.bias_size,
                  nullptr, Act::None, 0.0f, 0.0f, wt.finite);
    if (h0) load_state(p, d, h0->f(), h);
    else std::fill(h, h + Bt * H, 0.0f);
    if (cell == Cell::LSTM) {
      if (c0) load_state(p, d, c0->f(), c);
      else std::fill(c, c + Bt * H, 0.0f);
    }
    run_direction(p, wt, d, rev, fn + d * na, Pv ? Pv->f() : nullptr, x.f(), stacked ? nullptr : xp + d * xp_size, h, c,
                  hr, rh, split ? gtmp : tmp, hx, y, lens);
    // an entry that runs no step ends in a zero state, not its initial state (as onnxruntime)
    for (std::size_t b = 0; b < Bt; ++b)
      if (S == 0 || (lens && lens[b] == 0)) {
        std::fill(h + b * H, h + (b + 1) * H, 0.0f);
        if (cell == Cell::LSTM) std::fill(c + b * H, c + (b + 1) * H, 0.0f);
      }
    if (yh) store_state(p, d, h, yh);
    if (yc) store_state(p, d, c, yc);
  }
}

/// Checks the attributes and inputs common to the three ops and fills the node.
void import_rnn(ImportContext& at, Node& n, Cell cell) {
  const std::string& op = at.op_type();
  if (at.opset() < 7)
    at.fail(op + " is supported from opset 7 (the model has opset " + std::to_string(at.opset()) + ")");
  const std::size_t n_in = cell == Cell::LSTM ? 8 : 6;
  at.need_inputs(3, n_in);
  at.need_outputs(cell == Cell::LSTM ? 3 : 2);
  n.op = Op::Kernel;
  n.run = cell == Cell::LSTM ? run_rnn<Cell::LSTM> : cell == Cell::GRU ? run_rnn<Cell::GRU> : run_rnn<Cell::RNN>;
  if (!at.has("hidden_size")) at.fail("needs the hidden_size attribute");
  const I64 H = at.i("hidden_size", 0);
  if (H < 1 || H > (I64{1} << 24)) at.fail("hidden_size " + std::to_string(H) + " must be between 1 and 2^24");
  n.i0 = H;
  const std::string dir = at.s("direction", "forward");
  n.i1 = dir == "forward" ? 0 : dir == "reverse" ? 1 : dir == "bidirectional" ? 2 : -1;
  if (n.i1 < 0) at.fail("direction '" + printable(dir) + "' is not forward, reverse or bidirectional");
  const std::size_t D = n.i1 == 2 ? 2 : 1;
  n.i2 = at.i("layout", 0);
  if (n.i2 != 0 && n.i2 != 1) at.fail("layout must be 0 or 1, got " + std::to_string(n.i2));
  n.i3 = 0;
  if (at.has("clip")) {
    const float clip = at.f("clip", 0.0f);
    if (!(clip > 0.0f)) at.fail("clip must be positive");
    n.i3 |= kClip;
    n.alpha = clip;
  }
  if (cell == Cell::LSTM) {
    const I64 f = at.i("input_forget", 0);
    if (f != 0 && f != 1) at.fail("input_forget must be 0 or 1");
    if (f) n.i3 |= kInputForget;
  }
  if (cell == Cell::GRU) {
    const I64 l = at.i("linear_before_reset", 0);
    if (l != 0 && l != 1) at.fail("linear_before_reset must be 0 or 1");
    if (l) n.i3 |= kLinearBeforeReset;
  }

  // activations: acts_of(cell) per direction (forward first); names as onnxruntime reads them
  // (any case), alphas and betas consumed in order by the functions that take them
  const std::size_t na = acts_of(cell);
  std::vector<std::string> names;
  if (at.has("activations")) names = at.strings("activations");
  if (names.empty()) {
    static const char* const defaults[3][3] = {{"Sigmoid", "Tanh", "Tanh"}, {"Sigmoid", "Tanh", ""}, {"Tanh", "", ""}};
    for (std::size_t k = 0; k < na; ++k) names.push_back(defaults[static_cast<int>(cell)][k]);
  }
  // RNN's default in the spec is [Tanh, Tanh]: a second name for one direction is ignored
  if (cell == Cell::RNN && D == 1 && names.size() == 2) names.resize(1);
  if (names.size() == na && D == 2) {
    const std::vector<std::string> forward = names;  // the same functions for both directions
    names.insert(names.end(), forward.begin(), forward.end());
  }
  if (names.size() != na * D)
    at.fail("has " + std::to_string(names.size()) + " activations; expected " + std::to_string(na * D) + " (" +
            std::to_string(na) + " per direction)");
  const std::vector<float> alphas = at.floats("activation_alpha");
  const std::vector<float> betas = at.floats("activation_beta");
  std::size_t ia = 0, ib = 0;
  for (const std::string& name : names) {
    std::string lower = name;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const RActInfo* info = nullptr;
    for (const RActInfo& a : kActs)
      if (lower == a.name) info = &a;
    if (!info)
      at.fail("activation '" + printable(name) +
              "' is not supported (Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
              "HardSigmoid, Elu, Softsign and Softplus are)");
    n.v0.push_back(static_cast<I64>(info->act));
    n.f0.push_back(info->uses_alpha && ia < alphas.size() ? alphas[ia++] : info->alpha);
    n.f1.push_back(info->uses_beta && ib < betas.size() ? betas[ib++] : info->beta);
  }
  if (ia != alphas.size() || ib != betas.size())
    at.fail("activation_alpha/activation_beta hold more values than its activations take");

  // constant weights: checked and packed once
  const std::size_t G = gates_of(cell), GHs = G * static_cast<std::size_t>(H);
  const Value* W = at.const_input(1);
  const Value* R = at.const_input(2);
  const Value* B = at.has_input(3) ? at.const_input(3) : nullptr;
  auto shape_is = [](const Value* v, std::initializer_list<std::size_t> dims) {
    if (v->shape.rank != static_cast<int>(dims.size())) return false;
    int k = 0;
    for (std::size_t d : dims)
      if (static_cast<std::size_t>(v->shape[k++]) != d) return false;
    return true;
  };
  const std::string expect = "hidden_size " + std::to_string(H) + " and direction " + dir;
  if (W && (W->type != ElementType::Float32 || W->shape.rank != 3 ||
            !shape_is(W, {D, GHs, static_cast<std::size_t>(W->shape[2])})))
    at.fail("W has shape " + W->shape.str() + "; " + expect + " need [" + std::to_string(D) + ", " +
            std::to_string(GHs) + ", input_size] (float32)");
  if (R && (R->type != ElementType::Float32 || !shape_is(R, {D, GHs, static_cast<std::size_t>(H)})))
    at.fail("R has shape " + R->shape.str() + "; " + expect + " need [" + std::to_string(D) + ", " +
            std::to_string(GHs) + ", " + std::to_string(H) + "] (float32)");
  if (B && (B->type != ElementType::Float32 || !shape_is(B, {D, 2 * GHs})))
    at.fail("B has shape " + B->shape.str() + "; " + expect + " need [" + std::to_string(D) + ", " +
            std::to_string(2 * GHs) + "] (float32)");
  if (W && R && (B || !at.has_input(3))) {
    const auto I = static_cast<std::size_t>(W->shape[2]);
    const auto Hs = static_cast<std::size_t>(H);
    const bool lbr = (n.i3 & kLinearBeforeReset) != 0;
    auto pd = std::make_shared<PackedDense>();
    pd->K = static_cast<I64>(I);
    pd->N = static_cast<I64>(GHs);
    pd->panels.resize(packed_size(cell, lbr, D, I, Hs));
    Weights wt;
    pack_weights(cell, lbr, D, I, Hs, W->f(), R->f(), B ? B->f() : nullptr, pd->panels.data(), wt);
    pd->finite = wt.finite;
    n.dense = std::move(pd);
  }
}

}  // namespace

void add_rnn_ops(OpTable& t) {
  t["LSTM"] = [](ImportContext& at, Node& n) { import_rnn(at, n, Cell::LSTM); };
  t["GRU"] = [](ImportContext& at, Node& n) { import_rnn(at, n, Cell::GRU); };
  t["RNN"] = [](ImportContext& at, Node& n) { import_rnn(at, n, Cell::RNN); };
}

}  // namespace hepinfer::nn
