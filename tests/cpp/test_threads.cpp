// Thread stress: 16 threads share ONE object per engine (XGBoost, LightGBM and TMVA forests,
// ONNX networks, DisCo, the jagged kernels, the C API) and call it many times on different
// batches (single rows and batches, n_threads = 1 and > 1 inside); every result must equal,
// bit for bit, what a single-threaded run computed first. Also run under ThreadSanitizer
// (CMake preset `tsan`, .ci/sanitize), which reports any data race in the shared objects.
// Sizes are kept small so that the TSan run stays well under two minutes.
// Also: n_threads = 400 where threads cannot all be started (a test hook refusing thread
// starts, and a real virtual-memory limit in a child process) must give the same results.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "../../cpp/src/common/parallel.hpp"
#include "check.hpp"
#include "hepinfer/disco.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/hepinfer_c.h"
#include "hepinfer/jagged.hpp"
#include "hepinfer/nn.hpp"

using namespace hepinfer;

namespace {

std::string g_data_dir = ".";
constexpr int kThreads = 16;
constexpr int kRounds = 6;   // passes of each thread over all its work items
constexpr int kBatches = 8;  // distinct input batches per engine

/// Same bytes (NaN payloads included): the results must be bit-identical.
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// One unit of work: computes into `out` (cleared first); deterministic for a given index.
struct Work {
  std::string name;
  std::function<void(std::vector<unsigned char>& out)> run;
};

template <class T>
void append(std::vector<unsigned char>& out, const T* p, std::size_t n) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  out.insert(out.end(), b, b + n * sizeof(T));
}

/// Rows of n_features values: mostly normal, some NaN, some exactly on round numbers.
std::vector<float> make_rows(std::size_t n_rows, std::size_t n_features, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::uniform_int_distribution<int> pick(0, 19);
  std::vector<float> x(n_rows * n_features);
  for (float& v : x) {
    const int p = pick(gen);
    v = p == 0 ? std::numeric_limits<float>::quiet_NaN() : p == 1 ? static_cast<float>(pick(gen) % 12) : normal(gen);
  }
  return x;
}

std::size_t batch_rows(int b) {
  static const std::size_t sizes[] = {1, 3, 17, 64, 1, 129, 40, 7};
  return sizes[static_cast<std::size_t>(b) % 8];
}

void add_forest_work(std::vector<Work>& work, const std::string& label, const std::string& file) {
  auto forest = std::make_shared<const Forest>(Forest::load(g_data_dir + "/" + file));
  const auto nf = static_cast<std::size_t>(forest->n_features());
  for (int b = 0; b < kBatches; ++b) {
    const std::size_t n = batch_rows(b);
    auto rows = std::make_shared<const std::vector<float>>(make_rows(n, nf, 1000u + static_cast<std::uint32_t>(b)));
    const int inner = b % 3 == 0 ? 3 : 1;
    work.push_back(
        {label + " batch " + std::to_string(b), [forest, rows, n, nf, inner](std::vector<unsigned char>& out) {
      const std::size_t k = static_cast<std::size_t>(forest->n_outputs());
      std::vector<double> p(n * k), m(n * static_cast<std::size_t>(forest->n_outputs(Output::Margin)));
      std::vector<std::int32_t> leaf(n * forest->n_trees());
      forest->predict(rows->data(), n, p.data(), Output::Probability, inner);
      forest->predict(rows->data(), n, m.data(), Output::Margin, inner);
      forest->predict_leaf(rows->data(), RowLayout{n, static_cast<std::ptrdiff_t>(nf), 1}, leaf.data(), inner);
      std::vector<double> xd(rows->begin(), rows->end());
      std::vector<double> pd(n * k), one(k);
      forest->predict(xd.data(), n, pd.data(), Output::Probability, 1);
      for (std::size_t i = 0; i < n; ++i) {
        forest->predict_one(rows->data() + i * nf, one.data());
        append(out, one.data(), k);
      }
      append(out, p.data(), p.size());
      append(out, m.data(), m.size());
      append(out, leaf.data(), leaf.size());
      append(out, pd.data(), pd.size());
    }});
  }
}

