// The CUDA NN executor checked without a GPU: the per-element functions the kernels run
// (cpp/src/nn/nn_math.cuh) against the CPU engine's, and the device plan (which nodes run where,
// shapes, broadcasting, reductions, uploads) executed on the host reference backend against
// Model::predict on committed models; unsupported forms and the CPU-only build's error.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../../cpp/src/nn/cuda_plan.hpp"
#include "check.hpp"
#include "hepinfer/nn.hpp"

using namespace hepinfer;
namespace gpu = hepinfer::nn::gpu;

namespace {

std::string g_data_dir = ".";

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

std::vector<float> probe_values() {
  std::vector<float> xs = {0.0f,
                           -0.0f,
                           1.0f,
                           -1.0f,
                           0.5f,
                           -0.5f,
                           2.0f,
                           -3.25f,
                           19.9f,
                           20.5f,
                           -30.0f,
                           80.0f,
                           -90.0f,
                           1e-8f,
                           -1e-8f,
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN()};
  std::mt19937 gen(7);
  std::normal_distribution<float> d(0.0f, 4.0f);
  for (int i = 0; i < 200; ++i) xs.push_back(d(gen));
  return xs;
}

}  // namespace

TEST_CASE(activations_match_the_cpu_engine) {
  // every activation, bit for bit, on ordinary, extreme and NaN values
  const float params[][2] = {{0.01f, 0.0f}, {1.0f, 0.0f}, {1.6732632f, 1.0507010f}, {0.2f, 0.5f}, {-1.0f, 2.0f}};
  for (int a = gpu::act::None; a <= gpu::act::Round; ++a)
    for (const auto& p : params)
      for (float x : probe_values()) {
        const float want = nn::activate_one(x, static_cast<nn::Act>(a), p[0], p[1]);
        const float got = gpu::act_apply(a, x, p[0], p[1]);
        if (!same_float(got, want)) {
          std::printf("  act %d alpha %g beta %g x %g: %g vs %g\n", a, p[0], p[1], x, got, want);
          CHECK(false);
        }
      }
  // the fused epilogue is act(sum + bias)
  CHECK(gpu::dense_epilogue(-2.0f, 1.5f, gpu::act::Relu, 0, 0) == 0.0f);
  CHECK(gpu::dense_epilogue(2.0f, 1.5f, gpu::act::Relu, 0, 0) == 3.5f);
}

TEST_CASE(binary_compare_and_reductions) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(gpu::bin_apply(gpu::bin::Sub, 3.0f, 5.0f) == -2.0f);
  CHECK(gpu::bin_apply(gpu::bin::Div, 3.0f, 4.0f) == 0.75f);
  CHECK(gpu::bin_apply(gpu::bin::Pow, -3.0f, 2.0f) == 9.0f);
  CHECK(std::isnan(gpu::bin_apply(gpu::bin::Max, nan, 1.0f)) && std::isnan(gpu::bin_apply(gpu::bin::Min, 1.0f, nan)));
  CHECK(gpu::bin_apply(gpu::bin::Max, -1.0f, 2.0f) == 2.0f && gpu::bin_apply(gpu::bin::Min, -1.0f, 2.0f) == -1.0f);
  CHECK(gpu::cmp_apply(gpu::cmp::LessOrEqual, 1.0f, 1.0f) == 1.0f &&
        gpu::cmp_apply(gpu::cmp::Less, 1.0f, 1.0f) == 0.0f);
  CHECK(gpu::ew_apply(gpu::EwOp::Where, 0, 0, 0, 0.0f, 5.0f, 7.0f) == 7.0f);
  CHECK(gpu::ew_apply(gpu::EwOp::ToInt, 0, 0, 0, -2.7f, 0, 0) == -2.0f);
  // segment reductions: sum in row order, mean over the segment length, NaN-propagating max
  const float x[] = {1.0f, 10.0f, 2.0f, 20.0f, 3.0f, 30.0f};  // 3 rows x 2 features
  CHECK(gpu::reduce_line(gpu::red::Sum, x, 0, 3, 2) == 6.0f);
  CHECK(gpu::reduce_line(gpu::red::Mean, x + 1, 1, 3, 2) == 25.0f);
  CHECK(gpu::reduce_line(gpu::red::Max, x, 0, 3, 2) == 3.0f);
  CHECK(gpu::reduce_line(gpu::red::L2, x, 0, 2, 2) == std::sqrt(5.0f));
  const float y[] = {1.0f, nan, 2.0f};
  CHECK(std::isnan(gpu::reduce_line(gpu::red::Max, y, 0, 3, 1)));
  // softmax over a strided line
  float s[] = {1.0f, 9.0f, 2.0f, 9.0f, 3.0f, 9.0f}, t[6] = {};
  gpu::softmax_line(s, t, 3, 2, false);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK_NEAR(t[0], std::exp(1.0) / z, 1e-7);
  CHECK_NEAR(t[4], std::exp(3.0) / z, 1e-7);
  gpu::softmax_line(s, t, 3, 2, true);
  CHECK_NEAR(t[2], 2.0 - std::log(z), 1e-6);
}

