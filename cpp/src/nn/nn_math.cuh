#pragma once
// Per-element arithmetic of the CUDA NN executor, shared by the device kernels (nn_kernels.cu)
// and the host reference backend (cpp/src/nn/cuda_plan.cpp). Compiled by nvcc as
// __host__ __device__ and by the host compiler as plain inline C++, so that the host-side test
// (tests/cpp/test_cuda_nn_logic.cpp) checks exactly the formulas the GPU evaluates against the
// CPU engine (activate_one, the ops' broadcasting, reductions and softmax).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/host_device.hpp"

namespace hepinfer::nn::gpu {

constexpr int kMaxRank = 8;

// Codes mirror nn::Act / BinOp / CmpOp / LogicOp / ReduceOp (checked by static_assert in
// cuda_plan.cpp) so that this header does not depend on graph.hpp.
namespace act {
enum : int {
  None,
  Relu,
  LeakyRelu,
  Elu,
  Selu,
  Gelu,
  GeluTanh,
  Sigmoid,
  Tanh,
  Exp,
  Log,
  Sqrt,
  Abs,
  Neg,
  Erf,
  Reciprocal,
  Floor,
  Ceil,
  Softplus,
  Clip,
  HardSigmoid,
  Sin,
  Cos,
  Sign,
  Silu,
  Round
};
}
namespace bin {
enum : int { Add, Sub, Mul, Div, Pow, Max, Min };
}
namespace cmp {
enum : int { Equal, Less, Greater, LessOrEqual, GreaterOrEqual };
}
namespace logic {
enum : int { And, Or, Xor };
}
namespace red {
enum : int { Sum, Mean, Max, Min, Prod, L2, SumSquare };
}

/// The activation `a` (act::*) of x, as nn::activate_one computes it.
HEPINFER_HD float act_apply(int a, float x, float alpha, float beta) {
  switch (a) {
    case act::None: return x;
    case act::Relu: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case act::LeakyRelu: return x < 0.0f ? alpha * x : x;
    case act::Elu: return x < 0.0f ? alpha * (expf(x) - 1.0f) : x;
    case act::Selu: return x > 0.0f ? beta * x : beta * (alpha * expf(x) - alpha);
    case act::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case act::GeluTanh: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case act::Sigmoid: return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case act::Tanh: return tanhf(x);
    case act::Exp: return expf(x);
    case act::Log: return logf(x);
    case act::Sqrt: return sqrtf(x);
    case act::Abs: return fabsf(x);
    case act::Neg: return -x;
    case act::Erf: return erff(x);
    case act::Reciprocal: return 1.0f / x;
    case act::Floor: return floorf(x);
    case act::Ceil: return ceilf(x);
    case act::Softplus: return x > 20.0f ? x : log1pf(expf(x));
    case act::Clip: return x != x ? x : fminf(fmaxf(x, alpha), beta);
    case act::HardSigmoid: return x != x ? x : fmaxf(0.0f, fminf(1.0f, alpha * x + beta));
    case act::Sin: return sinf(x);
    case act::Cos: return cosf(x);
    case act::Sign: return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;
    case act::Silu: return x * (x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x)));
    case act::Round: return nearbyintf(x);
    default: return x;
  }
}

/// The fused Dense epilogue: activation of (sum + bias).
HEPINFER_HD float dense_epilogue(float sum, float bias, int a, float alpha, float beta) {
  return act_apply(a, sum + bias, alpha, beta);
}

/// A binary op (bin::*) on floats, NaN-propagating Max/Min as the CPU engine.
HEPINFER_HD float bin_apply(int op, float x, float y) {
  switch (op) {
    case bin::Add: return x + y;
    case bin::Sub: return x - y;
    case bin::Mul: return x * y;
    case bin::Div: return x / y;
    case bin::Pow: return y == 2.0f ? x * x : powf(x, y);
    case bin::Max: return (x != x || y != y) ? x + y : (x > y ? x : y);
    case bin::Min: return (x != x || y != y) ? x + y : (x < y ? x : y);
    default: return x;
  }
}

HEPINFER_HD float cmp_apply(int op, float x, float y) {
  switch (op) {
    case cmp::Equal: return x == y ? 1.0f : 0.0f;
    case cmp::Less: return x < y ? 1.0f : 0.0f;
    case cmp::Greater: return x > y ? 1.0f : 0.0f;
    case cmp::LessOrEqual: return x <= y ? 1.0f : 0.0f;
    case cmp::GreaterOrEqual: return x >= y ? 1.0f : 0.0f;
    default: return 0.0f;
  }
}

HEPINFER_HD float logic_apply(int op, float x, float y) {
  const bool a = x != 0.0f, b = y != 0.0f;
  switch (op) {
    case logic::And: return (a && b) ? 1.0f : 0.0f;
    case logic::Or: return (a || b) ? 1.0f : 0.0f;
    default: return (a != b) ? 1.0f : 0.0f;
  }
}

/// What an elementwise step computes from up to three operands (every device tensor is float32;
/// bool and int64 values are held as 0/1 and integral floats).
enum class EwOp : int {
  Copy,     // a
  Unary,    // act_apply(code, a)
  Binary,   // bin_apply(code, a, b)
  Compare,  // cmp_apply(code, a, b)
  Logical,  // logic_apply(code, a, b)
  Not,      // a == 0
  Where,    // a != 0 ? b : c
  MulAdd,   // a * b + c (BatchNormalization)
  Scale,    // a / alpha (Mean of n inputs)
  ToBool,   // a != 0
  ToInt,    // trunc(a)
};

