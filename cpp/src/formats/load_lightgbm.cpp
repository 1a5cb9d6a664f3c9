/// \file load_lightgbm.cpp
/// Loader for LightGBM's text model format (Booster.save_model() /
/// model_to_string(), model versions v2..v4, i.e. LightGBM 2.x to 4.x).
///
/// Semantics reproduced (LightGBM 4.x, include/LightGBM/tree.h, src/io/tree.cpp,
/// src/boosting/gbdt_model_text.cpp, src/objective/*.hpp):
///  * Tree::NumericalDecision: NaN becomes 0.0 unless the missing type is NaN;
///    missing type Zero sends |x| <= kZeroThreshold (and NaN) to the default
///    child; missing type NaN sends NaN to the default child; otherwise left iff
///    x <= threshold (double).
///  * The C API drops |x| <= kZeroThreshold (1e-35f widened to double) from
///    dense rows, so such values reach the trees as exactly 0.0. Thresholds inside
///    that band are moved to an equivalent value outside it (see
///    adjust_zero_band) so that a plain `x <= t` gives LightGBM's answer.
///  * Tree::CategoricalDecision: NaN -> right; int c = (int)x (truncation);
///    c < 0 -> right; left iff bit c is set in the node's bitset (bits beyond the
///    bitset are unset). The default-left bit and the missing type of a
///    categorical node are ignored by LightGBM 4.x.
///  * Leaf values already include the shrinkage and the init score
///    (boost_from_average is baked into the first tree by Tree::AddBias), so
///    base_margin is zero.
///  * average_output (boosting=rf): LightGBM divides the summed raw score by the
///    number of iterations before the objective's ConvertOutput, and reports the
///    undivided sum as the raw score; this loader sets ForestIR::margin_divisor.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/forest_ir.hpp"

