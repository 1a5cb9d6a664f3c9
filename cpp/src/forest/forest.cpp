// The forest engine: compiles a ForestIR into a compact node layout and evaluates it.
//
// Layout: all trees' nodes in one array; the two children of a node are adjacent
// (right = left + 1), so a step is `idx = node.left + go_right`. Every test is
// expressed as "go left iff x < threshold" in the evaluation precision (float or
// double), with NaN going left iff the node's default_left bit is set. A leaf is a
// node that points to itself (left = self - 1, threshold NaN, default_left 0), so
// trees of bounded depth are walked a fixed number of steps with no data-dependent
// exit. Splits that need more (categorical, zero-as-missing, linear) carry a flag and
// are evaluated by a generic routine in double.
//
// Rows are processed in blocks: each block is copied (converted, transformed) into a
// contiguous scratch buffer, then every tree is walked for 8 rows at a time, which
// gives the CPU independent chains of loads to overlap.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>
#include <utility>

#include "common/parallel.hpp"
#include "forest/forest_kernels.hpp"
#include "forest/split_thresholds.hpp"
#include "hepinfer/forest.hpp"

namespace hepinfer {

namespace {

constexpr std::uint32_t kDefaultLeft = 1u;
constexpr std::uint32_t kSpecial = 2u;
constexpr std::uint32_t kLeaf = 4u;
constexpr int kSpecialShift = 3;
constexpr std::size_t kBlockRows = 128;
constexpr int kMaxCompleteDepth = 10;  // trees up to this depth may use the complete-tree layout

template <typename T>
struct CNode {
  T threshold;
  std::int32_t feature;
  std::uint32_t left;
  std::uint32_t flags;
};

struct SpecialSplit {
  NodeIR::Kind kind;
  NodeIR::Op op;
  bool default_left;
  bool zero_is_missing;
  bool cat_negative_right;
  std::int32_t feature;
  double threshold;
  std::uint32_t cat_begin, cat_end, lin_begin;
};

using detail::is_plain;
using detail::strict_double_threshold;
using detail::strict_float_threshold;

}  // namespace

// ---------------------------------------------------------------------------------------------
struct Forest::Impl {
  ForestIR ir;
  std::int32_t n_features = 0;
  std::int32_t n_groups = 1;
  std::size_t n_cols = 1;  // scratch row width (>= 1 so leaves may read column 0)
  std::vector<CNode<float>> nodes_f;
  std::vector<CNode<double>> nodes_d;  // only when the model compares in double
  std::vector<std::uint32_t> roots;
  std::vector<std::int32_t> depth;  // steps from root to deepest leaf
  std::vector<std::int32_t> group;
  std::vector<double> value;          // per node (leaves)
  std::vector<std::int32_t> leaf_id;  // per node (leaves)
  std::vector<SpecialSplit> specials;
  bool has_transforms = false;
  detail::CompleteTrees complete;           // float-threshold complete layout of eligible trees
  std::vector<std::int32_t> complete_slot;  // per tree: slot in `complete`, or -1
  bool all_complete = false;                // every tree t is in `complete` at slot t

  void compile();
  void compile_complete();

  template <typename T>
  void eval_row(const T* row, const float* ex, std::size_t cs, double* margins, std::int32_t* leaves) const;
  /// The expanded copy the complete-tree kernels read: column 2j holds feature j with NaN
  /// as -inf (what default-left nodes read), column 2j+1 with NaN as +inf (default-right).
  void expand(const float* buf, std::size_t nr, std::size_t cap, float* ex) const;
  template <typename T>
  void walk_generic(std::size_t t, const T* row, std::size_t cs, double* margins, std::int32_t* leaves) const;
  template <typename Acc>
  Acc sum_complete_trees(const Acc* lv, const float* x, std::size_t cs) const;
  template <typename T>
  void walk_generic_rows(std::size_t t, const T* buf, std::size_t n_rows, std::int32_t* out) const;

  template <typename T>
  const std::vector<CNode<T>>& nodes() const;

  template <typename T>
  bool special_left(const SpecialSplit& s, const T* row, std::size_t cs) const;

  /// Rows r0..r0+nr-1 into a column-major scratch block: element (r, j) at buf[r + j * cap].
  template <typename In, typename T>
  void load_rows(const In* data, const RowLayout& layout, std::size_t r0, std::size_t nr, T* buf,
                 std::size_t cap) const;

  template <typename T>
  void eval_block(const T* buf, const float* ex, std::size_t nr, double* margins, std::int32_t* leaves) const;

  void finish(const double* margins, std::size_t nr, double* out, Output output) const;

  template <typename In>
  void run(const In* data, const RowLayout& layout, double* out, std::int32_t* leaves, Output output,
           int n_threads) const;

