#pragma once
// The GPU node layout of a forest and the per-row logic the CUDA kernel runs
// (cpp/cuda/forest_cuda.cu). Everything a kernel thread does for one row lives here as
// HEPINFER_HD inline functions, so the host-side test (tests/cpp/test_cuda_logic.cpp) runs the
// very same code on the CPU against Forest::predict; the kernel is a thin wrapper that stages
// rows in shared memory and calls these.
//
// Layout (built from the ForestIR exactly as Forest::Impl::compile lays out its generic nodes):
// all trees' nodes in one array in breadth-first order per tree, the two children of a node
// adjacent (right = left + 1), so one step is `idx = node.left + !go_left`. Every numerical test
// is "left iff x < threshold" in the evaluation type (float threshold rounded so that this equals
// the model's `x OP t` compared in double; a double threshold for models that compare float64
// inputs in double), NaN left iff the default-left flag. Categorical, zero-as-missing and linear
// splits carry the special flag and are evaluated by special_goes_left() like the CPU engine's
// generic routine.
//
// Decisions and summation order equal the CPU engine: one thread walks every tree of its row in
// model order and adds the leaves to the row's margins in that order (in float32, tree by tree,
// for XGBoost models), starting from the base margin, so margins are bit-identical. Only the
// output transform (exp, log1p) uses the device's math library, within 2 ulp of the host's.
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/host_device.hpp"

namespace hepinfer {
struct ForestIR;
}

