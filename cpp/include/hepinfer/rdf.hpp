#pragma once
/// \file rdf.hpp
/// Scores from hepinfer models as ROOT RDataFrame columns (header-only; include it in
/// code that uses ROOT, link hepinfer::core as usual).
///
/// \code
///   #include <ROOT/RDataFrame.hxx>
///   #include <hepinfer/rdf.hpp>
///
///   ROOT::EnableImplicitMT(4);
///   ROOT::RDataFrame df("Events", "events.root");
///   // compiled code: name the column types (RDataFrame needs a non-template call operator)
///   auto bdt = hepinfer::rdf::Predictor<float, float, int>("bdt.json", {"jet_pt", "jet_mass", "n_constituents"});
///   auto scored = df.Define("bdt_score", bdt, bdt.columns());
///   // jitted expressions (and PyROOT) can use the untyped form: any float/double/integer columns
///   hepinfer::rdf::Predictor tagger("tagger.onnx", {"jet_pt", "jet_mass", "tau21"});
///   auto more = scored.Define("nn_score", "tagger(jet_pt, jet_mass, tau21)");
///   // a network over particles [batch, n_particles, n_features]: one RVec column per particle feature
///   auto pfn = hepinfer::rdf::Predictor<ROOT::RVec<float>, ROOT::RVec<float>>("pfn.onnx", {"pf_pt", "pf_eta"});
/// \endcode
///
/// What a Predictor computes
///  - tree ensembles (XGBoost, LightGBM, TMVA; anything but ".onnx"): one value per feature
///    column, converted to double exactly (integers up to 2^53) and evaluated with
///    Forest::predict_one; the result equals hepinfer.Forest.predict on the same values,
///    rounded to float. When the model records feature names, `columns` must name exactly
///    those features (in any order: values are put into the model's order) or construction
///    throws hepinfer::InputError listing the missing and unknown names.
///  - ONNX networks with one float input and one float output: either scalar columns
///    (input [batch, n_features] with n_features == number of columns), or RVec columns, one
///    per particle feature, for an input [batch, n_particles, n_features] (or
///    [batch, n_features, n_particles]; the layout is taken from which dimension equals the
///    number of columns, particles-first when both do). Each event's particles are written in
///    their order, zero-padded or truncated to n_particles; the RVecs of one event must have
///    equal lengths. The result equals hepinfer.Model.predict on the same (padded) rows.
///  - Predictor returns one float: the model's only output, or Options::output_index.
///    MultiPredictor returns every output of the event (ROOT::RVec<float> when ROOT's RVec
///    header is available, std::vector<float> otherwise).
///
/// Threads: the model is loaded once and shared, immutable, by every copy of the callable;
/// the call operator is const, keeps its scratch on the stack (or a per-call buffer for
/// large particle inputs) and may run in all RDataFrame slots at once (ROOT::EnableImplicitMT).
///
/// This header includes no ROOT header except <ROOT/RVec.hxx>, and only where it can be
/// found (define HEPINFER_RDF_NO_RVEC to never include it); hepinfer's own build never
/// needs ROOT.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/nn.hpp"

#if !defined(HEPINFER_RDF_NO_RVEC) && defined(__has_include)
#if __has_include(<ROOT/RVec.hxx>)
#include <ROOT/RVec.hxx>
#define HEPINFER_RDF_HAS_RVEC 1
#endif
#endif
#ifndef HEPINFER_RDF_HAS_RVEC
#define HEPINFER_RDF_HAS_RVEC 0
#endif