  std::int32_t n_outputs(Output output) const {
    if (output == Output::Probability && ir.postprocess == Postprocess::ArgMax) return 1;
    return n_groups;
  }
};

template <>
const std::vector<CNode<float>>& Forest::Impl::nodes<float>() const {
  return nodes_f;
}
template <>
const std::vector<CNode<double>>& Forest::Impl::nodes<double>() const {
  return nodes_d;
}

void Forest::Impl::compile() {
  n_features = ir.n_features;
  n_groups = ir.n_groups;
  n_cols = std::max<std::size_t>(1, static_cast<std::size_t>(n_features));
  has_transforms = !ir.transforms.empty();
  const bool want_double = !ir.float32_inputs;

  std::size_t total = 0;
  for (const TreeIR& t : ir.trees) total += t.nodes.size();
  if (total >= std::numeric_limits<std::uint32_t>::max() / 2)
    throw ModelFormatError(ir.source_name + ": too many nodes");
  nodes_f.resize(total);
  if (want_double) nodes_d.resize(total);
  value.assign(total, 0.0);
  leaf_id.assign(total, -1);
  roots.reserve(ir.trees.size());
  depth.reserve(ir.trees.size());
  group.reserve(ir.trees.size());

  std::size_t base = 0;
  std::vector<std::pair<std::int32_t, std::int32_t>> queue;  // (ir index, depth)
  std::vector<std::uint32_t> slot;                           // ir index -> layout slot
  for (const TreeIR& tree : ir.trees) {
    const std::size_t n = tree.nodes.size();
    slot.assign(n, 0);
    queue.clear();
    queue.emplace_back(0, 0);
    slot[0] = static_cast<std::uint32_t>(base);
    std::uint32_t next = static_cast<std::uint32_t>(base + 1);
    std::int32_t max_depth = 0;
    for (std::size_t q = 0; q < queue.size(); ++q) {
      const auto [i, d] = queue[q];
      const NodeIR& node = tree.nodes[static_cast<std::size_t>(i)];
      const std::uint32_t s = slot[static_cast<std::size_t>(i)];
      CNode<float>& nf = nodes_f[s];
      if (node.kind == NodeIR::Kind::Leaf) {
        max_depth = std::max(max_depth, d);
        nf.threshold = std::numeric_limits<float>::quiet_NaN();
        nf.feature = 0;
        nf.left = s - 1u;  // wraps for a lone root leaf; left + 1 == s
        nf.flags = kLeaf;
        value[s] = node.value;
        leaf_id[s] = node.leaf_id >= 0 ? node.leaf_id : i;
        if (want_double) nodes_d[s] = {std::numeric_limits<double>::quiet_NaN(), 0, s - 1u, kLeaf};
        continue;
      }
      const std::uint32_t l = next;
      next += 2;
      slot[static_cast<std::size_t>(node.left)] = l;
      slot[static_cast<std::size_t>(node.right)] = l + 1;
      queue.emplace_back(node.left, d + 1);
      queue.emplace_back(node.right, d + 1);
      std::uint32_t flags = node.default_left ? kDefaultLeft : 0u;
      const bool special = !is_plain(node);
      if (special) {
        flags |= kSpecial | (static_cast<std::uint32_t>(specials.size()) << kSpecialShift);
        specials.push_back({node.kind, node.op, node.default_left, node.zero_is_missing, node.cat_negative_right,
                            node.feature, node.threshold, node.cat_begin, node.cat_end, node.lin_begin});
      }
      const std::int32_t feat = node.kind == NodeIR::Kind::Linear ? 0 : node.feature;
      nf = {special ? 0.0f : strict_float_threshold(node.threshold, node.op), feat, l, flags};
      if (want_double) nodes_d[s] = {special ? 0.0 : strict_double_threshold(node.threshold, node.op), feat, l, flags};
    }
    if (queue.size() != n) throw ModelFormatError(ir.source_name + ": unreachable nodes in a tree");
    roots.push_back(static_cast<std::uint32_t>(base));
    depth.push_back(max_depth);
    group.push_back(tree.group);
    base += n;
  }
  if (specials.size() >= (std::size_t{1} << (32 - kSpecialShift)))
    throw ModelFormatError(ir.source_name + ": too many special splits");
  compile_complete();
}

// Trees without special splits are also stored as complete trees of one common depth D:
// every such tree when D <= 8 (padding is cheap), and for D up to kMaxCompleteDepth only
// trees whose padded size stays within ~4x their node count.
void Forest::Impl::compile_complete() {
  complete_slot.assign(ir.trees.size(), -1);
  if (static_cast<std::uint64_t>(kBlockRows) * 2 * n_cols >= (std::uint64_t{1} << 31)) return;  // gather index range
  std::vector<int> eligible_depth(ir.trees.size(), -1);
  int D = 0;
  for (std::size_t t = 0; t < ir.trees.size(); ++t) {
    const TreeIR& tree = ir.trees[t];
    if (depth[t] > kMaxCompleteDepth) continue;
    bool plain = true;
    std::size_t internal = 0;
    for (const NodeIR& node : tree.nodes) {
      if (node.kind == NodeIR::Kind::Leaf) continue;
      ++internal;
      if (!is_plain(node)) plain = false;
      // NaN is read as -inf by default-left nodes: it must go left, so the threshold must exceed -inf
      if (node.default_left &&
          strict_float_threshold(node.threshold, node.op) == -std::numeric_limits<float>::infinity())
        plain = false;
    }
    if (!plain) continue;
    if (depth[t] > 8 && (std::size_t{1} << depth[t]) > 4 * internal + 16) continue;
    eligible_depth[t] = depth[t];
    D = std::max(D, depth[t]);
  }
  std::size_t n_slots = 0;
  for (std::size_t t = 0; t < ir.trees.size(); ++t) {
    // padding must stay cheap against the tree's own size at the common depth too
    if (eligible_depth[t] < 0) continue;
    std::size_t internal = 0;
    for (const NodeIR& node : ir.trees[t].nodes) internal += node.kind != NodeIR::Kind::Leaf;
    if (D > 8 && (std::size_t{1} << D) > 4 * internal + 16) continue;  // up to depth 8 padding is cheap
    complete_slot[t] = static_cast<std::int32_t>(n_slots++);
  }
  if (n_slots == 0) return;
  all_complete = n_slots == ir.trees.size();
  // the kernels walk at least one level: forests whose eligible trees are all single leaves
  // (LightGBM writes such trees for classes without splits) get one padding level
  D = std::max(D, 1);
  complete.depth = D;
  complete.n_internal = (1u << D) - 1u;
  complete.n_leaves = 1u << D;
  complete.feat.assign(n_slots * complete.n_internal + 32, 0);
  complete.thr.assign(n_slots * complete.n_internal + 32, std::numeric_limits<float>::quiet_NaN());
  complete.leaf.assign(n_slots * complete.n_leaves, 0.0);
  complete.leaf_id.assign(n_slots * complete.n_leaves, 0);
  struct Item {
    std::int32_t node;
    std::uint32_t pos;
    int level;
  };
  std::vector<Item> stack;
  for (std::size_t t = 0; t < ir.trees.size(); ++t) {
    if (complete_slot[t] < 0) continue;
    const std::size_t slot = static_cast<std::size_t>(complete_slot[t]);
    const TreeIR& tree = ir.trees[t];
    std::int32_t* feat = complete.feat.data() + slot * complete.n_internal;
    float* thr = complete.thr.data() + slot * complete.n_internal;
    double* leaf = complete.leaf.data() + slot * complete.n_leaves;
    std::int32_t* lid = complete.leaf_id.data() + slot * complete.n_leaves;
    stack.assign(1, Item{0, 0, 0});
    while (!stack.empty()) {
      const Item it = stack.back();
      stack.pop_back();
      const NodeIR& node = tree.nodes[static_cast<std::size_t>(it.node)];
      if (it.level == D) {  // a leaf slot
        const std::uint32_t j = it.pos - complete.n_internal;
        leaf[j] = node.value;
        lid[j] = node.leaf_id >= 0 ? node.leaf_id : it.node;
        continue;
      }
      if (node.kind == NodeIR::Kind::Leaf) {
        // pad: always go right (threshold NaN, default_left 0); both subtrees carry the leaf
        feat[it.pos] = 0;
        thr[it.pos] = std::numeric_limits<float>::quiet_NaN();
        stack.push_back({it.node, 2 * it.pos + 1, it.level + 1});
        stack.push_back({it.node, 2 * it.pos + 2, it.level + 1});
        continue;
      }
      feat[it.pos] = 2 * node.feature + (node.default_left ? 0 : 1);
      thr[it.pos] = strict_float_threshold(node.threshold, node.op);
      stack.push_back({node.left, 2 * it.pos + 1, it.level + 1});
      stack.push_back({node.right, 2 * it.pos + 2, it.level + 1});
    }
  }
  complete.pairs.resize(complete.feat.size());
  for (std::size_t i = 0; i < complete.feat.size(); ++i) complete.pairs[i] = {complete.feat[i], complete.thr[i]};
  {
    constexpr std::size_t L = detail::CompleteTrees::kLanes;
    const std::size_t ni = complete.n_internal, groups = n_slots / L;
    complete.lanes.resize(groups * ni * L);
    for (std::size_t g = 0; g < groups; ++g)
      for (std::size_t i = 0; i < ni; ++i)
        for (std::size_t k = 0; k < L; ++k) complete.lanes[(g * ni + i) * L + k] = complete.pairs[(L * g + k) * ni + i];
  }
  // float32-accumulating models (XGBoost) have float leaves: keep a float copy for the
  // single-row path; anything else would make that path inexact, so it is not used then
  bool leaves_are_float = ir.float32_accumulate;
  for (double v : complete.leaf) leaves_are_float = leaves_are_float && static_cast<double>(static_cast<float>(v)) == v;
  if (leaves_are_float)
    for (double v : complete.leaf) complete.leaf_f.push_back(static_cast<float>(v));
  else all_complete = all_complete && !ir.float32_accumulate;
}

template <typename T>
bool Forest::Impl::special_left(const SpecialSplit& s, const T* row, std::size_t cs) const {
  switch (s.kind) {
    case NodeIR::Kind::Numerical: {  // zero_is_missing (LightGBM's zero band is |x| <= 1e-35f), or `x <= +inf`
      const double x = static_cast<double>(row[static_cast<std::size_t>(s.feature) * cs]);
      constexpr double kZero = static_cast<double>(1e-35f);
      if (std::isnan(x) || (s.zero_is_missing && x >= -kZero && x <= kZero)) return s.default_left;
      return s.op == NodeIR::Op::Less ? x < s.threshold : x <= s.threshold;
    }
    case NodeIR::Kind::Categorical: {
      // the category is the value truncated toward zero; NaN takes the default child,
      // negative categories and values beyond int32 go right
      const double x = static_cast<double>(row[static_cast<std::size_t>(s.feature) * cs]);
      if (std::isnan(x)) return s.default_left;
      if (x <= -1.0 || x >= 2147483648.0 || (s.cat_negative_right && x < 0.0)) return false;
      const std::uint32_t c = static_cast<std::uint32_t>(static_cast<std::int32_t>(x));
      const std::uint32_t word = c / 32u;
      if (word >= s.cat_end - s.cat_begin) return false;
      return ((ir.categories[s.cat_begin + word] >> (c % 32u)) & 1u) != 0;
    }
    case NodeIR::Kind::Linear: {
      const std::size_t nf = static_cast<std::size_t>(n_features);
      const double* c = ir.linear.data() + s.lin_begin;
      double v = c[nf];
      for (std::size_t j = 0; j < nf; ++j) v += c[j] * static_cast<double>(row[j * cs]);
      if (std::isnan(v)) return s.default_left;
      return s.op == NodeIR::Op::Less ? v < s.threshold : v <= s.threshold;
    }
    case NodeIR::Kind::Leaf: break;
  }
  return false;
}

template <typename In, typename T>
void Forest::Impl::load_rows(const In* data, const RowLayout& layout, std::size_t r0, std::size_t nr, T* buf,
                             std::size_t cap) const {
  const std::size_t nf = static_cast<std::size_t>(n_features);
  for (std::size_t r = 0; r < nr; ++r) {
    const In* src = data + static_cast<std::ptrdiff_t>(r0 + r) * layout.row_stride;
    T* dst = buf + r;
    const std::ptrdiff_t cs = layout.col_stride;
    if (ir.float32_inputs) {
      for (std::size_t j = 0; j < nf; ++j)
        dst[j * cap] = static_cast<T>(static_cast<float>(src[static_cast<std::ptrdiff_t>(j) * cs]));
    } else {
      for (std::size_t j = 0; j < nf; ++j) dst[j * cap] = static_cast<T>(src[static_cast<std::ptrdiff_t>(j) * cs]);
    }
    if (nf == 0) dst[0] = T(0);
    if (has_transforms) {
      // TMVA: transformations computed in double, the results held as float.
      double tmp[1024];
      std::vector<double> heap;
      double* x = tmp;
      if (nf > 512) {
        heap.resize(2 * nf);
        x = heap.data();
      }
      double* y = x + nf;
      for (std::size_t j = 0; j < nf; ++j) x[j] = static_cast<double>(dst[j * cap]);
      for (const TransformIR& tr : ir.transforms) {
        switch (tr.kind) {
          case TransformIR::Kind::Linear:
            for (std::size_t i = 0; i < nf; ++i) {
              double s = 0.0;
              for (std::size_t j = 0; j < nf; ++j) s += tr.matrix[i * nf + j] * x[j];
              y[i] = s;
            }
            break;
          case TransformIR::Kind::CenteredLinear:
            for (std::size_t i = 0; i < nf; ++i) {
              double s = 0.0;
              for (std::size_t j = 0; j < nf; ++j) s += tr.matrix[i * nf + j] * (x[j] - tr.offset[j]);
              y[i] = s;
            }
            break;
          case TransformIR::Kind::Affine:
            for (std::size_t i = 0; i < nf; ++i) y[i] = (x[i] - tr.offset[i]) * tr.scale[i] + tr.shift;
            break;
        }
        for (std::size_t i = 0; i < nf; ++i) x[i] = static_cast<double>(static_cast<float>(y[i]));
      }
      for (std::size_t j = 0; j < nf; ++j) dst[j * cap] = static_cast<T>(x[j]);
    }
  }
}

template <typename T>
void Forest::Impl::walk_generic(std::size_t t, const T* row, std::size_t cs, double* margins,
                                std::int32_t* leaves) const {
  const CNode<T>* nd = nodes<T>().data();
  std::uint32_t idx = roots[t];
  while (!(nd[idx].flags & kLeaf)) {
    const CNode<T>& n = nd[idx];
    bool left;
    if (n.flags & kSpecial) {
      left = special_left(specials[n.flags >> kSpecialShift], row, cs);
    } else {
      const T x = row[static_cast<std::size_t>(n.feature) * cs];
      left = (x < n.threshold) | ((x != x) & ((n.flags & kDefaultLeft) != 0));
    }
    idx = n.left + static_cast<std::uint32_t>(!left);
  }
  double& m = margins[static_cast<std::size_t>(group[t])];
  m = ir.float32_accumulate ? static_cast<double>(static_cast<float>(m + value[idx])) : m + value[idx];
  if (leaves) leaves[t] = leaf_id[idx];
}

void Forest::Impl::expand(const float* buf, std::size_t nr, std::size_t cap, float* ex) const {
  const float inf = std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < n_cols; ++j) {
    const float* src = buf + j * cap;
    float* lo = ex + 2 * j * cap;
    float* hi = lo + cap;
    for (std::size_t r = 0; r < nr; ++r) {
      const float v = src[r];
      const bool nan = v != v;
      lo[r] = nan ? -inf : v;
      hi[r] = nan ? inf : v;
    }
  }
}

