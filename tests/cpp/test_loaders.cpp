// Loaders: small models written inline, the hand-built TMVA files, and malformed input.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "hepinfer/forest.hpp"

using namespace hepinfer;

namespace {
std::string g_data;  // tests/data

// An XGBoost 3.x JSON model: one stump on feature 1 at 0.5, default left; base_score 0.5 (logit 0).
const char* kXgbJson = R"({"learner":{"attributes":{},"feature_names":["pt","eta"],"feature_types":[],
"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1"},"iteration_indptr":[0,1],
"tree_info":[0],"trees":[{"base_weights":[0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],
"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[1,0,0],
"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[5E-1,-2E-1,3E-1],
"split_indices":[1,0,0],"split_type":[0,0,0],"sum_hessian":[1,1,1],
"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"1"}}]},"name":"gbtree"},
"learner_model_param":{"base_score":"[5E-1]","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},
"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[3,2,0]})";

// A LightGBM text model: one tree, split on feature 0 at 1.5 (x <= 1.5 goes left), missing type NaN, default right.
const char* kLgbText = R"(tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=a b
feature_infos=[0:3] [0:3]
tree_sizes=300

Tree=0
num_leaves=2
num_cat=0
split_feature=0
split_gain=1
threshold=1.5
decision_type=8
left_child=-1
right_child=-2
leaf_value=10 20
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=0
internal_count=2
is_linear=0
shrinkage=1


end of trees
)";
}  // namespace

TEST_CASE(xgboost_json_stump) {
  Forest f = Forest::load_from_memory(kXgbJson);
  CHECK(f.n_features() == 2);
  CHECK(f.feature_names().size() == 2 && f.feature_names()[1] == "eta");
  CHECK(f.objective() == "binary:logistic");
  const float lo[2] = {0.f, 0.25f}, at[2] = {0.f, 0.5f}, nan[2] = {0.f, std::nanf("")};
  CHECK_NEAR(f.predict_one(lo, Output::Margin), -0.2, 1e-7);
  CHECK_NEAR(f.predict_one(at, Output::Margin), 0.3, 1e-7);
  CHECK_NEAR(f.predict_one(nan, Output::Margin), -0.2, 1e-7);
  CHECK_NEAR(f.predict_one(at), 1.0 / (1.0 + std::exp(-0.3)), 1e-7);
}

TEST_CASE(xgboost_json_malformed) {
  const std::string full = kXgbJson;
  CHECK_THROWS(Forest::load_from_memory(full.substr(0, full.size() / 2)), ModelFormatError, "truncated");
  std::string bad = full;
  bad.replace(bad.find("binary:logistic"), 15, "binary:unknown!");
  CHECK_THROWS(Forest::load_from_memory(bad), ModelFormatError, "binary:unknown!");
  bad = full;
  bad.replace(bad.find("\"split_indices\":[1,0,0]"), 23, "\"split_indices\":[7,0,0]");
  CHECK_THROWS(Forest::load_from_memory(bad), ModelFormatError, "out of range");
  bad = full;
  bad.replace(bad.find("\"left_children\":[1,-1,-1]"), 25, "\"left_children\":[1,-1]   ");
  CHECK_THROWS(Forest::load_from_memory(bad), ModelFormatError, "different lengths");
  CHECK_THROWS(Forest::load_from_memory(std::string("{\"learner\":")), ModelFormatError, "");
  CHECK_THROWS(Forest::load_from_memory(std::string("")), ModelFormatError, "empty");
  CHECK_THROWS(Forest::load_from_memory(std::string("\x01\x02garbage")), ModelFormatError, "unrecognised");
  // UBJ that stops early
  CHECK_THROWS(Forest::load_from_memory(std::string("{L\x00\x00\x00\x00\x00\x00\x00\x07learn", 15)), ModelFormatError,
               "");
  CHECK_THROWS(Forest::load("/nonexistent/model.json"), ModelFormatError, "cannot open");
  LoadOptions opt;
  opt.format = "onnx";
  CHECK_THROWS(Forest::load_from_memory(full, opt), ModelFormatError, "unknown model format");
}

TEST_CASE(lightgbm_text_stump) {
  Forest f = Forest::load_from_memory(kLgbText);
  CHECK(f.n_features() == 2);
  const double at[2] = {1.5, 0}, above[2] = {std::nextafter(1.5, 2.0), 0}, nan[2] = {std::nan(""), 0};
  double out;
  f.predict_one(at, &out);
  CHECK(out == 10.0);
  f.predict_one(above, &out);
  CHECK(out == 20.0);
  f.predict_one(nan, &out);
  CHECK(out == 20.0);
  const std::string full = kLgbText;
  CHECK_THROWS(Forest::load_from_memory(full.substr(0, full.find("leaf_value"))), ModelFormatError, "");
}

TEST_CASE(tmva_hand_built_files_load) {
  const char* names[] = {"adaboost_yesno.xml", "grad.xml", "fisher.xml", "decorrelation.xml"};
  for (const char* name : names) {
    Forest f = Forest::load(g_data + "/tmva/" + name);
    CHECK(f.n_trees() > 0);
    CHECK(f.source_format() == SourceFormat::TMVA);
    std::vector<float> row(static_cast<std::size_t>(f.n_features()), 0.5f);
    const double v = f.predict_one(row.data());
    CHECK(v >= -1.0 && v <= 1.0);
  }
  std::ifstream in(g_data + "/tmva/grad.xml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THROWS(Forest::load_from_memory(text.substr(0, text.size() / 2)), ModelFormatError, "");
}

int main(int argc, char** argv) {
  g_data = argc > 1 ? argv[1] : "tests/data";
  return check::run_all();
}
