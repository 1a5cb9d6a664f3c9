// libFuzzer harness of the ONNX loader: the input is the bytes of an .onnx file. Loads it with
// Model::load_from_memory and, when it loads, evaluates it once with inputs of the declared types
// and shapes (symbolic dimensions set to 2), then once more in batch 1 through the shortcut API
// when the model has one float input and one float output.
//
// External data: the model's folder (external_data_dir) is a fixture that make_seeds.py's
// external-data seeds and onnx.dict name, so fuzzed `location`s resolve to real files:
//   w.bin            4 KiB of small floats                         (readable)
//   big.bin          a 3 GB sparse file, 16 bytes of floats at 1 GB (only offset..length may be read)
//   sub/w.bin        a copy of w.bin in a sub-folder                 (readable)
//   link_inside.bin  -> w.bin                                        (readable: inside the folder)
//   link_outside.bin -> ../outside/secret.bin                        (must never be opened)
//   link_dir         -> ../outside                                   (link_dir/secret.bin: same)
//   link_zero.bin    -> /dev/zero                                    (not a regular file: refused)
//   fifo.bin         a FIFO                                          (not a regular file: refused)
// The files outside the folder are watched with inotify: any open of them is a finding, as is
// reading all of /dev/zero or big.bin (-rss_limit_mb / -timeout of .ci/fuzz).
//
// Memory: every tensor of the load stays under 16 MiB and the load's total (live folded
// constants; the dry run's inputs and live intermediates) under 16 MiB, so that a small file
// which makes load allocate much more shows as an out-of-memory finding rather than passing.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "fuzz_common.hpp"
#include "hepinfer/nn.hpp"
#include "nn/graph.hpp"  // nn::max_tensor_bytes(), nn::load_budget_bytes(): the per-thread load limits

namespace {

[[noreturn]] void setup_failed(const char* what, const std::string& path) {
  std::fprintf(stderr, "fuzz_onnx: setup: %s %s: %s\n", what, path.c_str(), std::strerror(errno));
  std::abort();
}

void write_file(const std::string& path, const std::vector<float>& values) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(values.data(), 4, values.size(), f) != values.size() || std::fclose(f) != 0)
    setup_failed("cannot write", path);
}

struct Fixture {
  std::string model_dir;
  int inotify_fd = -1;
};

const Fixture& fixture() {
  static const Fixture fx = [] {
    Fixture f;
    char tmpl[] = "/tmp/hepinfer-fuzz-onnx-XXXXXX";
    const char* root = mkdtemp(tmpl);
    if (!root) setup_failed("mkdtemp", tmpl);
    const std::string r(root), m = r + "/model", out = r + "/outside";
    for (const std::string& d : {m, out, m + "/sub"})
      if (mkdir(d.c_str(), 0700) != 0) setup_failed("mkdir", d);
    std::vector<float> w(1024);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.125f;
    write_file(m + "/w.bin", w);
    write_file(m + "/sub/w.bin", w);
    write_file(out + "/secret.bin", w);
    {
      FILE* b = std::fopen((m + "/big.bin").c_str(), "wb");
      const float four[4] = {1.0f, -2.0f, 0.5f, 4.0f};
      if (!b || std::fseek(b, 1000000000L, SEEK_SET) != 0 || std::fwrite(four, 4, 4, b) != 4 || std::fclose(b) != 0 ||
          truncate((m + "/big.bin").c_str(), 3000000000LL) != 0)
        setup_failed("cannot write", m + "/big.bin");
    }
    if (symlink("w.bin", (m + "/link_inside.bin").c_str()) != 0 ||
        symlink("../outside/secret.bin", (m + "/link_outside.bin").c_str()) != 0 ||
        symlink("../outside", (m + "/link_dir").c_str()) != 0 ||
        symlink("/dev/zero", (m + "/link_zero.bin").c_str()) != 0)
      setup_failed("symlink in", m);
    if (mkfifo((m + "/fifo.bin").c_str(), 0600) != 0) setup_failed("mkfifo", m + "/fifo.bin");
    f.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f.inotify_fd < 0 || inotify_add_watch(f.inotify_fd, (out + "/secret.bin").c_str(), IN_OPEN | IN_ACCESS) < 0)
      setup_failed("inotify on", out + "/secret.bin");
    f.model_dir = m;
    static std::string to_remove;
    to_remove = r;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return f;
  }();
  return fx;
}

/// Aborts (a finding) when the loader opened or read a file outside the model's folder.
void check_nothing_outside_was_opened() {
  alignas(struct inotify_event) char buf[4096];
  const ssize_t n = read(fixture().inotify_fd, buf, sizeof buf);
  if (n > 0) {
    std::fprintf(stderr, "FUZZ FINDING: the loader opened a file outside the model's folder (through a symlink)\n");
    std::abort();
  }
}