namespace hepinfer {
namespace rdf {

/// The per-event vector type MultiPredictor returns.
#if HEPINFER_RDF_HAS_RVEC
using FloatVector = ROOT::RVec<float>;
#else
using FloatVector = std::vector<float>;
#endif

/// How a Predictor evaluates its model.
struct Options {
  /// Which output a Predictor returns for models with several (multiclass forests, networks
  /// with several output values); -1: the model must have exactly one.
  int output_index = -1;
  /// Forests: the library's transformed output (probability) or the raw margin.
  Output forest_output = Output::Probability;
  /// Compare the column names with the feature names recorded in a forest model.
  bool check_feature_names = true;
};

namespace detail {

template <typename T, typename = void>
struct is_sequence : std::false_type {};
template <typename T>
struct is_sequence<T, std::void_t<decltype(std::declval<const T&>().size()), decltype(std::declval<const T&>()[0])>>
    : std::true_type {};

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

/// The model and everything derived from the columns, shared immutable by every copy.
class Engine {
 public:
  Engine(Forest forest, std::vector<std::string> columns, const Options& options)
      : forest_(std::make_unique<Forest>(std::move(forest))), columns_(std::move(columns)), options_(options) {
    const auto nf = static_cast<std::size_t>(forest_->n_features());
    if (columns_.size() != nf)
      throw InputError(
          "hepinfer::rdf: " + std::to_string(columns_.size()) + " columns given (" + join(columns_) +
          ") but the model takes " + std::to_string(nf) + " features" +
          (forest_->feature_names().empty() ? std::string() : " (" + join(forest_->feature_names()) + ")"));
    order_.resize(nf);
    for (std::size_t i = 0; i < nf; ++i) order_[i] = i;
    const auto& names = forest_->feature_names();
    if (options_.check_feature_names && !names.empty()) {
      std::vector<std::string> missing, unknown;
      for (const auto& n : names)
        if (std::find(columns_.begin(), columns_.end(), n) == columns_.end()) missing.push_back(n);
      for (std::size_t i = 0; i < columns_.size(); ++i) {
        const auto it = std::find(names.begin(), names.end(), columns_[i]);
        if (it == names.end()) unknown.push_back(columns_[i]);
        else order_[i] = static_cast<std::size_t>(it - names.begin());
      }
      if (!missing.empty() || !unknown.empty())
        throw InputError("hepinfer::rdf: the columns do not match the model's feature names: missing " +
                         (missing.empty() ? std::string("none") : join(missing)) +
                         "; not features of the model: " + (unknown.empty() ? std::string("none") : join(unknown)) +
                         " (model features: " + join(names) + ")");
      std::vector<std::string> sorted = columns_;
      std::sort(sorted.begin(), sorted.end());
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        throw InputError("hepinfer::rdf: a column is given twice (" + join(columns_) + ")");
    }
    n_outputs_ = static_cast<std::size_t>(forest_->n_outputs(options_.forest_output));
  }

  Engine(Model model, std::vector<std::string> columns, const Options& options)
      : model_(std::make_unique<Model>(std::move(model))), columns_(std::move(columns)), options_(options) {
    if (model_->inputs().size() != 1 || model_->outputs().size() != 1 ||
        model_->inputs()[0].type != ElementType::Float32 || model_->outputs()[0].type != ElementType::Float32)
      throw InputError(
          "hepinfer::rdf: networks with one float input and one float output are supported; this one has " +
          std::to_string(model_->inputs().size()) + " inputs and " + std::to_string(model_->outputs().size()) +
          " outputs");
    if (columns_.empty()) throw InputError("hepinfer::rdf: no columns given");
    const TensorInfo& in = model_->inputs()[0];
    const std::size_t per_row = model_->input_size_per_row();
    const std::size_t nc = columns_.size();
    if (in.shape.size() == 3 && in.shape[1] > 0 && in.shape[2] > 0 &&
        (static_cast<std::size_t>(in.shape[2]) == nc || static_cast<std::size_t>(in.shape[1]) == nc)) {
      particles_first_ = static_cast<std::size_t>(in.shape[2]) == nc;
      n_particles_ = static_cast<std::size_t>(particles_first_ ? in.shape[1] : in.shape[2]);
    } else if (per_row != nc) {
      std::ostringstream shape;
      for (std::size_t i = 0; i < in.shape.size(); ++i) shape << (i ? ", " : "") << in.shape[i];
      throw InputError("hepinfer::rdf: " + std::to_string(nc) + " columns given (" + join(columns_) +
                       ") but the network's input '" + in.name + "' has shape [" + shape.str() +
                       "]: give one scalar column per feature for [batch, n_features], or one RVec column per "
                       "particle feature for [batch, n_particles, n_features]");
    }
    n_inputs_ = per_row;
    n_outputs_ = model_->output_size_per_row();
  }

