// Single-event latency and batch throughput of hepinfer::Model (ONNX), from C++.
//
//   hepinfer_bench_nn_single_row MODEL.onnx [--calls N] [--batch-rows N] [--threads N]
//                                [--repeats N] [--json]
//
// For models with one float32 input of shape [batch, ...] and one float32 output.
// Single event: `model.predict_one(row, out)` called --calls times (default 200 000)
// over a pool of 1024 distinct random rows; the calls are timed in blocks of 1000 and
// the median block is reported as ns per call (robust against scheduler hiccups; the
// mean, p10 and p90 are printed too).
// Batch: model.predict(rows, n, out, threads) on --batch-rows rows (default 10 000)
// with 1 thread and with --threads (default: every hardware thread), median of
// --repeats runs (default 15), in ns per row.
// Rows are standard-normal float32 with a fixed seed.
// With --json the last line of stdout is one JSON object.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hepinfer/nn.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

volatile float g_sink = 0.0f;  // keeps the results observable

void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s MODEL.onnx [--calls N] [--batch-rows N] [--threads N] [--repeats N] [--json]\n",
               argv0);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path;
  long long calls = 200000;
  long long batch_rows = 10000;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int repeats = 15;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--calls") {
      calls = std::atoll(next("--calls"));
    } else if (a == "--batch-rows") {
      batch_rows = std::atoll(next("--batch-rows"));
    } else if (a == "--threads") {
      threads = std::atoi(next("--threads"));
    } else if (a == "--repeats") {
      repeats = std::max(1, std::atoi(next("--repeats")));
    } else if (a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      usage(argv[0]);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      usage(argv[0]);
      return 2;
    } else {
      model_path = a;
    }
  }
  if (model_path.empty()) {
    usage(argv[0]);
    return 2;
  }
  if (calls < 1000) calls = 1000;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  try {
    const auto t_load = Clock::now();
    const hepinfer::Model model = hepinfer::Model::load(model_path);
    const double load_s = seconds_since(t_load);
    const std::size_t n_in = model.input_size_per_row();
    const std::size_t n_out = model.output_size_per_row();

    constexpr std::size_t kPool = 1024;
    std::mt19937_64 rng(12345);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> pool(kPool * n_in);
    for (auto& v : pool) v = normal(rng);

    // ---- single event
    constexpr long long kBlock = 1000;
    const long long n_blocks = (calls + kBlock - 1) / kBlock;
    std::vector<double> block_ns;
    block_ns.reserve(static_cast<std::size_t>(n_blocks));
    std::vector<float> out_one(n_out);
    float sink = 0.0f;
    std::size_t r = 0;
    for (std::size_t i = 0; i < kPool; ++i) {  // warm-up
      model.predict_one(&pool[i * n_in], out_one.data());
      sink += out_one[0];
    }
    const auto t_all = Clock::now();
    for (long long b = 0; b < n_blocks; ++b) {
      const auto t0 = Clock::now();
      for (long long k = 0; k < kBlock; ++k) {
        model.predict_one(&pool[r * n_in], out_one.data());
        sink += out_one[0];
        r = (r + 1) & (kPool - 1);
      }
      block_ns.push_back(seconds_since(t0) * 1e9 / static_cast<double>(kBlock));
    }
    const double single_mean_ns = seconds_since(t_all) * 1e9 / static_cast<double>(n_blocks * kBlock);
    const double single_median_ns = median(block_ns);
    std::vector<double> sorted = block_ns;
    std::sort(sorted.begin(), sorted.end());
    const double single_p10 = sorted[sorted.size() / 10];
    const double single_p90 = sorted[std::min(sorted.size() - 1, sorted.size() * 9 / 10)];

    // ---- batch
    std::vector<int> thread_counts{1};
    if (threads != 1) thread_counts.push_back(threads);
    std::vector<double> batch_ns_per_row;
    if (batch_rows > 0) {
      const std::size_t nb = static_cast<std::size_t>(batch_rows);
      std::vector<float> batch(nb * n_in);
      for (auto& v : batch) v = normal(rng);
      std::vector<float> out(nb * n_out);
      for (int t : thread_counts) {
        model.predict(batch.data(), nb, out.data(), t);  // warm-up
        std::vector<double> times;
        for (int k = 0; k < repeats; ++k) {
          const auto t0 = Clock::now();
          model.predict(batch.data(), nb, out.data(), t);
          times.push_back(seconds_since(t0));
        }
        sink += out[0];
        batch_ns_per_row.push_back(median(times) * 1e9 / static_cast<double>(nb));
      }
    }
    g_sink = sink;

    std::printf("model              %s\n", model_path.c_str());
    std::printf("inputs / outputs   %zu / %zu per row, %zu nodes\n", n_in, n_out, model.n_nodes());
    std::printf("load               %.3f ms\n", load_s * 1e3);
    std::printf(
        "single event       %.1f ns/call median of %lld blocks of %lld calls "
        "(min %.1f, p10 %.1f, p90 %.1f, mean %.1f)\n",
        single_median_ns, n_blocks, kBlock, sorted.front(), single_p10, single_p90, single_mean_ns);
    for (std::size_t k = 0; k < batch_ns_per_row.size(); ++k)
      std::printf("batch %lld rows     %.2f ns/row with %d thread(s) (%.3g rows/s)\n", batch_rows, batch_ns_per_row[k],
                  thread_counts[k], 1e9 / batch_ns_per_row[k]);
    if (json) {
      std::printf(
          "{\"model_path\": \"%s\", \"n_inputs\": %zu, \"n_outputs\": %zu, \"load_ms\": %.4f, "
          "\"calls\": %lld, \"single_row_ns_median\": %.3f, \"single_row_ns_mean\": %.3f, "
          "\"single_row_ns_p10\": %.3f, \"single_row_ns_p90\": %.3f, \"single_row_ns_min\": %.3f, "
          "\"batch_rows\": %lld",
          json_escape(model_path).c_str(), n_in, n_out, load_s * 1e3, n_blocks * kBlock, single_median_ns,
          single_mean_ns, single_p10, single_p90, sorted.front(), batch_rows);
      for (std::size_t k = 0; k < batch_ns_per_row.size(); ++k)
        std::printf(", \"batch_ns_per_row_threads_%d\": %.4f", thread_counts[k], batch_ns_per_row[k]);
      std::printf("}\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
