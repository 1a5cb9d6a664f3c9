// Linear family: Gemm and MatMul, and Dense, the layer the fuse pass (passes.cpp) makes of a
// Gemm/MatMul with constant weights (+ bias + activation). Import handlers and kernels (see
// op_import.hpp); the GEMM kernels themselves are in kernels.cpp.
#include <algorithm>
#include <cmath>
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

/// Copies the transposed [rows, cols] matrix src into dst as [cols, rows].
void transpose_into(float* dst, const float* src, std::size_t rows, std::size_t cols) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
}

void op_dense(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  require_type(a, ElementType::Float32, "input");
  const PackedDense& p = *n.dense;
  if (a.shape.rank < 1 || a.shape[a.shape.rank - 1] != p.K)
    throw OpError("input of shape " + a.shape.str() + " does not fit weights with " + std::to_string(p.K) + " rows");
  Shape os = a.shape;
  os[os.rank - 1] = p.N;
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const std::size_t M = p.K ? a.numel / static_cast<std::size_t>(p.K)
                            : os.numel() / std::max<std::size_t>(1, static_cast<std::size_t>(p.N));
  const auto K = static_cast<std::size_t>(p.K), N = static_cast<std::size_t>(p.N);
  if (p.N <= kDotColumns && p.cols.size() == K * N && p.bias.size() >= N)
    gemm_columns(M, N, K, a.f(), K, p.cols.data(), d, N, p.bias.data(), n.act, n.alpha, n.beta);
  else if (p.panels.size() == packed_panels_size(K, N) && p.bias.size() >= (N + kPanel - 1) / kPanel * kPanel)
    gemm_packed(M, N, K, a.f(), K, p.panels.data(), d, N, p.bias.data(), nullptr, n.act, n.alpha, n.beta, p.finite);
  else
    gemm(M, N, K, a.f(), K, p.w.data(), static_cast<std::size_t>(p.ldb), d, N, p.bias.data(), nullptr, n.act, n.alpha,
         n.beta);
}

void op_gemm(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  const Value* c = opt_in(n, ws, 2);
  require_type(a, ElementType::Float32, "A");
  require_type(b, ElementType::Float32, "B");
  if (a.shape.rank != 2 || b.shape.rank != 2) throw OpError("A and B must be 2-dimensional");
  const bool ta = n.i0 != 0, tb = n.i1 != 0;
  const auto M = static_cast<std::size_t>(ta ? a.shape[1] : a.shape[0]);
  const auto K = static_cast<std::size_t>(ta ? a.shape[0] : a.shape[1]);
  const auto Kb = static_cast<std::size_t>(tb ? b.shape[1] : b.shape[0]);
  const auto N = static_cast<std::size_t>(tb ? b.shape[0] : b.shape[1]);
  if (K != Kb) throw OpError("A " + a.shape.str() + " and B " + b.shape.str() + " do not fit");
  Shape os;
  os.push(static_cast<I64>(M));
  os.push(static_cast<I64>(N));
  std::vector<float>& tmp = ws.scratch;
  tmp.resize((ta ? M * K : 0) + (tb ? K * N : 0));
  const float* A = a.f();
  const float* B = b.f();
  if (ta) {
    transpose_into(tmp.data(), a.f(), K, M);
    A = tmp.data();
  }
  if (tb) {
    transpose_into(tmp.data() + (ta ? M * K : 0), b.f(), N, K);
    B = tmp.data() + (ta ? M * K : 0);
  }
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  gemm(M, N, K, A, K, B, N, d, N, nullptr, nullptr, Act::None, 0.0f, 0.0f);
  const float alpha = n.alpha, beta = n.beta;
  if (alpha != 1.0f)
    for (std::size_t i = 0; i < M * N; ++i) d[i] *= alpha;
  if (c && beta != 0.0f) {
    require_type(*c, ElementType::Float32, "C");
    const Shape bs = broadcast_shapes(os, c->shape);
    if (!(bs == os)) throw OpError("C of shape " + c->shape.str() + " does not broadcast to " + os.str());
    I64 st[1][kMaxRank];
    bcast_strides(os, c->shape, st[0]);
    const I64 base[1] = {0};
    for_each_index<1>(os, st, base,
                      [&](std::size_t o0, const I64* off, const I64(&s)[1][kMaxRank], I64 inner, int last) {
      for (I64 j = 0; j < inner; ++j) d[o0 + static_cast<std::size_t>(j)] += beta * c->f()[off[0] + j * s[0][last]];
    });
  }
}