// Base margin plus the leaves of every (complete) tree for one expanded row, summed in Acc
// (only with all_complete: slot t is tree t). Groups of 16 trees are walked together from the
// tree-interleaved copy of the nodes, the rest 8 or 1 at a time.
template <typename Acc>
Acc Forest::Impl::sum_complete_trees(const Acc* lv, const float* x, std::size_t cs) const {
  const std::size_t n_trees = roots.size();
  const std::size_t nl = complete.n_leaves;
  std::int32_t li[16];
  Acc m = static_cast<Acc>(ir.base_margin[0]);
  std::size_t t = 0;
  if (cs == 1) {
    constexpr std::size_t L = detail::CompleteTrees::kLanes;
    static_assert(L <= 16, "li holds 16 leaves");
    for (; t + L <= n_trees; t += L) {
      detail::complete_walk_group<L>(complete, complete.lanes, t / L, x, li);
      for (std::size_t k = 0; k < L; ++k) m += lv[(t + k) * nl + static_cast<std::size_t>(li[k])];
    }
  }
  for (; t + 8 <= n_trees; t += 8) {
    detail::complete_walk_trees8(complete, static_cast<std::uint32_t>(t), x, cs, li);
    for (std::size_t k = 0; k < 8; ++k) m += lv[(t + k) * nl + static_cast<std::size_t>(li[k])];
  }
  for (; t < n_trees; ++t)
    m += lv[t * nl +
            static_cast<std::size_t>(detail::complete_walk_one(complete, static_cast<std::uint32_t>(t), x, cs))];
  return m;
}

