// hepinfer::KFold: bundles written here (a manifest and k small XGBoost members that differ),
// cross-application checked event by event against the members loaded on their own, the fold
// rule, the manifest's errors, and concurrent predict calls.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "hepinfer/kfold.hpp"

using namespace hepinfer;
namespace fs = std::filesystem;

namespace {

// One XGBoost stump on feature 1 ("eta"); `split` and the leaves vary per fold.
std::string member_json(double split, double left, double right, const char* names = R"("pt","eta")") {
  return std::string(R"({"learner":{"attributes":{},"feature_names":[)") + names +
         R"(],"feature_types":[],
"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1"},"iteration_indptr":[0,1],
"tree_info":[0],"trees":[{"base_weights":[0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],
"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[1,0,0],
"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[)" +
         std::to_string(split) + "," + std::to_string(left) + "," + std::to_string(right) + R"(],
"split_indices":[1,0,0],"split_type":[0,0,0],"sum_hessian":[1,1,1],
"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"1"}}]},"name":"gbtree"},
"learner_model_param":{"base_score":"[5E-1]","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},
"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[3,2,0]})";
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string manifest(int k, const std::string& members, const std::string& extra = "") {
  return R"({"format": "hepinfer-kfold", "version": 1, "n_folds": )" + std::to_string(k) +
         R"(, "event_number": "event", "features": ["pt", "eta"], "members": [)" + members + "]" + extra + "}";
}

/// A bundle of k members in a fresh folder.
fs::path make_bundle(const std::string& name, int k) {
  const fs::path dir =
      fs::temp_directory_path() / ("hepinfer_kfold_" + name + "_" + std::to_string(std::random_device{}()));
  fs::remove_all(dir);
  std::string members;
  for (int i = 0; i < k; ++i) {
    write(dir / ("fold_" + std::to_string(i)) / "model.json", member_json(0.1 * i, -0.2 - 0.3 * i, 0.25 + 0.2 * i));
    members += (i ? ", \"fold_" : "\"fold_") + std::to_string(i) + "/model.json\"";
  }
  write(dir / "kfold.json", manifest(k, members));
  return dir;
}

}  // namespace

TEST_CASE(each_event_scored_by_the_member_of_its_fold) {
  const int k = 4;
  const fs::path dir = make_bundle("apply", k);
  const KFold bundle = KFold::load(dir.string());
  CHECK(bundle.n_folds() == k && bundle.kind() == KFoldKind::Forest && bundle.event_number() == "event");
  CHECK(bundle.n_features() == 2 && bundle.n_outputs() == 1);
  std::vector<Forest> members;
  for (int i = 0; i < k; ++i)
    members.push_back(Forest::load((dir / ("fold_" + std::to_string(i)) / "model.json").string()));
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const std::size_t n = 1000;
  std::vector<float> rows(2 * n);
  std::vector<double> rows64(2 * n);
  std::vector<std::int64_t> events(n);
  std::vector<std::uint64_t> big(n);
  for (std::size_t i = 0; i < n; ++i) {
    rows[2 * i] = u(gen);
    rows[2 * i + 1] = u(gen);
    events[i] = static_cast<std::int64_t>(gen() >> 2) - (std::int64_t{1} << 60);  // negative ones too
    big[i] = gen();
  }
  for (std::size_t i = 0; i < 2 * n; ++i) rows64[i] = rows[i];
  std::vector<double> got(n), got64(n), got_big(n);
  bundle.predict(rows.data(), n, events.data(), got.data(), Output::Probability, 2);
  bundle.predict(rows64.data(), n, events.data(), got64.data());
  bundle.predict(rows.data(), n, big.data(), got_big.data());
  int differs = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t m = events[i] % k;
    const int fold = static_cast<int>(m < 0 ? m + k : m);
    CHECK(bundle.fold_of(events[i]) == fold);
    CHECK(got[i] == members[static_cast<std::size_t>(fold)].predict_one(&rows[2 * i]));
    CHECK(got64[i] == members[static_cast<std::size_t>(fold)].predict_one(&rows64[2 * i]));
    const auto fold_big = static_cast<std::size_t>(big[i] % static_cast<std::uint64_t>(k));
    CHECK(got_big[i] == members[fold_big].predict_one(&rows[2 * i]));
    differs += got[i] != members[(static_cast<std::size_t>(fold) + 1) % k].predict_one(&rows[2 * i]);
  }
  CHECK(differs > static_cast<int>(n / 2));                   // the members differ: the wrong one would show
  bundle.predict(rows.data(), 0, events.data(), got.data());  // an empty batch is fine
  fs::remove_all(dir);
}

TEST_CASE(predict_is_thread_safe) {
  const fs::path dir = make_bundle("threads", 3);
  const KFold bundle = KFold::load((dir / "kfold.json").string());
  const std::size_t n = 5000;
  std::vector<float> rows(2 * n);
  std::vector<std::int64_t> events(n);
  for (std::size_t i = 0; i < n; ++i) {
    rows[2 * i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
    rows[2 * i + 1] = static_cast<float>(i % 13) * 0.1f - 0.6f;
    events[i] = static_cast<std::int64_t>(i * 7919);
  }
  std::vector<double> want(n);
  bundle.predict(rows.data(), n, events.data(), want.data());
  std::vector<std::vector<double>> got(4, std::vector<double>(n));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back(
        [&, t] { bundle.predict(rows.data(), n, events.data(), got[t].data(), Output::Probability, 1 + t % 2); });
  for (auto& t : threads) t.join();
  for (int t = 0; t < 4; ++t) CHECK(got[t] == want);
  fs::remove_all(dir);
}

TEST_CASE(manifest_errors_name_the_file_and_field) {
  const fs::path dir = make_bundle("errors", 3);
  const std::string m = (dir / "kfold.json").string();
  const std::string three = R"("fold_0/model.json", "fold_1/model.json", "fold_2/model.json")";
  write(m, manifest(3, R"("fold_0/model.json", "fold_1/model.json")"));
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError,
               "kfold.json: members: 2 member models listed for n_folds = 3");
  write(m, manifest(3, R"("fold_0/model.json", "fold_1/model.json", "nope.json")"));
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError, "members[2]: the member model");
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError, "nope.json does not exist");
  write(m, R"({"format": "hepinfer-kfold", "version": 2, "n_folds": 3})");
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError,
               "version: this hepinfer reads k-fold manifests of version 1, not 2");
  write(m, R"({"format": "hepinfer-kfold", "version": 1, "n_folds": 3})");
  CHECK_THROWS(KFold::read_manifest(dir.string()), ModelFormatError, "kfold.json: (root): missing key 'event_number'");
  write(m, "[1, 2]");
  CHECK_THROWS(KFold::read_manifest(m), ModelFormatError, "expected a JSON object");
  write(m, "{\"format\": ");
  CHECK_THROWS(KFold::read_manifest(m), ModelFormatError, "kfold.json");
  // a member whose features are not the manifest's
  write(dir / "fold_1" / "model.json", member_json(0.0, -1.0, 1.0, R"("pt","eta_other")"));
  write(m, manifest(3, three));
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError,
               "fold_1/model.json: the fold 1 model's features ['pt', 'eta_other'] differ");
  fs::remove(m);
  CHECK_THROWS(KFold::load(dir.string()), ModelFormatError, "not a k-fold bundle (the folder has no kfold.json)");
  CHECK_THROWS(KFold::load((dir / "missing.json").string()), ModelFormatError, "cannot open the k-fold manifest");
  fs::remove_all(dir);
}

int main() { return check::run_all(); }
