// The per-row and per-pair logic of the forest and DisCo CUDA kernels (cpp/src/forest/forest_gpu_layout.hpp,
// cpp/src/disco/disco_gpu_logic.hpp), run on the host against the CPU engines. The kernels are thin
// wrappers around these functions, so this checks the math they run (node layout, decisions with
// NaN and threshold-equal values, every split kind, summation order, output transforms, DisCo pair
// sums, centring, gradient) in builds and on machines without a GPU. What it cannot check is the
// kernels' indexing, staging and launch code: tests/gpu/ does that on a GPU.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../cpp/src/disco/disco_gpu_logic.hpp"
#include "../../cpp/src/forest/forest_gpu_layout.hpp"
#include "check.hpp"
#include "random_forest_ir.hpp"
#include "hepinfer/device.hpp"
#include "hepinfer/disco.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/forest_gpu.hpp"

using namespace hepinfer;
using hepinfer_test::leaf;
using hepinfer_test::random_forest;
using hepinfer_test::random_rows;
using hepinfer_test::split;

namespace {

std::string g_data_dir;

/// What one kernel thread computes for row r: staged in T, margins, then the output.
template <typename T, typename In>
void gpu_logic_row(const gpu::View& v, bool float32_inputs, const In* row, bool probability, double* out) {
  std::vector<T> staged(static_cast<std::size_t>(std::max(1, v.n_features)));
  for (int j = 0; j < v.n_features; ++j)
    staged[static_cast<std::size_t>(j)] = gpu::stage_value<T>(row[j], float32_inputs);
  std::vector<double> m(static_cast<std::size_t>(v.n_groups));
  gpu::row_margins(v, staged.data(), 1, m.data());
  if (probability) gpu::row_transform(v, m.data(), out);
  else std::memcpy(out, m.data(), m.size() * sizeof(double));
}

/// Compares the GPU logic with Forest::predict (margins and outputs, float and double rows): returns mismatches.
int compare_forest(const Forest& f, const std::vector<double>& X, std::size_t n) {
  const gpu::Layout L = gpu::build_layout(f.ir());
  const gpu::View v = gpu::host_view(L);
  const std::size_t nf = static_cast<std::size_t>(f.n_features());
  std::vector<float> Xf(X.begin(), X.end());
  int bad = 0;
  for (int prob = 0; prob < 2; ++prob) {
    const Output o = prob ? Output::Probability : Output::Margin;
    const std::size_t no = static_cast<std::size_t>(f.n_outputs(o));
    CHECK(static_cast<std::size_t>(gpu::n_outputs(v, prob != 0)) == no);
    std::vector<double> cpu_d(n * no), cpu_f(n * no), row_out(no);
    f.predict(X.data(), n, cpu_d.data(), o, 1);
    f.predict(Xf.data(), n, cpu_f.data(), o, 1);
    const bool as_double = !L.float32_inputs;  // double rows of a double-comparing model stay double
    for (std::size_t r = 0; r < n; ++r) {
      if (as_double) gpu_logic_row<double>(v, L.float32_inputs, X.data() + r * nf, prob != 0, row_out.data());
      else gpu_logic_row<float>(v, L.float32_inputs, X.data() + r * nf, prob != 0, row_out.data());
      for (std::size_t k = 0; k < no; ++k)
        if (std::memcmp(&row_out[k], &cpu_d[r * no + k], sizeof(double)) != 0 &&
            !(std::isnan(row_out[k]) && std::isnan(cpu_d[r * no + k])))
          ++bad;
      gpu_logic_row<float>(v, L.float32_inputs, Xf.data() + r * nf, prob != 0, row_out.data());
      for (std::size_t k = 0; k < no; ++k)
        if (std::memcmp(&row_out[k], &cpu_f[r * no + k], sizeof(double)) != 0 &&
            !(std::isnan(row_out[k]) && std::isnan(cpu_f[r * no + k])))
          ++bad;
    }
  }
  return bad;
}

}  // namespace

TEST_CASE(forest_logic_matches_cpu_engine_on_random_forests) {
  std::mt19937 rng(20261204);
  const Postprocess posts[] = {Postprocess::Identity,     Postprocess::Sigmoid,  Postprocess::Softmax,
                               Postprocess::ArgMax,       Postprocess::TMVAGrad, Postprocess::Exp,
                               Postprocess::SignedSquare, Postprocess::Log1pExp};
  for (int trial = 0; trial < 40; ++trial) {
    const bool specials = trial % 3 == 1;
    const bool f32 = trial % 2 == 0;
    const int depth = trial % 5 == 4 ? 12 : 1 + trial % 8;
    ForestIR ir = random_forest(rng, 1 + trial % 9, 1 + (trial * 7) % 60, 1 + trial % 4, specials, f32, depth);
    ir.postprocess = posts[trial % 8];
    // (no loader combines a margin divisor (LightGBM rf) with ArgMax (multi:softmax); the CPU
    // engine's finish() would write n_groups values per row into the one-column output then)
    if (trial % 7 == 3 && ir.postprocess != Postprocess::ArgMax) ir.margin_divisor = 3.0;
    if (trial % 8 == 1 && trial % 3 == 0) ir.sigmoid_scale = 0.5;
    const Forest f = Forest::from_ir(ir);
    const std::size_t n = 1 + static_cast<std::size_t>(rng() % 400);
    const auto X = random_rows(rng, ir, n);
    const int bad = compare_forest(f, X, n);
    if (bad) std::printf("  trial %d: %d mismatches\n", trial, bad);
    CHECK(bad == 0);
  }
}

