// Convolution family: import handlers and kernels (see op_import.hpp).
#include <algorithm>
#include <string>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

// Conv: 1-D with any kernel/stride/padding/dilation/group; N-D only pointwise (1x1...).
// node: v0 kernel_shape (may be empty), v1 strides, v2 pads, v3 dilations, i0 group,
// i1 auto_pad (0 NOTSET, 1 VALID, 2 SAME_UPPER, 3 SAME_LOWER).
void op_conv(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& w = in(n, ws, 1);
  const Value* bias = opt_in(n, ws, 2);
  require_type(x, ElementType::Float32, "X");
  require_type(w, ElementType::Float32, "W");
  if (x.shape.rank < 3 || w.shape.rank != x.shape.rank) throw OpError("X " + x.shape.str() + " and W " + w.shape.str() + " do not fit");
  const auto Nb = static_cast<std::size_t>(x.shape[0]);
  const auto C = static_cast<std::size_t>(x.shape[1]);
  const auto Mo = static_cast<std::size_t>(w.shape[0]);
  const auto G = static_cast<std::size_t>(n.i0);
  if (G == 0 || C % G || Mo % G || static_cast<std::size_t>(w.shape[1]) * G != C)
    throw OpError("X has " + std::to_string(C) + " channels; W " + w.shape.str() + " with group " + std::to_string(G) +
                  " does not fit");
  if (bias && bias->numel != Mo) throw OpError("B has " + std::to_string(bias->numel) + " elements, not " + std::to_string(Mo));
  const std::size_t Cg = C / G, Mg = Mo / G;
  const int sd = x.shape.rank - 2;
  Shape os;
  os.push(static_cast<I64>(Nb));
  os.push(static_cast<I64>(Mo));
  if (sd == 1) {
    const I64 L = x.shape[2], k = w.shape[2];
    const I64 s = n.v1.empty() ? 1 : n.v1[0], dil = n.v3.empty() ? 1 : n.v3[0];
    I64 pb = n.v2.empty() ? 0 : n.v2[0], pe = n.v2.empty() ? 0 : n.v2[1];
    if (n.i1 >= 2) {
      const I64 outl = (L + s - 1) / s;
      const I64 total = std::max<I64>((outl - 1) * s + (k - 1) * dil + 1 - L, 0);
      pb = n.i1 == 2 ? total / 2 : total - total / 2;
      pe = total - pb;
    } else if (n.i1 == 1) {
      pb = pe = 0;
    }
    const I64 Lo = (L + pb + pe - dil * (k - 1) - 1) / s + 1;
    if (Lo < 0) throw OpError("kernel longer than the padded input");
    os.push(Lo);
    float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
    const auto ul = static_cast<std::size_t>(L), ulo = static_cast<std::size_t>(Lo), uk = static_cast<std::size_t>(k);
    const bool pointwise = k == 1 && s == 1 && pb == 0 && pe == 0;
    std::vector<float>& col = ws.scratch;
    if (!pointwise) col.resize(Cg * uk * ulo);
    for (std::size_t b = 0; b < Nb; ++b)
      for (std::size_t g = 0; g < G; ++g) {
        const float* xs = x.f() + (b * C + g * Cg) * ul;
        const float* B = xs;
        if (!pointwise) {
          for (std::size_t c = 0; c < Cg; ++c)
            for (std::size_t kk = 0; kk < uk; ++kk) {
              float* row = col.data() + (c * uk + kk) * ulo;
              for (std::size_t l = 0; l < ulo; ++l) {
                const I64 pos = static_cast<I64>(l) * s + static_cast<I64>(kk) * dil - pb;
                row[l] = pos >= 0 && pos < L ? xs[c * ul + static_cast<std::size_t>(pos)] : 0.0f;
              }
            }
          B = col.data();
        }
        gemm(Mg, ulo, Cg * uk, w.f() + g * Mg * Cg * uk, Cg * uk, B, ulo, d + (b * Mo + g * Mg) * ulo, ulo, nullptr,
             bias ? bias->f() + g * Mg : nullptr, n.act, n.alpha, n.beta);
      }
    return;
  }
  // N-D pointwise
  std::size_t sp = 1;
  for (int i = 2; i < x.shape.rank; ++i) {
    if (w.shape[i] != 1) throw OpError("only 1-D convolutions or pointwise (1x1) N-D convolutions are supported");
    const std::size_t j = static_cast<std::size_t>(i - 2);
    if ((!n.v1.empty() && n.v1[j] != 1) || (!n.v2.empty() && (n.v2[j] != 0 || n.v2[j + static_cast<std::size_t>(sd)] != 0)))
      throw OpError("pointwise N-D convolutions must have stride 1 and no padding");
    os.push(x.shape[i]);
    sp *= static_cast<std::size_t>(x.shape[i]);
  }
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  for (std::size_t b = 0; b < Nb; ++b)
    for (std::size_t g = 0; g < G; ++g)
      gemm(Mg, sp, Cg, w.f() + g * Mg * Cg, Cg, x.f() + (b * C + g * Cg) * sp, sp, d + (b * Mo + g * Mg) * sp, sp,
           nullptr, bias ? bias->f() + g * Mg : nullptr, n.act, n.alpha, n.beta);
}


void import_conv(ImportContext& at, Node& n) {
  at.need_inputs(2, 3);
  at.need_outputs(1);
  n.op = Op::Conv;
  n.run = op_conv;
  const std::string ap = at.s("auto_pad", "NOTSET");
  n.i1 = ap == "NOTSET" ? 0 : ap == "VALID" ? 1 : ap == "SAME_UPPER" ? 2 : ap == "SAME_LOWER" ? 3 : -1;
  if (n.i1 < 0) at.fail("auto_pad '" + ap + "' is not supported");
  n.v0 = at.ints("kernel_shape");
  n.v1 = at.ints("strides");
  n.v2 = at.ints("pads");
  n.v3 = at.ints("dilations");
  n.i0 = at.i("group", 1);
  if (n.i0 < 1) at.fail("group must be >= 1");
  const std::size_t sd = std::max({n.v0.size(), n.v1.size(), n.v2.size() / 2, n.v3.size()});
  if ((!n.v1.empty() && n.v1.size() != sd) || (!n.v2.empty() && n.v2.size() != 2 * sd) ||
      (!n.v3.empty() && n.v3.size() != sd))
    at.fail("kernel_shape, strides, pads and dilations disagree on the number of spatial dimensions");
  for (I64 x : n.v1)
    if (x < 1) at.fail("strides must be >= 1");
  for (I64 x : n.v3)
    if (x < 1) at.fail("dilations must be >= 1");
  for (I64 x : n.v2)
    if (x < 0) at.fail("pads must be >= 0");
  if (sd > 1) {
    for (I64 x : n.v0)
      if (x != 1) at.fail("only 1-D convolutions or pointwise (kernel 1) N-D convolutions are supported");
    if (n.i1 >= 2) at.fail("auto_pad SAME is only supported for 1-D convolutions");
    for (I64 x : n.v3)
      if (x != 1) at.fail("dilations of N-D convolutions must be 1");
  }
  const Value* w = at.const_input(1);
  if (w && !n.v0.empty()) {
    if (w->shape.rank != static_cast<int>(n.v0.size()) + 2) at.fail("weights do not match kernel_shape");
    for (std::size_t k = 0; k < n.v0.size(); ++k)
      if (w->shape[static_cast<int>(k) + 2] != n.v0[k]) at.fail("weights do not match kernel_shape");
  }
}

}  // namespace

void add_conv_ops(OpTable& t) { t["Conv"] = import_conv; }

}  // namespace hepinfer::nn
