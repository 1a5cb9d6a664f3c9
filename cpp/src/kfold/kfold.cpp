// k-fold cross-application: each event scored by the member model of its fold (event_number mod
// k). Rows are grouped per fold (a stable counting sort), each member runs once on its group's
// contiguous copy, and the results are put back in row order. Nothing here reads a file: the
// manifest and the members are read in formats/load_kfold.cpp.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/kfold.hpp"

namespace hepinfer {

struct KFold::Impl {
  KFoldManifest manifest;
  KFoldKind kind = KFoldKind::Forest;
  std::vector<Forest> forests;
  std::vector<Model> networks;
  std::size_t n_outputs_probability = 0, n_outputs_margin = 0;  // forests
  std::size_t n_outputs_network = 0;
};

namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string s = "[";
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s + "]";
}

void check_count(const KFoldManifest& m, std::size_t n) {
  if (m.n_folds < 2) throw ModelFormatError(m.source + ": n_folds must be >= 2, got " + std::to_string(m.n_folds));
  if (n != static_cast<std::size_t>(m.n_folds) || m.members.size() != n)
    throw ModelFormatError(m.source + ": " + std::to_string(n) + " member models (" + std::to_string(m.members.size()) +
                           " files) for n_folds = " + std::to_string(m.n_folds));
  if (m.features.empty()) throw ModelFormatError(m.source + ": no features listed");
}

/// Fold of each row and the rows of each fold in order: rows of fold f are
/// order[start[f] .. start[f + 1]).
template <class E>
void group(const KFold& kf, const E* events, std::size_t n_rows, std::vector<std::size_t>& start,
           std::vector<std::size_t>& order) {
  const auto k = static_cast<std::size_t>(kf.n_folds());
  std::vector<std::int32_t> fold(n_rows);
  start.assign(k + 1, 0);
  for (std::size_t i = 0; i < n_rows; ++i) {
    fold[i] = kf.fold_of(events[i]);
    ++start[static_cast<std::size_t>(fold[i]) + 1];
  }
  for (std::size_t f = 0; f < k; ++f) start[f + 1] += start[f];
  std::vector<std::size_t> next(start.begin(), start.end() - 1);
  order.resize(n_rows);
  for (std::size_t i = 0; i < n_rows; ++i) order[next[static_cast<std::size_t>(fold[i])]++] = i;
}

template <class T, class E>
void predict_grouped(const KFold& kf, const KFold::Impl& im, const T* rows, std::size_t n_rows, const E* events,
                     double* out, Output output, int n_threads) {
  if (n_rows == 0) return;
  if (rows == nullptr || events == nullptr || out == nullptr)
    throw InputError("KFold::predict: rows, event_numbers and out must not be null");
  const std::size_t nf = im.manifest.features.size();
  const std::size_t no = kf.n_outputs(output);
  std::vector<std::size_t> start, order;
  group(kf, events, n_rows, start, order);
  const bool network = im.kind == KFoldKind::Network;
  std::vector<T> xs;       // forests: the group's rows in the caller's type
  std::vector<float> xf;   // networks: float32 rows
  std::vector<double> ys;  // forests' results
  std::vector<float> yf;   // networks' results
  for (std::size_t f = 0; f + 1 < start.size(); ++f) {
    const std::size_t n = start[f + 1] - start[f];
    if (n == 0) continue;
    const std::size_t* idx = order.data() + start[f];
    if (network) {
      xf.resize(n * nf);
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < nf; ++j) xf[r * nf + j] = static_cast<float>(rows[idx[r] * nf + j]);
      yf.resize(n * no);
      im.networks[f].predict(xf.data(), n, yf.data(), n_threads);
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < no; ++j) out[idx[r] * no + j] = static_cast<double>(yf[r * no + j]);
    } else {
      const T* src = rows;
      if (n != n_rows) {  // one fold only: the rows are already in order
        xs.resize(n * nf);
        for (std::size_t r = 0; r < n; ++r) std::copy_n(rows + idx[r] * nf, nf, xs.data() + r * nf);
        src = xs.data();
      }
      ys.resize(n * no);
      im.forests[f].predict(src, n, ys.data(), output, n_threads);
      for (std::size_t r = 0; r < n; ++r) std::copy_n(ys.data() + r * no, no, out + idx[r] * no);
    }
  }
}

}  // namespace

KFold KFold::from_forests(KFoldManifest manifest, std::vector<Forest> members) {
  check_count(manifest, members.size());
  auto im = std::make_shared<Impl>();
  const auto nf = static_cast<std::int32_t>(manifest.features.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    const Forest& f = members[i];
    const std::string& who = manifest.members[i];
    if (f.n_features() != nf)
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " model takes " +
                             std::to_string(f.n_features()) + " features, the manifest " + manifest.source + " lists " +
                             std::to_string(nf) + " " + joined(manifest.features));
    if (!f.feature_names().empty() && f.feature_names() != manifest.features)
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " model's features " +
                             joined(f.feature_names()) + " differ from the manifest's " + joined(manifest.features) +
                             " (" + manifest.source + ")");
    const auto np = static_cast<std::size_t>(f.n_outputs(Output::Probability));
    const auto nm = static_cast<std::size_t>(f.n_outputs(Output::Margin));
    if (i == 0) {
      im->n_outputs_probability = np;
      im->n_outputs_margin = nm;
    } else if (np != im->n_outputs_probability || nm != im->n_outputs_margin) {
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " model gives " + std::to_string(np) +
                             " outputs per event, the fold 0 model (" + manifest.members[0] + ") " +
                             std::to_string(im->n_outputs_probability));
    }
  }
  im->kind = KFoldKind::Forest;
  im->forests = std::move(members);
  im->manifest = std::move(manifest);
  return KFold(std::move(im));
}