void evaluate(const hepinfer::Model& model, fuzz::Values& values) {
  std::vector<hepinfer::InputTensor> inputs;
  std::vector<std::vector<unsigned char>> storage;
  std::size_t total = 0;
  for (const auto& info : model.inputs()) {
    hepinfer::InputTensor x;
    x.name = info.name;
    x.type = info.type;
    std::size_t n = 1;
    for (std::int64_t d : info.shape) {
      const std::int64_t dim = d < 0 ? 2 : d;
      x.shape.push_back(dim);
      if (dim > 0 && n > fuzz::kMaxValues / static_cast<std::size_t>(dim)) return;  // too large to evaluate
      n *= static_cast<std::size_t>(dim);
    }
    total += n;
    if (total > fuzz::kMaxValues) return;
    const std::size_t width = x.type == hepinfer::ElementType::Float32 ? 4
                              : x.type == hepinfer::ElementType::Int64 ? 8
                                                                       : 1;
    std::vector<unsigned char> bytes(n * width + 8);
    for (std::size_t i = 0; i < n; ++i) {
      const double v = values.value();
      if (x.type == hepinfer::ElementType::Float32) {
        const auto f = static_cast<float>(v);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      } else if (x.type == hepinfer::ElementType::Int64) {
        // mostly small indices (Gather, Reshape shapes...), sometimes out of any range
        const std::int64_t k = (values.next() % 8 == 0) ? static_cast<std::int64_t>(values.next())
                                                        : static_cast<std::int64_t>(values.next() % 7) - 3;
        std::memcpy(bytes.data() + 8 * i, &k, 8);
      } else {
        bytes[i] = static_cast<unsigned char>(values.next() & 1);
      }
    }
    storage.push_back(std::move(bytes));
    x.data = storage.back().data();
    inputs.push_back(std::move(x));
  }
  std::vector<hepinfer::OutputTensor> outputs;
  model.predict(inputs, outputs, 1);
  if (outputs.size() != model.outputs().size()) {
    std::fprintf(stderr, "FUZZ FINDING: predict returned %zu outputs, the model declares %zu\n", outputs.size(),
                 model.outputs().size());
    std::abort();
  }
  for (const auto& o : outputs) {
    std::size_t n = 1;
    for (std::int64_t d : o.shape) {
      if (d < 0) {
        std::fprintf(stderr, "FUZZ FINDING: output '%s' has a negative dimension\n", o.name.c_str());
        std::abort();
      }
      n *= static_cast<std::size_t>(d);
    }
    if (o.size() != n) {
      std::fprintf(stderr, "FUZZ FINDING: output '%s' holds %zu elements, its shape says %zu\n", o.name.c_str(),
                   o.size(), n);
      std::abort();
    }
  }
  // the one-input, one-output float shortcut (throws InputError for other models)
  const std::size_t in_size = model.input_size_per_row();
  const std::size_t out_size = model.output_size_per_row();
  if (in_size > fuzz::kMaxValues || out_size > fuzz::kMaxValues) return;
  std::vector<float> row(in_size + 1), out(out_size + 1, 12345.0f);
  for (auto& v : row) v = static_cast<float>(values.value());
  model.predict_one(row.data(), out.data());
  if (out.back() != 12345.0f) {
    std::fprintf(stderr, "FUZZ FINDING: predict_one wrote past output_size_per_row\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // No tensor above 16 MiB while fuzzing (load keeps the lower of this and its own 4 GiB
  // limit): larger ones are legitimate ONNX but only cost time under the sanitizers, and the
  // limit checks themselves are still exercised by every shape above it.
  hepinfer::nn::max_tensor_bytes() = std::size_t{1} << 24;
  // ... and no more than 16 MiB in all (folded constants; the dry run's inputs and intermediates;
  // under the sanitizers and coverage, filling 1 MiB by broadcast takes about 0.15 s)
  hepinfer::nn::load_budget_bytes() = std::size_t{1} << 24;
  hepinfer::nn::alloc_budget_left() = static_cast<std::size_t>(-1);  // unlimited outside load (see below)
  const std::string content(reinterpret_cast<const char*>(data), size);
  hepinfer::ModelOptions options;
  options.external_data_dir = fixture().model_dir;
  fuzz::Values values(fuzz::hash_bytes(data, size));
  fuzz::expect_only_hepinfer_errors("Model::load_from_memory", [&] {
    const auto model = hepinfer::Model::load_from_memory(content, options, "fuzz-input");
    check_nothing_outside_was_opened();
    // evaluation is not bounded by the load budget (a model may legitimately need gigabytes at
    // predict, e.g. 200 Expand branches of 4 MiB all live at once); the harness does not spend
    // more than the load's 16 MiB on it either: past that, predict raises (an OpError ->
    // InputError), which is not a finding
    hepinfer::nn::alloc_budget_left() = hepinfer::nn::load_budget_bytes();
    fuzz::expect_only_hepinfer_errors("Model::predict", [&] { evaluate(model, values); });
    hepinfer::nn::alloc_budget_left() = static_cast<std::size_t>(-1);
  });
  check_nothing_outside_was_opened();
  return 0;
}