void op_matmul(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  require_type(a, ElementType::Float32, "A");
  require_type(b, ElementType::Float32, "B");
  if (a.shape.rank < 1 || b.shape.rank < 1) throw OpError("MatMul of a scalar");
  Shape as = a.shape, bs = b.shape;
  const bool a1 = as.rank == 1, b1 = bs.rank == 1;
  if (a1) {
    as.rank = 2;
    as[1] = as[0];
    as[0] = 1;
  }
  if (b1) {
    bs.rank = 2;
    bs[1] = 1;
  }
  const auto M = static_cast<std::size_t>(as[as.rank - 2]), K = static_cast<std::size_t>(as[as.rank - 1]);
  const auto Kb = static_cast<std::size_t>(bs[bs.rank - 2]), N = static_cast<std::size_t>(bs[bs.rank - 1]);
  if (K != Kb) throw OpError("A " + a.shape.str() + " and B " + b.shape.str() + " do not fit");
  Shape ab, bb;  // batch shapes
  for (int i = 0; i < as.rank - 2; ++i) ab.push(as[i]);
  for (int i = 0; i < bs.rank - 2; ++i) bb.push(bs[i]);
  const Shape batch = broadcast_shapes(ab, bb);
  Shape os = batch;
  if (!a1) os.push(static_cast<I64>(M));
  if (!b1) os.push(static_cast<I64>(N));
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  I64 st[2][kMaxRank];
  bcast_strides(batch, ab, st[0]);
  bcast_strides(batch, bb, st[1]);
  const I64 base[2] = {0, 0};
  const std::size_t nb = batch.numel();
  if (nb == 0 || M == 0 || N == 0) return;
  if (batch.rank == 0) {
    gemm(M, N, K, a.f(), K, b.f(), N, d, N, nullptr, nullptr, Act::None, 0.0f, 0.0f);
    return;
  }
  for_each_index<2>(batch, st, base,
                    [&](std::size_t o0, const I64* off, const I64(&s)[2][kMaxRank], I64 inner, int last) {
    for (I64 j = 0; j < inner; ++j) {
      const float* A = a.f() + static_cast<std::size_t>(off[0] + j * s[0][last]) * M * K;
      const float* B = b.f() + static_cast<std::size_t>(off[1] + j * s[1][last]) * K * N;
      gemm(M, N, K, A, K, B, N, d + (o0 + static_cast<std::size_t>(j)) * M * N, N, nullptr, nullptr, Act::None, 0.0f,
           0.0f);
    }
  });
}

// ---- import handlers

void import_gemm(ImportContext& at, Node& n) {
  at.need_inputs(2, 3);
  at.need_outputs(1);
  n.op = Op::Gemm;
  n.run = op_gemm;
  n.alpha = at.f("alpha", 1.0f);
  n.beta = at.f("beta", 1.0f);
  n.i0 = at.i("transA", 0);
  n.i1 = at.i("transB", 0);
}

void import_matmul(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::MatMul;
  n.run = op_matmul;
}

}  // namespace

void run_dense(const Node& n, Workspace& ws) { op_dense(n, ws); }

void add_linear_ops(OpTable& t) {
  t["Gemm"] = import_gemm;
  t["MatMul"] = import_matmul;
}

}  // namespace hepinfer::nn
