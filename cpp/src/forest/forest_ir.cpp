#include <cmath>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest_ir.hpp"

#include "forest/split_thresholds.hpp"

namespace hepinfer {

namespace {
constexpr std::size_t kMaxTotalNodes = std::size_t{1} << 28;  // 268M nodes: far beyond any real forest
constexpr std::int32_t kMaxFeatures = 1 << 24;
constexpr std::int32_t kMaxGroups = 1 << 16;
}  // namespace

void ForestIR::validate() const {
  const std::string& src = source_name.empty() ? std::string("<forest>") : source_name;
  auto fail = [&](const std::string& where, const std::string& what) {
    throw ModelFormatError(src + ": " + where + ": " + what);
  };
  if (n_features < 0 || n_features > kMaxFeatures)
    fail("model", "absurd number of features " + std::to_string(n_features));
  if (n_groups < 1 || n_groups > kMaxGroups) fail("model", "absurd number of outputs " + std::to_string(n_groups));
  if (base_margin.size() != static_cast<std::size_t>(n_groups))
    fail("model", "base margin has " + std::to_string(base_margin.size()) + " values for " + std::to_string(n_groups) +
                      " outputs");
  for (double b : base_margin)
    if (std::isnan(b)) fail("model", "base margin is NaN");
  if (!(sigmoid_scale > 0.0) || !std::isfinite(sigmoid_scale)) fail("model", "sigmoid scale must be positive");
  if (!(margin_divisor > 0.0) || !std::isfinite(margin_divisor)) fail("model", "margin divisor must be positive");
  if (!feature_names.empty() && feature_names.size() != static_cast<std::size_t>(n_features))
    fail("model",
         std::to_string(feature_names.size()) + " feature names for " + std::to_string(n_features) + " features");

  std::size_t total = 0;
  for (std::size_t t = 0; t < trees.size(); ++t) {
    const TreeIR& tree = trees[t];
    const std::string where = "tree " + std::to_string(t);
    const std::size_t n = tree.nodes.size();
    if (n == 0) fail(where, "has no nodes");
    total += n;
    if (total > kMaxTotalNodes) fail("model", "more than " + std::to_string(kMaxTotalNodes) + " nodes in total");
    if (tree.group < 0 || tree.group >= n_groups)
      fail(where, "output group " + std::to_string(tree.group) + " out of range");
    // every node but the root must have exactly one parent, and all must be reachable from the root
    std::vector<std::uint8_t> parents(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const NodeIR& node = tree.nodes[i];
      const std::string nw = where + ", node " + std::to_string(i);
      if (node.kind == NodeIR::Kind::Leaf) {
        if (std::isnan(node.value)) fail(nw, "leaf value is NaN");
        continue;
      }
      if (node.left < 0 || node.right < 0 || static_cast<std::size_t>(node.left) >= n ||
          static_cast<std::size_t>(node.right) >= n)
        fail(nw, "child index out of range");
      if (node.left == 0 || node.right == 0 || node.left == node.right) fail(nw, "children form a cycle");
      if (++parents[static_cast<std::size_t>(node.left)] > 1 || ++parents[static_cast<std::size_t>(node.right)] > 1)
        fail(nw, "a node has two parents");
      switch (node.kind) {
        case NodeIR::Kind::Numerical:
          if (node.feature < 0 || node.feature >= n_features)
            fail(nw, "feature " + std::to_string(node.feature) + " out of range (the model has " +
                         std::to_string(n_features) + " features)");
          if (std::isnan(node.threshold)) fail(nw, "threshold is NaN");
          break;
        case NodeIR::Kind::Categorical:
          if (node.feature < 0 || node.feature >= n_features)
            fail(nw, "feature " + std::to_string(node.feature) + " out of range");
          if (node.cat_begin > node.cat_end || node.cat_end > categories.size())
            fail(nw, "category bitset out of range");
          break;
        case NodeIR::Kind::Linear:
          if (static_cast<std::size_t>(node.lin_begin) + static_cast<std::size_t>(n_features) + 1 > linear.size())
            fail(nw, "linear coefficients out of range");
          if (std::isnan(node.threshold)) fail(nw, "threshold is NaN");
          break;
        case NodeIR::Kind::Leaf: break;
      }
    }
    for (std::size_t i = 1; i < n; ++i)
      if (parents[i] != 1) fail(where + ", node " + std::to_string(i), "is not reachable from the root");
    // One parent each is not enough: nodes may form a cycle detached from the root (1 -> 2 -> 1).
    // Walk from the root (iteratively: trees may be millions of levels deep) and count.
    std::vector<std::int32_t> stack{0};
    std::size_t reached = 0;
    while (!stack.empty()) {
      const NodeIR& node = tree.nodes[static_cast<std::size_t>(stack.back())];
      stack.pop_back();
      ++reached;
      if (node.kind == NodeIR::Kind::Leaf) continue;
      stack.push_back(node.left);
      stack.push_back(node.right);
    }
    if (reached != n)
      fail(where, std::to_string(n - reached) + " nodes are not reachable from the root (they form a cycle)");
  }
  for (std::size_t k = 0; k < transforms.size(); ++k) {
    const TransformIR& tr = transforms[k];
    const std::size_t nf = static_cast<std::size_t>(n_features);
    const std::string where = "transform " + std::to_string(k);
    if ((tr.kind == TransformIR::Kind::Linear || tr.kind == TransformIR::Kind::CenteredLinear) &&
        tr.matrix.size() != nf * nf)
      fail(where, "matrix is not " + std::to_string(nf) + " x " + std::to_string(nf));
    if ((tr.kind == TransformIR::Kind::Affine || tr.kind == TransformIR::Kind::CenteredLinear) &&
        tr.offset.size() != nf)
      fail(where, "offset has the wrong length");
    if (tr.kind == TransformIR::Kind::Affine && tr.scale.size() != nf) fail(where, "scale has the wrong length");
  }
}

float split_threshold_float32(double t, NodeIR::Op op) { return detail::strict_float_threshold(t, op); }
double split_threshold_float64(double t, NodeIR::Op op) { return detail::strict_double_threshold(t, op); }

}  // namespace hepinfer
