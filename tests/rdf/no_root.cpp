// no_root MODEL_BDT MODEL_MULTI ROWS.bin OUT.bin: hepinfer/rdf.hpp used without ROOT (as a plain
// callable, the way RDataFrame calls it): rows of (jet_pt, jet_mass, tau21, n_constituents)
// as doubles in; per row the typed and untyped BDT scores and the 3 multiclass outputs out.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <hepinfer/rdf.hpp>

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  try {
    const std::vector<std::string> columns{"jet_pt", "jet_mass", "tau21", "n_constituents"};
    const hepinfer::rdf::Predictor<float, double, float, int> typed(argv[1], columns);
    const hepinfer::rdf::Predictor untyped(argv[1], columns);
    const hepinfer::rdf::MultiPredictor multi(argv[2], columns);
    std::FILE* in = std::fopen(argv[3], "rb");
    std::vector<double> rows;
    double v;
    while (std::fread(&v, sizeof v, 1, in) == 1) rows.push_back(v);
    std::fclose(in);
    std::vector<float> out;
    for (std::size_t r = 0; r + 4 <= rows.size(); r += 4) {
      const float pt = static_cast<float>(rows[r]), tau = static_cast<float>(rows[r + 2]);
      const int n = static_cast<int>(rows[r + 3]);
      out.push_back(typed(pt, rows[r + 1], tau, n));
      out.push_back(untyped(pt, rows[r + 1], tau, n));
      for (float p : multi(pt, rows[r + 1], tau, n)) out.push_back(p);
    }
    std::FILE* f = std::fopen(argv[4], "wb");
    std::fwrite(out.data(), sizeof(float), out.size(), f);
    std::fclose(f);
    for (const auto& wrong : {std::vector<std::string>{"jet_pt", "jet_mass", "tau21"},
                              std::vector<std::string>{"jet_pt", "jet_mass", "tau21", "nconst"}}) {
      try {
        const hepinfer::rdf::Predictor p(argv[1], wrong);
        return 3;
      } catch (const hepinfer::InputError& e) {
        std::printf("%s\n", e.what());
      }
    }
    try {
      const hepinfer::rdf::Predictor p(argv[2], columns);  // 3 outputs: needs output_index
      return 3;
    } catch (const hepinfer::InputError& e) {
      std::printf("%s\n", e.what());
    }
    try {
      untyped(1.0f, 2.0, 3.0f);  // wrong number of values
      return 3;
    } catch (const hepinfer::InputError& e) {
      std::printf("%s\n", e.what());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "no_root: %s\n", e.what());
    return 1;
  }
  return 0;
}
