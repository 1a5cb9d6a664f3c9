#pragma once
/// \file rdf_kfold.hpp
/// A k-fold bundle (kfold.hpp) as a ROOT RDataFrame column: each event is scored by the member of
/// its fold (event_number mod k), read from the event-number column given last.
///
/// \code
///   #include <hepinfer/rdf_kfold.hpp>
///   // untyped (jitted expressions, PyROOT): the feature columns, then the event number
///   hepinfer::rdf::KFoldPredictor bdt("tagger_kfold", {"jet_pt", "jet_mass", "tau21"});
///   auto scored = df.Define("score", "bdt(jet_pt, jet_mass, tau21, event)");
///   // compiled: the column types, the event number's (an integer type) last
///   hepinfer::rdf::KFoldPredictor<float, float, float, ULong64_t> typed("tagger_kfold", {"jet_pt", "jet_mass", "tau21"});
///   auto more = df.Define("score", typed, typed.columns());   // columns(): the features + "event"
/// \endcode
///
/// Each member is evaluated exactly as rdf.hpp's Predictor evaluates a single model (the same
/// column checks and feature-name matching, Options::output_index, Options::forest_output), so an
/// event's value equals Predictor(member of its fold) on it. The event-number column is the
/// manifest's `event_number` unless another name is given; it must have an integer type.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/kfold.hpp"
#include "hepinfer/rdf.hpp"

namespace hepinfer {
namespace rdf {
namespace detail {

/// One Engine per fold, shared immutable by every copy of the callable.
class KFoldEngines {
 public:
  KFoldEngines(const std::string& bundle, std::vector<std::string> columns, const Options& options,
               std::string event_column)
      : kfold_(KFold::load(bundle)) {
    if (columns.empty()) columns = kfold_.feature_names();
    for (std::int32_t i = 0; i < kfold_.n_folds(); ++i) {
      if (kfold_.kind() == KFoldKind::Forest)
        engines_.push_back(std::make_shared<const Engine>(kfold_.forest(i), columns, options));
      else engines_.push_back(std::make_shared<const Engine>(kfold_.network(i), columns, options));
    }
    index_ = engines_[0]->single_output();
    columns_ = std::move(columns);
    columns_.push_back(event_column.empty() ? kfold_.event_number() : std::move(event_column));
  }

  const std::vector<std::string>& columns() const noexcept { return columns_; }
  std::int32_t n_folds() const noexcept { return kfold_.n_folds(); }

  /// The score of one event: values = the feature columns, then the event number.
  template <typename... Ts>
  float score(const Ts&... values) const {
    constexpr std::size_t n = sizeof...(Ts);
    static_assert(n >= 2, "hepinfer::rdf::KFoldPredictor: give the feature columns, then the event number");
    if (n != columns_.size())
      throw InputError("hepinfer::rdf::KFoldPredictor: called with " + std::to_string(n) +
                       " values but constructed with " + std::to_string(columns_.size()) + " columns (" +
                       join(columns_) + ", the event number last)");
    const auto args = std::forward_as_tuple(values...);
    using Event = std::decay_t<std::tuple_element_t<n - 1, std::tuple<Ts...>>>;
    static_assert(std::is_integral<Event>::value && !std::is_same<Event, bool>::value,
                  "hepinfer::rdf::KFoldPredictor: the event-number column (the last) must have an integer type");
    const Event event = std::get<n - 1>(args);
    std::int32_t fold = 0;
    if constexpr (std::is_signed<Event>::value) fold = kfold_.fold_of(static_cast<std::int64_t>(event));
    else fold = kfold_.fold_of(static_cast<std::uint64_t>(event));
    return evaluate(*engines_[static_cast<std::size_t>(fold)], args, std::make_index_sequence<n - 1>{});
  }

 private:
  template <typename Tuple, std::size_t... I>
  float evaluate(const Engine& engine, const Tuple& args, std::index_sequence<I...>) const {
    std::array<float, 64> small{};
    std::vector<float> large;
    float* out = small.data();
    if (engine.n_outputs() > small.size()) {
      large.resize(engine.n_outputs());
      out = large.data();
    }
    engine.evaluate(out, std::get<I>(args)...);
    return out[index_];
  }

  KFold kfold_;
  std::vector<std::shared_ptr<const Engine>> engines_;
  std::vector<std::string> columns_;
  std::size_t index_ = 0;
};

}  // namespace detail

/// One score per event from a k-fold bundle. `KFoldPredictor<float, double, int, ULong64_t>`
/// (the feature columns' types, then the event number's) has a typed call operator for compiled
/// `df.Define(name, predictor, predictor.columns())`; `KFoldPredictor<>` accepts any numeric
/// columns, for jitted expressions and PyROOT. `columns` empty: the manifest's features.
template <typename... Columns>
class KFoldPredictor {
 public:
  KFoldPredictor(const std::string& bundle, std::vector<std::string> columns = {}, const Options& options = {},
                 std::string event_column = "")
      : engines_(std::make_shared<const detail::KFoldEngines>(bundle, std::move(columns), options,
                                                              std::move(event_column))) {
    if (sizeof...(Columns) != engines_->columns().size())
      throw InputError("hepinfer::rdf::KFoldPredictor: " + std::to_string(sizeof...(Columns)) + " column types but " +
                       std::to_string(engines_->columns().size()) +
                       " columns (the features and the event number: " + detail::join(engines_->columns()) + ")");
  }
  /// The feature columns, then the event-number column.
  const std::vector<std::string>& columns() const noexcept { return engines_->columns(); }
  float operator()(const Columns&... values) const { return engines_->score(values...); }

 private:
  std::shared_ptr<const detail::KFoldEngines> engines_;
};

/// The untyped form: any numeric columns, the event number (an integer) last.
template <>
class KFoldPredictor<> {
 public:
  KFoldPredictor(const std::string& bundle, std::vector<std::string> columns = {}, const Options& options = {},
                 std::string event_column = "")
      : engines_(std::make_shared<const detail::KFoldEngines>(bundle, std::move(columns), options,
                                                              std::move(event_column))) {}
  const std::vector<std::string>& columns() const noexcept { return engines_->columns(); }
  template <typename... Ts>
  float operator()(const Ts&... values) const {
    return engines_->score(values...);
  }

 private:
  std::shared_ptr<const detail::KFoldEngines> engines_;
};

KFoldPredictor(const std::string&) -> KFoldPredictor<>;
KFoldPredictor(const std::string&, std::vector<std::string>) -> KFoldPredictor<>;
KFoldPredictor(const std::string&, std::vector<std::string>, const Options&) -> KFoldPredictor<>;
KFoldPredictor(const std::string&, std::vector<std::string>, const Options&, std::string) -> KFoldPredictor<>;
KFoldPredictor(const char*) -> KFoldPredictor<>;
KFoldPredictor(const char*, std::vector<std::string>) -> KFoldPredictor<>;
KFoldPredictor(const char*, std::vector<std::string>, const Options&) -> KFoldPredictor<>;
KFoldPredictor(const char*, std::vector<std::string>, const Options&, std::string) -> KFoldPredictor<>;

}  // namespace rdf
}  // namespace hepinfer
