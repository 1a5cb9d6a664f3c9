#pragma once
// How the forest engines (CPU in forest.cpp, GPU layout in forest_gpu.cpp) turn a split
// "left iff x OP t" (OP = < or <=, t a double, compared in double) into the one test their
// kernels make, "left iff x < threshold", with the threshold rounded so that the answer is the
// same for every float (or double) x.
#include <cmath>
#include <limits>

#include "hepinfer/forest_ir.hpp"

namespace hepinfer::detail {

/// The largest float <= t.
inline float float_down(double t) {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}
/// The smallest float >= t.
inline float float_up(double t) {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

/// "left iff x OP t" (x a float, compare in double) as "left iff x < result" in float.
inline float strict_float_threshold(double t, NodeIR::Op op) {
  if (op == NodeIR::Op::Less) return float_up(t);
  return std::nextafter(float_down(t), std::numeric_limits<float>::infinity());
}
/// "left iff x OP t" (x a double) as "left iff x < result".
inline double strict_double_threshold(double t, NodeIR::Op op) {
  if (op == NodeIR::Op::Less) return t;
  return std::nextafter(t, std::numeric_limits<double>::infinity());
}

/// A split the fast paths express as "left iff x < threshold": numerical, no zero band, and
/// not `x <= +inf` (no number is above +inf, so that one is evaluated exactly instead).
inline bool is_plain(const NodeIR& node) {
  return node.kind == NodeIR::Kind::Numerical && !node.zero_is_missing &&
         !(node.op == NodeIR::Op::LessEqual && node.threshold == std::numeric_limits<double>::infinity());
}

}  // namespace hepinfer::detail