namespace hepinfer {
namespace {

/// LightGBM's kZeroThreshold: `const double kZeroThreshold = 1e-35f;`
constexpr double kZeroThreshold = static_cast<double>(1e-35f);
/// LightGBM's own limit on num_leaves (config.cpp: num_leaves <= 131072).
constexpr long long kMaxLeaves = 131072;
/// Generous cap on the number of features (guards the feature name vector).
constexpr long long kMaxFeatures = 100000000;

[[noreturn]] void fail(const std::string& source, const std::string& where, const std::string& what) {
  std::string msg = "LightGBM model '" + source + "'";
  if (!where.empty()) msg += ", " + where;
  msg += ": " + what;
  throw ModelFormatError(msg);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string shorten(std::string_view s) {
  constexpr std::size_t kMax = 60;
  if (s.size() <= kMax) return std::string(s);
  return std::string(s.substr(0, kMax)) + "...";
}

/// One line of the file, with its 1-based line number.
struct Line {
  std::string_view text;
  std::size_t number = 0;
};

/// The lines of a text, one at a time ('\r' of "\r\n" dropped). A vector of all the lines
/// cost 24 bytes per line: 24 times the size of a file of newlines.
class LineCursor {
 public:
  explicit LineCursor(const std::string& text) : text_(text) { load(); }
  bool done() const { return done_; }
  const Line& operator*() const { return cur_; }
  const Line* operator->() const { return &cur_; }
  void next() {
    pos_ = next_pos_;
    ++number_;
    load();
  }

 private:
  void load() {
    if (pos_ >= text_.size()) {
      done_ = true;
      return;
    }
    std::size_t end = text_.find('\n', pos_);
    if (end == std::string::npos) end = text_.size();
    std::string_view line(text_.data() + pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    cur_ = {line, number_};
    next_pos_ = end + 1;
  }

  const std::string& text_;
  std::size_t pos_ = 0;
  std::size_t next_pos_ = 0;
  std::size_t number_ = 1;
  bool done_ = false;
  Line cur_;
};

bool parse_double(std::string_view tok, double* out) {
  if (!tok.empty() && tok.front() == '+') tok.remove_prefix(1);
  if (tok.empty()) return false;
  double v = 0.0;
  const char* first = tok.data();
  const char* last = tok.data() + tok.size();
  auto res = std::from_chars(first, last, v, std::chars_format::general);
  if (res.ec == std::errc::result_out_of_range) {
    // Out of double range: fall back to strtod for the correctly signed inf/0.
    std::string tmp(tok);
    char* endp = nullptr;
    v = std::strtod(tmp.c_str(), &endp);
    if (endp != tmp.c_str() + tmp.size()) return false;
    *out = v;
    return true;
  }
  if (res.ec != std::errc() || res.ptr != last) return false;
  *out = v;
  return true;
}

bool parse_int(std::string_view tok, long long* out) {
  if (!tok.empty() && tok.front() == '+') tok.remove_prefix(1);
  if (tok.empty()) return false;
  long long v = 0;
  const char* last = tok.data() + tok.size();
  auto res = std::from_chars(tok.data(), last, v, 10);
  if (res.ec != std::errc() || res.ptr != last) return false;
  *out = v;
  return true;
}

/// Calls f(token) for each space/tab-separated token of s, in order.
template <typename F>
void for_each_token(std::string_view s, F&& f) {
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) f(s.substr(i, j - i));
    i = j;
  }
}

/// Number of space/tab-separated tokens of s (without allocating).
std::size_t count_ws(std::string_view s) {
  std::size_t n = 0;
  for_each_token(s, [&n](std::string_view) { ++n; });
  return n;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

/// key=value lines of one section, remembering the line of each key.
struct Entry {
  std::string_view value;
  std::size_t line = 0;
};

/// key=value lines of one section: 16 bytes per line (where its key is, the key's length, the
/// line number), sorted by key once the section is read; the value is found again in the line
/// when asked for. A map of strings cost ~100 bytes per line: 13 times the size of a file of
/// short distinct keys.
class KeyVals {
 public:
  explicit KeyVals(const std::string& text) : text_(text) {}

  /// `line` is a line of the text; `key` = trim(line up to its '='), not empty.
  void add(const Line& line, std::string_view key) {
    // line numbers are for messages only: clamp, past 4G lines (a file of more than 4 GB)
    const auto number = static_cast<std::uint32_t>(std::min<std::size_t>(line.number, UINT32_MAX));
    items_.push_back(
        {static_cast<std::size_t>(key.data() - text_.data()), static_cast<std::uint32_t>(key.size()), number});
  }

  /// Sorts the keys; fails on the first (in file order) repetition of a key.
  void finish(const std::string& source, const std::string& where) {
    std::sort(items_.begin(), items_.end(), [this](const Item& x, const Item& y) {
      const std::string_view kx = key(x), ky = key(y);
      return kx != ky ? kx < ky : x.line < y.line;
    });
    const Item* dup = nullptr;
    for (std::size_t i = 1; i < items_.size(); ++i)
      if (key(items_[i]) == key(items_[i - 1]) && (dup == nullptr || items_[i].line < dup->line)) dup = &items_[i];
    if (dup != nullptr) {
      fail(source, (where.empty() ? std::string() : where + ", ") + "line " + std::to_string(dup->line),
           "duplicate key '" + std::string(key(*dup)) + "'");
    }
    sorted_ = items_.size();
  }

  /// Whether `k` is a key; its entry into *out when out is not null.
  bool find(std::string_view k, Entry* out) const {
    const auto end = items_.begin() + static_cast<std::ptrdiff_t>(sorted_);
    auto it =
        std::lower_bound(items_.begin(), end, k, [this](const Item& x, std::string_view kk) { return key(x) < kk; });
    if (it == end || key(*it) != k) return false;
    if (out != nullptr) *out = Entry{value(*it), it->line};
    return true;
  }

 private:
  struct Item {
    std::size_t key_offset;  ///< of the (trimmed) key in the text
    std::uint32_t key_size;
    std::uint32_t line;  ///< 1-based line number
  };
  std::string_view key(const Item& it) const { return std::string_view(text_.data() + it.key_offset, it.key_size); }
  /// what follows the line's '=' (empty without one), '\r' of "\r\n" dropped
  std::string_view value(const Item& it) const {
    std::size_t end = text_.find('\n', it.key_offset);
    if (end == std::string::npos) end = text_.size();
    std::string_view t(text_.data() + it.key_offset, end - it.key_offset);
    if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
    const std::size_t eq = t.find('=');
    return eq == std::string_view::npos ? std::string_view() : t.substr(eq + 1);
  }

  const std::string& text_;
  std::deque<Item> items_;  ///< a deque: growing it copies nothing (a vector peaks at 3x its size)
  std::size_t sorted_ = 0;
};

/// Context for error messages and typed access to one section.
class Section {
 public:
  Section(const std::string& source, std::string where, KeyVals kv)
      : source_(source), where_(std::move(where)), kv_(std::move(kv)) {}

  bool has(std::string_view key) const { return kv_.find(key, nullptr); }

  Entry get(std::string_view key) const {
    Entry e;
    if (!kv_.find(key, &e)) fail(source_, where_, "missing key '" + std::string(key) + "'");
    return e;
  }

  std::string place(std::string_view key, std::size_t line) const {
    std::string w = where_.empty() ? std::string() : where_ + ", ";
    return w + "key '" + std::string(key) + "' (line " + std::to_string(line) + ")";
  }

  long long get_int(std::string_view key, long long lo, long long hi) const {
    const Entry& e = get(key);
    long long v = 0;
    if (!parse_int(trim(e.value), &v)) {
      fail(source_, place(key, e.line), "expected an integer, got '" + shorten(e.value) + "'");
    }
    if (v < lo || v > hi) {
      fail(source_, place(key, e.line),
           "value " + std::to_string(v) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }

  std::vector<double> get_doubles(std::string_view key, std::size_t expected) const {
    const Entry& e = get(key);
    const std::size_t n = count_ws(e.value);
    if (n != expected) {
      fail(source_, place(key, e.line), "expected " + std::to_string(expected) + " values, found " + std::to_string(n));
    }
    std::vector<double> out(n);
    std::size_t i = 0;
    for_each_token(e.value, [&](std::string_view tok) {
      if (!parse_double(tok, &out[i])) {
        fail(source_, place(key, e.line), "value #" + std::to_string(i) + " '" + shorten(tok) + "' is not a number");
      }
      ++i;
    });
    return out;
  }

  std::vector<long long> get_ints(std::string_view key, std::size_t expected, long long lo, long long hi) const {
    const Entry& e = get(key);
    const std::size_t n = count_ws(e.value);
    if (n != expected) {
      fail(source_, place(key, e.line), "expected " + std::to_string(expected) + " values, found " + std::to_string(n));
    }
    std::vector<long long> out(n);
    std::size_t i = 0;
    for_each_token(e.value, [&](std::string_view tok) {
      if (!parse_int(tok, &out[i])) {
        fail(source_, place(key, e.line), "value #" + std::to_string(i) + " '" + shorten(tok) + "' is not an integer");
      }
      if (out[i] < lo || out[i] > hi) {
        fail(source_, place(key, e.line),
             "value #" + std::to_string(i) + " = " + std::to_string(out[i]) + " out of range [" + std::to_string(lo) +
                 ", " + std::to_string(hi) + "]");
      }
      ++i;
    });
    return out;
  }

  const std::string& source() const { return source_; }
  const std::string& where() const { return where_; }

 private:
  const std::string& source_;
  std::string where_;
  KeyVals kv_;
};

/// Parse "key=value" (or a bare "key") into kv; duplicate keys are an error (in kv->finish()).
void add_key_value(const std::string& source, const std::string& where, const Line& line, KeyVals* kv) {
  std::string_view t = line.text;
  std::size_t eq = t.find('=');
  const std::string_view key = trim(eq == std::string_view::npos ? t : t.substr(0, eq));
  if (key.empty()) {
    kv->finish(source, where);  // a duplicate on an earlier line is reported first
    fail(source, (where.empty() ? std::string() : where + ", ") + "line " + std::to_string(line.number),
         "malformed line '" + shorten(t) + "'");
  }
  kv->add(line, key);
}

/// LightGBM drops |x| <= kZeroThreshold from dense input rows (the C API keeps
/// only values with fabs(x) > kZeroThreshold or NaN), so every value in that
/// band is compared as 0.0. Move a threshold that lies in the band to the
/// equivalent one just outside it, so that `x <= t` on the raw value agrees.
double adjust_zero_band(double t) {
  if (t >= -kZeroThreshold && t < kZeroThreshold) {
    if (0.0 <= t) return kZeroThreshold;  // 0 goes left: so does the whole band
    return std::nextafter(-kZeroThreshold, -std::numeric_limits<double>::infinity());  // band goes right
  }
  return t;
}

struct ObjectiveInfo {
  Postprocess postprocess = Postprocess::Identity;
  double sigmoid_scale = 1.0;
  std::string name;  // for ForestIR::objective
};

ObjectiveInfo parse_objective(const std::string& source, const Section& header, std::int32_t num_class) {
  ObjectiveInfo info;
  if (!header.has("objective")) {
    // Custom objective (fobj): LightGBM writes no objective line and predicts raw scores.
    info.name = "lightgbm:custom";
    return info;
  }
  const Entry& e = header.get("objective");
  const std::string where = header.place("objective", e.line);
  // LightGBM writes a handful of parameters: do not build a map of millions
  constexpr std::size_t kMaxObjectiveTokens = 1000;
  if (count_ws(e.value) > kMaxObjectiveTokens)
    fail(source, where, "more than " + std::to_string(kMaxObjectiveTokens) + " objective parameters");
  std::vector<std::string_view> toks = split_ws(e.value);
  if (toks.empty()) fail(source, where, "empty objective");
  const std::string name(toks[0]);
  std::map<std::string, std::string, std::less<>> params;
  bool reg_sqrt = false;
  for (std::size_t i = 1; i < toks.size(); ++i) {
    std::string_view t = toks[i];
    if (t == "sqrt") {
      reg_sqrt = true;
      continue;
    }
    std::size_t c = t.find(':');
    if (c == std::string_view::npos) fail(source, where, "unexpected objective parameter '" + shorten(t) + "'");
    params[std::string(t.substr(0, c))] = std::string(t.substr(c + 1));
  }
  auto sigmoid_scale = [&]() {
    double s = 1.0;
    auto it = params.find("sigmoid");
    if (it != params.end()) {
      if (!parse_double(it->second, &s)) fail(source, where, "bad sigmoid parameter '" + shorten(it->second) + "'");
    }
    if (!(s > 0.0) || !std::isfinite(s)) {
      fail(source, where, "objective '" + name + "' with sigmoid:" + it->second + " (must be a positive number)");
    }
    info.sigmoid_scale = s;
  };
  auto check_num_class = [&]() {
    auto it = params.find("num_class");
    if (it != params.end()) {
      long long k = 0;
      if (!parse_int(it->second, &k) || k != num_class) {
        fail(source, where,
             "objective num_class:" + it->second + " disagrees with num_class=" + std::to_string(num_class));
      }
    }
  };
  info.name = "lightgbm:" + name;
  if (name == "binary") {
    sigmoid_scale();
    info.postprocess = Postprocess::Sigmoid;
  } else if (name == "cross_entropy" || name == "xentropy") {
    info.postprocess = Postprocess::Sigmoid;
  } else if (name == "multiclass" || name == "softmax") {
    check_num_class();
    info.postprocess = Postprocess::Softmax;
  } else if (name == "multiclassova" || name == "multiclass_ova" || name == "ova" || name == "ovr") {
    check_num_class();
    sigmoid_scale();
    info.postprocess = Postprocess::Sigmoid;  // per class, independently
  } else if (name == "regression" || name == "regression_l2" || name == "l2" || name == "mean_squared_error" ||
             name == "mse" || name == "l2_root" || name == "root_mean_squared_error" || name == "rmse" ||
             name == "regression_l1" || name == "l1" || name == "mean_absolute_error" || name == "mae" ||
             name == "huber" || name == "fair" || name == "quantile" || name == "mape" ||
             name == "mean_absolute_percentage_error" || name == "lambdarank" || name == "rank_xendcg" ||
             name == "xendcg" || name == "xe_ndcg" || name == "xe_ndcg_mart" || name == "xendcg_mart" ||
             name == "custom" || name == "none" || name == "null" || name == "na") {
    // reg_sqrt: LightGBM trained on sign(y)*sqrt(|y|) and squares the margin back.
    info.postprocess = reg_sqrt ? Postprocess::SignedSquare : Postprocess::Identity;
    if (reg_sqrt) info.name += " sqrt";
  } else if (name == "poisson" || name == "gamma" || name == "tweedie") {
    info.postprocess = Postprocess::Exp;
  } else if (name == "cross_entropy_lambda" || name == "xentlambda") {
    info.postprocess = Postprocess::Log1pExp;
  } else {
    fail(source, where, "unknown objective '" + shorten(name) + "'");
  }
  if (reg_sqrt && info.postprocess != Postprocess::SignedSquare) {
    fail(source, where, "objective '" + name + " sqrt': reg_sqrt is only defined for the regression objectives");
  }
  return info;
}

/// Parse one "Tree=k" block into `tree` (categories appended to ir->categories).
void parse_tree(const Section& sec, std::int32_t n_features, ForestIR* ir, TreeIR* tree) {
  const std::string& source = sec.source();
  const long long num_leaves = sec.get_int("num_leaves", 1, kMaxLeaves);
  const long long num_cat = sec.get_int("num_cat", 0, kMaxLeaves);
  if (sec.has("is_linear")) {
    long long lin = sec.get_int("is_linear", 0, 1);
    if (lin != 0) {
      fail(source, sec.where(), "linear trees (is_linear=1, linear_tree=true) are not supported yet");
    }
  }
  const std::size_t nl = static_cast<std::size_t>(num_leaves);
  const std::size_t ni = nl - 1;  // internal nodes
  std::vector<double> leaf_value = sec.get_doubles("leaf_value", nl);

  tree->nodes.clear();
  if (num_leaves == 1) {
    NodeIR leaf;
    leaf.kind = NodeIR::Kind::Leaf;
    leaf.value = leaf_value[0];
    leaf.leaf_id = 0;
    tree->nodes.push_back(leaf);
    return;
  }

  const long long max_node = static_cast<long long>(ni) - 1;
  const long long min_leaf = -static_cast<long long>(nl);  // ~(nl-1)
  std::vector<long long> split_feature = sec.get_ints("split_feature", ni, 0, n_features - 1);
  std::vector<double> threshold = sec.get_doubles("threshold", ni);
  std::vector<long long> decision_type = sec.get_ints("decision_type", ni, -128, 127);
  std::vector<long long> left = sec.get_ints("left_child", ni, min_leaf, max_node);
  std::vector<long long> right = sec.get_ints("right_child", ni, min_leaf, max_node);

  std::vector<long long> cat_boundaries;
  std::vector<long long> cat_threshold;
  if (num_cat > 0) {
    const Entry& ct = sec.get("cat_threshold");
    const std::size_t n_words = count_ws(ct.value);
    cat_boundaries =
        sec.get_ints("cat_boundaries", static_cast<std::size_t>(num_cat) + 1, 0, static_cast<long long>(n_words));
    if (cat_boundaries.front() != 0 || static_cast<std::size_t>(cat_boundaries.back()) != n_words) {
      fail(source, sec.place("cat_boundaries", sec.get("cat_boundaries").line),
           "must start at 0 and end at the number of cat_threshold words (" + std::to_string(n_words) + ")");
    }
    for (std::size_t i = 1; i < cat_boundaries.size(); ++i) {
      if (cat_boundaries[i] < cat_boundaries[i - 1]) {
        fail(source, sec.place("cat_boundaries", sec.get("cat_boundaries").line), "must be non-decreasing");
      }
    }
    cat_threshold = sec.get_ints("cat_threshold", n_words, 0, 0xFFFFFFFFLL);
  }

  // Layout in the IR: internal node i -> i, leaf j -> ni + j.
  auto map_child = [&](long long c) -> std::int32_t {
    return c >= 0 ? static_cast<std::int32_t>(c) : static_cast<std::int32_t>(static_cast<long long>(ni) + ~c);
  };

  // Structure check: every node except the root is the child of exactly one
  // internal node, and everything is reachable from the root (no cycles).
  std::vector<std::uint8_t> seen(ni + nl, 0);
  {
    std::vector<std::int32_t> stack;
    stack.push_back(0);
    seen[0] = 1;
    std::size_t visited = 1;
    while (!stack.empty()) {
      const std::int32_t node = stack.back();
      stack.pop_back();
      const std::size_t k = static_cast<std::size_t>(node);
      for (long long c : {left[k], right[k]}) {
        const std::int32_t m = map_child(c);
        if (m == 0 || seen[static_cast<std::size_t>(m)] != 0) {
          fail(source, sec.where() + ", node " + std::to_string(node),
               "child " + std::to_string(c) + " is referenced more than once (not a tree)");
        }
        seen[static_cast<std::size_t>(m)] = 1;
        ++visited;
        if (c >= 0) stack.push_back(m);
      }
    }
    if (visited != ni + nl) {
      fail(source, sec.where(), "some nodes or leaves are not reachable from the root");
    }
  }

  tree->nodes.resize(ni + nl);
  std::vector<long long> cat_start(static_cast<std::size_t>(num_cat), -1);  // offset of each bitset in ir->categories
  for (std::size_t i = 0; i < ni; ++i) {
    NodeIR& node = tree->nodes[i];
    const long long dt = decision_type[i];
    const bool is_cat = (dt & 1) != 0;
    const bool dleft = (dt & 2) != 0;
    const long long missing_type = (dt >> 2) & 3;
    node.feature = static_cast<std::int32_t>(split_feature[i]);
    node.left = map_child(left[i]);
    node.right = map_child(right[i]);
    if (is_cat) {
      const double t = threshold[i];
      if (!(t >= 0.0 && t < static_cast<double>(num_cat)) || t != std::floor(t)) {
        fail(source, sec.where() + ", node " + std::to_string(i),
             "categorical split refers to bitset " + std::to_string(t) + " but num_cat=" + std::to_string(num_cat));
      }
      const std::size_t idx = static_cast<std::size_t>(t);
      const std::size_t b = static_cast<std::size_t>(cat_boundaries[idx]);
      const std::size_t e = static_cast<std::size_t>(cat_boundaries[idx + 1]);
      node.kind = NodeIR::Kind::Categorical;
      node.default_left = false;  // LightGBM 4.x: NaN and negative categories go right
      node.zero_is_missing = false;
      // Nodes naming the same bitset share its words (LightGBM gives every categorical split its
      // own bitset; a file pointing many nodes at one large bitset must not multiply memory).
      if (cat_start[idx] < 0) {
        if (ir->categories.size() + (e - b) > static_cast<std::size_t>(std::numeric_limits<std::uint32_t>::max()))
          fail(source, sec.where(), "too many categorical bitset words");
        cat_start[idx] = static_cast<long long>(ir->categories.size());
        for (std::size_t w = b; w < e; ++w) ir->categories.push_back(static_cast<std::uint32_t>(cat_threshold[w]));
      }
      node.cat_begin = static_cast<std::uint32_t>(cat_start[idx]);
      node.cat_end = static_cast<std::uint32_t>(static_cast<std::size_t>(cat_start[idx]) + (e - b));
    } else {
      if (missing_type == 3) {
        fail(source, sec.where() + ", node " + std::to_string(i),
             "invalid decision_type " + std::to_string(dt) + " (missing type 3)");
      }
      const double t = adjust_zero_band(threshold[i]);
      node.kind = NodeIR::Kind::Numerical;
      node.op = NodeIR::Op::LessEqual;
      node.threshold = t;
      if (missing_type == 0) {
        // None: NaN is replaced by 0.0 before the comparison.
        node.default_left = (0.0 <= t);
        node.zero_is_missing = false;
      } else if (missing_type == 1) {
        // Zero: NaN and |x| <= kZeroThreshold take the default child.
        node.default_left = dleft;
        node.zero_is_missing = true;
      } else {
        // NaN: NaN takes the default child.
        node.default_left = dleft;
        node.zero_is_missing = false;
      }
    }
  }
  for (std::size_t j = 0; j < nl; ++j) {
    NodeIR& leaf = tree->nodes[ni + j];
    leaf.kind = NodeIR::Kind::Leaf;
    leaf.value = leaf_value[j];
    leaf.leaf_id = static_cast<std::int32_t>(j);
  }
}

}  // namespace

ForestIR load_lightgbm_text(const std::string& text, const std::string& source_name) {
  const std::string& source = source_name;
  LineCursor line(text);

  // ---- header: everything before the first "Tree=" / "end of trees" ----
  while (!line.done() && trim(line->text).empty()) line.next();
  if (line.done()) fail(source, "", "empty model text");
  {
    std::string_view first = trim(line->text);
    if (first != "tree") {
      fail(source, "line " + std::to_string(line->number),
           "not a LightGBM text model (first line is '" + shorten(first) + "', expected 'tree')");
    }
    line.next();
  }
  KeyVals header_kv(text);
  for (; !line.done(); line.next()) {
    std::string_view t = trim(line->text);
    if (t.empty()) continue;
    if (t.substr(0, 5) == "Tree=" || t == "end of trees") break;
    add_key_value(source, "header", *line, &header_kv);
  }
  header_kv.finish(source, "header");
  Section header(source, "header", std::move(header_kv));

  if (header.has("version")) {
    std::string_view v = trim(header.get("version").value);
    if (v != "v2" && v != "v3" && v != "v4") {
      fail(source, header.place("version", header.get("version").line),
           "unsupported model version '" + shorten(v) + "' (v2, v3, v4 are supported)");
    }
  }

  ForestIR ir;
  ir.source = SourceFormat::LightGBM;
  ir.source_name = source_name;
  ir.float32_inputs = false;

  const long long num_class = header.get_int("num_class", 1, kMaxLeaves);
  const long long ntpi =
      header.has("num_tree_per_iteration") ? header.get_int("num_tree_per_iteration", 1, kMaxLeaves) : num_class;
  if (ntpi != num_class) {
    fail(source, header.place("num_tree_per_iteration", header.get("num_tree_per_iteration").line),
         "num_tree_per_iteration=" + std::to_string(ntpi) + " differs from num_class=" + std::to_string(num_class) +
             " (not supported)");
  }
  const long long max_feature_idx = header.get_int("max_feature_idx", 0, kMaxFeatures - 1);
  ir.n_features = static_cast<std::int32_t>(max_feature_idx + 1);
  ir.n_groups = static_cast<std::int32_t>(num_class);
  ir.base_margin.assign(static_cast<std::size_t>(num_class), 0.0);

  {
    const Entry& fn = header.get("feature_names");
    const std::size_t n_names = count_ws(fn.value);
    if (n_names != static_cast<std::size_t>(ir.n_features)) {
      fail(
          source, header.place("feature_names", fn.line),
          "expected " + std::to_string(ir.n_features) + " names (max_feature_idx+1), found " + std::to_string(n_names));
    }
    ir.feature_names.reserve(n_names);
    for_each_token(fn.value, [&ir](std::string_view n) { ir.feature_names.emplace_back(n); });
  }

  ObjectiveInfo obj = parse_objective(source, header, static_cast<std::int32_t>(num_class));
  ir.postprocess = obj.postprocess;
  ir.objective = obj.name;
  ir.sigmoid_scale = obj.sigmoid_scale;
  if (ir.postprocess == Postprocess::Softmax && num_class < 2) {
    fail(source, "header", "multiclass objective with num_class=" + std::to_string(num_class));
  }
  if (num_class > 1 && ir.postprocess != Postprocess::Softmax && ir.postprocess != Postprocess::Sigmoid &&
      ir.postprocess != Postprocess::Identity) {
    fail(source, "header", "objective '" + obj.name + "' with num_class>1 is not supported");
  }

  const bool average_output = header.has("average_output");

  // tree_sizes (written by LightGBM >= 2.1) gives the number of trees to expect.
  long long expected_trees = -1;
  if (header.has("tree_sizes")) {
    const Entry& ts = header.get("tree_sizes");
    expected_trees = static_cast<long long>(count_ws(ts.value));
  }

  // ---- trees ----
  struct Block {
    KeyVals kv;
    std::size_t line = 0;
  };
  std::vector<Block> blocks;
  bool saw_end = false;
  while (!line.done()) {
    std::string_view t = trim(line->text);
    if (t.empty()) {
      line.next();
      continue;
    }
    if (t == "end of trees") {
      saw_end = true;
      break;
    }
    if (t.substr(0, 5) != "Tree=") {
      fail(source, "line " + std::to_string(line->number),
           "expected 'Tree=" + std::to_string(blocks.size()) + "' or 'end of trees', found '" + shorten(t) + "'");
    }
    long long idx = -1;
    if (!parse_int(trim(t.substr(5)), &idx) || idx != static_cast<long long>(blocks.size())) {
      fail(source, "line " + std::to_string(line->number),
           "expected 'Tree=" + std::to_string(blocks.size()) + "', found '" + shorten(t) + "'");
    }
    Block blk{KeyVals(text), line->number};
    const std::string where = "Tree=" + std::to_string(idx);
    line.next();
    for (; !line.done(); line.next()) {
      std::string_view l = trim(line->text);
      if (l.empty() || l.substr(0, 5) == "Tree=" || l == "end of trees") break;
      add_key_value(source, where, *line, &blk.kv);
    }
    blk.kv.finish(source, where);
    blocks.push_back(std::move(blk));
  }
  if (expected_trees >= 0) {
    if (static_cast<long long>(blocks.size()) != expected_trees) {
      fail(source, "",
           "tree_sizes lists " + std::to_string(expected_trees) + " trees but " + std::to_string(blocks.size()) +
               " were found (truncated file?)");
    }
  }
  // LightGBM >= 2.1 (model versions v3, v4 and most v2 files) always writes
  // "end of trees"; without it the text was cut short.
  const bool old_format = !header.has("version") || trim(header.get("version").value) == "v2";
  if (!saw_end && (expected_trees >= 0 || !old_format)) {
    fail(source, "", "missing 'end of trees' line (truncated file?)");
  }
  if (!saw_end && blocks.empty()) {
    fail(source, "", "no trees and no 'end of trees' line (truncated file?)");
  }
  if (blocks.size() % static_cast<std::size_t>(ntpi) != 0) {
    fail(source, "",
         std::to_string(blocks.size()) + " trees is not a multiple of num_tree_per_iteration=" + std::to_string(ntpi));
  }
  const std::size_t n_iter = blocks.size() / static_cast<std::size_t>(ntpi);
  if (average_output && n_iter > 0) ir.margin_divisor = static_cast<double>(n_iter);

  ir.trees.resize(blocks.size());
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    Section sec(source, "Tree=" + std::to_string(i), std::move(blocks[i].kv));
    parse_tree(sec, ir.n_features, &ir, &ir.trees[i]);
    ir.trees[i].group = static_cast<std::int32_t>(i % static_cast<std::size_t>(ntpi));
  }
  if (ir.categories.size() > static_cast<std::size_t>(std::numeric_limits<std::uint32_t>::max())) {
    fail(source, "", "too many categorical bitset words");
  }
  return ir;
}

}  // namespace hepinfer