// One row, all trees in order (the low-latency path): runs of 8 complete trees are walked
// together so that their independent chains of loads overlap.
template <typename T>
void Forest::Impl::eval_row(const T* row, const float* ex, std::size_t cs, double* margins,
                            std::int32_t* leaves) const {
  const std::size_t ng = static_cast<std::size_t>(n_groups);
  const std::size_t n_trees = roots.size();
  const bool f32acc = ir.float32_accumulate;
  if (std::is_same<T, float>::value && all_complete && ng == 1 && leaves == nullptr) {
    // The trigger path: every tree complete, one output. The sum stays in a register.
    // XGBoost leaves are float32 and float addition of two floats equals the double sum
    // rounded to float, so summing in a float is the same sum with a short chain.
    margins[0] = f32acc ? static_cast<double>(sum_complete_trees(complete.leaf_f.data(), ex, cs))
                        : sum_complete_trees(complete.leaf.data(), ex, cs);
    return;
  }
  for (std::size_t g = 0; g < ng; ++g) margins[g] = ir.base_margin[g];
  std::size_t t = 0;
  while (t < n_trees) {
    const std::int32_t slot = std::is_same<T, float>::value ? complete_slot[t] : -1;
    if (slot < 0) {
      walk_generic(t, row, cs, margins, leaves);
      ++t;
      continue;
    }
    std::int32_t li[8];
    std::size_t run = 1;
    if (t + 8 <= n_trees && complete_slot[t + 7] == slot + 7) {
      run = 8;
      detail::complete_walk_trees8(complete, static_cast<std::uint32_t>(slot), ex, cs, li);
    } else {
      li[0] = detail::complete_walk_one(complete, static_cast<std::uint32_t>(slot), ex, cs);
    }
    for (std::size_t k = 0; k < run; ++k) {
      const std::size_t j = static_cast<std::size_t>(slot + static_cast<std::int32_t>(k)) * complete.n_leaves +
                            static_cast<std::size_t>(li[k]);
      double& m = margins[static_cast<std::size_t>(group[t + k])];
      m = f32acc ? static_cast<double>(static_cast<float>(m + complete.leaf[j])) : m + complete.leaf[j];
      if (leaves) leaves[t + k] = complete.leaf_id[j];
    }
    t += run;
  }
}

