// TMVA BDT weight files (XML) -> ForestIR, with the semantics of TMVA::Reader.
//
// What TMVA computes (ROOT's tmva/tmva/src, all eras that write XML):
//  * MethodBDT::ReadWeightsFromXML: every child of <Weights> is a tree; its
//    "boostWeight" is read into a Float_t. The tree type comes from
//    <Weights AnalysisType=..> (TreeType before TMVA 4.1.0); 1 = regression.
//  * DecisionTreeNode::ReadAttributes: optional NCoef + fC0..fC{NCoef-1}
//    (Double_t, the last one is the constant), IVar (Short_t), Cut (Float_t),
//    cType (Bool_t), optional res / rms (Float_t), purity (Float_t) or else
//    nS / nB (purity = nS/(nS+nB) in float), nType (Int_t). Node::ReadXML
//    attaches children by their "pos" ('l' / 'r').
//  * DecisionTree::CheckEvent: descend while nType == 0; a node with nType != 0
//    is a leaf whatever children it has. The leaf gives res for regression
//    trees, else nType with UseYesNoLeaf, else purity.
//  * DecisionTreeNode::GoesRight: r = (x >= Cut) since ROOT 6.18, (x > Cut)
//    before; Fisher nodes r = (c_last + sum_i c_i x_i > Cut) in double; then
//    right iff (cType ? r : !r). Inputs and Cut are Float_t.
//  * MethodBDT::PrivateGetMvaValue: Grad -> 2/(1+exp(-2 sum))-1 over
//    CheckEvent(ev, false); otherwise sum(w_i y_i)/sum(w_i), 0 when
//    sum(w_i) <= DBL_EPSILON. ProcessOptions: RealAdaBoost -> AdaBoost with
//    UseYesNoLeaf=false; AdaCost -> UseYesNoLeaf=false.
//  * TransformationHandler::ReadFromXML adds each transformation with
//    reference class -1, so Decorrelation / Normalize / PCA use their last
//    class block (all classes combined). Transformed values are Float_t.

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/forest_ir.hpp"
#include "formats/xml.hpp"

namespace hepinfer {

namespace {

using detail::XmlDocument;
using detail::XmlElement;

constexpr long long kMaxVars = 1 << 20;               // variables in a weight file
constexpr long long kMaxTrees = 10'000'000;           // trees in a weight file
constexpr std::size_t kMaxTransformCells = 1u << 24;  // n_features^2 for a matrix transform
constexpr std::size_t kMaxLinearValues = 1u << 27;    // Fisher coefficient storage (doubles)

class Loader {
 public:
  Loader(const std::string& text, const std::string& source, TMVACutOp op) : text_(text), src_(source), op_(op) {}

  ForestIR run();

 private:
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw ModelFormatError(src_ + ": " + where + ": " + what);
  }
  static std::string at_line(const XmlElement& e) { return "line " + std::to_string(e.line()); }
  std::string place(const XmlElement& e) const { return "<" + std::string(e.name()) + "> at " + at_line(e); }

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
      s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
      s.remove_suffix(1);
    return s;
  }

  static bool parse_double(std::string_view s, double& out) {
    s = trim(s);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    if (s.empty()) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }
  static bool parse_float(std::string_view s, float& out) {
    s = trim(s);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    if (s.empty()) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }
  static bool parse_int(std::string_view s, long long& out) {
    s = trim(s);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    if (s.empty()) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }

