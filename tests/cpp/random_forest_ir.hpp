#pragma once
// Random ForestIRs and test rows shared by the forest tests (test_forest.cpp: the CPU engine
// against a reference interpreter; test_cuda_logic.cpp: the GPU kernels' logic against the CPU
// engine): trees of random shape up to max_depth with every split kind (zero band, categorical,
// Fisher/linear, +-inf thresholds), and rows with NaN, zeros, the zero band, infinities,
// category-like values and values exactly on (and one float ulp around) split thresholds.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "hepinfer/forest_ir.hpp"

namespace hepinfer_test {

using hepinfer::ForestIR;
using hepinfer::NodeIR;
using hepinfer::TreeIR;

inline NodeIR split(std::int32_t feature, double threshold, std::int32_t left, std::int32_t right, bool default_left,
                    NodeIR::Op op = NodeIR::Op::Less) {
  NodeIR n;
  n.kind = NodeIR::Kind::Numerical;
  n.feature = feature;
  n.threshold = threshold;
  n.left = left;
  n.right = right;
  n.default_left = default_left;
  n.op = op;
  return n;
}
inline NodeIR leaf(double v) {
  NodeIR n;
  n.value = v;
  return n;
}

inline ForestIR random_forest(std::mt19937& rng, int n_features, int n_trees, int n_groups, bool specials,
                              bool float32_inputs, int max_depth) {
  std::uniform_real_distribution<double> u(-2, 2);
  std::uniform_int_distribution<int> feat(0, n_features - 1);
  ForestIR ir;
  ir.n_features = n_features;
  ir.n_groups = n_groups;
  ir.float32_inputs = float32_inputs;
  ir.float32_accumulate = float32_inputs && (rng() % 2 == 0);
  for (int g = 0; g < n_groups; ++g)
    ir.base_margin.push_back(ir.float32_accumulate ? static_cast<double>(static_cast<float>(u(rng))) : u(rng));
  ir.categories = {0x5u, 0xF0F0F0F0u, 0x1u, 0x80000001u};
  for (int t = 0; t < n_trees; ++t) {
    TreeIR tree;
    tree.group = t % n_groups;
    struct Pending {
      std::int32_t index;
      int depth;
    };
    tree.nodes.push_back(leaf(0));
    std::vector<Pending> todo{{0, 0}};
    while (!todo.empty()) {
      Pending p = todo.back();
      todo.pop_back();
      if (p.depth >= max_depth || (p.depth > 1 && rng() % 4 == 0)) {
        const double v = u(rng);
        tree.nodes[static_cast<std::size_t>(p.index)] =
            leaf(ir.float32_accumulate ? static_cast<double>(static_cast<float>(v)) : v);
        continue;
      }
      const auto l = static_cast<std::int32_t>(tree.nodes.size());
      const auto tk = static_cast<unsigned>(rng() % 40);
      const double thr = tk == 0   ? std::numeric_limits<double>::infinity()
                         : tk == 1 ? -std::numeric_limits<double>::infinity()
                                   : u(rng);
      NodeIR n = split(feat(rng), thr, l, l + 1, rng() % 2 == 0, rng() % 2 ? NodeIR::Op::Less : NodeIR::Op::LessEqual);
      if (specials) {
        const auto kind = static_cast<unsigned>(rng() % 8);
        if (kind == 0) n.zero_is_missing = true;
        if (kind == 1) {
          n.kind = NodeIR::Kind::Categorical;
          n.cat_begin = rng() % 2 ? 0u : 2u;
          n.cat_end = n.cat_begin + 2;
          n.cat_negative_right = rng() % 2 == 0;
        }
        if (kind == 2) {
          n.kind = NodeIR::Kind::Linear;
          n.lin_begin = static_cast<std::uint32_t>(ir.linear.size());
          for (int j = 0; j <= n_features; ++j) ir.linear.push_back(u(rng));
        }
      }
      tree.nodes[static_cast<std::size_t>(p.index)] = n;
      tree.nodes.push_back(leaf(0));
      tree.nodes.push_back(leaf(0));
      todo.push_back({l, p.depth + 1});
      todo.push_back({l + 1, p.depth + 1});
    }
    ir.trees.push_back(tree);
  }
  return ir;
}

/// Rows with NaN, zeros, the zero band, infinities, category-like values and values exactly on
/// (and one float ulp around) the thresholds of the trees' splits.
inline std::vector<double> random_rows(std::mt19937& rng, const ForestIR& ir, std::size_t n) {
  std::uniform_real_distribution<double> u(-2.5, 2.5);
  const std::size_t nf = static_cast<std::size_t>(ir.n_features);
  std::vector<double> X(n * nf);
  for (double& v : X) {
    const auto r = static_cast<unsigned>(rng() % 16);
    v = r == 0   ? std::numeric_limits<double>::quiet_NaN()
        : r == 1 ? 0.0
        : r == 2 ? 7.0
        : r == 3 ? -0.5
        : r == 4 ? static_cast<double>(1e-35f)
        : r == 5 ? std::numeric_limits<double>::infinity()
        : r == 6 ? 33.0
                 : u(rng);
  }
  std::vector<const NodeIR*> numerical;
  for (const TreeIR& t : ir.trees)
    for (const NodeIR& node : t.nodes)
      if (node.kind == NodeIR::Kind::Numerical && std::isfinite(node.threshold)) numerical.push_back(&node);
  if (!numerical.empty())
    for (std::size_t i = 0; i < n; ++i) {
      const NodeIR& node = *numerical[rng() % numerical.size()];
      double v = node.threshold;
      const auto k = static_cast<unsigned>(rng() % 3);
      if (ir.float32_inputs || k > 0) {
        float f = static_cast<float>(v);
        if (k == 1) f = std::nextafter(f, 1e30f);
        if (k == 2) f = std::nextafter(f, -1e30f);
        v = static_cast<double>(f);
      }
      X[i * nf + static_cast<std::size_t>(node.feature)] = v;
    }
  return X;
}

}  // namespace hepinfer_test