void add_nn_work(std::vector<Work>& work, const std::string& label, const std::string& file) {
  auto model = std::make_shared<const Model>(Model::load(g_data_dir + "/" + file));
  const std::size_t per_in = model->input_size_per_row();
  const std::size_t per_out = model->output_size_per_row();
  for (int b = 0; b < kBatches; ++b) {
    const std::size_t n = batch_rows(b);
    auto x = std::make_shared<std::vector<float>>(make_rows(n, per_in, 2000u + static_cast<std::uint32_t>(b)));
    for (float& v : *x)
      if (v != v) v = 0.25f;  // networks propagate NaN everywhere: keep the inputs finite
    const int inner = b % 2 == 0 ? 2 : 1;
    work.push_back(
        {label + " batch " + std::to_string(b), [model, x, n, per_in, per_out, inner](std::vector<unsigned char>& out) {
      std::vector<float> y(n * per_out);
      model->predict(x->data(), n, y.data(), inner);
      append(out, y.data(), y.size());
      std::vector<float> one(per_out);
      for (std::size_t i = 0; i < n && i < 5; ++i) {
        model->predict_one(x->data() + i * per_in, one.data());
        append(out, one.data(), one.size());
      }
      const std::vector<std::int64_t> shape = model->inputs()[0].shape;
      std::vector<std::int64_t> s(shape);
      s[0] = static_cast<std::int64_t>(n);
      std::vector<InputTensor> in{{"", ElementType::Float32, s, x->data()}};
      std::vector<OutputTensor> res;
      model->predict(in, res, 1);
      append(out, res[0].bytes.data(), res[0].bytes.size());
    }});
  }
}

void add_disco_work(std::vector<Work>& work) {
  for (int b = 0; b < kBatches; ++b) {
    const std::size_t n = 20 + 37 * static_cast<std::size_t>(b);
    std::mt19937 gen(3000u + static_cast<std::uint32_t>(b));
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> unif(0.1, 2.0);
    auto x = std::make_shared<std::vector<double>>(2 * n);
    auto y = std::make_shared<std::vector<double>>(n);
    auto w = std::make_shared<std::vector<double>>(n);
    for (double& v : *x) v = std::round(normal(gen) * 8) / 8;  // ties on purpose
    for (double& v : *y) v = normal(gen);
    for (double& v : *w) v = unif(gen);
    const int inner = b % 2 == 0 ? 3 : 1;
    work.push_back({"disco batch " + std::to_string(b), [x, y, w, n, inner](std::vector<unsigned char>& out) {
      disco::Options opt;
      opt.n_threads = inner;
      std::vector<double> g1(n), g2(n), gn(2 * n);
      const disco::Result r1 =
          disco::distance_correlation_1d(x->data(), y->data(), w->data(), n, opt, g1.data(), g2.data());
      disco::Options ub;
      ub.unbiased = true;
      const disco::Result r2 = disco::distance_correlation_1d(x->data(), y->data(), nullptr, n, ub, g1.data());
      const disco::Result r3 = disco::distance_correlation_nd(x->data(), 2, y->data(), 1, w->data(), n, opt, gn.data());
      for (const disco::Result& r : {r1, r2, r3}) {
        const double v[4] = {r.dcov_xy, r.dcov_xx, r.dcov_yy, r.dcor2};
        append(out, v, 4);
      }
      append(out, g1.data(), n);
      append(out, g2.data(), n);
      append(out, gn.data(), 2 * n);
    }});
  }
}

