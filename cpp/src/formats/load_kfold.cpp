// KFold::read_manifest and KFold::load: the k-fold bundle's manifest (kfold.json) read and checked,
// and its member models loaded with the forest and network readers. The dispatch of events to
// their fold's model lives in kfold/ and never looks at a file.
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/file.hpp"
#include "formats/json.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/kfold.hpp"

namespace hepinfer {

namespace fs = std::filesystem;

namespace {

bool is_onnx(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".onnx" || ext == ".ONNX";
}

std::vector<std::string> string_list(const detail::JsonReader& r, const detail::JsonValue& v, const std::string& path) {
  if (v.type != detail::JsonValue::Type::Array) r.fail(path, "expected a list of strings");
  std::vector<std::string> out;
  v.for_each_item([&](const detail::JsonValue& item) {
    out.push_back(r.string(item, path + "[" + std::to_string(out.size()) + "]"));
    return true;
  });
  return out;
}

}  // namespace

KFoldManifest KFold::read_manifest(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(fs::path(path), ec)) file = (fs::path(path) / kManifestName).string();
  const std::string text = read_file(
      file, file == path ? path + ": cannot open the k-fold manifest"
                         : path + ": not a k-fold bundle (the folder has no " + std::string(kManifestName) + ")");
  const detail::JsonDocument doc = detail::parse_json(text, file);
  const detail::JsonReader r(file);
  const detail::JsonValue root = doc.root();
  if (!root.is_object()) r.fail("(root)", "expected a JSON object (the k-fold manifest)");
  const std::string format = r.string(r.member(root, "format", "(root)"), "format");
  if (format != "hepinfer-kfold") r.fail("format", "expected \"hepinfer-kfold\", got \"" + format + "\"");
  const std::int64_t version = r.integer(r.member(root, "version", "(root)"), "version");
  if (version != 1)
    r.fail("version", "this hepinfer reads k-fold manifests of version 1, not " + std::to_string(version));

  KFoldManifest m;
  m.source = file;
  const std::int64_t k = r.integer(r.member(root, "n_folds", "(root)"), "n_folds");
  if (k < 2 || k > 1000000) r.fail("n_folds", "expected an integer >= 2, got " + std::to_string(k));
  m.n_folds = static_cast<std::int32_t>(k);
  m.event_number = r.string(r.member(root, "event_number", "(root)"), "event_number");
  if (m.event_number.empty()) r.fail("event_number", "empty: name the branch that holds the event number");
  m.features = string_list(r, r.member(root, "features", "(root)"), "features");
  if (m.features.empty()) r.fail("features", "no features listed");
  std::set<std::string> seen;
  for (std::size_t j = 0; j < m.features.size(); ++j) {
    if (m.features[j].empty()) r.fail("features[" + std::to_string(j) + "]", "empty feature name");
    if (!seen.insert(m.features[j]).second)
      r.fail("features[" + std::to_string(j) + "]", "'" + m.features[j] + "' is listed twice");
  }
  if (seen.count(m.event_number))
    r.fail("event_number", "'" + m.event_number + "' is also a feature: the fold must not be a model input");
  const std::vector<std::string> members = string_list(r, r.member(root, "members", "(root)"), "members");
  if (members.size() != static_cast<std::size_t>(m.n_folds))
    r.fail("members", std::to_string(members.size()) + " member models listed for n_folds = " + std::to_string(k) +
                          " (one per fold: members[i] is applied to fold i)");
  const fs::path dir = fs::path(file).parent_path();
  for (std::size_t i = 0; i < members.size(); ++i) {
    const std::string where = "members[" + std::to_string(i) + "]";
    if (members[i].empty()) r.fail(where, "empty file name");
    const fs::path p = fs::path(members[i]).is_absolute() ? fs::path(members[i]) : dir / members[i];
    if (!fs::is_regular_file(p, ec)) r.fail(where, "the member model " + p.string() + " does not exist");
    m.members.push_back(p.string());
  }
  const bool onnx = is_onnx(m.members[0]);
  for (std::size_t i = 1; i < m.members.size(); ++i)
    if (is_onnx(m.members[i]) != onnx)
      r.fail("members[" + std::to_string(i) + "]", "mixes ONNX networks and forests (" + m.members[0] + ", " +
                                                       m.members[i] + "): all members are of one kind");
  return m;
}

KFold KFold::load(const std::string& path, const KFoldOptions& options) {
  KFoldManifest m = read_manifest(path);
  if (is_onnx(m.members[0])) {
    std::vector<Model> nets;
    for (const std::string& p : m.members) nets.push_back(Model::load(p, options.network));
    return from_networks(std::move(m), std::move(nets));
  }
  std::vector<Forest> forests;
  for (const std::string& p : m.members) forests.push_back(Forest::load(p, options.forest));
  return from_forests(std::move(m), std::move(forests));
}

}  // namespace hepinfer
