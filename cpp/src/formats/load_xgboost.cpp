// XGBoost models as written by Booster.save_model() in JSON or UBJ (xgboost 1.x to 3.x).
//
// Semantics (XGBoost's RegTree / predictor): a row goes left iff x < split_condition
// with both in float32; NaN (missing) goes to the default child; a leaf's value is its
// split_condition. margin[group] = base_margin[group] + sum of the group's leaves,
// base_margin = ProbToMargin(base_score) for the objective (logit for logistic
// objectives, log for log-link objectives, identity otherwise).

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hepinfer/forest.hpp"
#include "formats/json.hpp"

namespace hepinfer {

namespace {

using detail::JsonReader;
using detail::JsonValue;

enum class Link { Identity, Logit, Log };

/// Total 32-bit words of categorical bitsets a model may use (256 MiB).
constexpr std::size_t kMaxCategoryWords = std::size_t{1} << 26;

struct ObjectiveInfo {
  Postprocess post;
  Link base_link;
};

ObjectiveInfo objective_info(const std::string& name, const JsonReader& r) {
  if (name == "binary:logistic" || name == "reg:logistic") return {Postprocess::Sigmoid, Link::Logit};
  if (name == "binary:logitraw") return {Postprocess::Identity, Link::Identity};
  if (name == "reg:squarederror" || name == "reg:linear" || name == "reg:squaredlogerror" ||
      name == "reg:pseudohubererror" || name == "reg:absoluteerror" || name == "reg:quantileerror" ||
      name == "rank:pairwise" || name == "rank:ndcg" || name == "rank:map")
    return {Postprocess::Identity, Link::Identity};
  if (name == "count:poisson" || name == "reg:gamma" || name == "reg:tweedie" || name == "survival:cox")
    return {Postprocess::Exp, Link::Log};
  if (name == "multi:softprob") return {Postprocess::Softmax, Link::Identity};
  if (name == "multi:softmax") return {Postprocess::ArgMax, Link::Identity};
  r.fail("learner/objective/name", "objective '" + name +
                                       "' is not supported (supported: binary:logistic, binary:logitraw, "
                                       "reg:logistic, reg:squarederror and other identity-link regressions, "
                                       "count:poisson, reg:gamma, reg:tweedie, survival:cox, multi:softprob, "
                                       "multi:softmax, rank:*)");
}

/// base_score is written as "0.5", "5E-1", "[5E-1]" or "[a,b,c]" (xgboost 3.x), or as a number.
std::vector<double> parse_base_score(const JsonValue& v, const JsonReader& r) {
  const std::string path = "learner/learner_model_param/base_score";
  if (v.type == JsonValue::Type::Number) return {r.number(v, path)};
  if (v.is_array()) return r.numbers(v, path);
  std::string s = r.string(v, path);
  std::size_t a = s.find_first_not_of(" \t");
  std::size_t b = s.find_last_not_of(" \t");
  if (a == std::string::npos) r.fail(path, "empty base_score");
  s = s.substr(a, b - a + 1);
  if (!s.empty() && s.front() == '[') {
    if (s.back() != ']') r.fail(path, "malformed base_score '" + s + "'");
    s = s.substr(1, s.size() - 2);
  }
  std::vector<double> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    double d;
    if (!detail::parse_double(s.data() + start, s.data() + comma, d)) r.fail(path, "malformed base_score '" + s + "'");
    out.push_back(d);
    start = comma + 1;
  }
  return out;
}

double apply_link(double p, Link link) {
  // XGBoost computes ProbToMargin in float32.
  const float f = static_cast<float>(p);
  switch (link) {
    case Link::Logit: return static_cast<double>(-std::log(1.0f / f - 1.0f));
    case Link::Log: return static_cast<double>(std::log(f));
    case Link::Identity: break;
  }
  return static_cast<double>(f);
}

/// XGBoost categorical splits: the node's category list (categories_nodes/segments/sizes into
/// `categories`) is the set that goes RIGHT; other categories, and invalid ones (x < 0 or
/// x >= 2^24), go left; NaN takes default_left. In the IR a categorical split sends its bitset
/// LEFT, so the children are swapped and the node marked cat_negative_right.
TreeIR load_tree(const JsonValue& t, const JsonReader& r, const std::string& path, std::int32_t n_features,
                 std::vector<std::uint32_t>* bitsets) {
  // the members this reads, found in one pass over the tree (the first of duplicate keys wins)
  static constexpr const char* kKeys[] = {
      "left_children", "right_children", "split_indices",    "split_conditions",    "default_left",    "split_type",
      "tree_param",    "categories",     "categories_nodes", "categories_segments", "categories_sizes"};
  constexpr std::size_t kNumKeys = sizeof(kKeys) / sizeof(kKeys[0]);
  std::optional<JsonValue> found[kNumKeys];
  if (!t.is_object()) r.fail(path, "expected an object");
  t.for_each_member([&](std::string_view key, const JsonValue& v) {
    for (std::size_t k = 0; k < kNumKeys; ++k)
      if (key == kKeys[k] && !found[k]) found[k] = v;
    return true;
  });
  auto member = [&](std::size_t k) -> const JsonValue& {
    if (!found[k]) r.fail(path, std::string("missing key '") + kKeys[k] + "'");
    return *found[k];
  };
  const auto left = r.integers(member(0), path + "/left_children");
  const auto right = r.integers(member(1), path + "/right_children");
  const auto split_index = r.integers(member(2), path + "/split_indices");
  const auto cond = r.numbers(member(3), path + "/split_conditions");
  const auto dleft = r.integers(member(4), path + "/default_left");
  std::vector<std::int64_t> split_type;
  if (found[5]) split_type = r.integers(*found[5], path + "/split_type");

  std::vector<std::int64_t> cat_values, cat_nodes, cat_segments, cat_sizes;
  bool any_categorical = false;
  for (std::int64_t st : split_type) any_categorical = any_categorical || st != 0;
  if (any_categorical) {
    cat_values = r.integers(member(7), path + "/categories");
    cat_nodes = r.integers(member(8), path + "/categories_nodes");
    cat_segments = r.integers(member(9), path + "/categories_segments");
    cat_sizes = r.integers(member(10), path + "/categories_sizes");
    if (cat_segments.size() != cat_nodes.size() || cat_sizes.size() != cat_nodes.size())
      r.fail(path, "categories_nodes, categories_segments and categories_sizes have different lengths");
  }

  const std::size_t n = left.size();
  if (n == 0) r.fail(path, "tree has no nodes");
  if (right.size() != n || split_index.size() != n || cond.size() != n || dleft.size() != n ||
      (!split_type.empty() && split_type.size() != n))
    r.fail(path, "node arrays have different lengths (left_children has " + std::to_string(n) + ")");
  if (const std::optional<JsonValue>& tp = found[6]) {
    if (const std::optional<JsonValue> nn = tp->find("num_nodes")) {
      if (r.integer(*nn, path + "/tree_param/num_nodes") != static_cast<std::int64_t>(n))
        r.fail(path, "tree_param/num_nodes disagrees with the node arrays (truncated model?)");
    }
    if (const std::optional<JsonValue> sl = tp->find("size_leaf_vector")) {
      std::int64_t s = r.integer(*sl, path + "/tree_param/size_leaf_vector");
      if (s > 1) r.fail(path, "vector-leaf trees (multi_strategy=multi_output_tree) are not supported");
    }
  }

  // node -> its first entry in categories_nodes (cat_nodes.size() when it has none), in linear time
  std::vector<std::size_t> cat_entry(any_categorical ? n : 0, cat_nodes.size());
  for (std::size_t k = cat_nodes.size(); k-- > 0;)
    if (cat_nodes[k] >= 0 && cat_nodes[k] < static_cast<std::int64_t>(n))
      cat_entry[static_cast<std::size_t>(cat_nodes[k])] = k;

  TreeIR tree;
  tree.nodes.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    NodeIR& node = tree.nodes[i];
    const std::string np = path + "/node " + std::to_string(i);
    if (left[i] == -1) {
      if (right[i] != -1) r.fail(np, "leaf with a right child");
      node.kind = NodeIR::Kind::Leaf;
      node.value = static_cast<double>(static_cast<float>(cond[i]));
      node.leaf_id = static_cast<std::int32_t>(i);
      continue;
    }
    if (left[i] < 0 || right[i] < 0 || left[i] >= static_cast<std::int64_t>(n) ||
        right[i] >= static_cast<std::int64_t>(n))
      r.fail(np, "child index out of range");
    if (split_index[i] < 0 || split_index[i] >= n_features)
      r.fail(np, "split feature " + std::to_string(split_index[i]) +
                     " out of range (num_feature = " + std::to_string(n_features) + ")");
    if (!split_type.empty() && split_type[i] == 1) {
      const std::size_t k = cat_entry[i];
      if (k == cat_nodes.size()) r.fail(np, "categorical split without a category list in categories_nodes");
      const std::int64_t seg = cat_segments[k], size = cat_sizes[k];
      if (seg < 0 || size < 0 || seg + size > static_cast<std::int64_t>(cat_values.size()))
        r.fail(np, "category list out of range of `categories` (truncated model?)");
      std::int64_t max_cat = -1;
      for (std::int64_t j = seg; j < seg + size; ++j) {
        if (cat_values[j] < 0 || cat_values[j] >= (1 << 24))
          r.fail(np, "invalid category " + std::to_string(cat_values[j]));
        max_cat = std::max(max_cat, cat_values[j]);
      }
      const std::size_t words = static_cast<std::size_t>(max_cat + 1 + 31) / 32;
      // a short category list with a huge category id costs 2^24 / 8 bytes per node: bound the total
      if (bitsets->size() + words > kMaxCategoryWords)
        r.fail(np, "categorical splits need more than " + std::to_string(kMaxCategoryWords / (1 << 18)) +
                       " MiB of category bitsets (absurd category ids?)");
      node.kind = NodeIR::Kind::Categorical;
      node.cat_negative_right = true;
      node.feature = static_cast<std::int32_t>(split_index[i]);
      node.cat_begin = static_cast<std::uint32_t>(bitsets->size());
      bitsets->resize(bitsets->size() + std::max<std::size_t>(words, 1), 0u);
      node.cat_end = static_cast<std::uint32_t>(bitsets->size());
      for (std::int64_t j = seg; j < seg + size; ++j) {
        const auto c = static_cast<std::uint32_t>(cat_values[j]);
        (*bitsets)[node.cat_begin + c / 32] |= 1u << (c % 32);
      }
      // the listed categories go right in XGBoost: they are the IR's left
      node.left = static_cast<std::int32_t>(right[i]);
      node.right = static_cast<std::int32_t>(left[i]);
      node.default_left = dleft[i] == 0;
      continue;
    }
    if (!split_type.empty() && split_type[i] != 0) r.fail(np, "unknown split_type " + std::to_string(split_type[i]));
    node.kind = NodeIR::Kind::Numerical;
    node.op = NodeIR::Op::Less;
    node.feature = static_cast<std::int32_t>(split_index[i]);
    node.threshold = static_cast<double>(static_cast<float>(cond[i]));
    node.default_left = dleft[i] != 0;
    node.left = static_cast<std::int32_t>(left[i]);
    node.right = static_cast<std::int32_t>(right[i]);
  }
  return tree;
}