void add_jagged_work(std::vector<Work>& work) {
  for (int b = 0; b < kBatches; ++b) {
    const std::size_t n_events = 1 + 23 * static_cast<std::size_t>(b);
    std::mt19937 gen(4000u + static_cast<std::uint32_t>(b));
    std::uniform_int_distribution<int> count(0, 7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto offsets = std::make_shared<std::vector<std::int64_t>>(1, 0);
    for (std::size_t e = 0; e < n_events; ++e) offsets->push_back(offsets->back() + count(gen));
    const auto n = static_cast<std::size_t>(offsets->back());
    // interleaved pt, eta, phi (stride 3)
    auto content = std::make_shared<std::vector<float>>(3 * n);
    for (std::size_t i = 0; i < n; ++i) {
      (*content)[3 * i] = std::round(std::fabs(normal(gen)) * 20) / 2;  // ties in pt
      (*content)[3 * i + 1] = normal(gen) * 2;
      (*content)[3 * i + 2] = normal(gen) * 2;
    }
    const int inner = b % 2 == 0 ? 4 : 1;
    work.push_back(
        {"jagged batch " + std::to_string(b), [offsets, content, n_events, n, inner](std::vector<unsigned char>& out) {
      std::vector<JaggedColumn> cols;
      const char* names[] = {"pt", "eta", "phi"};
      for (std::size_t c = 0; c < 3; ++c) cols.push_back({names[c], content->data() + c, ValueType::Float32, 3, n});
      const JaggedView view(n_events, offsets->data(), IndexType::Int64, cols);
      view.validate();
      const std::size_t k = 4;
      std::vector<float> padded(n_events * k * 3);
      std::vector<std::uint8_t> mask(n_events * k);
      std::vector<std::int64_t> index(n_events * k), counts(n_events), idx2(n_events * k);
      const PaddedLayout layout{static_cast<std::ptrdiff_t>(k * 3), 3, 1};
      leading(view, 0, k, SortOrder::Descending, -1.0, padded.data(), layout, mask.data(), index.data(), inner);
      top_k_indices(view, 0, k, SortOrder::Descending, idx2.data(), counts.data(), inner);
      std::int64_t total = 0;
      for (std::int64_t c : counts) total += c;
      std::vector<double> gathered(static_cast<std::size_t>(total));
      gather(view, 1, idx2.data(), counts.data(), k, gathered.data(), inner);
      std::vector<double> sum(n_events), mx(n_events);
      reduce(view, 0, Reduction::Sum, 0.0, sum.data(), inner);
      reduce(view, 1, Reduction::Max, -9.0, mx.data(), inner);
      std::vector<double> mdr(n);
      std::vector<std::int64_t> midx(n);
      min_delta_r(view, 1, 2, view, 1, 2, 99.0, mdr.data(), midx.data(), inner);
      std::vector<float> px(n), py(n), pz(n), en(n);
      std::vector<float> mass(n, 0.105f);
      std::vector<float> pt(n), eta(n), phi(n);
      for (std::size_t i = 0; i < n; ++i) {
        pt[i] = (*content)[3 * i];
        eta[i] = (*content)[3 * i + 1];
        phi[i] = (*content)[3 * i + 2];
      }
      to_px_py_pz_e(pt.data(), eta.data(), phi.data(), mass.data(), n, px.data(), py.data(), pz.data(), en.data(),
                    inner);
      append(out, padded.data(), padded.size());
      append(out, mask.data(), mask.size());
      append(out, index.data(), index.size());
      append(out, idx2.data(), idx2.size());
      append(out, gathered.data(), gathered.size());
      append(out, sum.data(), sum.size());
      append(out, mx.data(), mx.size());
      append(out, mdr.data(), mdr.size());
      append(out, midx.data(), midx.size());
      append(out, px.data(), n);
      append(out, en.data(), n);
    }});
  }
}

struct CForestDeleter {
  void operator()(hepinfer_forest* f) const { hepinfer_forest_free(f); }
};

void add_capi_work(std::vector<Work>& work, const std::string& file) {
  hepinfer_forest* raw = nullptr;
  if (hepinfer_forest_load((g_data_dir + "/" + file).c_str(), nullptr, nullptr, &raw) != HEPINFER_OK)
    throw std::runtime_error(std::string("C API load failed: ") + hepinfer_last_error());
  std::shared_ptr<hepinfer_forest> forest(raw, CForestDeleter());
  std::int32_t nf = 0, k = 0;
  CHECK(hepinfer_forest_n_features(forest.get(), &nf) == HEPINFER_OK);
  CHECK(hepinfer_forest_n_outputs(forest.get(), HEPINFER_OUTPUT_PROBABILITY, &k) == HEPINFER_OK);
  for (int b = 0; b < kBatches; ++b) {
    const std::size_t n = batch_rows(b);
    auto rows = std::make_shared<const std::vector<float>>(
        make_rows(n, static_cast<std::size_t>(nf), 5000u + static_cast<std::uint32_t>(b)));
    const int inner = b % 2 == 0 ? 2 : 1;
    work.push_back(
        {"C API batch " + std::to_string(b), [forest, rows, n, nf, k, inner](std::vector<unsigned char>& out) {
      const auto nfu = static_cast<std::size_t>(nf);
      const auto ku = static_cast<std::size_t>(k);
      std::vector<double> p(n * ku);
      const int st = hepinfer_forest_predict_float(forest.get(), rows->data(), n, nfu, HEPINFER_OUTPUT_PROBABILITY,
                                                   inner, p.data(), p.size());
      append(out, &st, 1);
      append(out, p.data(), p.size());
      std::vector<double> one(ku);
      const int st1 = hepinfer_forest_predict_one_float(forest.get(), rows->data(), nfu, HEPINFER_OUTPUT_MARGIN,
                                                        one.data(), one.size());
      append(out, &st1, 1);
      append(out, one.data(), one.size());
      // an error path on every call: the per-thread last-error string must be this thread's
      const int bad = hepinfer_forest_predict_float(forest.get(), rows->data(), n, nfu + 1, HEPINFER_OUTPUT_PROBABILITY,
                                                    1, p.data(), p.size());
      append(out, &bad, 1);
      const std::string msg = hepinfer_last_error();
      out.insert(out.end(), msg.begin(), msg.end());
    }});
  }
}

std::vector<Work> all_work() {
  std::vector<Work> work;
  add_forest_work(work, "xgboost json", "xgboost/xgb2.1.4_binary_logistic.json");
  add_forest_work(work, "xgboost ubj multiclass", "xgboost/xgb2.1.4_multi_softprob.ubj");
  add_forest_work(work, "lightgbm categorical", "lightgbm/binary_categorical.txt");
  add_forest_work(work, "lightgbm multiclass", "lightgbm/multiclass.txt");
  add_forest_work(work, "tmva grad", "tmva/grad.xml");
  add_forest_work(work, "tmva adaboost", "tmva/adaboost_yesno.xml");
  add_forest_work(work, "tmva pca", "tmva/pca_bagging.xml");
  add_nn_work(work, "onnx mlp", "nn/mlp_8_32_16_2.onnx");
  add_nn_work(work, "onnx topk", "nn/topk_particles.onnx");
  add_nn_work(work, "onnx small mlp", "onnx/mlp_3_4_2.onnx");
  add_disco_work(work);
  add_jagged_work(work);
  add_capi_work(work, "xgboost/xgb1.7.6_binary_logitraw.ubj");
  return work;
}

}  // namespace