  std::string need(const XmlElement& e, const char* name, const std::string& where) const {
    std::optional<std::string> v = e.attr(name);
    if (!v) fail(where, std::string("attribute \"") + name + "\" is missing");
    return *v;
  }
  long long need_int(const XmlElement& e, const char* name, const std::string& where, long long lo,
                     long long hi) const {
    long long v = 0;
    const std::string& s = need(e, name, where);
    if (!parse_int(s, v)) fail(where, std::string("attribute \"") + name + "\" is not an integer: \"" + s + "\"");
    if (v < lo || v > hi)
      fail(where, std::string("attribute \"") + name + "\" = " + std::to_string(v) + " is out of range [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  float need_float(const XmlElement& e, const char* name, const std::string& where) const {
    float v = 0;
    const std::string& s = need(e, name, where);
    if (!parse_float(s, v)) fail(where, std::string("attribute \"") + name + "\" is not a number: \"" + s + "\"");
    if (!std::isfinite(v)) fail(where, std::string("attribute \"") + name + "\" is not finite: \"" + s + "\"");
    return v;
  }
  double need_double(const XmlElement& e, const char* name, const std::string& where) const {
    double v = 0;
    const std::string& s = need(e, name, where);
    if (!parse_double(s, v)) fail(where, std::string("attribute \"") + name + "\" is not a number: \"" + s + "\"");
    if (!std::isfinite(v)) fail(where, std::string("attribute \"") + name + "\" is not finite: \"" + s + "\"");
    return v;
  }
  static bool parse_bool(std::string_view s, bool& out) {
    s = trim(s);
    std::string l(s);
    for (char& c : l) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (l == "1" || l == "true" || l == "t" || l == "yes") {
      out = true;
      return true;
    }
    if (l == "0" || l == "false" || l == "f" || l == "no") {
      out = false;
      return true;
    }
    return false;
  }

  /// Whitespace-separated numbers of an element's text; at least `count` of them.
  std::vector<double> numbers(const XmlElement& e, std::size_t count, const std::string& where) const {
    std::vector<double> out;
    const std::string text = e.text();
    out.reserve(std::min(count, text.size() / 2 + 1));  // a number takes >= 2 characters: trust the text, not the count
    std::string_view s = text;
    std::size_t i = 0;
    while (out.size() < count) {
      while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
      if (i >= s.size())
        fail(where, "has " + std::to_string(out.size()) + " numbers, expected " + std::to_string(count));
      std::size_t j = i;
      while (j < s.size() && !(s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) ++j;
      double v = 0;
      if (!parse_double(s.substr(i, j - i), v) || !std::isfinite(v))
        fail(where, "invalid number \"" + std::string(s.substr(i, j - i)) + "\"");
      out.push_back(v);
      i = j;
    }
    return out;
  }

  void read_general_info(const XmlElement& root);
  void read_options(const XmlElement& root);
  void read_variables(const XmlElement& root);
  void read_transformations(const XmlElement& root);
  std::vector<std::int32_t> read_selection(const XmlElement& sel, const char* block, const std::string& where) const;
  void read_weights(const XmlElement& root);
  void read_tree(const XmlElement& bt, std::size_t itree, TreeIR& tree);

  const std::string& text_;
  const std::string& src_;
  TMVACutOp op_;
  std::unique_ptr<XmlDocument> doc_;
  ForestIR ir_;

  std::string root_release_;
  std::string analysis_type_info_;
  std::string boost_type_ = "AdaBoost";
  bool use_yes_no_leaf_ = true;
  bool use_weighted_trees_ = true;
  bool do_preselection_ = false;
  bool cut_greater_equal_ = true;
  int tree_analysis_type_ = 0;
  std::int32_t nvar_ = 0;
  std::vector<std::string> labels_;
};

void Loader::read_general_info(const XmlElement& root) {
  const std::optional<XmlElement> gi = doc_->child(root, "GeneralInfo");
  if (!gi) return;
  for (const XmlElement info : doc_->children(*gi, "Info")) {
    const std::optional<std::string> name = info.attr("name");
    const std::optional<std::string> value = info.attr("value");
    if (!name || !value) continue;
    if (*name == "ROOT Release") root_release_ = *value;
    else if (*name == "AnalysisType") analysis_type_info_ = std::string(trim(*value));
  }
}

void Loader::read_options(const XmlElement& root) {
  const std::optional<XmlElement> opts = doc_->child(root, "Options");
  if (!opts) return;
  for (const XmlElement o : doc_->children(*opts, "Option")) {
    const std::optional<std::string> name = o.attr("name");
    if (!name) continue;
    const std::string value(trim(o.text()));
    const std::string where = "option " + *name + " (" + at_line(o) + ")";
    bool b = false;
    if (*name == "BoostType") {
      boost_type_ = value;
    } else if (*name == "UseYesNoLeaf") {
      if (!parse_bool(value, b)) fail(where, "is not a boolean: \"" + value + "\"");
      use_yes_no_leaf_ = b;
    } else if (*name == "UseWeightedTrees") {
      if (!parse_bool(value, b)) fail(where, "is not a boolean: \"" + value + "\"");
      use_weighted_trees_ = b;
    } else if (*name == "DoPreselection") {
      if (!parse_bool(value, b)) fail(where, "is not a boolean: \"" + value + "\"");
      do_preselection_ = b;
    }
  }
}

void Loader::read_variables(const XmlElement& root) {
  const std::optional<XmlElement> vars = doc_->child(root, "Variables");
  if (!vars) fail("weight file", "no <Variables> block");
  const std::string where = place(*vars);
  const long long nvar = need_int(*vars, "NVar", where, 1, kMaxVars);
  const XmlElement::Children list = doc_->children(*vars, "Variable");
  const std::size_t n_list = list.size();
  if (static_cast<long long>(n_list) != nvar)
    fail(where, "NVar=" + std::to_string(nvar) + " but " + std::to_string(n_list) + " <Variable> entries");
  nvar_ = static_cast<std::int32_t>(nvar);
  ir_.n_features = nvar_;
  ir_.feature_names.assign(static_cast<std::size_t>(nvar), std::string());
  ir_.feature_expressions.assign(static_cast<std::size_t>(nvar), std::string());
  labels_.assign(static_cast<std::size_t>(nvar), std::string());
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(nvar), 0);
  for (const XmlElement v : list) {
    const std::string vw = "variable " + place(v);
    const auto idx = static_cast<std::size_t>(need_int(v, "VarIndex", vw, 0, nvar - 1));
    if (seen[idx]) fail(vw, "duplicate VarIndex " + std::to_string(idx));
    seen[idx] = 1;
    const std::string expr = need(v, "Expression", vw);
    const std::optional<std::string> label = v.attr("Label");
    ir_.feature_names[idx] = expr;
    ir_.feature_expressions[idx] = expr;
    labels_[idx] = label ? *label : expr;
  }
}

std::vector<std::int32_t> Loader::read_selection(const XmlElement& sel, const char* block,
                                                 const std::string& where) const {
  const std::optional<XmlElement> blk = doc_->child(sel, block);
  if (!blk) fail(where, std::string("<Selection> has no <") + block + "> block");
  std::vector<std::int32_t> idx;
  for (const XmlElement e : blk->children()) {
    const std::string ew = where + ", " + block + " " + place(e);
    const std::string type = need(e, "Type", ew);
    if (type != "Variable") fail(ew, "transformation of a " + type + " is not supported (only input variables)");
    const std::optional<std::string> label = e.attr("Label");
    const std::optional<std::string> expr = e.attr("Expression");
    if (!label && !expr) fail(ew, "neither Label nor Expression given");
    std::int32_t found = -1;
    for (std::int32_t i = 0; i < nvar_; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if ((label && labels_[u] == *label) || (expr && ir_.feature_expressions[u] == *expr)) {
        found = i;
        break;
      }
    }
    if (found < 0) fail(ew, "refers to an unknown variable \"" + (label ? *label : *expr) + "\"");
    idx.push_back(found);
  }
  const std::string count_attr = std::string("N") + block + "s";  // NInputs / NOutputs
  if (const std::optional<std::string> n = blk->attr(count_attr)) {
    long long v = 0;
    if (!parse_int(*n, v) || v != static_cast<long long>(idx.size()))
      fail(where, count_attr + "=" + *n + " but " + std::to_string(idx.size()) + " entries");
  }
  if (idx.empty()) fail(where, std::string("empty <") + block + "> selection");
  return idx;
}

void Loader::read_transformations(const XmlElement& root) {
  const std::optional<XmlElement> trs = doc_->child(root, "Transformations");
  if (!trs) return;
  const auto n = static_cast<std::size_t>(nvar_);
  for (const XmlElement t : trs->children()) {
    const std::string where = "transformation " + place(t);
    if (t.name() != "Transform") fail(where, "unexpected element in <Transformations>");
    const std::string name = need(t, "Name", where);
    if (name != "Decorrelation" && name != "Normalize" && name != "PCA")
      fail(where, "variable transformation \"" + name + "\" is not supported (Decorrelation, Normalize, PCA are)");
    if (n * n > kMaxTransformCells)
      fail(where, "too many variables (" + std::to_string(n) + ") for a matrix transformation");

    std::vector<std::int32_t> get, put;
    if (const std::optional<XmlElement> sel = doc_->child(t, "Selection")) {
      get = read_selection(*sel, "Input", where);
      put = read_selection(*sel, "Output", where);
    } else {
      for (std::int32_t i = 0; i < nvar_; ++i) get.push_back(i);
      put = get;
    }
    if (get.size() != put.size())
      fail(where, std::to_string(get.size()) + " inputs but " + std::to_string(put.size()) + " outputs");
    const std::size_t m = get.size();
    {
      std::vector<std::uint8_t> used(n, 0);
      for (std::int32_t p : put) {
        if (used[static_cast<std::size_t>(p)]) fail(where, "an output variable is selected twice");
        used[static_cast<std::size_t>(p)] = 1;
      }
    }
    const bool same = get == put;

    TransformIR tr;
    if (name == "Decorrelation") {
      // VariableDecorrTransform: y = M x (TVectorD *= TMatrixD), last matrix
      std::optional<XmlElement> last_mat;
      for (const XmlElement m_el : doc_->children(t, "Matrix")) last_mat = m_el;
      if (!last_mat) fail(where, "no <Matrix>");
      const XmlElement& mat = *last_mat;
      const std::string mw = where + ", " + place(mat);
      const long long rows = need_int(mat, "Rows", mw, 1, kMaxVars);
      const long long cols = need_int(mat, "Columns", mw, 1, kMaxVars);
      if (rows != static_cast<long long>(m) || cols != static_cast<long long>(m))
        fail(mw, "is " + std::to_string(rows) + " x " + std::to_string(cols) + " for " + std::to_string(m) +
                     " selected variables");
      const std::vector<double> v = numbers(mat, m * m, mw);
      tr.kind = TransformIR::Kind::Linear;
      tr.matrix.assign(n * n, 0.0);
      for (std::size_t i = 0; i < n; ++i) tr.matrix[i * n + i] = 1.0;
      for (std::size_t k = 0; k < m; ++k) {
        const auto row = static_cast<std::size_t>(put[k]);
        for (std::size_t j = 0; j < n; ++j) tr.matrix[row * n + j] = 0.0;
        for (std::size_t j = 0; j < m; ++j) tr.matrix[row * n + static_cast<std::size_t>(get[j])] += v[k * m + j];
      }
    } else if (name == "PCA") {
      // VariablePCATransform::X2P: p_i = sum_j (x_j - mean_j) E(j, i), last class
      std::vector<std::optional<XmlElement>> means, vecs;
      for (const XmlElement s : doc_->children(t, "Statistics")) {
        const auto ci = static_cast<std::size_t>(need_int(s, "ClassIndex", where + ", " + place(s), 0, 64));
        if (means.size() <= ci) means.resize(ci + 1);
        means[ci] = s;
      }
      for (const XmlElement s : doc_->children(t, "Eigenvectors")) {
        const auto ci = static_cast<std::size_t>(need_int(s, "ClassIndex", where + ", " + place(s), 0, 64));
        if (vecs.size() <= ci) vecs.resize(ci + 1);
        vecs[ci] = s;
      }
      if (means.empty() || !means.back()) fail(where, "no <Statistics> (mean values)");
      const std::size_t cls = means.size() - 1;
      if (vecs.size() <= cls || !vecs[cls]) fail(where, "no <Eigenvectors> for class index " + std::to_string(cls));
      const XmlElement& me = *means[cls];
      const XmlElement& ev = *vecs[cls];
      const std::string mw = where + ", " + place(me);
      const std::string ew = where + ", " + place(ev);
      if (need_int(me, "NRows", mw, 0, kMaxVars) != static_cast<long long>(m))
        fail(mw, "NRows does not match the " + std::to_string(m) + " selected variables");
      if (need_int(ev, "NRows", ew, 0, kMaxVars) != static_cast<long long>(m) ||
          need_int(ev, "NCols", ew, 0, kMaxVars) != static_cast<long long>(m))
        fail(ew, "is not " + std::to_string(m) + " x " + std::to_string(m));
      const std::vector<double> mean = numbers(me, m, mw);
      const std::vector<double> e = numbers(ev, m * m, ew);
      tr.kind = TransformIR::Kind::CenteredLinear;
      tr.matrix.assign(n * n, 0.0);
      tr.offset.assign(n, 0.0);
      for (std::size_t j = 0; j < m; ++j) tr.offset[static_cast<std::size_t>(get[j])] = mean[j];
      std::vector<std::uint8_t> is_put(n, 0);
      for (std::int32_t p : put) is_put[static_cast<std::size_t>(p)] = 1;
      for (std::size_t i = 0; i < n; ++i) {
        if (is_put[i]) continue;
        if (tr.offset[i] != 0.0)
          fail(where, "variable " + std::to_string(i) + " is a PCA input but not an output; not supported");
        tr.matrix[i * n + i] = 1.0;
      }
      for (std::size_t i = 0; i < m; ++i) {
        const auto row = static_cast<std::size_t>(put[i]);
        for (std::size_t j = 0; j < m; ++j) tr.matrix[row * n + static_cast<std::size_t>(get[j])] += e[j * m + i];
      }
    } else {
      // VariableNormalizeTransform: y = (x - min) * Float_t(1/(max-min)) * 2 - 1, last class block
      if (!same) fail(where, "a Normalize transformation whose outputs differ from its inputs is not supported");
      std::vector<std::vector<float>> mins, maxs;  // emulate fMin.resize(classindex+1) per <Class>
      std::vector<std::vector<std::uint8_t>> have;
      for (const XmlElement cl : doc_->children(t, "Class")) {
        const std::string cw = where + ", " + place(cl);
        const auto ci = static_cast<std::size_t>(need_int(cl, "ClassIndex", cw, 0, 64));
        mins.resize(ci + 1);
        maxs.resize(ci + 1);
        have.resize(ci + 1);
        mins[ci].resize(m, 0.0f);
        maxs[ci].resize(m, 0.0f);
        have[ci].resize(m, 0);
        for (const XmlElement ranges : doc_->children(cl, "Ranges")) {
          for (const XmlElement r : ranges.children()) {
            const std::string rw = cw + ", " + place(r);
            const auto ri = static_cast<std::size_t>(need_int(r, "Index", rw, 0, static_cast<long long>(m) - 1));
            mins[ci][ri] = need_float(r, "Min", rw);
            maxs[ci][ri] = need_float(r, "Max", rw);
            have[ci][ri] = 1;
          }
        }
      }
      if (mins.empty()) fail(where, "no <Class> ranges (old-format Normalize blocks are not supported)");
      const std::size_t cls = mins.size() - 1;
      for (std::size_t k = 0; k < m; ++k)
        if (!have[cls][k]) fail(where, "class " + std::to_string(cls) + " has no range for input " + std::to_string(k));
      std::vector<double> off(n, 0.0), scl(n, 1.0);
      for (std::size_t k = 0; k < m; ++k) {
        const float mn = mins[cls][k];
        const float mx = maxs[cls][k];
        const float width = mx - mn;  // Float_t arithmetic as in TMVA
        if (!(width > 0.0f)) fail(where, "range of input " + std::to_string(k) + " is empty (Max <= Min)");
        const auto scale = static_cast<float>(1.0 / static_cast<double>(width));
        off[static_cast<std::size_t>(get[k])] = static_cast<double>(mn);
        scl[static_cast<std::size_t>(get[k])] = 2.0 * static_cast<double>(scale);
      }
      if (m == n) {
        tr.kind = TransformIR::Kind::Affine;
        tr.offset = std::move(off);
        tr.scale = std::move(scl);
        tr.shift = -1.0;
      } else {
        // a subset: y_i = s_i (x_i - (min_i + 1/s_i)) on selected variables, identity elsewhere
        tr.kind = TransformIR::Kind::CenteredLinear;
        tr.matrix.assign(n * n, 0.0);
        tr.offset.assign(n, 0.0);
        for (std::size_t i = 0; i < n; ++i) tr.matrix[i * n + i] = 1.0;
        for (std::size_t k = 0; k < m; ++k) {
          const auto i = static_cast<std::size_t>(get[k]);
          tr.matrix[i * n + i] = scl[i];
          tr.offset[i] = off[i] + 1.0 / scl[i];
        }
      }
    }
    ir_.transforms.push_back(std::move(tr));
  }
  if (const std::optional<std::string> nt = trs->attr("NTransformations")) {
    long long v = 0;
    if (!parse_int(*nt, v) || v != static_cast<long long>(ir_.transforms.size()))
      fail(place(*trs),
           "NTransformations=" + *nt + " but " + std::to_string(ir_.transforms.size()) + " <Transform> entries");
  }
}

struct NodeAttrs {
  char pos = 'u';
  long long ivar = -1;
  float cut = 0.0f;
  bool ctype = true;
  float res = -99.0f;
  float purity = -99.0f;
  long long ntype = -99;
  std::vector<double> fisher;  // NCoef values, constant last
};

void Loader::read_tree(const XmlElement& bt, std::size_t itree, TreeIR& tree) {
  const std::string tw = "tree " + std::to_string(itree) + " (" + at_line(bt) + ")";
  if (bt.children().empty()) fail(tw, "has no root <Node>");
  const bool grad = boost_type_ == "Grad";
  const bool regression_tree = tree_analysis_type_ == 1;
  const auto n = static_cast<std::size_t>(nvar_);

  struct Pending {
    std::size_t element;
    std::int32_t parent;  // IR index of the parent, -1 for the root
    bool as_left;         // becomes the parent's IR left child
  };
  std::vector<Pending> stack;
  stack.push_back({(*bt.children().begin()).index(), -1, false});
  while (!stack.empty()) {
    const Pending p = stack.back();
    stack.pop_back();
    const XmlElement e = doc_->at(p.element);
    const std::string nw = tw + ", node " + std::to_string(tree.nodes.size()) + " (" + at_line(e) + ")";
    if (e.name() != "Node") fail(nw, "expected <Node>, found <" + std::string(e.name()) + ">");

    NodeAttrs a;
    if (e.has_attr("NCoef")) {
      const long long ncoef = need_int(e, "NCoef", nw, 0, static_cast<long long>(n) + 1);
      for (long long i = 0; i < ncoef; ++i) {
        const std::string cname = "fC" + std::to_string(i);
        a.fisher.push_back(need_double(e, cname.c_str(), nw));
      }
    }
    a.ivar =
        need_int(e, "IVar", nw, std::numeric_limits<std::int16_t>::min(), std::numeric_limits<std::int16_t>::max());
    a.cut = need_float(e, "Cut", nw);
    {
      const std::string ct = need(e, "cType", nw);
      if (!parse_bool(ct, a.ctype)) fail(nw, "attribute \"cType\" is not 0 or 1: \"" + ct + "\"");
    }
    if (e.has_attr("res")) a.res = need_float(e, "res", nw);
    if (e.has_attr("purity")) {
      a.purity = need_float(e, "purity", nw);
    } else {
      const float ns = need_float(e, "nS", nw);
      const float nb = need_float(e, "nB", nw);
      a.purity = ns / (ns + nb);  // Float_t arithmetic as in TMVA
      if (!std::isfinite(a.purity)) fail(nw, "purity nS/(nS+nB) is not finite");
    }
    a.ntype =
        need_int(e, "nType", nw, std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max());
    {
      const std::string ps = need(e, "pos", nw);
      a.pos = ps.empty() ? 'u' : ps[0];
    }

    const auto self = static_cast<std::int32_t>(tree.nodes.size());
    if (p.parent >= 0) {
      NodeIR& parent = tree.nodes[static_cast<std::size_t>(p.parent)];
      (p.as_left ? parent.left : parent.right) = self;
    }
    tree.nodes.emplace_back();
    NodeIR& node = tree.nodes.back();

    if (a.ntype != 0) {
      // a leaf (CheckEvent stops at nType != 0, whatever the children)
      node.kind = NodeIR::Kind::Leaf;
      double y;
      if (regression_tree) y = static_cast<double>(a.res);
      else if (use_yes_no_leaf_ && !grad) y = static_cast<double>(a.ntype);
      else y = static_cast<double>(a.purity);
      node.value = y;
      continue;
    }

    // an intermediate node: it needs both children
    std::size_t left_el = XmlElement::npos, right_el = XmlElement::npos;
    for (const XmlElement ch : e.children()) {
      const std::size_t c = ch.index();
      const std::string cw = nw + ", child " + place(ch);
      if (ch.name() != "Node") fail(cw, "unexpected element inside <Node>");
      const std::string ps = need(ch, "pos", cw);
      if (ps == "l") {
        if (left_el != XmlElement::npos) fail(nw, "has two left children");
        left_el = c;
      } else if (ps == "r") {
        if (right_el != XmlElement::npos) fail(nw, "has two right children");
        right_el = c;
      } else {
        fail(cw, "pos=\"" + ps + "\" is neither \"l\" nor \"r\"");
      }
    }
    if (left_el == XmlElement::npos || right_el == XmlElement::npos)
      fail(nw, "is an intermediate node (nType=0) without both a left and a right child");

    // GoesRight r = cmp(...); right iff (cType ? r : !r); NaN makes r false.
    // cType=1: IR left = TMVA left  (left iff !cmp);
    // cType=0: IR left = TMVA right (right iff !cmp). Either way a failed
    // comparison (NaN) takes the IR left child.
    node.threshold = static_cast<double>(a.cut);
    node.default_left = true;
    if (!a.fisher.empty()) {
      // fisher = c_last + sum_i c_i x_i ; r = fisher > Cut  => left iff v <= Cut
      node.kind = NodeIR::Kind::Linear;
      node.op = NodeIR::Op::LessEqual;
      const std::size_t nc = a.fisher.size();
      if (ir_.linear.size() + n + 1 > kMaxLinearValues) fail(nw, "too many Fisher coefficients in the model");
      node.lin_begin = static_cast<std::uint32_t>(ir_.linear.size());
      ir_.linear.resize(ir_.linear.size() + n + 1, 0.0);
      for (std::size_t i = 0; i + 1 < nc; ++i) ir_.linear[node.lin_begin + i] = a.fisher[i];
      ir_.linear[node.lin_begin + n] = a.fisher[nc - 1];
    } else {
      if (a.ivar < 0 || a.ivar >= nvar_)
        fail(nw, "IVar=" + std::to_string(a.ivar) + " is out of range (the model has " + std::to_string(nvar_) +
                     " variables)");
      node.kind = NodeIR::Kind::Numerical;
      node.feature = static_cast<std::int32_t>(a.ivar);
      node.op = cut_greater_equal_ ? NodeIR::Op::Less : NodeIR::Op::LessEqual;
    }
    const std::size_t ir_left_el = a.ctype ? left_el : right_el;
    const std::size_t ir_right_el = a.ctype ? right_el : left_el;
    if (tree.nodes.size() + stack.size() > (std::size_t{1} << 28)) fail(nw, "too many nodes");
    // pre-order: the IR left child is numbered next
    stack.push_back({ir_right_el, self, false});
    stack.push_back({ir_left_el, self, true});
  }
}

void Loader::read_weights(const XmlElement& root) {
  const std::optional<XmlElement> w = doc_->child(root, "Weights");
  if (!w) fail("weight file", "no <Weights> block");
  const std::string where = place(*w);
  if (w->has_attr("PreselectionLowBkgVar0") || do_preselection_)
    fail(where, "BDTs trained with DoPreselection=True are not supported");
  const long long ntrees = need_int(*w, "NTrees", where, 0, kMaxTrees);
  if (w->has_attr("TreeType"))  // before TMVA 4.1.0
    tree_analysis_type_ = static_cast<int>(need_int(*w, "TreeType", where, 0, 3));
  else tree_analysis_type_ = static_cast<int>(need_int(*w, "AnalysisType", where, 0, 3));
  if (tree_analysis_type_ > 1)
    fail(where, "tree AnalysisType " + std::to_string(tree_analysis_type_) + " (multiclass) is not supported");
  const std::size_t n_children = w->children().size();
  if (static_cast<long long>(n_children) != ntrees)
    fail(where, "NTrees=" + std::to_string(ntrees) + " but " + std::to_string(n_children) + " trees");
  if (ntrees == 0) fail(where, "the forest has no trees");

  const bool grad = boost_type_ == "Grad";
  std::vector<double> weights;
  weights.reserve(static_cast<std::size_t>(ntrees));
  ir_.trees.resize(static_cast<std::size_t>(ntrees));
  std::size_t itree = 0;
  for (const XmlElement bt : w->children()) {
    const std::size_t i = itree++;
    const std::string tw = "tree " + std::to_string(i) + " (" + at_line(bt) + ")";
    if (bt.name() != "BinaryTree") fail(tw, "expected <BinaryTree>, found <" + std::string(bt.name()) + ">");
    if (const std::optional<std::string> type = bt.attr("type"))
      if (*type != "DecisionTree") fail(tw, "tree type \"" + *type + "\" is not DecisionTree");
    // MethodBDT::ReadWeightsFromXML reads boostWeight into a Float_t
    const float bw = need_float(bt, "boostWeight", tw);
    weights.push_back(use_weighted_trees_ ? static_cast<double>(bw) : 1.0);
    read_tree(bt, i, ir_.trees[i]);
  }

  if (grad) {
    ir_.postprocess = Postprocess::TMVAGrad;
    return;
  }
  // sum_i w_i y_i / sum_i w_i, or 0 when the norm is not > DBL_EPSILON
  double norm = 0.0;
  for (double x : weights) norm += x;
  const bool zero = !(norm > std::numeric_limits<double>::epsilon());
  for (std::size_t i = 0; i < ir_.trees.size(); ++i)
    for (NodeIR& node : ir_.trees[i].nodes)
      if (node.kind == NodeIR::Kind::Leaf) node.value = zero ? 0.0 : weights[i] * node.value / norm;
  ir_.postprocess = Postprocess::Identity;
}

ForestIR Loader::run() {
  doc_ = detail::parse_xml(text_, src_);
  const XmlElement root = doc_->root();
  if (root.name() != "MethodSetup")
    fail("weight file",
         "root element is <" + std::string(root.name()) + ">, not <MethodSetup> (not a TMVA weight file)");
  const std::string method = need(root, "Method", "<MethodSetup>");
  if (method.rfind("BDT::", 0) != 0 && method != "BDT") fail("<MethodSetup>", "method \"" + method + "\" is not a BDT");

  read_general_info(root);
  read_options(root);

  if (!analysis_type_info_.empty() && analysis_type_info_ != "Classification")
    fail("<GeneralInfo>",
         "AnalysisType \"" + analysis_type_info_ + "\" is not supported (only classification BDTs are)");
  if (const std::optional<XmlElement> classes = doc_->child(root, "Classes")) {
    if (const std::optional<std::string> nc = classes->attr("NClass")) {
      long long v = 0;
      if (!parse_int(*nc, v) || v != 2)
        fail(place(*classes), "NClass=" + *nc + ": only two-class (signal/background) BDTs are supported");
    }
  }

  // RealAdaBoost -> AdaBoost without yes/no leaves; AdaCost -> no yes/no leaves
  if (boost_type_ == "RealAdaBoost") {
    boost_type_ = "AdaBoost";
    use_yes_no_leaf_ = false;
  } else if (boost_type_ == "AdaCost") {
    use_yes_no_leaf_ = false;
  } else if (boost_type_ != "AdaBoost" && boost_type_ != "Bagging" && boost_type_ != "Grad") {
    fail("option BoostType",
         "\"" + boost_type_ + "\" is not supported (AdaBoost, RealAdaBoost, AdaCost, Bagging, Grad are)");
  }

  switch (op_) {
    case TMVACutOp::GreaterEqual: cut_greater_equal_ = true; break;
    case TMVACutOp::Greater: cut_greater_equal_ = false; break;
    case TMVACutOp::FromFile: {
      // "6.06/01 [394753]": the code in brackets is ROOT_VERSION_CODE
      long long code = -1;
      const std::size_t lb = root_release_.find('[');
      const std::size_t rb = root_release_.find(']');
      if (lb != std::string::npos && rb != std::string::npos && rb > lb + 1) {
        long long v = 0;
        if (parse_int(std::string_view(root_release_).substr(lb + 1, rb - lb - 1), v)) code = v;
      }
      if (code < 0) {
        long long major = 0, minor = 0;
        const std::size_t dot = root_release_.find('.');
        const std::size_t slash = root_release_.find('/');
        if (dot != std::string::npos && slash != std::string::npos && slash > dot &&
            parse_int(std::string_view(root_release_).substr(0, dot), major) &&
            parse_int(std::string_view(root_release_).substr(dot + 1, slash - dot - 1), minor))
          code = (major << 16) + (minor << 8);
      }
      if (code < 0)
        fail("<GeneralInfo>", "no usable \"ROOT Release\" (\"" + root_release_ +
                                  "\") to choose the cut comparison; give the comparison explicitly");
      cut_greater_equal_ = code >= ((6LL << 16) + (18LL << 8));
      break;
    }
  }

  read_variables(root);
  read_transformations(root);
  read_weights(root);

  ir_.source = SourceFormat::TMVA;
  ir_.source_name = src_;
  ir_.n_groups = 1;
  ir_.base_margin.assign(1, 0.0);
  ir_.float32_inputs = true;
  ir_.objective = "tmva:" + boost_type_;
  return std::move(ir_);
}

}  // namespace

ForestIR load_tmva_xml(const std::string& text, const std::string& source_name, TMVACutOp cut_op) {
  Loader loader(text, source_name, cut_op);
  return loader.run();
}

}  // namespace hepinfer