namespace hepinfer::gpu {

constexpr std::uint32_t kNodeDefaultLeft = 1u;
constexpr std::uint32_t kNodeSpecial = 2u;
constexpr std::uint32_t kNodeLeaf = 4u;
constexpr int kNodeSpecialShift = 3;

struct Node {
  float thr_f;           ///< "left iff x < thr_f" for float rows
  std::int32_t feature;  ///< input column (0 for leaves and linear splits)
  std::uint32_t left;    ///< global index of the left child; right = left + 1
  std::uint32_t flags;   ///< kNodeDefaultLeft | kNodeSpecial | kNodeLeaf | special index << shift
};

struct Special {
  std::uint8_t kind;  ///< NodeIR::Kind: 1 Numerical, 2 Categorical, 3 Linear
  std::uint8_t op;    ///< NodeIR::Op: 0 Less, 1 LessEqual
  std::uint8_t default_left;
  std::uint8_t zero_is_missing;
  std::uint8_t cat_negative_right;
  std::int32_t feature;
  double threshold;
  std::uint32_t cat_begin, cat_end, lin_begin;
};

/// Output transforms, numbered as hepinfer::Postprocess.
enum : int { kIdentity = 0, kSigmoid, kSoftmax, kArgMax, kTMVAGrad, kExp, kSignedSquare, kLog1pExp };

/// Host copy of the layout (what is uploaded).
struct Layout {
  std::int32_t n_features = 0;
  std::int32_t n_groups = 1;
  bool float32_inputs = true;
  bool float32_accumulate = false;
  int postprocess = kIdentity;
  double sigmoid_scale = 1.0;
  double margin_divisor = 1.0;
  std::vector<Node> nodes;
  std::vector<double> thr_d;  ///< per node, "left iff x < thr_d" for models that compare in double
  std::vector<double> value;  ///< per node (leaves)
  std::vector<std::uint32_t> roots;
  std::vector<std::int32_t> group;
  std::vector<Special> specials;
  std::vector<std::uint32_t> categories;
  std::vector<double> linear;
  std::vector<double> base_margin;
};

/// Builds the layout; throws DeviceError for what the GPU path does not evaluate (TMVA
/// variable transformations).
Layout build_layout(const ForestIR& ir);

/// Pointers to one copy of the layout (host vectors for the tests, device buffers for the kernel).
struct View {
  const Node* nodes;
  const double* thr_d;
  const double* value;
  const std::uint32_t* roots;
  const std::int32_t* group;
  const Special* specials;
  const std::uint32_t* categories;
  const double* linear;
  const double* base_margin;
  std::uint32_t n_trees;
  std::int32_t n_features;
  std::int32_t n_groups;
  int float32_accumulate;
  int postprocess;
  double sigmoid_scale;
  double margin_divisor;
};

inline View host_view(const Layout& l) {
  return View{l.nodes.data(),
              l.thr_d.data(),
              l.value.data(),
              l.roots.data(),
              l.group.data(),
              l.specials.data(),
              l.categories.data(),
              l.linear.data(),
              l.base_margin.data(),
              static_cast<std::uint32_t>(l.roots.size()),
              l.n_features,
              l.n_groups,
              l.float32_accumulate ? 1 : 0,
              l.postprocess,
              l.sigmoid_scale,
              l.margin_divisor};
}

/// One value of the staged row: the model's rounding of the input (float32 for XGBoost/TMVA,
/// as given for LightGBM), held in the evaluation type T.
template <typename T, typename In>
HEPINFER_HD T stage_value(In v, bool float32_inputs) {
  return float32_inputs ? static_cast<T>(static_cast<float>(v)) : static_cast<T>(v);
}

/// The generic routine for categorical, zero-as-missing, `x <= +inf` and linear splits, in double
/// (as Forest::Impl::special_left). `row` is the staged row, column j at row[j * cs].
template <typename T>
HEPINFER_HD bool special_goes_left(const View& f, const Special& s, const T* row, int cs) {
  if (s.kind == 1) {  // Numerical
    const double x = static_cast<double>(row[s.feature * cs]);
    const double zero = static_cast<double>(1e-35f);
    if (x != x || (s.zero_is_missing && x >= -zero && x <= zero)) return s.default_left != 0;
    return s.op == 0 ? x < s.threshold : x <= s.threshold;
  }
  if (s.kind == 2) {  // Categorical
    const double x = static_cast<double>(row[s.feature * cs]);
    if (x != x) return s.default_left != 0;
    if (x <= -1.0 || x >= 2147483648.0 || (s.cat_negative_right && x < 0.0)) return false;
    const std::uint32_t c = static_cast<std::uint32_t>(static_cast<std::int32_t>(x));
    const std::uint32_t word = c / 32u;
    if (word >= s.cat_end - s.cat_begin) return false;
    return ((f.categories[s.cat_begin + word] >> (c % 32u)) & 1u) != 0;
  }
  if (s.kind == 3) {  // Linear
    const double* c = f.linear + s.lin_begin;
    double v = c[f.n_features];
    for (int j = 0; j < f.n_features; ++j) v += c[j] * static_cast<double>(row[j * cs]);
    if (v != v) return s.default_left != 0;
    return s.op == 0 ? v < s.threshold : v <= s.threshold;
  }
  return false;
}

/// One step's decision at internal node `idx` for a row held as T (float rows compare with the
/// float threshold, double rows with the double one).
template <typename T>
HEPINFER_HD bool node_goes_left(const View& f, std::uint32_t idx, const T* row, int cs) {
  const Node n = f.nodes[idx];
  if (n.flags & kNodeSpecial) return special_goes_left(f, f.specials[n.flags >> kNodeSpecialShift], row, cs);
  const T x = row[n.feature * cs];
  const T thr = sizeof(T) == sizeof(float) ? static_cast<T>(n.thr_f) : static_cast<T>(f.thr_d[idx]);
  return (x < thr) | ((x != x) & ((n.flags & kNodeDefaultLeft) != 0));
}

/// The leaf (global node index) tree t reaches for the row.
template <typename T>
HEPINFER_HD std::uint32_t walk_tree(const View& f, std::uint32_t t, const T* row, int cs) {
  std::uint32_t idx = f.roots[t];
  while (!(f.nodes[idx].flags & kNodeLeaf))
    idx = f.nodes[idx].left + static_cast<std::uint32_t>(!node_goes_left(f, idx, row, cs));
  return idx;
}

/// Adds one leaf value to a margin the way the CPU engine does (float32 tree by tree for XGBoost).
HEPINFER_HD double add_leaf(double m, double v, int float32_accumulate) {
  return float32_accumulate ? static_cast<double>(static_cast<float>(m + v)) : m + v;
}

/// Margins of one row: base margin, then every tree in model order. margins has n_groups slots.
template <typename T>
HEPINFER_HD void row_margins(const View& f, const T* row, int cs, double* margins) {
  for (int g = 0; g < f.n_groups; ++g) margins[g] = f.base_margin[g];
  for (std::uint32_t t = 0; t < f.n_trees; ++t) {
    const std::uint32_t leaf = walk_tree(f, t, row, cs);
    double& m = margins[f.group[t]];
    m = add_leaf(m, f.value[leaf], f.float32_accumulate);
  }
}

/// Columns of the output for `probability` (true) or margin output.
HEPINFER_HD int n_outputs(const View& f, bool probability) {
  return probability && f.postprocess == kArgMax ? 1 : f.n_groups;
}

/// The objective's transform of one row's margins (as Forest::Impl::finish). `out` may not alias m.
HEPINFER_HD void row_transform(const View& f, const double* m_raw, double* out) {
  const int ng = f.n_groups;
  const double d = f.margin_divisor;
  auto m = [&](int g) { return d != 1.0 ? m_raw[g] / d : m_raw[g]; };
  switch (f.postprocess) {
    case kIdentity:
      for (int g = 0; g < ng; ++g) out[g] = m(g);
      break;
    case kSigmoid:
      for (int g = 0; g < ng; ++g)
        out[g] = f.sigmoid_scale == 1.0 ? 1.0 / (1.0 + exp(-m(g))) : 1.0 / (1.0 + exp(-f.sigmoid_scale * m(g)));
      break;
    case kSignedSquare:
      for (int g = 0; g < ng; ++g) out[g] = (m(g) < 0 ? -1.0 : 1.0) * m(g) * m(g);
      break;
    case kLog1pExp:
      for (int g = 0; g < ng; ++g) out[g] = log1p(exp(m(g)));
      break;
    case kExp:
      for (int g = 0; g < ng; ++g) out[g] = exp(m(g));
      break;
    case kTMVAGrad:
      for (int g = 0; g < ng; ++g) out[g] = 2.0 / (1.0 + exp(-2.0 * m(g))) - 1.0;
      break;
    case kSoftmax: {
      double mx = m(0);
      for (int g = 1; g < ng; ++g) mx = m(g) > mx ? m(g) : mx;
      double s = 0.0;
      for (int g = 0; g < ng; ++g) s += (out[g] = exp(m(g) - mx));
      for (int g = 0; g < ng; ++g) out[g] /= s;
      break;
    }
    case kArgMax: {
      int best = 0;
      for (int g = 1; g < ng; ++g)
        if (m(g) > m(best)) best = g;
      out[0] = static_cast<double>(best);
      break;
    }
    default: break;
  }
}

}  // namespace hepinfer::gpu