  const std::vector<std::string>& columns() const noexcept { return columns_; }
  std::size_t n_outputs() const noexcept { return n_outputs_; }
  bool is_forest() const noexcept { return forest_ != nullptr; }

  /// The output index a Predictor returns (checked once at construction).
  std::size_t single_output() const {
    if (options_.output_index >= 0) {
      if (static_cast<std::size_t>(options_.output_index) >= n_outputs_)
        throw InputError("hepinfer::rdf: output_index " + std::to_string(options_.output_index) +
                         " but the model has " + std::to_string(n_outputs_) + " outputs");
      return static_cast<std::size_t>(options_.output_index);
    }
    if (n_outputs_ != 1)
      throw InputError("hepinfer::rdf: the model has " + std::to_string(n_outputs_) +
                       " outputs per event: choose one with Options::output_index or use MultiPredictor");
    return 0;
  }

  /// Evaluates one event; `out` receives n_outputs() values.
  template <typename... Ts>
  void evaluate(float* out, const Ts&... values) const {
    constexpr std::size_t n = sizeof...(Ts);
    constexpr bool all_scalar = (std::is_arithmetic<Ts>::value && ...);
    constexpr bool all_sequences = (is_sequence<Ts>::value && ...);
    static_assert(all_scalar || all_sequences,
                  "hepinfer::rdf: columns must all be numbers (float, double, integers, bool) or all be "
                  "RVec-like sequences of numbers (one per particle feature)");
    if (n != columns_.size())
      throw InputError("hepinfer::rdf: called with " + std::to_string(n) + " values but constructed with " +
                       std::to_string(columns_.size()) + " columns (" + join(columns_) + ")");
    if constexpr (all_scalar) {
      if (forest_) {
        // exact: float, double and integers up to 2^53 convert to double without rounding
        const std::array<double, n> given{static_cast<double>(values)...};
        std::array<double, n> row{};
        for (std::size_t i = 0; i < n; ++i) row[order_[i]] = given[i];
        evaluate_forest(row.data(), out);
      } else {
        if (n_particles_ != 0)
          throw InputError("hepinfer::rdf: this network takes particle lists: give RVec columns, one per feature");
        const std::array<float, n> row{static_cast<float>(values)...};
        model_->predict_one(row.data(), out);
      }
    } else {
      if (forest_ || n_particles_ == 0)
        throw InputError(
            "hepinfer::rdf: RVec columns are for networks over particles [batch, n_particles, "
            "n_features]; this model takes one number per column");
      const std::array<std::size_t, n> sizes{static_cast<std::size_t>(values.size())...};
      for (std::size_t i = 1; i < n; ++i)
        if (sizes[i] != sizes[0])
          throw InputError("hepinfer::rdf: the particle columns of one event have different lengths (" + columns_[0] +
                           ": " + std::to_string(sizes[0]) + ", " + columns_[i] + ": " + std::to_string(sizes[i]) +
                           ")");
      // padded particles must be zero; only the model's n_inputs_ floats are cleared (not 4 KB)
      std::array<float, 1024> small;
      std::vector<float> large;
      float* x = small.data();
      if (n_inputs_ > small.size()) {
        large.assign(n_inputs_, 0.0f);
        x = large.data();
      } else {
        std::fill_n(x, n_inputs_, 0.0f);
      }
      const std::size_t used = std::min(sizes[0], n_particles_);
      std::size_t f = 0;
      (fill_particles(x, f++, used, values), ...);
      model_->predict_one(x, out);
    }
  }

