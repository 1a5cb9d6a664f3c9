#pragma once
/// \file kfold.hpp
/// k-fold cross-application, as TMVA's CrossValidation does it: k models, model i trained on the
/// events whose fold is not i, and each event scored by the one model that did not see it.
///
///     const auto bundle = hepinfer::KFold::load("tagger_kfold");     // folder, or its kfold.json
///     std::vector<double> out(n_rows * bundle.n_outputs());
///     bundle.predict(rows, n_rows, event_numbers, out.data());       // rows: n_rows x n_features
///
/// The fold of an event is `event_number mod k`, taken non-negative (((e % k) + k) % k), the
/// `int([eventNumber]) % int([numFolds])` split expression of TMVA's CrossValidation. The bundle
/// is a folder holding `kfold.json` (the manifest) and the k member models:
///
///     {"format": "hepinfer-kfold", "version": 1, "n_folds": 3, "event_number": "event",
///      "features": ["pt", "eta", "mass"],
///      "members": ["fold_0.json", "fold_1.json", "fold_2.json"]}
///
/// members[i] is applied to the events of fold i (it was trained on the others). Member paths are
/// relative to the manifest's folder; any model hepinfer loads: XGBoost JSON/UBJ, LightGBM text,
/// TMVA XML (Forest) or ONNX (`.onnx`, Model with one float input [batch, n_features] and one
/// float output). All members are of one kind, with the same features and number of outputs.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/forest.hpp"
#include "hepinfer/nn.hpp"

namespace hepinfer {

/// The content of a k-fold manifest (kfold.json), member paths resolved against its folder.
struct KFoldManifest {
  std::int32_t n_folds = 0;
  std::string event_number;           ///< branch / column holding the event number
  std::vector<std::string> features;  ///< input features, in the members' order
  std::vector<std::string> members;   ///< member model files, fold i applied with members[i]
  std::string source;                 ///< the manifest file (for error messages)
};

/// Options of KFold::load.
struct KFoldOptions {
  LoadOptions forest;    ///< for forest members (format, TMVA cut operator)
  ModelOptions network;  ///< for ONNX members
};

/// Which kind of model the members are.
enum class KFoldKind : std::uint8_t { Forest, Network };

class KFold {
 public:
  /// The manifest file name inside a bundle folder.
  static constexpr const char* kManifestName = "kfold.json";

  /// Load a bundle: a folder holding kfold.json, or the manifest file itself. Throws
  /// ModelFormatError naming the manifest and the field for a malformed manifest, and naming the
  /// member file for a missing or unreadable member or members that disagree (features, outputs,
  /// kinds).
  static KFold load(const std::string& path, const KFoldOptions& options = {});
  /// Read and check a manifest (folder or file) without loading the members.
  static KFoldManifest read_manifest(const std::string& path);
  /// Assemble from loaded members (forests or networks, one per fold, fold i applied with
  /// members[i]); checks them as load() does.
  static KFold from_forests(KFoldManifest manifest, std::vector<Forest> members);
  static KFold from_networks(KFoldManifest manifest, std::vector<Model> members);

  std::int32_t n_folds() const noexcept;
  KFoldKind kind() const noexcept;
  const std::string& event_number() const noexcept;
  const std::vector<std::string>& feature_names() const noexcept;
  std::size_t n_features() const noexcept;
  /// Values per event of predict() (forest members: for `output`).
  std::size_t n_outputs(Output output = Output::Probability) const;
  /// The member files, in fold order.
  const std::vector<std::string>& member_paths() const noexcept;
  /// The member applied to fold i (Forest for KFoldKind::Forest, Model otherwise; InputError
  /// for the other kind or a fold out of range).
  const Forest& forest(std::int32_t fold) const;
  const Model& network(std::int32_t fold) const;

  /// The fold of an event: event_number mod n_folds, in [0, n_folds).
  std::int32_t fold_of(std::int64_t event_number) const noexcept;
  std::int32_t fold_of(std::uint64_t event_number) const noexcept;

  /// Scores n_rows events (row-major, n_features values each) with, for each event, the member of
  /// its fold: rows are grouped per fold and each member is called once on its group. `out`
  /// receives n_rows * n_outputs(output) values, row-major, in the order of the rows. `output` is
  /// for forest members (networks give their output as it is). Const and thread-safe.
  void predict(const float* rows, std::size_t n_rows, const std::int64_t* event_numbers, double* out,
               Output output = Output::Probability, int n_threads = 1) const;
  void predict(const double* rows, std::size_t n_rows, const std::int64_t* event_numbers, double* out,
               Output output = Output::Probability, int n_threads = 1) const;
  void predict(const float* rows, std::size_t n_rows, const std::uint64_t* event_numbers, double* out,
               Output output = Output::Probability, int n_threads = 1) const;

  struct Impl;

 private:
  explicit KFold(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace hepinfer
