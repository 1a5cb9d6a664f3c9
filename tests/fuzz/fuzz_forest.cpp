// libFuzzer harness of the tree-ensemble loaders: the input is a model file in the format
// FUZZ_FORMAT ("xgboost-json", "xgboost-ubj", "lightgbm", "tmva"; one executable each, see
// CMakeLists.txt). Loads it with Forest::load_from_memory and, when it loads, evaluates it:
// predict (probability and margin, float and double rows, a strided layout), predict_leaf and
// predict_one, and checks that the outputs have the promised sizes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "hepinfer/forest.hpp"

#ifndef FUZZ_FORMAT
#error "compile with -DFUZZ_FORMAT=\"<format>\""
#endif

namespace {

void evaluate(const hepinfer::Forest& forest, fuzz::Values& values) {
  const auto n_features = static_cast<std::size_t>(forest.n_features());
  const std::size_t n_rows = 5;
  if (forest.n_features() < 0 || forest.n_outputs() < 0) {
    std::fprintf(stderr, "FUZZ FINDING: negative n_features/n_outputs after a successful load\n");
    std::abort();
  }
  if (n_features * n_rows > fuzz::kMaxValues) return;
  std::vector<float> rows_f(n_features * n_rows);
  std::vector<double> rows_d(n_features * n_rows);
  for (std::size_t i = 0; i < rows_d.size(); ++i) {
    rows_d[i] = values.value();
    rows_f[i] = static_cast<float>(rows_d[i]);
  }
  for (auto output : {hepinfer::Output::Probability, hepinfer::Output::Margin}) {
    const auto n_out = static_cast<std::size_t>(forest.n_outputs(output));
    // guard values after the output: a write past n_rows * n_outputs shows up here (and in ASan)
    std::vector<double> out(n_rows * n_out + 1, 12345.0);
    forest.predict(rows_f.data(), n_rows, out.data(), output, 1);
    forest.predict(rows_d.data(), n_rows, out.data(), output, 2);
    if (out.back() != 12345.0) {
      std::fprintf(stderr, "FUZZ FINDING: predict wrote past n_rows * n_outputs\n");
      std::abort();
    }
    // the same rows read backwards through a negative row stride
    hepinfer::RowLayout layout;
    layout.n_rows = n_rows;
    layout.row_stride = -static_cast<std::ptrdiff_t>(n_features);
    layout.col_stride = 1;
    if (n_features > 0) forest.predict(rows_d.data() + (n_rows - 1) * n_features, layout, out.data(), output, 1);
    std::vector<double> one(n_out);
    forest.predict_one(rows_f.data(), one.data(), output);
    forest.predict_one(rows_d.data(), one.data(), output);
  }
  if (forest.n_trees() * n_rows <= fuzz::kMaxValues) {
    std::vector<std::int32_t> leaves(forest.n_trees() * n_rows);
    hepinfer::RowLayout layout;
    layout.n_rows = n_rows;
    layout.row_stride = static_cast<std::ptrdiff_t>(n_features);
    forest.predict_leaf(rows_f.data(), layout, leaves.data(), 1);
  }
  // zero rows must be fine too
  forest.predict(rows_f.data(), std::size_t{0}, nullptr, hepinfer::Output::Probability, 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string content(reinterpret_cast<const char*>(data), size);
  hepinfer::LoadOptions options;
  options.format = FUZZ_FORMAT;
  // TMVA: let the file's own "ROOT Release" pick the cut operator, so that parser runs too
  options.tmva_cut_op = hepinfer::TMVACutOp::FromFile;
  fuzz::Values values(fuzz::hash_bytes(data, size));
  fuzz::expect_only_hepinfer_errors("Forest::load_from_memory(" FUZZ_FORMAT ")", [&] {
    const auto forest = hepinfer::Forest::load_from_memory(content, options, "fuzz-input");
    fuzz::expect_only_hepinfer_errors("Forest::predict", [&] { evaluate(forest, values); });
  });
  return 0;
}