template <typename T>
void Forest::Impl::eval_block(const T* buf, const float* ex, std::size_t nr, double* margins,
                              std::int32_t* leaves) const {
  const std::size_t ng = static_cast<std::size_t>(n_groups);
  const std::size_t n_trees = roots.size();
  if (nr < 8) {
    for (std::size_t r = 0; r < nr; ++r)
      eval_row(buf + r, ex ? ex + r : nullptr, kBlockRows, margins + r * ng, leaves ? leaves + r * n_trees : nullptr);
    return;
  }
  for (std::size_t r = 0; r < nr; ++r)
    for (std::size_t g = 0; g < ng; ++g) margins[r * ng + g] = ir.base_margin[g];
  const bool f32acc = ir.float32_accumulate;
  const std::size_t nr_pad = (nr + 7) & ~std::size_t{7};  // the block buffer holds kBlockRows rows
  std::int32_t li[kBlockRows];
  if (f32acc && ng == 1 && ex != nullptr && !complete.leaf_f.empty()) {
    // XGBoost, one output: the float32 sums stay in a float array the kernel adds to.
    float acc[kBlockRows];
    for (std::size_t r = 0; r < nr_pad; ++r) acc[r] = static_cast<float>(ir.base_margin[0]);
    for (std::size_t t = 0; t < n_trees; ++t) {
      const std::int32_t slot = complete_slot[t];
      if (slot >= 0) {
        detail::complete_walk_rows(complete, static_cast<std::uint32_t>(slot), ex, kBlockRows, nr_pad, li, acc);
        if (leaves) {
          const std::int32_t* ids = complete.leaf_id.data() + static_cast<std::size_t>(slot) * complete.n_leaves;
          for (std::size_t r = 0; r < nr; ++r) leaves[r * n_trees + t] = ids[li[r]];
        }
        continue;
      }
      walk_generic_rows(t, buf, nr_pad, li);
      for (std::size_t r = 0; r < nr; ++r) {
        acc[r] = static_cast<float>(static_cast<double>(acc[r]) + value[static_cast<std::size_t>(li[r])]);
        if (leaves) leaves[r * n_trees + t] = leaf_id[static_cast<std::size_t>(li[r])];
      }
    }
    for (std::size_t r = 0; r < nr; ++r) margins[r] = static_cast<double>(acc[r]);
    return;
  }
  for (std::size_t t = 0; t < n_trees; ++t) {
    const std::int32_t slot = ex ? complete_slot[t] : -1;
    const double* lv;
    const std::int32_t* ids;
    if (slot >= 0) {
      detail::complete_walk_rows(complete, static_cast<std::uint32_t>(slot), ex, kBlockRows, nr_pad, li);
      lv = complete.leaf.data() + static_cast<std::size_t>(slot) * complete.n_leaves;
      ids = complete.leaf_id.data() + static_cast<std::size_t>(slot) * complete.n_leaves;
    } else {
      walk_generic_rows(t, buf, nr_pad, li);  // li: layout node index of the leaf
      lv = value.data();
      ids = leaf_id.data();
    }
    const std::size_t g = static_cast<std::size_t>(group[t]);
    if (f32acc) {
      for (std::size_t r = 0; r < nr; ++r) {
        double& m = margins[r * ng + g];
        m = static_cast<double>(static_cast<float>(m + lv[li[r]]));
      }
    } else {
      for (std::size_t r = 0; r < nr; ++r) margins[r * ng + g] += lv[li[r]];
    }
    if (leaves)
      for (std::size_t r = 0; r < nr; ++r) leaves[r * n_trees + t] = ids[li[r]];
  }
}