HEPINFER_HD float ew_apply(EwOp op, int code, float alpha, float beta, float a, float b, float c) {
  switch (op) {
    case EwOp::Copy: return a;
    case EwOp::Unary: return act_apply(code, a, alpha, beta);
    case EwOp::Binary: return bin_apply(code, a, b);
    case EwOp::Compare: return cmp_apply(code, a, b);
    case EwOp::Logical: return logic_apply(code, a, b);
    case EwOp::Not: return a == 0.0f ? 1.0f : 0.0f;
    case EwOp::Where: return a != 0.0f ? b : c;
    case EwOp::MulAdd: return a * b + c;
    case EwOp::Scale: return a / alpha;
    case EwOp::ToBool: return a != 0.0f ? 1.0f : 0.0f;
    case EwOp::ToInt: return truncf(a);
  }
  return a;
}

/// How an operand's storage row is found for a per-particle output row.
enum class RowMode : int {
  Strided,  // row index * stride[0] (same kind as the output, or broadcast with stride 0)
  ByJet,    // jet_of_row[row] * stride[0]: a per-jet value broadcast over the jet's particles
};

struct EwOperand {
  const float* data = nullptr;
  std::int64_t stride[kMaxRank] = {};  // per output storage dimension, 0 where broadcast
  RowMode rows = RowMode::Strided;
};

/// One elementwise step over an output of `rank` storage dimensions (passed by value to the kernel).
struct Elementwise {
  int rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t numel = 0;
  float* out = nullptr;
  int n_in = 0;
  EwOperand in[3];
  const std::int32_t* jet_of_row = nullptr;  // device/host array [rows], for RowMode::ByJet
  EwOp op = EwOp::Copy;
  int code = 0;
  float alpha = 0.0f, beta = 0.0f;
};

/// Output element i of an elementwise step.
HEPINFER_HD float ew_element(const Elementwise& e, std::int64_t i) {
  std::int64_t off[3] = {0, 0, 0};
  std::int64_t rest = i;
  for (int d = e.rank - 1; d >= 0; --d) {
    const std::int64_t idx = d == 0 ? rest : rest % e.shape[d];
    rest = d == 0 ? 0 : rest / e.shape[d];
    for (int k = 0; k < e.n_in; ++k) {
      if (d == 0 && e.in[k].rows == RowMode::ByJet)
        off[k] += static_cast<std::int64_t>(e.jet_of_row[idx]) * e.in[k].stride[0];
      else off[k] += idx * e.in[k].stride[d];
    }
  }
  const float a = e.n_in > 0 ? e.in[0].data[off[0]] : 0.0f;
  const float b = e.n_in > 1 ? e.in[1].data[off[1]] : 0.0f;
  const float c = e.n_in > 2 ? e.in[2].data[off[2]] : 0.0f;
  return ew_apply(e.op, e.code, e.alpha, e.beta, a, b, c);
}

/// Reduction (red::*) of x[begin*inner + j*inner] for rows begin..end-1 (one output element):
/// the same accumulation order and final step as the CPU engine's reduce.
HEPINFER_HD float reduce_line(int op, const float* x, std::int64_t begin, std::int64_t end, std::int64_t inner) {
  float acc = op == red::Max ? -INFINITY : op == red::Min ? INFINITY : op == red::Prod ? 1.0f : 0.0f;
  bool nan = false;
  for (std::int64_t r = begin; r < end; ++r) {
    const float v = x[r * inner];
    switch (op) {
      case red::Max:
        nan = nan || v != v;
        acc = v > acc ? v : acc;
        break;
      case red::Min:
        nan = nan || v != v;
        acc = v < acc ? v : acc;
        break;
      case red::Prod: acc *= v; break;
      case red::L2:
      case red::SumSquare: acc += v * v; break;
      default: acc += v; break;
    }
  }
  if (nan) return NAN;
  if (op == red::Mean) return end > begin ? acc / static_cast<float>(end - begin) : NAN;
  if (op == red::L2) return sqrtf(acc);
  return acc;
}

/// Softmax (or log-softmax) of `len` values x[j * stride] into y[j * stride], as the CPU engine.
HEPINFER_HD void softmax_line(const float* x, float* y, std::int64_t len, std::int64_t stride, bool log) {
  float mx = -INFINITY;
  for (std::int64_t j = 0; j < len; ++j) mx = fmaxf(mx, x[j * stride]);
  float sum = 0.0f;
  for (std::int64_t j = 0; j < len; ++j) {
    const float e = expf(x[j * stride] - mx);
    y[j * stride] = e;
    sum += e;
  }
  if (log) {
    const float ls = logf(sum);
    for (std::int64_t j = 0; j < len; ++j) y[j * stride] = x[j * stride] - mx - ls;
  } else {
    const float inv = 1.0f / sum;
    for (std::int64_t j = 0; j < len; ++j) y[j * stride] *= inv;
  }
}

}  // namespace hepinfer::nn::gpu
