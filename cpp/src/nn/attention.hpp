#pragma once
// Fused kernels for attention models (ops_attention.cpp) and the pass that finds their patterns
// in imported graphs (attention_pass.cpp):
//  - scaled dot-product attention, MatMul(Q, Kt) [+ Add(mask)] -> Softmax(-1) -> MatMul(., V),
//    as the TorchScript exporter writes F.scaled_dot_product_attention and nn.MultiheadAttention,
//    evaluated per (batch, head) without materialising the full score tensor;
//  - the erf GELU, x * (erf(x / c) + c1) * c2, as torch exports nn.GELU() and F.gelu.
#include <cstddef>

#include "nn/graph.hpp"

namespace hepinfer::nn {

/// Replaces every attention and erf-GELU pattern of the graph by one node. Patterns whose
/// intermediate values have other uses, are graph outputs, sit under different If guards or
/// whose constants differ from the pattern stay as they were (unfused).
void fuse_attention(Graph& g);

/// in = {Q (..., t, d), Kt (..., d, s), V (..., s, dv), mask (broadcast to (..., t, s)) or -1};
/// out = {softmax(Q Kt + mask, -1) V}. Leading dimensions broadcast as MatMul's do.
void run_fused_attention(const Node& n, Workspace& ws);
/// in = {x}; out = x * (erf(x / c) + c1) * c2 with {c, c1, c2} = n.f0; the output has at least
/// rank n.i0 (the constants' rank).
void run_fused_gelu(const Node& n, Workspace& ws);

/// d[j] = exp(x[j] - max) / sum over the row, j < len (d may equal x). A row whose maximum
/// is -inf (every entry masked) gives NaN, as the unfused Softmax does; NaN in, NaN out.
void softmax_row(const float* x, float* d, std::size_t len);

}  // namespace hepinfer::nn