// Tree t (any layout) for rows 0..n_rows-1 (a multiple of 8) of a column-major block: eight
// rows walk together so their chains of loads overlap. Leaves loop on themselves, so rows
// that arrive early simply wait; the walk stops when all eight have arrived.
template <typename T>
void Forest::Impl::walk_generic_rows(std::size_t t, const T* buf, std::size_t n_rows, std::int32_t* out) const {
  const CNode<T>* nd = nodes<T>().data();
  const std::uint32_t root = roots[t];
  const std::int32_t d = depth[t];
  for (std::size_t r = 0; r < n_rows; r += 8) {
    std::uint32_t idx[8] = {root, root, root, root, root, root, root, root};
    for (std::int32_t s = 0; s < d; ++s) {
      for (int k = 0; k < 8; ++k) {
        const CNode<T>& n = nd[idx[k]];
        const T* row = buf + r + static_cast<std::size_t>(k);
        bool left;
        if (n.flags & kSpecial) {
          left = special_left(specials[n.flags >> kSpecialShift], row, kBlockRows);
        } else {
          const T x = row[static_cast<std::size_t>(n.feature) * kBlockRows];
          left = (x < n.threshold) | ((x != x) & ((n.flags & kDefaultLeft) != 0));
        }
        idx[k] = n.left + static_cast<std::uint32_t>(!left);
      }
      if ((s & 3) == 3) {
        bool all_leaves = true;
        for (int k = 0; k < 8; ++k) all_leaves = all_leaves && (nd[idx[k]].flags & kLeaf);
        if (all_leaves) break;
      }
    }
    for (int k = 0; k < 8; ++k) out[r + static_cast<std::size_t>(k)] = static_cast<std::int32_t>(idx[k]);
  }
}