 private:
  void evaluate_forest(const double* row, float* out) const {
    std::array<double, 64> small{};
    std::vector<double> large;
    double* res = small.data();
    if (n_outputs_ > small.size()) {
      large.resize(n_outputs_);
      res = large.data();
    }
    forest_->predict_one(row, res, options_.forest_output);
    for (std::size_t k = 0; k < n_outputs_; ++k) out[k] = static_cast<float>(res[k]);
  }

  template <typename Seq>
  void fill_particles(float* x, std::size_t feature, std::size_t used, const Seq& values) const {
    const std::size_t nf = columns_.size();
    for (std::size_t p = 0; p < used; ++p) {
      const std::size_t at = particles_first_ ? p * nf + feature : feature * n_particles_ + p;
      x[at] = static_cast<float>(values[p]);
    }
  }

  std::unique_ptr<const Forest> forest_;
  std::unique_ptr<const Model> model_;
  std::vector<std::string> columns_;
  Options options_;
  std::vector<std::size_t> order_;  // column i -> model feature order_[i] (forests)
  std::size_t n_outputs_ = 0;
  std::size_t n_inputs_ = 0;     // floats per event (networks)
  std::size_t n_particles_ = 0;  // > 0: particle-list network
  bool particles_first_ = true;
};

inline std::shared_ptr<const Engine> load(const std::string& path, std::vector<std::string> columns,
                                          const Options& options) {
  if (ends_with(path, ".onnx") || ends_with(path, ".ONNX"))
    return std::make_shared<const Engine>(Model::load(path), std::move(columns), options);
  return std::make_shared<const Engine>(Forest::load(path), std::move(columns), options);
}

/// What Predictor and MultiPredictor share: the engine and the result conversion.
class PredictorBase {
 public:
  PredictorBase(const std::string& model_path, std::vector<std::string> columns, const Options& options)
      : engine_(load(model_path, std::move(columns), options)) {}
  PredictorBase(Forest forest, std::vector<std::string> columns, const Options& options)
      : engine_(std::make_shared<const Engine>(std::move(forest), std::move(columns), options)) {}
  PredictorBase(Model model, std::vector<std::string> columns, const Options& options)
      : engine_(std::make_shared<const Engine>(std::move(model), std::move(columns), options)) {}

  /// The column names, in the order the call operator takes them.
  const std::vector<std::string>& columns() const noexcept { return engine_->columns(); }
  /// Values per event of the model (MultiPredictor's vector length).
  std::size_t n_outputs() const noexcept { return engine_->n_outputs(); }

 protected:
  template <typename... Ts>
  float score(const Ts&... values) const {
    std::array<float, 64> small{};
    std::vector<float> large;
    float* out = small.data();
    if (engine_->n_outputs() > small.size()) {
      large.resize(engine_->n_outputs());
      out = large.data();
    }
    engine_->evaluate(out, values...);
    return out[index_];
  }
  template <typename... Ts>
  FloatVector scores(const Ts&... values) const {
    FloatVector out(engine_->n_outputs());
    engine_->evaluate(out.data(), values...);
    return out;
  }
  void require_single_output() { index_ = engine_->single_output(); }