TEST_CASE(sixteen_threads_share_every_engine) {
  const std::vector<Work> work = all_work();
  // the single-threaded reference
  std::vector<std::vector<unsigned char>> expected(work.size());
  for (std::size_t i = 0; i < work.size(); ++i) {
    work[i].run(expected[i]);
    CHECK(!expected[i].empty());
  }
  std::atomic<int> mismatches{0};
  std::vector<std::string> first_bad(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      try {
        std::vector<unsigned char> got;
        // each thread walks the work list from its own start, in its own stride, so that
        // different threads run different engines and batches at the same moment
        const std::size_t m = work.size();
        const std::size_t stride = (m % 2 == 0) ? (t % 2 == 0 ? 1 : m - 1) : 1 + static_cast<std::size_t>(t) % 2;
        for (int round = 0; round < kRounds; ++round) {
          std::size_t i = (static_cast<std::size_t>(t) * 7 + static_cast<std::size_t>(round) * 3) % m;
          for (std::size_t step = 0; step < m; ++step, i = (i + stride) % m) {
            got.clear();
            work[i].run(got);
            if (!same_bits(got, expected[i])) {
              if (mismatches.fetch_add(1) == 0 || first_bad[static_cast<std::size_t>(t)].empty())
                first_bad[static_cast<std::size_t>(t)] = work[i].name;
            }
          }
        }
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(t)] = e.what();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < kThreads; ++t) {
    if (!errors[static_cast<std::size_t>(t)].empty())
      std::printf("  thread %d: exception: %s\n", t, errors[static_cast<std::size_t>(t)].c_str());
    if (!first_bad[static_cast<std::size_t>(t)].empty())
      std::printf("  thread %d: result differs from the single-threaded run: %s\n", t,
                  first_bad[static_cast<std::size_t>(t)].c_str());
    CHECK(errors[static_cast<std::size_t>(t)].empty());
  }
  CHECK(mismatches.load() == 0);
}

