#pragma once
/// Factories that hepinfer.rdf (PyROOT) calls through cppyy to make the RDataFrame helpers of
/// rdf.hpp. They live in their own namespace: listing the functions of hepinfer::rdf (which holds
/// deduction guides) crashes the interpreter of ROOT 6.40. Not for C++ users: use rdf.hpp.

#include <string>
#include <vector>

#include "hepinfer/rdf.hpp"
#include "hepinfer/rdf_kfold.hpp"

namespace hepinfer_rdf_python {

/// A Predictor<> for one output (index) of the model at `path`, forests as margin or probability.
inline hepinfer::rdf::Predictor<>* new_predictor(const std::string& path, const std::vector<std::string>& columns,
                                                 int output_index, bool margin) {
  hepinfer::rdf::Options options;
  options.output_index = output_index;
  options.forest_output = margin ? hepinfer::Output::Margin : hepinfer::Output::Probability;
  return new hepinfer::rdf::Predictor<>(path, columns, options);
}

/// A MultiPredictor<> (every output as an RVec) for the model at `path`.
inline hepinfer::rdf::MultiPredictor<>* new_multi_predictor(const std::string& path,
                                                            const std::vector<std::string>& columns, bool margin) {
  hepinfer::rdf::Options options;
  options.forest_output = margin ? hepinfer::Output::Margin : hepinfer::Output::Probability;
  return new hepinfer::rdf::MultiPredictor<>(path, columns, options);
}

/// A KFoldPredictor<> for the k-fold bundle at `path`: the feature columns, then `event_column`
/// ("" = the manifest's event-number branch).
inline hepinfer::rdf::KFoldPredictor<>* new_kfold_predictor(const std::string& path,
                                                            const std::vector<std::string>& columns,
                                                            const std::string& event_column, int output_index,
                                                            bool margin) {
  hepinfer::rdf::Options options;
  options.output_index = output_index;
  options.forest_output = margin ? hepinfer::Output::Margin : hepinfer::Output::Probability;
  return new hepinfer::rdf::KFoldPredictor<>(path, columns, options, event_column);
}

}  // namespace hepinfer_rdf_python
