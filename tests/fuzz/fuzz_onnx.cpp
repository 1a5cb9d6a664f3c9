// libFuzzer harness of the ONNX loader: the input is the bytes of an .onnx file. Loads it with
// Model::load_from_memory (external data resolved in an empty folder, so a fuzzed location can
// only fail to open) and, when it loads, evaluates it once with inputs of the declared types
// and shapes (symbolic dimensions set to 2), then once more in batch 1 through the shortcut API
// when the model has one float input and one float output.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "hepinfer/nn.hpp"
#include "nn/graph.hpp"  // nn::max_tensor_bytes(): the per-thread tensor size limit

namespace {

std::string empty_folder() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/hepinfer-fuzz-onnx-XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (!d) {
      std::perror("mkdtemp");
      std::abort();
    }
    return std::string(d);
  }();
  return dir;
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
    const std::size_t width = x.type == hepinfer::ElementType::Float32 ? 4 : x.type == hepinfer::ElementType::Int64 ? 8 : 1;
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
  const std::string content(reinterpret_cast<const char*>(data), size);
  hepinfer::ModelOptions options;
  options.external_data_dir = empty_folder();
  fuzz::Values values(fuzz::hash_bytes(data, size));
  fuzz::expect_only_hepinfer_errors("Model::load_from_memory", [&] {
    const auto model = hepinfer::Model::load_from_memory(content, options, "fuzz-input");
    fuzz::expect_only_hepinfer_errors("Model::predict", [&] { evaluate(model, values); });
  });
  return 0;
}