ForestIR load_xgboost_doc(const detail::JsonDocument& document, const std::string& source_name) {
  JsonReader r(source_name);
  const JsonValue doc = document.root();
  const JsonValue learner = r.member(doc, "learner", "");
  const JsonValue lmp = r.member(learner, "learner_model_param", "learner");
  const JsonValue objective = r.member(learner, "objective", "learner");
  const std::string obj_name = r.string(r.member(objective, "name", "learner/objective"), "learner/objective/name");
  const ObjectiveInfo info = objective_info(obj_name, r);

  ForestIR ir;
  ir.source = SourceFormat::XGBoost;
  ir.source_name = source_name;
  ir.objective = obj_name;
  ir.postprocess = info.post;
  ir.float32_inputs = true;
  ir.float32_accumulate = true;  // XGBoost adds leaves to a float32 margin, tree by tree

  const std::int64_t n_features =
      r.integer(r.member(lmp, "num_feature", "learner/learner_model_param"), "learner/learner_model_param/num_feature");
  if (n_features < 0 || n_features > (1 << 24)) r.fail("learner/learner_model_param/num_feature", "absurd value");
  ir.n_features = static_cast<std::int32_t>(n_features);
  std::int64_t num_class = 0;
  if (const std::optional<JsonValue> nc = lmp.find("num_class"))
    num_class = r.integer(*nc, "learner/learner_model_param/num_class");
  if (num_class < 0 || num_class > 100000) r.fail("learner/learner_model_param/num_class", "absurd value");
  if (const std::optional<JsonValue> nt = lmp.find("num_target")) {
    if (r.integer(*nt, "learner/learner_model_param/num_target") > 1)
      r.fail("learner/learner_model_param/num_target", "multi-target models are not supported");
  }
  ir.n_groups = num_class > 1 ? static_cast<std::int32_t>(num_class) : 1;
  if ((info.post == Postprocess::Softmax || info.post == Postprocess::ArgMax) && num_class < 1)
    r.fail("learner/learner_model_param/num_class", "multi-class objective without num_class");

  std::vector<double> base = parse_base_score(r.member(lmp, "base_score", "learner/learner_model_param"), r);
  if (base.size() != 1 && base.size() != static_cast<std::size_t>(ir.n_groups))
    r.fail("learner/learner_model_param/base_score",
           "has " + std::to_string(base.size()) + " values for " + std::to_string(ir.n_groups) + " outputs");
  ir.base_margin.resize(static_cast<std::size_t>(ir.n_groups));
  for (std::size_t g = 0; g < ir.base_margin.size(); ++g)
    ir.base_margin[g] = apply_link(base.size() == 1 ? base[0] : base[g], info.base_link);

  if (const std::optional<JsonValue> fn = learner.find("feature_names")) {
    const std::size_t n_names = fn->size();
    if (fn->is_array() && n_names > 0) {
      if (n_names != static_cast<std::size_t>(n_features))
        r.fail("learner/feature_names",
               "has " + std::to_string(n_names) + " names for " + std::to_string(n_features) + " features");
      fn->for_each_item([&](const JsonValue& name) {
        ir.feature_names.push_back(r.string(name, "learner/feature_names"));
        return true;
      });
    }
  }

  // gbtree, or dart (gbtree inside, with per-tree weights)
  const JsonValue gb = r.member(learner, "gradient_booster", "learner");
  const std::string gb_name =
      r.string(r.member(gb, "name", "learner/gradient_booster"), "learner/gradient_booster/name");
  std::optional<JsonValue> model;
  std::vector<double> tree_weights;
  if (gb_name == "gbtree") {
    model = r.member(gb, "model", "learner/gradient_booster");
  } else if (gb_name == "dart") {
    const JsonValue inner = r.member(gb, "gbtree", "learner/gradient_booster");
    model = r.member(inner, "model", "learner/gradient_booster/gbtree");
    tree_weights =
        r.numbers(r.member(gb, "weight_drop", "learner/gradient_booster"), "learner/gradient_booster/weight_drop");
  } else {
    r.fail("learner/gradient_booster/name",
           "booster '" + gb_name + "' is not a tree booster (gblinear is not supported)");
  }
  const std::string mpath = "learner/gradient_booster/model";
  const JsonValue trees = r.member(*model, "trees", mpath);
  if (!trees.is_array() || trees.type == JsonValue::Type::NumberArray)
    r.fail(mpath + "/trees", "expected an array of trees");
  const std::size_t n_trees = trees.size();
  const auto tree_info = r.integers(r.member(*model, "tree_info", mpath), mpath + "/tree_info");
  if (tree_info.size() != n_trees)
    r.fail(mpath + "/tree_info",
           "has " + std::to_string(tree_info.size()) + " entries for " + std::to_string(n_trees) + " trees");
  if (const std::optional<JsonValue> gp = model->find("gbtree_model_param")) {
    if (const std::optional<JsonValue> nt = gp->find("num_trees")) {
      if (r.integer(*nt, mpath + "/gbtree_model_param/num_trees") != static_cast<std::int64_t>(n_trees))
        r.fail(mpath + "/gbtree_model_param/num_trees", "disagrees with the number of trees (truncated model?)");
    }
  }
  if (!tree_weights.empty() && tree_weights.size() != n_trees)
    r.fail("learner/gradient_booster/weight_drop", "length differs from the number of trees");

  ir.trees.reserve(n_trees);
  std::size_t t = 0;
  trees.for_each_item([&](const JsonValue& tree_value) {
    const std::string tpath = mpath + "/trees[" + std::to_string(t) + "]";
    TreeIR tree = load_tree(tree_value, r, tpath, ir.n_features, &ir.categories);
    if (tree_info[t] < 0 || tree_info[t] >= ir.n_groups)
      r.fail(mpath + "/tree_info[" + std::to_string(t) + "]", "group out of range");
    tree.group = static_cast<std::int32_t>(tree_info[t]);
    if (!tree_weights.empty()) {
      for (NodeIR& node : tree.nodes)
        if (node.kind == NodeIR::Kind::Leaf)
          node.value = static_cast<double>(static_cast<float>(node.value) * static_cast<float>(tree_weights[t]));
    }
    ir.trees.push_back(std::move(tree));
    ++t;
    return true;
  });
  ir.validate();
  return ir;
}

}  // namespace

ForestIR load_xgboost_json(const std::string& text, const std::string& source_name) {
  return load_xgboost_doc(detail::parse_json(text, source_name), source_name);
}

ForestIR load_xgboost_ubj(const std::string& bytes, const std::string& source_name) {
  return load_xgboost_doc(detail::parse_ubjson(bytes, source_name), source_name);
}

}  // namespace hepinfer