TEST_CASE(models_loaded_concurrently_are_identical) {
  // loading is also safe from many threads at once (parsers keep no global state)
  const char* files[] = {"xgboost/xgb1.7.6_multi_softprob.json", "lightgbm/multiclass.txt", "tmva/decorrelation.xml"};
  for (const char* file : files) {
    const Forest ref = Forest::load(g_data_dir + "/" + file);
    const auto nf = static_cast<std::size_t>(ref.n_features());
    const std::vector<float> rows = make_rows(50, nf, 77);
    std::vector<double> want(50 * static_cast<std::size_t>(ref.n_outputs()));
    ref.predict(rows.data(), 50, want.data());
    std::atomic<int> bad{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < kThreads; ++t) {
      pool.emplace_back([&] {
        try {
          const Forest f = Forest::load(g_data_dir + "/" + file);
          std::vector<double> got(want.size());
          f.predict(rows.data(), 50, got.data());
          if (!same_bits(got, want)) ++bad;
        } catch (const std::exception&) {
          ++bad;
        }
      });
    }
    for (auto& th : pool) th.join();
    if (bad.load() != 0) std::printf("  %s: %d threads disagree\n", file, bad.load());
    CHECK(bad.load() == 0);
  }
  const Model ref = Model::load(g_data_dir + "/nn/topk_particles.onnx");
  std::vector<float> x = make_rows(9, ref.input_size_per_row(), 78);
  for (float& v : x)
    if (v != v) v = 0.0f;
  std::vector<float> want(9 * ref.output_size_per_row());
  ref.predict(x.data(), 9, want.data());
  std::atomic<int> bad{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&] {
      try {
        const Model m = Model::load(g_data_dir + "/nn/topk_particles.onnx");
        std::vector<float> got(want.size());
        m.predict(x.data(), 9, got.data());
        if (!same_bits(got, want)) ++bad;
      } catch (const std::exception&) {
        ++bad;
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(bad.load() == 0);
}

// ---- thread starts that fail (RLIMIT_AS / RLIMIT_NPROC on grid sites)

namespace {

constexpr int kManyThreads = 400;

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define HEPINFER_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HEPINFER_TEST_SANITIZED 1
#endif

// Problem sizes: enough work for dozens of threads in each engine; under the sanitizers
// (no address-space limit test there) enough for the handful the test hook lets start.
#ifdef HEPINFER_TEST_SANITIZED
constexpr std::size_t kSizeDivisor = 8;
#else
constexpr std::size_t kSizeDivisor = 1;
#endif

/// Every multi-threaded engine once, with n_threads = nt; the results as bytes.
std::vector<unsigned char> run_engines(int nt) {
  std::vector<unsigned char> out;
  // a forest: 60000 rows x 24 trees is work for 72 threads
  {
    const Forest forest = Forest::load(g_data_dir + "/xgboost/xgb2.1.4_multi_softprob.json");
    const auto nf = static_cast<std::size_t>(forest.n_features());
    const std::size_t n = 60000 / kSizeDivisor;
    const std::vector<float> rows = make_rows(n, nf, 91);
    std::vector<double> p(n * static_cast<std::size_t>(forest.n_outputs()));
    forest.predict(rows.data(), n, p.data(), Output::Probability, nt);
    append(out, p.data(), p.size());
    std::vector<std::int32_t> leaf(n * forest.n_trees());
    forest.predict_leaf(rows.data(), RowLayout{n, static_cast<std::ptrdiff_t>(nf), 1}, leaf.data(), nt);
    append(out, leaf.data(), leaf.size());
  }
  // an ONNX network, split by rows
  {
    const Model model = Model::load(g_data_dir + "/nn/mlp_8_32_16_2.onnx");
    const std::size_t n = 64 * 50 / kSizeDivisor;
    std::vector<float> x = make_rows(n, model.input_size_per_row(), 92);
    for (float& v : x)
      if (v != v) v = 0.5f;
    std::vector<float> y(n * model.output_size_per_row());
    model.predict(x.data(), n, y.data(), nt);
    append(out, y.data(), y.size());
  }
  // DisCo, the O(n^2) vector-valued path
  {
    const std::size_t n = 3000 / kSizeDivisor;
    std::mt19937 gen(93);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> x(2 * n), y(n), g(2 * n);
    for (double& v : x) v = normal(gen);
    for (double& v : y) v = normal(gen);
    disco::Options opt;
    opt.n_threads = nt;
    const disco::Result r = disco::distance_correlation_nd(x.data(), 2, y.data(), 1, nullptr, n, opt, g.data());
    const double v[4] = {r.dcov_xy, r.dcov_xx, r.dcov_yy, r.dcor2};
    append(out, v, 4);
    append(out, g.data(), g.size());
  }
  // the jagged kernels: enough events (and values) for several threads
  {
    const std::size_t n_events = 200000;
    std::vector<std::int64_t> offsets(1, 0);
    for (std::size_t e = 0; e < n_events; ++e) offsets.push_back(offsets.back() + static_cast<std::int64_t>(e % 5));
    const auto n = static_cast<std::size_t>(offsets.back());
    const std::vector<float> pt = make_rows(n, 1, 94);
    const JaggedView view(n_events, offsets.data(), IndexType::Int64, {{"pt", pt.data(), ValueType::Float32, 1, n}});
    std::vector<double> sum(n_events);
    reduce(view, 0, Reduction::Sum, 0.0, sum.data(), nt);
    append(out, sum.data(), sum.size());
    std::vector<float> lead(n_events * 2);
    std::vector<std::uint8_t> mask(n_events * 2);
    leading(view, 0, 2, SortOrder::Descending, -1.0, lead.data(), PaddedLayout{2, 1, 1}, mask.data(), nullptr, nt);
    append(out, lead.data(), lead.size());
    std::vector<float> px(n), py(n), pz(n), e(n);
    to_px_py_pz_e(pt.data(), pt.data(), pt.data(), pt.data(), n, px.data(), py.data(), pz.data(), e.data(), nt);
    append(out, px.data(), n);
    append(out, e.data(), n);
  }
  // the C API (a forest, through extern "C")
  {
    hepinfer_forest* f = nullptr;
    CHECK(hepinfer_forest_load((g_data_dir + "/xgboost/xgb2.1.4_multi_softprob.json").c_str(), nullptr, nullptr, &f) ==
          HEPINFER_OK);
    std::int32_t nf = 0, k = 0;
    hepinfer_forest_n_features(f, &nf);
    hepinfer_forest_n_outputs(f, HEPINFER_OUTPUT_PROBABILITY, &k);
    const std::size_t n = 60000 / kSizeDivisor;
    const std::vector<float> rows = make_rows(n, static_cast<std::size_t>(nf), 95);
    std::vector<double> p(n * static_cast<std::size_t>(k));
    const int st = hepinfer_forest_predict_float(f, rows.data(), n, static_cast<std::size_t>(nf),
                                                 HEPINFER_OUTPUT_PROBABILITY, nt, p.data(), p.size());
    if (st != HEPINFER_OK) std::printf("  C API: %s\n", hepinfer_last_error());
    append(out, &st, 1);
    append(out, p.data(), p.size());
    hepinfer_forest_free(f);
  }
  return out;
}

/// Resets the test hook on every path out of a test.
struct StartLimit {
  explicit StartLimit(int n) { parallel::set_thread_start_limit_for_testing(n); }
  ~StartLimit() { parallel::set_thread_start_limit_for_testing(-1); }
};

}  // namespace

TEST_CASE(run_workers_survives_refused_thread_starts) {
  for (int limit : {0, 1, 5}) {
    StartLimit hook(limit);
    std::atomic<int> ran{0};
    const std::size_t workers = parallel::run_workers(kManyThreads, [&](std::size_t) { ++ran; });
    CHECK(workers == static_cast<std::size_t>(limit) + 1);
    CHECK(ran.load() == limit + 1);
    // every item exactly once, whatever threads started; worker ids below those that ran
    std::vector<std::atomic<int>> hits(100000);
    std::atomic<std::size_t> max_worker{0};
    parallel::parallel_for(hits.size(), 7, kManyThreads, [&](std::size_t w, std::size_t b, std::size_t e) {
      std::size_t m = max_worker.load();
      while (w > m && !max_worker.compare_exchange_weak(m, w)) {
      }
      for (std::size_t i = b; i < e; ++i) ++hits[i];
    });
    bool once = true;
    for (auto& h : hits) once = once && h.load() == 1;
    CHECK(once);
    CHECK(max_worker.load() <= static_cast<std::size_t>(limit));
    // an exception inside the work still reaches the caller, all threads joined
    bool caught = false;
    try {
      parallel::parallel_for(1000, 1, kManyThreads, [&](std::size_t, std::size_t b, std::size_t) {
        if (b == 500) throw std::runtime_error("item 500");
      });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "item 500";
    }
    CHECK(caught);
  }
}

TEST_CASE(engines_give_the_same_results_when_thread_starts_fail) {
  const std::vector<unsigned char> want = run_engines(1);
  CHECK(!want.empty());
  for (int limit : {0, 1, 3}) {
    StartLimit hook(limit);
    const std::vector<unsigned char> got = run_engines(kManyThreads);
    if (!same_bits(got, want)) std::printf("  thread starts refused after %d: results differ\n", limit);
    CHECK(same_bits(got, want));
  }
}

TEST_CASE(engines_under_a_virtual_memory_limit) {
#if defined(__linux__) && !defined(HEPINFER_TEST_SANITIZED)
  // A real refusal: a child process limits its address space to what it uses plus 256 MiB,
  // so only a few dozen of 400 thread stacks (8 MiB each) fit and std::thread throws
  // std::system_error. Before the shared thread helper this aborted (std::terminate).
  const std::vector<unsigned char> want = run_engines(1);
  std::fflush(stdout);
  const pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (256u << 20);
    const rlimit rl{limit, limit};
    if (pages == 0 || setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
    // the limit must really refuse threads, or this test proves nothing
    const std::size_t started = parallel::run_workers(kManyThreads, [](std::size_t) {});
    if (started >= static_cast<std::size_t>(kManyThreads)) _exit(4);
    const std::vector<unsigned char> got = run_engines(kManyThreads);
    _exit(same_bits(got, want) ? 0 : 5);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    std::printf("  child: %s %d (3: setrlimit failed, 4: the limit refused no thread, 5: results differ)\n",
                WIFSIGNALED(status) ? "killed by signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
  std::printf("  skipped (needs Linux without sanitizers)\n");
#endif
}

int main(int argc, char** argv) {
  if (argc > 1) g_data_dir = argv[1];
  return check::run_all();
}