void Forest::Impl::finish(const double* margins, std::size_t nr, double* out, Output output) const {
  const std::size_t ng = static_cast<std::size_t>(n_groups);
  if (output == Output::Margin) {
    std::memcpy(out, margins, nr * ng * sizeof(double));
    return;
  }
  // LightGBM random forests average the trees before the output transform; the margin
  // (raw score) stays the plain sum, as in LightGBM.
  // ArgMax writes one value per row, so `out` has no room for the divided margins; a positive
  // divisor does not change the argmax, so it is skipped there.
  const double* m_in = margins;
  if (ir.margin_divisor != 1.0 && ir.postprocess != Postprocess::ArgMax) {
    for (std::size_t i = 0; i < nr * ng; ++i) out[i] = margins[i] / ir.margin_divisor;
    m_in = out;
  }
  switch (ir.postprocess) {
    case Postprocess::Identity:
      if (m_in != out) std::memcpy(out, m_in, nr * ng * sizeof(double));
      break;
    case Postprocess::Sigmoid:
      if (ir.sigmoid_scale == 1.0) {
        for (std::size_t i = 0; i < nr * ng; ++i) out[i] = 1.0 / (1.0 + std::exp(-m_in[i]));
      } else {
        for (std::size_t i = 0; i < nr * ng; ++i) out[i] = 1.0 / (1.0 + std::exp(-ir.sigmoid_scale * m_in[i]));
      }
      break;
    case Postprocess::SignedSquare:
      for (std::size_t i = 0; i < nr * ng; ++i) out[i] = (m_in[i] < 0 ? -1.0 : 1.0) * m_in[i] * m_in[i];
      break;
    case Postprocess::Log1pExp:
      for (std::size_t i = 0; i < nr * ng; ++i) out[i] = std::log1p(std::exp(m_in[i]));
      break;
    case Postprocess::Exp:
      for (std::size_t i = 0; i < nr * ng; ++i) out[i] = std::exp(m_in[i]);
      break;
    case Postprocess::TMVAGrad:
      for (std::size_t i = 0; i < nr * ng; ++i) out[i] = 2.0 / (1.0 + std::exp(-2.0 * m_in[i])) - 1.0;
      break;
    case Postprocess::Softmax:
      for (std::size_t r = 0; r < nr; ++r) {
        const double* m = m_in + r * ng;
        double* o = out + r * ng;
        double mx = m[0];
        for (std::size_t g = 1; g < ng; ++g) mx = std::max(mx, m[g]);
        double s = 0.0;
        for (std::size_t g = 0; g < ng; ++g) s += (o[g] = std::exp(m[g] - mx));
        for (std::size_t g = 0; g < ng; ++g) o[g] /= s;
      }
      break;
    case Postprocess::ArgMax:
      for (std::size_t r = 0; r < nr; ++r) {
        const double* m = m_in + r * ng;
        std::size_t best = 0;
        for (std::size_t g = 1; g < ng; ++g)
          if (m[g] > m[best]) best = g;
        out[r] = static_cast<double>(best);
      }
      break;
  }
}

template <typename In>
void Forest::Impl::run(const In* data, const RowLayout& layout, double* out, std::int32_t* leaves, Output output,
                       int n_threads) const {
  const std::size_t n = layout.n_rows;
  if (n == 0) return;
  const std::size_t ng = static_cast<std::size_t>(n_groups);
  const std::size_t no = static_cast<std::size_t>(n_outputs(output));
  const std::size_t n_trees = roots.size();
  const bool use_double = !ir.float32_inputs && std::is_same<In, double>::value;

  auto work = [&](std::size_t begin, std::size_t end) {
    std::vector<double> margins(kBlockRows * ng);
    std::vector<float> buf_f, buf_x;
    std::vector<double> buf_d;
    if (use_double) buf_d.resize(kBlockRows * n_cols);
    else buf_f.resize(kBlockRows * n_cols);
    if (!use_double && complete.n_leaves > 0) buf_x.resize(kBlockRows * 2 * n_cols);
    for (std::size_t r0 = begin; r0 < end; r0 += kBlockRows) {
      const std::size_t nr = std::min(kBlockRows, end - r0);
      std::int32_t* lv = leaves ? leaves + r0 * n_trees : nullptr;
      if (use_double) {
        load_rows(data, layout, r0, nr, buf_d.data(), kBlockRows);
        eval_block(buf_d.data(), nullptr, nr, margins.data(), lv);
      } else {
        load_rows(data, layout, r0, nr, buf_f.data(), kBlockRows);
        float* ex = buf_x.empty() ? nullptr : buf_x.data();
        if (ex) expand(buf_f.data(), nr, kBlockRows, ex);
        eval_block(buf_f.data(), ex, nr, margins.data(), lv);
      }
      if (out) finish(margins.data(), nr, out + r0 * no, output);
    }
  };

  // Enough work per thread to pay for starting it.
  const std::size_t work_units = n * std::max<std::size_t>(1, n_trees);
  const std::size_t n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const std::size_t nt =
      std::min({parallel::resolve_threads(n_threads), std::max<std::size_t>(1, work_units / 20000), n_blocks});
  if (nt <= 1) {
    work(0, n);
    return;
  }
  // Blocks handed out dynamically; each row's result depends only on that row, so the
  // output is bit-identical whatever the number of threads (or how many could start).
  const std::size_t chunk_blocks = std::max<std::size_t>(1, n_blocks / (nt * 8));
  parallel::parallel_for(n, chunk_blocks * kBlockRows, nt,
                         [&](std::size_t, std::size_t begin, std::size_t end) { work(begin, end); });
}

// ---------------------------------------------------------------------------------------------
Forest Forest::from_ir(ForestIR ir) {
  ir.validate();
  auto impl = std::make_shared<Impl>();
  impl->ir = std::move(ir);
  impl->compile();
  return Forest(std::move(impl));
}

