#pragma once
/// \file forest.hpp
/// Tree-ensemble inference: XGBoost (JSON, UBJ), LightGBM (text) and TMVA BDT
/// (XML weight files) models, evaluated with the exact semantics of each.
///
///     auto forest = hepinfer::Forest::load("model.json");
///     std::vector<double> out(n_rows * forest.n_outputs());
///     forest.predict(rows, n_rows, out.data());           // row-major float32
///     double score = forest.predict_one(row);              // one event, no allocation
///
/// A Forest is immutable after load; every method is const and may be called
/// from many threads at once on one shared object.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest_ir.hpp"

namespace hepinfer {

/// How TMVA's node cut is compared: TMVA::Reader of ROOT >= 6.18 goes right
/// iff `x >= Cut`; ROOT <= 6.16 used `x > Cut`.
enum class TMVACutOp : std::uint8_t {
  GreaterEqual,  ///< ROOT >= 6.18 (default: what today's Reader computes)
  Greater,       ///< ROOT <= 6.16
  FromFile,      ///< pick by the "ROOT Release" recorded in the weight file
};

struct LoadOptions {
  /// "auto" (by content), "xgboost-json", "xgboost-ubj", "lightgbm", "tmva".
  std::string format = "auto";
  TMVACutOp tmva_cut_op = TMVACutOp::GreaterEqual;
};

/// What predict returns.
enum class Output : std::uint8_t {
  Probability,  ///< the library's own transformed output (xgboost predict, lightgbm predict, TMVA MVA value)
  Margin,       ///< raw sum of leaves plus base margin, before the objective's link
};

/// The one table of these options' names, for every front end (Python, the C API, the CLI):
/// "probability" / "margin", and ">=" / ">" / "auto". Anything else raises InputError naming
/// `what` (the argument) and the accepted spellings.
Output parse_output(const std::string& name, const char* what = "output");
TMVACutOp parse_tmva_cut_op(const std::string& name, const char* what = "tmva_cut_op");
/// The names parse_output / parse_tmva_cut_op accept for each value.
const char* output_name(Output output);
const char* tmva_cut_op_name(TMVACutOp op);

/// Describes how rows are laid out in memory: element (i, j) lives at
/// data[i * row_stride + j * col_stride] (strides in elements, not bytes).
struct RowLayout {
  std::size_t n_rows = 0;
  std::ptrdiff_t row_stride = 0;
  std::ptrdiff_t col_stride = 1;
};

class Forest {
 public:
  /// Load from a file; the format is detected from the content unless given.
  static Forest load(const std::string& path, const LoadOptions& options = {});
  /// Load from a model held in memory (file content, not a path).
  static Forest load_from_memory(const std::string& content, const LoadOptions& options = {},
                                 const std::string& source_name = "<memory>");
  /// Build from a loader-independent description (validated first).
  static Forest from_ir(ForestIR ir);

  std::int32_t n_features() const noexcept;
  /// Columns of predict()'s output: 1 for binary/regression and multi:softmax, n_classes otherwise.
  std::int32_t n_outputs(Output output = Output::Probability) const noexcept;
  /// Number of classes (1 for regression, 2 for binary classification).
  std::int32_t n_classes() const noexcept;
  std::size_t n_trees() const noexcept;
  const std::vector<std::string>& feature_names() const noexcept;
  const std::string& objective() const noexcept;
  SourceFormat source_format() const noexcept;
  /// The description this Forest was built from.
  const ForestIR& ir() const noexcept;

  /// Evaluate rows. `out` receives n_rows * n_outputs(output) values, row-major.
  /// n_threads <= 0 uses all hardware threads; results are bit-identical for any n_threads.
  void predict(const float* data, const RowLayout& layout, double* out, Output output = Output::Probability,
               int n_threads = 1) const;
  void predict(const double* data, const RowLayout& layout, double* out, Output output = Output::Probability,
               int n_threads = 1) const;
  /// Contiguous row-major shorthand.
  void predict(const float* rows, std::size_t n_rows, double* out, Output output = Output::Probability,
               int n_threads = 1) const;
  void predict(const double* rows, std::size_t n_rows, double* out, Output output = Output::Probability,
               int n_threads = 1) const;

  /// The index (within its tree, in the source model's own numbering) of the
  /// leaf each row reaches in each tree: n_rows * n_trees int32 values.
  void predict_leaf(const float* data, const RowLayout& layout, std::int32_t* out, int n_threads = 1) const;
  void predict_leaf(const double* data, const RowLayout& layout, std::int32_t* out, int n_threads = 1) const;

  /// One event (n_features contiguous values); writes n_outputs values. Allocates nothing.
  void predict_one(const float* row, double* out, Output output = Output::Probability) const;
  void predict_one(const double* row, double* out, Output output = Output::Probability) const;
  /// One event of a single-output model.
  double predict_one(const float* row, Output output = Output::Probability) const;
  double predict_one(const double* row, Output output = Output::Probability) const;

  struct Impl;

 private:
  explicit Forest(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace hepinfer

#include "hepinfer/load.hpp"  // the readers Forest::load dispatches to, for users who want the IR