TEST_CASE(broadcast_offsets_by_jet) {
  // a per-jet operand [2 jets, 1, 3] added to a per-particle one stored as [5 rows, 3]
  const float part[15] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  const float jet[6] = {100, 200, 300, 400, 500, 600};
  const std::int32_t jet_of_row[5] = {0, 0, 1, 1, 1};
  float out[15] = {};
  gpu::Elementwise e;
  e.rank = 2;
  e.shape[0] = 5;
  e.shape[1] = 3;
  e.numel = 15;
  e.out = out;
  e.n_in = 2;
  e.in[0].data = part;
  e.in[0].stride[0] = 3;
  e.in[0].stride[1] = 1;
  e.in[1].data = jet;
  e.in[1].rows = gpu::RowMode::ByJet;
  e.in[1].stride[0] = 3;
  e.in[1].stride[1] = 1;
  e.jet_of_row = jet_of_row;
  e.op = gpu::EwOp::Binary;
  e.code = gpu::bin::Add;
  for (std::int64_t i = 0; i < 15; ++i) out[i] = gpu::ew_element(e, i);
  CHECK(out[0] == 100 && out[5] == 305 && out[6] == 406 && out[14] == 614);
}

namespace {
void compare_with_engine(const Model& m, std::size_t rows, std::size_t n_in, unsigned seed, double tol) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.5f);
  std::vector<float> x(rows * n_in);
  for (auto& v : x) v = d(gen);
  InputTensor in;
  in.type = ElementType::Float32;
  in.shape = {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(n_in)};
  in.data = x.data();
  std::vector<OutputTensor> want, got;
  m.predict({in}, want);
  gpu::host_reference_predict(m, {in}, got);
  CHECK(got.size() == want.size());
  CHECK(got[0].shape == want[0].shape);
  CHECK(got[0].type == ElementType::Float32);
  CHECK(got[0].size() == want[0].size());
  double worst = 0;
  for (std::size_t i = 0; i < want[0].size() && i < got[0].size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(got[0].floats()[i]) - want[0].floats()[i]));
  CHECK(worst <= tol);
}
}  // namespace

TEST_CASE(device_plan_on_host_matches_engine) {
  // Gemm -> Relu -> Gemm -> Softmax and Gemm -> Relu -> Gemm -> Tanh -> Gemm -> Softmax, fused
  const auto small = Model::load(g_data_dir + "/onnx/mlp_3_4_2.onnx");
  const auto mlp = Model::load(g_data_dir + "/nn/mlp_8_32_16_2.onnx");
  for (std::size_t rows : {0u, 1u, 7u, 300u}) {
    compare_with_engine(small, rows, 3, static_cast<unsigned>(rows) + 1, 1e-6);
    compare_with_engine(mlp, rows, 8, static_cast<unsigned>(rows) + 2, 1e-5);
  }
}

TEST_CASE(unsupported_forms_are_named) {
  // a kNN model (Gather, TopK, GatherElements) cannot run on the device executor yet
  const auto knn = Model::load(g_data_dir + "/nn/topk_particles.onnx");
  std::vector<OutputTensor> out;
  CHECK_THROWS(gpu::host_reference_predict(knn, {}, out), DeviceError, "not supported on CUDA yet");
  CHECK_THROWS(gpu::host_reference_predict(knn, {}, out), DeviceError, "(Gather)");
}

TEST_CASE(device_request_in_this_build) {
  const auto m = Model::load(g_data_dir + "/onnx/mlp_3_4_2.onnx");
  CHECK_THROWS(m.to(Device{}), DeviceError, "already runs on the CPU");
  if (!built_with_cuda()) {
    Device d;
    d.kind = Device::Kind::CUDA;
    CHECK_THROWS(m.to(d), DeviceError, "built without CUDA");
  }
}

int main(int argc, char** argv) {
  if (argc > 1) g_data_dir = argv[1];
  return check::run_all();
}