std::int32_t Forest::n_features() const noexcept { return impl_->n_features; }
std::int32_t Forest::n_outputs(Output output) const noexcept { return impl_->n_outputs(output); }
std::int32_t Forest::n_classes() const noexcept {
  const ForestIR& ir = impl_->ir;
  if (ir.postprocess == Postprocess::Softmax || ir.postprocess == Postprocess::ArgMax) return ir.n_groups;
  const std::string& o = ir.objective;
  // binary classifiers; probability regressions (reg:logistic, cross_entropy) count as 1
  if (o.rfind("binary:", 0) == 0 || o.rfind("tmva:", 0) == 0 || o == "lightgbm:binary")
    return ir.n_groups == 1 ? 2 : ir.n_groups;
  if (o.rfind("lightgbm:multiclass", 0) == 0) return ir.n_groups;
  return ir.n_groups;
}
std::size_t Forest::n_trees() const noexcept { return impl_->roots.size(); }
const std::vector<std::string>& Forest::feature_names() const noexcept { return impl_->ir.feature_names; }
const std::string& Forest::objective() const noexcept { return impl_->ir.objective; }
SourceFormat Forest::source_format() const noexcept { return impl_->ir.source; }
const ForestIR& Forest::ir() const noexcept { return impl_->ir; }

void Forest::predict(const float* data, const RowLayout& layout, double* out, Output output, int n_threads) const {
  impl_->run(data, layout, out, nullptr, output, n_threads);
}
void Forest::predict(const double* data, const RowLayout& layout, double* out, Output output, int n_threads) const {
  impl_->run(data, layout, out, nullptr, output, n_threads);
}
void Forest::predict(const float* rows, std::size_t n_rows, double* out, Output output, int n_threads) const {
  predict(rows, RowLayout{n_rows, static_cast<std::ptrdiff_t>(impl_->n_features), 1}, out, output, n_threads);
}
void Forest::predict(const double* rows, std::size_t n_rows, double* out, Output output, int n_threads) const {
  predict(rows, RowLayout{n_rows, static_cast<std::ptrdiff_t>(impl_->n_features), 1}, out, output, n_threads);
}
void Forest::predict_leaf(const float* data, const RowLayout& layout, std::int32_t* out, int n_threads) const {
  impl_->run(data, layout, nullptr, out, Output::Margin, n_threads);
}
void Forest::predict_leaf(const double* data, const RowLayout& layout, std::int32_t* out, int n_threads) const {
  impl_->run(data, layout, nullptr, out, Output::Margin, n_threads);
}

namespace {
template <typename In>
void predict_one_impl(const Forest::Impl& impl, const In* row, double* out, Output output) {
  // Scratch kept per thread: after the first call on a thread nothing is allocated.
  thread_local std::vector<float> buf_f, buf_x;
  thread_local std::vector<double> buf_d;
  thread_local std::vector<double> margins;
  const std::size_t ng = static_cast<std::size_t>(impl.n_groups);
  if (margins.size() < ng) margins.resize(ng);
  const RowLayout layout{1, static_cast<std::ptrdiff_t>(impl.n_features), 1};
  if (!impl.ir.float32_inputs && std::is_same<In, double>::value) {
    if (buf_d.size() < impl.n_cols) buf_d.resize(impl.n_cols);
    impl.load_rows(row, layout, 0, 1, buf_d.data(), 1);
    impl.eval_row(buf_d.data(), nullptr, 1, margins.data(), nullptr);
  } else {
    if (buf_f.size() < impl.n_cols) buf_f.resize(impl.n_cols);
    impl.load_rows(row, layout, 0, 1, buf_f.data(), 1);
    float* ex = nullptr;
    if (impl.complete.n_leaves > 0) {
      if (buf_x.size() < 2 * impl.n_cols) buf_x.resize(2 * impl.n_cols);
      ex = buf_x.data();
      impl.expand(buf_f.data(), 1, 1, ex);
    }
    impl.eval_row(buf_f.data(), ex, 1, margins.data(), nullptr);
  }
  impl.finish(margins.data(), 1, out, output);
}
}  // namespace

void Forest::predict_one(const float* row, double* out, Output output) const {
  predict_one_impl(*impl_, row, out, output);
}
void Forest::predict_one(const double* row, double* out, Output output) const {
  predict_one_impl(*impl_, row, out, output);
}
namespace {
template <typename In>
double predict_one_scalar(const Forest::Impl& impl, const In* row, Output output) {
  if (impl.n_outputs(output) != 1)
    throw InputError("predict_one(row) returns one value but this model has " + std::to_string(impl.n_outputs(output)) +
                     " outputs; use predict_one(row, out)");
  double out;
  predict_one_impl(impl, row, &out, output);
  return out;
}
}  // namespace

double Forest::predict_one(const float* row, Output output) const { return predict_one_scalar(*impl_, row, output); }
double Forest::predict_one(const double* row, Output output) const { return predict_one_scalar(*impl_, row, output); }

}  // namespace hepinfer