TEST_CASE(forest_logic_matches_cpu_engine_on_model_files) {
  if (g_data_dir.empty()) return;
  const char* files[] = {"xgboost/xgb2.1.4_binary_logistic.json", "xgboost/xgb2.1.4_multi_softprob.json",
                         "xgboost/xgb1.7.6_reg_squarederror.ubj", "lightgbm/binary_categorical.txt",
                         "lightgbm/multiclass.txt"};
  std::mt19937 rng(7);
  for (const char* name : files) {
    const Forest f = Forest::load(g_data_dir + "/" + name);
    const std::size_t n = 300;
    const auto X = random_rows(rng, f.ir(), n);
    const int bad = compare_forest(f, X, n);
    if (bad) std::printf("  %s: %d mismatches\n", name, bad);
    CHECK(bad == 0);
  }
}

TEST_CASE(forest_layout_rejects_transforms_and_cpu_builds_reject_devices) {
  std::mt19937 rng(3);
  ForestIR ir = random_forest(rng, 3, 2, 1, false, true, 3);
  ir.transforms.push_back(TransformIR{TransformIR::Kind::Affine, {}, {0, 0, 0}, {1, 1, 1}, 0.0});
  const Forest f = Forest::from_ir(ir);
  CHECK_THROWS(gpu::build_layout(f.ir()), DeviceError, "transformations");
  if (!built_with_cuda()) {
    CHECK_THROWS(ForestGPU(f, Device{Device::Kind::CUDA, 0}), DeviceError, "built without CUDA");
    CHECK_THROWS(parse_device("cuda:0"), DeviceError, "built without CUDA");
    double x[4] = {1, 2, 3, 4}, y[4] = {1, 3, 2, 4};
    CHECK_THROWS(disco::distance_correlation_device(x, 1, y, 1, nullptr, 4, Device{Device::Kind::CUDA, 0}), DeviceError,
                 "built without CUDA");
    CHECK_THROWS(disco::distance_correlation(x, 1, y, 1, nullptr, 4, Device{Device::Kind::CUDA, 0}), DeviceError,
                 "built without CUDA");
  }
}