KFold KFold::from_networks(KFoldManifest manifest, std::vector<Model> members) {
  check_count(manifest, members.size());
  auto im = std::make_shared<Impl>();
  const std::size_t nf = manifest.features.size();
  for (std::size_t i = 0; i < members.size(); ++i) {
    const Model& m = members[i];
    const std::string& who = manifest.members[i];
    if (m.inputs().size() != 1 || m.outputs().size() != 1 || m.inputs()[0].type != ElementType::Float32 ||
        m.outputs()[0].type != ElementType::Float32)
      throw ModelFormatError(who +
                             ": a k-fold network member needs one float input [batch, n_features] and one "
                             "float output; this one has " +
                             std::to_string(m.inputs().size()) + " input(s) and " + std::to_string(m.outputs().size()) +
                             " output(s)");
    std::size_t in = 0, out = 0;
    try {
      in = m.input_size_per_row();
      out = m.output_size_per_row();
    } catch (const Error& e) {
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " network has no fixed row size: " + e.what());
    }
    if (in != nf)
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " network takes " + std::to_string(in) +
                             " values per event, the manifest " + manifest.source + " lists " + std::to_string(nf) +
                             " features " + joined(manifest.features));
    if (i == 0) {
      im->n_outputs_network = out;
    } else if (out != im->n_outputs_network) {
      throw ModelFormatError(who + ": the fold " + std::to_string(i) + " network gives " + std::to_string(out) +
                             " outputs per event, the fold 0 network (" + manifest.members[0] + ") " +
                             std::to_string(im->n_outputs_network));
    }
  }
  im->kind = KFoldKind::Network;
  im->networks = std::move(members);
  im->manifest = std::move(manifest);
  return KFold(std::move(im));
}

std::int32_t KFold::n_folds() const noexcept { return impl_->manifest.n_folds; }
KFoldKind KFold::kind() const noexcept { return impl_->kind; }
const std::string& KFold::event_number() const noexcept { return impl_->manifest.event_number; }
const std::vector<std::string>& KFold::feature_names() const noexcept { return impl_->manifest.features; }
std::size_t KFold::n_features() const noexcept { return impl_->manifest.features.size(); }
const std::vector<std::string>& KFold::member_paths() const noexcept { return impl_->manifest.members; }

std::size_t KFold::n_outputs(Output output) const {
  if (impl_->kind == KFoldKind::Network) return impl_->n_outputs_network;
  return output == Output::Margin ? impl_->n_outputs_margin : impl_->n_outputs_probability;
}

const Forest& KFold::forest(std::int32_t fold) const {
  if (impl_->kind != KFoldKind::Forest) throw InputError("this k-fold bundle holds networks, not forests");
  if (fold < 0 || fold >= n_folds())
    throw InputError("fold " + std::to_string(fold) + " out of range [0, " + std::to_string(n_folds()) + ")");
  return impl_->forests[static_cast<std::size_t>(fold)];
}

const Model& KFold::network(std::int32_t fold) const {
  if (impl_->kind != KFoldKind::Network) throw InputError("this k-fold bundle holds forests, not networks");
  if (fold < 0 || fold >= n_folds())
    throw InputError("fold " + std::to_string(fold) + " out of range [0, " + std::to_string(n_folds()) + ")");
  return impl_->networks[static_cast<std::size_t>(fold)];
}

std::int32_t KFold::fold_of(std::int64_t event_number) const noexcept {
  const std::int64_t k = impl_->manifest.n_folds;
  return static_cast<std::int32_t>(((event_number % k) + k) % k);
}

std::int32_t KFold::fold_of(std::uint64_t event_number) const noexcept {
  return static_cast<std::int32_t>(event_number % static_cast<std::uint64_t>(impl_->manifest.n_folds));
}

void KFold::predict(const float* rows, std::size_t n_rows, const std::int64_t* event_numbers, double* out,
                    Output output, int n_threads) const {
  predict_grouped(*this, *impl_, rows, n_rows, event_numbers, out, output, n_threads);
}
void KFold::predict(const double* rows, std::size_t n_rows, const std::int64_t* event_numbers, double* out,
                    Output output, int n_threads) const {
  predict_grouped(*this, *impl_, rows, n_rows, event_numbers, out, output, n_threads);
}
void KFold::predict(const float* rows, std::size_t n_rows, const std::uint64_t* event_numbers, double* out,
                    Output output, int n_threads) const {
  predict_grouped(*this, *impl_, rows, n_rows, event_numbers, out, output, n_threads);
}

}  // namespace hepinfer
