// hepinfer::Model from C++: a committed tiny ONNX MLP (tests/data/onnx/mlp_3_4_2.onnx, weights
// given by a formula: W1[j][k] = sin(3j + k), b1[j] = 0.1 j, W2[j][k] = cos(4j + k), b2[j] = -0.2 j,
// Gemm -> Relu -> Gemm -> Softmax) checked against a direct computation written here; error paths.
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "check.hpp"
#include "hepinfer/nn.hpp"

using namespace hepinfer;

namespace {

std::string g_data_dir = ".";

std::string path(const char* name) { return g_data_dir + "/onnx/" + name; }

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void reference(const float* x, double* y) {
  double h[4];
  for (int j = 0; j < 4; ++j) {
    double s = static_cast<float>(0.1 * j);
    for (int k = 0; k < 3; ++k) s += static_cast<double>(static_cast<float>(std::sin(3 * j + k))) * x[k];
    h[j] = s > 0 ? s : 0;
  }
  double z[2];
  for (int j = 0; j < 2; ++j) {
    double s = static_cast<float>(-0.2 * j);
    for (int k = 0; k < 4; ++k) s += static_cast<double>(static_cast<float>(std::cos(4 * j + k))) * h[k];
    z[j] = s;
  }
  const double m = std::max(z[0], z[1]);
  const double e0 = std::exp(z[0] - m), e1 = std::exp(z[1] - m);
  y[0] = e0 / (e0 + e1);
  y[1] = e1 / (e0 + e1);
}

std::vector<float> random_rows(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> x(n * 3);
  for (auto& v : x) v = d(gen);
  return x;
}

}  // namespace

TEST_CASE(load_and_describe) {
  const auto m = Model::load(path("mlp_3_4_2.onnx"));
  CHECK(m.inputs().size() == 1);
  CHECK(m.inputs()[0].name == "x");
  CHECK(m.inputs()[0].shape == (std::vector<std::int64_t>{-1, 3}));
  CHECK(m.inputs()[0].dim_names[0] == "batch");
  CHECK(m.outputs()[0].name == "y");
  CHECK(m.opset() == 17);
  CHECK(m.producer().find("hepinfer-tests") != std::string::npos);
  CHECK(m.batch_separable());
  CHECK(m.input_size_per_row() == 3);
  CHECK(m.output_size_per_row() == 2);
  CHECK(m.n_nodes() == 3);  // Gemm+Relu fused
}

TEST_CASE(predict_matches_direct_computation) {
  const auto m = Model::load(path("mlp_3_4_2.onnx"));
  for (std::size_t n : {1u, 3u, 17u, 1000u}) {
    const auto x = random_rows(n, static_cast<unsigned>(n));
    std::vector<float> y(n * 2), y2(n * 2);
    m.predict(x.data(), n, y.data());
    m.predict(x.data(), n, y2.data(), 4);
    for (std::size_t r = 0; r < n; ++r) {
      double ref[2];
      reference(&x[r * 3], ref);
      CHECK_NEAR(y[r * 2], ref[0], 1e-6);
      CHECK_NEAR(y[r * 2 + 1], ref[1], 1e-6);
      CHECK(y[r * 2] == y2[r * 2] && y[r * 2 + 1] == y2[r * 2 + 1]);
    }
  }
}

TEST_CASE(single_event_and_general_api_agree) {
  const auto m = Model::load_from_memory(read_all(path("mlp_3_4_2.onnx")));
  const auto x = random_rows(5, 7);
  std::vector<InputTensor> in(1);
  in[0].name = "x";
  in[0].shape = {5, 3};
  in[0].data = x.data();
  std::vector<OutputTensor> out;
  m.predict(in, out);
  CHECK(out.size() == 1);
  CHECK(out[0].shape == (std::vector<std::int64_t>{5, 2}));
  for (std::size_t r = 0; r < 5; ++r) {
    float one[2];
    m.predict_one(&x[r * 3], one);
    CHECK(one[0] == out[0].floats()[r * 2]);
    CHECK(one[1] == out[0].floats()[r * 2 + 1]);
  }
}

TEST_CASE(threads_share_one_model) {
  const auto m = Model::load(path("mlp_3_4_2.onnx"));
  const auto x = random_rows(300, 11);
  std::vector<float> expect(600);
  m.predict(x.data(), 300, expect.data());
  std::vector<int> ok(4, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::vector<float> y(600);
      bool same = true;
      for (int rep = 0; rep < 50; ++rep) {
        m.predict(x.data(), 300, y.data());
        same = same && y == expect;
      }
      ok[static_cast<std::size_t>(t)] = same;
    });
  for (auto& t : ts) t.join();
  for (int v : ok) CHECK(v == 1);
}

TEST_CASE(errors) {
  CHECK_THROWS(Model::load(path("unsupported_hardmax.onnx")), ModelFormatError, "weird_node' (Hardmax)");
  CHECK_THROWS(Model::load(path("does_not_exist.onnx")), ModelFormatError, "does_not_exist");
  const std::string bytes = read_all(path("mlp_3_4_2.onnx"));
  for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
    try {
      (void)Model::load_from_memory(bytes.substr(0, cut));
    } catch (const ModelFormatError&) {
    }
  }
  CHECK_THROWS(Model::load_from_memory(bytes.substr(0, bytes.size() / 2)), ModelFormatError, "byte offset");
  const auto m = Model::load(path("mlp_3_4_2.onnx"));
  std::vector<InputTensor> in(1);
  float x[8] = {};
  in[0].name = "x";
  in[0].shape = {2, 4};
  in[0].data = x;
  std::vector<OutputTensor> out;
  CHECK_THROWS(m.predict(in, out), InputError, "input 'x' has shape (2, 4)");
  in[0].shape = {2, 3};
  in[0].type = ElementType::Int64;
  CHECK_THROWS(m.predict(in, out), InputError, "must be float32");
  in[0].type = ElementType::Float32;
  in[0].name = "features";
  CHECK_THROWS(m.predict(in, out), InputError, "no input 'features'");
}

int main(int argc, char** argv) {
  if (argc > 1) g_data_dir = argv[1];
  return check::run_all();
}