 private:
  std::shared_ptr<const Engine> engine_;
  std::size_t index_ = 0;
};

}  // namespace detail

/// One score per event from a hepinfer model, as an RDataFrame column.
/// `Predictor<float, double, int>` has a typed call operator (needed by compiled
/// `df.Define(name, predictor, predictor.columns())`); `Predictor<>` (what
/// `Predictor(path, columns)` deduces to) accepts any numeric columns and is meant for
/// jitted expressions (`df.Define("score", "tagger(pt, eta)")`, PyROOT).
template <typename... Columns>
class Predictor : public detail::PredictorBase {
 public:
  /// Loads `model_path` (".onnx": a network, anything else: a forest) for these columns.
  Predictor(const std::string& model_path, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(model_path, std::move(columns), options) {
    check();
  }
  Predictor(Forest forest, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(forest), std::move(columns), options) {
    check();
  }
  Predictor(Model model, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(model), std::move(columns), options) {
    check();
  }
  float operator()(const Columns&... values) const { return score(values...); }

 private:
  void check() {
    if (sizeof...(Columns) != columns().size())
      throw InputError("hepinfer::rdf::Predictor: " + std::to_string(sizeof...(Columns)) + " column types but " +
                       std::to_string(columns().size()) + " column names");
    require_single_output();
  }
};

/// The untyped form: any numeric (or RVec) columns, for jitted expressions and PyROOT.
template <>
class Predictor<> : public detail::PredictorBase {
 public:
  Predictor(const std::string& model_path, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(model_path, std::move(columns), options) {
    require_single_output();
  }
  Predictor(Forest forest, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(forest), std::move(columns), options) {
    require_single_output();
  }
  Predictor(Model model, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(model), std::move(columns), options) {
    require_single_output();
  }
  template <typename... Ts>
  float operator()(const Ts&... values) const {
    return score(values...);
  }
};

Predictor(const std::string&, std::vector<std::string>) -> Predictor<>;
Predictor(const std::string&, std::vector<std::string>, const Options&) -> Predictor<>;
Predictor(const char*, std::vector<std::string>) -> Predictor<>;
Predictor(const char*, std::vector<std::string>, const Options&) -> Predictor<>;
Predictor(Forest, std::vector<std::string>) -> Predictor<>;
Predictor(Forest, std::vector<std::string>, const Options&) -> Predictor<>;
Predictor(Model, std::vector<std::string>) -> Predictor<>;
Predictor(Model, std::vector<std::string>, const Options&) -> Predictor<>;

/// Every output of the model per event (multiclass probabilities, several network outputs).
template <typename... Columns>
class MultiPredictor : public detail::PredictorBase {
 public:
  MultiPredictor(const std::string& model_path, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(model_path, std::move(columns), options) {
    check();
  }
  MultiPredictor(Forest forest, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(forest), std::move(columns), options) {
    check();
  }
  MultiPredictor(Model model, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(model), std::move(columns), options) {
    check();
  }
  FloatVector operator()(const Columns&... values) const { return scores(values...); }

 private:
  void check() const {
    if (sizeof...(Columns) != columns().size())
      throw InputError("hepinfer::rdf::MultiPredictor: " + std::to_string(sizeof...(Columns)) + " column types but " +
                       std::to_string(columns().size()) + " column names");
  }
};

/// The untyped form of MultiPredictor: any numeric (or RVec) columns.
template <>
class MultiPredictor<> : public detail::PredictorBase {
 public:
  MultiPredictor(const std::string& model_path, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(model_path, std::move(columns), options) {}
  MultiPredictor(Forest forest, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(forest), std::move(columns), options) {}
  MultiPredictor(Model model, std::vector<std::string> columns, const Options& options = {})
      : PredictorBase(std::move(model), std::move(columns), options) {}
  template <typename... Ts>
  FloatVector operator()(const Ts&... values) const {
    return scores(values...);
  }
};

MultiPredictor(const std::string&, std::vector<std::string>) -> MultiPredictor<>;
MultiPredictor(const std::string&, std::vector<std::string>, const Options&) -> MultiPredictor<>;
MultiPredictor(const char*, std::vector<std::string>) -> MultiPredictor<>;
MultiPredictor(const char*, std::vector<std::string>, const Options&) -> MultiPredictor<>;
MultiPredictor(Forest, std::vector<std::string>) -> MultiPredictor<>;
MultiPredictor(Forest, std::vector<std::string>, const Options&) -> MultiPredictor<>;
MultiPredictor(Model, std::vector<std::string>) -> MultiPredictor<>;
MultiPredictor(Model, std::vector<std::string>, const Options&) -> MultiPredictor<>;

}  // namespace rdf
}  // namespace hepinfer
