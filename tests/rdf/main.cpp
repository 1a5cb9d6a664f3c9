// rdf_app EVENTS.root BDT.json MLP.onnx OUT.root: scores the "Events" tree with a forest and a
// network through hepinfer::rdf::Predictor under ImplicitMT, and writes event, bdt, mlp to the
// tree "Scores" of OUT.root.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <ROOT/RDataFrame.hxx>
#include <hepinfer/rdf.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s EVENTS.root BDT.json MLP.onnx OUT.root\n", argv[0]);
    return 2;
  }
  try {
    ROOT::EnableImplicitMT(2);
    ROOT::RDataFrame df("Events", argv[1]);
    // column types as stored in the file: typed call operators for compiled Define
    const hepinfer::rdf::Predictor<double, float, int, float> bdt(argv[2],
                                                                  {"jet_mass", "jet_pt", "n_constituents", "tau21"});
    const hepinfer::rdf::Predictor<float, double, float, int> mlp(argv[3],
                                                                  {"jet_pt", "jet_mass", "tau21", "n_constituents"});
    df.Define("bdt", bdt, bdt.columns())
        .Define("mlp", mlp, mlp.columns())
        .Snapshot("Scores", argv[4], {"event", "bdt", "mlp"});
    // a forest whose feature names do not match the columns must fail at construction
    try {
      const hepinfer::rdf::Predictor<double, float, int, float> wrong(
          argv[2], {"jet_mass", "jet_pt", "n_constituents", "tau_21"});
      std::fprintf(stderr, "no error for wrong feature names\n");
      return 1;
    } catch (const hepinfer::InputError& e) {
      std::printf("%s\n", e.what());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rdf_app: %s\n", e.what());
    return 1;
  }
  return 0;
}
