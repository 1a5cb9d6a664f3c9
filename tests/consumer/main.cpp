// example_app MODEL ROWS.csv: loads a model with hepinfer and prints one score per row
// (all outputs of a row comma-separated), the way an analysis would call it.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <hepinfer/forest.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL ROWS.csv\n", argv[0]);
    return 2;
  }
  try {
    const hepinfer::Forest forest = hepinfer::Forest::load(argv[1]);
    std::ifstream in(argv[2]);
    if (!in) {
      std::fprintf(stderr, "cannot open %s\n", argv[2]);
      return 2;
    }
    std::vector<double> rows;
    std::string line;
    std::size_t n_rows = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::stringstream ss(line);
      std::string cell;
      std::size_t n = 0;
      while (std::getline(ss, cell, ',')) {
        rows.push_back(std::stod(cell));
        ++n;
      }
      if (n != static_cast<std::size_t>(forest.n_features())) {
        std::fprintf(stderr, "row %zu has %zu values, the model takes %d\n", n_rows, n, forest.n_features());
        return 1;
      }
      ++n_rows;
    }
    const auto n_out = static_cast<std::size_t>(forest.n_outputs());
    std::vector<double> scores(n_rows * n_out);
    forest.predict(rows.data(), n_rows, scores.data(), hepinfer::Output::Probability, 2);
    for (std::size_t r = 0; r < n_rows; ++r) {
      for (std::size_t k = 0; k < n_out; ++k) std::printf(k ? ",%.17g" : "%.17g", scores[r * n_out + k]);
      std::printf("\n");
    }
    // the single-event path must agree with the batch
    if (n_rows > 0 && n_out == 1 && forest.predict_one(rows.data()) != scores[0]) {
      std::fprintf(stderr, "predict_one disagrees with predict\n");
      return 1;
    }
  } catch (const hepinfer::Error& e) {
    std::fprintf(stderr, "hepinfer error: %s\n", e.what());
    return 1;
  }
  return 0;
}