// ---------------------------------------------------------------------------------------- DisCo
namespace {

/// The device algorithm (pass 1, reduce, pass 2, reduce, assemble, gradient) with the kernels'
/// tile order, on the host.
disco::Result disco_logic(const std::vector<double>& x, int dx, const std::vector<double>& y, int dy,
                          const std::vector<double>& w, bool unbiased, std::vector<double>* grad_dcor2,
                          std::vector<double>* grad_dcov) {
  const std::size_t n = y.size() / static_cast<std::size_t>(dy);
  auto wt = [&](std::size_t i) { return w.empty() ? 1.0 : w[i]; };
  double W = 0;
  for (std::size_t i = 0; i < n; ++i) W += wt(i);
  const disco::gpu::Centring c = disco::gpu::centring(unbiased, W, static_cast<double>(n));
  std::vector<double> Ra(n, 0.0), Rb(n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      disco::gpu::pass1_pair(&x[i * static_cast<std::size_t>(dx)], &x[j * static_cast<std::size_t>(dx)], dx,
                             &y[i * static_cast<std::size_t>(dy)], &y[j * static_cast<std::size_t>(dy)], dy, wt(j),
                             Ra[i], Rb[i]);
  disco::gpu::Totals t;
  for (std::size_t i = 0; i < n; ++i) {
    t.Ta += wt(i) * Ra[i];
    t.Tb += wt(i) * Rb[i];
  }
  const double ca = t.Ta / c.tdiv, cb = t.Tb / c.tdiv;
  std::vector<double> gc(n * static_cast<std::size_t>(dx), 0.0), gxx(gc.size(), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    disco::gpu::Pass2 acc;
    for (std::size_t j = 0; j < n; ++j)
      disco::gpu::pass2_pair(&x[i * static_cast<std::size_t>(dx)], &x[j * static_cast<std::size_t>(dx)], dx,
                             &y[i * static_cast<std::size_t>(dy)], &y[j * static_cast<std::size_t>(dy)], dy, wt(j),
                             Ra[i] / c.rdiv, Ra[j] / c.rdiv, Rb[i] / c.rdiv, Rb[j] / c.rdiv, ca, cb, acc,
                             &gc[i * static_cast<std::size_t>(dx)], &gxx[i * static_cast<std::size_t>(dx)]);
    t.cross_ab += wt(i) * Ra[i] * Rb[i];
    t.cross_aa += wt(i) * Ra[i] * Ra[i];
    t.cross_bb += wt(i) * Rb[i] * Rb[i];
    t.Sxy += wt(i) * acc.sxy;
    t.Sxx += wt(i) * acc.sxx;
    t.Syy += wt(i) * acc.syy;
  }
  const disco::gpu::Value v = disco::gpu::assemble(t, c);
  grad_dcor2->resize(gc.size());
  grad_dcov->resize(gc.size());
  for (std::size_t k = 0; k < gc.size(); ++k)
    disco::gpu::grad_element(gc[k], gxx[k], wt(k / static_cast<std::size_t>(dx)), c, v, &(*grad_dcov)[k],
                             &(*grad_dcor2)[k]);
  return disco::Result{v.dcov_xy, v.dcov_xx, v.dcov_yy, v.dcor2};
}

double rel(double a, double b) { return std::fabs(a - b) / std::max(1e-300, std::max(std::fabs(a), std::fabs(b))); }

}  // namespace

TEST_CASE(disco_logic_matches_cpu_engine) {
  std::mt19937 rng(99);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> uw(0.1, 3.0);
  struct Case {
    int dx, dy;
    bool weighted, unbiased, ties;
    std::size_t n;
  };
  const Case cases[] = {{1, 1, false, false, false, 200}, {1, 1, true, false, true, 257},
                        {1, 1, false, true, true, 130},   {2, 3, true, false, false, 150},
                        {3, 1, false, true, false, 90},   {1, 1, true, false, false, 2}};
  for (const Case& cs : cases) {
    std::vector<double> x(cs.n * static_cast<std::size_t>(cs.dx)), y(cs.n * static_cast<std::size_t>(cs.dy)), w;
    for (double& v : x) v = cs.ties ? std::round(nd(rng) * 2) : nd(rng);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = x[i % x.size()] * 0.5 + (cs.ties ? std::round(nd(rng)) : nd(rng));
    if (cs.weighted)
      for (std::size_t i = 0; i < cs.n; ++i) w.push_back(uw(rng));
    disco::Options o;
    o.unbiased = cs.unbiased;
    std::vector<double> ref_g(x.size()), ref_gc(x.size()), g, gcv;
    const double* wp = w.empty() ? nullptr : w.data();
    const disco::Result ref =
        cs.dx == 1 && cs.dy == 1
            ? disco::distance_correlation_1d(x.data(), y.data(), wp, cs.n, o, ref_g.data(), ref_gc.data())
            : disco::distance_correlation_nd(x.data(), static_cast<std::size_t>(cs.dx), y.data(),
                                             static_cast<std::size_t>(cs.dy), wp, cs.n, o, ref_g.data(), ref_gc.data());
    const disco::Result got = disco_logic(x, cs.dx, y, cs.dy, w, cs.unbiased, &g, &gcv);
    const double tol = 1e-10;
    CHECK(rel(got.dcov_xy, ref.dcov_xy) < tol || std::fabs(got.dcov_xy - ref.dcov_xy) < 1e-14);
    CHECK(rel(got.dcov_xx, ref.dcov_xx) < tol);
    CHECK(rel(got.dcov_yy, ref.dcov_yy) < tol);
    CHECK(rel(got.dcor2, ref.dcor2) < tol || std::fabs(got.dcor2 - ref.dcor2) < 1e-14);
    double gmax = 0;
    for (double v : ref_g) gmax = std::max(gmax, std::fabs(v));
    double gcmax = 0;
    for (double v : ref_gc) gcmax = std::max(gcmax, std::fabs(v));
    for (std::size_t k = 0; k < x.size(); ++k) {
      CHECK_NEAR(g[k], ref_g[k], 1e-9 * gmax + 1e-12);  // n = 2: the exact gradient is 0
      CHECK_NEAR(gcv[k], ref_gc[k], 1e-9 * gcmax + 1e-12);
    }
    // the device path on a device-less machine or build is a DeviceError, never a silent CPU run
    if (cuda_device_count() == 0)
      CHECK_THROWS(disco::distance_correlation_device(x.data(), static_cast<std::size_t>(cs.dx), y.data(),
                                                      static_cast<std::size_t>(cs.dy), wp, cs.n,
                                                      Device{Device::Kind::CUDA, 0}, o),
                   DeviceError, "CUDA");
    // the Device::CPU dispatch is the CPU engine
    const disco::Result via = disco::distance_correlation(x.data(), static_cast<std::size_t>(cs.dx), y.data(),
                                                          static_cast<std::size_t>(cs.dy), wp, cs.n, Device{}, o);
    CHECK(via.dcor2 == ref.dcor2);
  }
}

TEST_CASE(disco_logic_constant_variable_gives_zero) {
  std::vector<double> x = {1, 2, 3, 4, 5}, y(5, 2.0), g, gc;
  const disco::Result r = disco_logic(x, 1, y, 1, {}, false, &g, &gc);
  CHECK(r.dcor2 == 0.0);
  for (double v : g) CHECK(v == 0.0);
}

int main(int argc, char** argv) {
  if (argc > 1) g_data_dir = argv[1];
  return check::run_all();
}
