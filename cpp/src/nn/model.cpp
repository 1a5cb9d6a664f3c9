// The public hepinfer::Model API over a loaded graph: its description and predict (one piece,
// row blocks, or row blocks on several threads). Loading is in formats/load_onnx.cpp, the
// passes in passes.cpp, the executor in executor.cpp.
#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/parallel.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/nn.hpp"
#include "nn/executor.hpp"
#include "nn/graph.hpp"

namespace hepinfer {

const char* element_type_name(ElementType t) noexcept {
  switch (t) {
    case ElementType::Float32: return "float32";
    case ElementType::Int64: return "int64";
    case ElementType::Bool: return "bool";
  }
  return "?";
}

std::size_t OutputTensor::size() const noexcept {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

const std::vector<TensorInfo>& Model::inputs() const noexcept { return graph_->inputs; }
const std::vector<TensorInfo>& Model::outputs() const noexcept { return graph_->outputs; }
std::string Model::producer() const { return graph_->producer; }
std::int64_t Model::opset() const noexcept { return graph_->opset; }
std::size_t Model::n_nodes() const noexcept { return graph_->nodes.size(); }
bool Model::batch_separable() const noexcept { return graph_->separable; }

void Model::predict(const std::vector<InputTensor>& inputs, std::vector<OutputTensor>& outputs, int n_threads) const {
  const nn::Graph& g = *graph_;
  const std::vector<const InputTensor*> ordered = nn::order_inputs(g, inputs);
  std::map<std::string, std::int64_t> dims;
  for (std::size_t i = 0; i < ordered.size(); ++i) nn::check_input(g.inputs[i], *ordered[i], dims);
  outputs.resize(g.outputs.size());
  for (std::size_t i = 0; i < g.outputs.size(); ++i) outputs[i].name = g.outputs[i].name;

  std::int64_t batch = g.separable && !ordered.empty() ? ordered[0]->shape[0] : 0;
  const std::int64_t min_rows = 64;
  const auto max_threads = static_cast<std::int64_t>(parallel::resolve_threads(n_threads));
  int nt = g.separable ? static_cast<int>(std::min<std::int64_t>(max_threads, batch / min_rows)) : 1;
  if (nt <= 1) {
    if (g.separable && batch >= nn::kMinBlockedRows) {
      std::vector<OutputTensor> part;
      if (nn::run_rows(g, ordered, 0, batch, part)) {
        for (std::size_t i = 0; i < g.outputs.size(); ++i) {
          outputs[i].type = part[i].type;
          outputs[i].shape = std::move(part[i].shape);
          outputs[i].bytes = std::move(part[i].bytes);
        }
        return;
      }
    }
    auto ws = g.acquire();
    nn::bind(g, *ws, ordered, 0, -1);
    g.run(*ws);
    for (std::size_t i = 0; i < g.outputs.size(); ++i)
      nn::store_output(ws->values[static_cast<std::size_t>(g.output_ids[i])], outputs[i]);
    g.release(std::move(ws));
    return;
  }
  std::vector<std::vector<OutputTensor>> parts(static_cast<std::size_t>(nt));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nt));
  auto work = [&](int t) {
    try {
      const std::int64_t r0 = batch * t / nt, r1 = batch * (t + 1) / nt;
      auto& part = parts[static_cast<std::size_t>(t)];
      if (!nn::run_rows(g, ordered, r0, r1, part))
        throw InputError("an output does not have one row per input row; use n_threads=1");
    } catch (...) {
      errors[static_cast<std::size_t>(t)] = std::current_exception();
    }
  };
  // row block t is task t; blocks of threads that could not start run on the others
  parallel::parallel_for(static_cast<std::size_t>(nt), 1, static_cast<std::size_t>(nt),
                         [&](std::size_t, std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) work(static_cast<int>(t));
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (std::size_t i = 0; i < g.outputs.size(); ++i) {
    OutputTensor& o = outputs[i];
    const OutputTensor& first = parts[0][i];
    o.type = first.type;
    o.shape = first.shape;
    if (o.shape.empty()) throw InputError("output '" + o.name + "' is a scalar; it cannot be split by rows");
    o.shape[0] = 0;
    std::size_t bytes = 0;
    for (const auto& p : parts) {
      if (p[i].shape.size() != first.shape.size() ||
          !std::equal(p[i].shape.begin() + 1, p[i].shape.end(), first.shape.begin() + 1))
        throw InputError("output '" + o.name + "' changes shape between row blocks; use n_threads=1");
      o.shape[0] += p[i].shape[0];
      bytes += p[i].bytes.size();
    }
    if (o.shape[0] != batch)
      throw InputError("output '" + o.name + "' does not have one row per input row; use n_threads=1");
    o.bytes.resize(bytes);
    std::size_t pos = 0;
    for (const auto& p : parts) {
      if (!p[i].bytes.empty()) std::memcpy(o.bytes.data() + pos, p[i].bytes.data(), p[i].bytes.size());
      pos += p[i].bytes.size();
    }
  }
}

namespace {
std::size_t per_row(const TensorInfo& t, const char* what) {
  if (!t.has_shape || t.shape.empty())
    throw InputError(std::string("the model's ") + what + " '" + t.name + "' has no declared [batch, ...] shape");
  std::size_t n = 1;
  for (std::size_t i = 1; i < t.shape.size(); ++i) {
    if (t.shape[i] < 0)
      throw InputError(std::string("the model's ") + what + " '" + t.name +
                       "' has a symbolic dimension after the batch");
    n *= static_cast<std::size_t>(t.shape[i]);
  }
  return n;
}
void require_simple(const nn::Graph& g) {
  if (g.inputs.size() != 1 || g.outputs.size() != 1 || g.inputs[0].type != ElementType::Float32 ||
      g.outputs[0].type != ElementType::Float32)
    throw InputError("this call needs a model with one float32 input and one float32 output");
}
}  // namespace

std::size_t Model::input_size_per_row() const {
  require_simple(*graph_);
  return per_row(graph_->inputs[0], "input");
}
std::size_t Model::output_size_per_row() const {
  require_simple(*graph_);
  return per_row(graph_->outputs[0], "output");
}

void Model::predict(const float* x, std::size_t n_rows, float* out, int n_threads) const {
  const nn::Graph& g = *graph_;
  require_simple(g);
  const std::size_t per_in = per_row(g.inputs[0], "input");
  const std::size_t per_out = per_row(g.outputs[0], "output");
  const TensorInfo& ti = g.inputs[0];
  if (ti.shape[0] >= 0 && static_cast<std::size_t>(ti.shape[0]) != n_rows)
    throw InputError("input '" + ti.name + "' has a fixed batch size of " + std::to_string(ti.shape[0]) + ", got " +
                     std::to_string(n_rows) + " rows");
  if (x == nullptr && n_rows * per_in != 0) throw InputError("input data is null");
  if (n_threads != 1 && g.separable && n_rows >= 128) {
    InputTensor in;
    in.type = ElementType::Float32;
    in.shape = ti.shape;
    in.shape[0] = static_cast<std::int64_t>(n_rows);
    in.data = x;
    std::vector<OutputTensor> outs;
    predict({in}, outs, n_threads);
    if (outs[0].size() != n_rows * per_out) throw InputError("the model's output does not have the declared shape");
    if (!outs[0].bytes.empty()) std::memcpy(out, outs[0].bytes.data(), outs[0].bytes.size());
    return;
  }
  // single-thread path: no allocation once the workspace pool is warm
  struct Lease {
    const nn::Graph& g;
    std::unique_ptr<nn::Workspace> ws;
    ~Lease() { g.release(std::move(ws)); }
  } lease{g, g.acquire()};
  // a large separable batch runs in row blocks (see run_rows)
  bool blocked = g.separable && n_rows >= static_cast<std::size_t>(nn::kMinBlockedRows);
  std::size_t block = blocked ? static_cast<std::size_t>(nn::kFirstBlock) : n_rows;
  std::size_t done = 0;
  do {
    const std::size_t rows = std::min(block, n_rows - done);
    nn::Value& v = lease.ws->values[static_cast<std::size_t>(g.input_ids[0])];
    v.type = ElementType::Float32;
    v.shape.rank = 0;
    for (std::size_t i = 0; i < ti.shape.size(); ++i)
      v.shape.push(i == 0 ? static_cast<std::int64_t>(rows) : ti.shape[i]);
    v.numel = rows * per_in;
    v.data = x + done * per_in;
    g.run(*lease.ws);
    const nn::Value& o = lease.ws->values[static_cast<std::size_t>(g.output_ids[0])];
    if (o.numel != rows * per_out) {
      if (blocked && done == 0) {  // not one output row per input row: run the batch in one piece
        blocked = false;
        block = n_rows;
        continue;
      }
      throw InputError("the model's output has " + std::to_string(o.numel) + " values, expected " +
                       std::to_string(rows * per_out));
    }
    if (o.numel) std::memcpy(out + done * per_out, o.data, o.numel * 4);
    if (blocked && done == 0)
      block = static_cast<std::size_t>(nn::block_rows(g, *lease.ws, static_cast<std::int64_t>(rows)));
    done += rows;
  } while (done < n_rows);
}

void Model::predict_one(const float* x, float* out) const { predict(x, 1, out, 1); }

std::vector<NodeTime> Model::profile(const std::vector<InputTensor>& inputs, int repeats) const {
  if (repeats < 1) throw InputError("profile needs repeats >= 1, got " + std::to_string(repeats));
  const nn::Graph& g = *graph_;
  const std::vector<const InputTensor*> ordered = nn::order_inputs(g, inputs);
  std::map<std::string, std::int64_t> dims;
  for (std::size_t i = 0; i < ordered.size(); ++i) nn::check_input(g.inputs[i], *ordered[i], dims);
  struct Lease {
    const nn::Graph& g;
    std::unique_ptr<nn::Workspace> ws;
    ~Lease() { g.release(std::move(ws)); }
  } lease{g, g.acquire()};
  nn::bind(g, *lease.ws, ordered, 0, -1);
  g.run(*lease.ws);  // warm-up: buffers sized, weights and code in cache
  const std::size_t n = g.nodes.size();
  std::vector<std::vector<double>> samples(n);
  std::vector<char> ran_any(n, 0);
  std::vector<double> seconds;
  std::vector<char> ran;
  for (int r = 0; r < repeats; ++r) {
    seconds.assign(n, 0.0);
    ran.assign(n, 0);
    g.run_timed(*lease.ws, seconds, ran);
    for (std::size_t i = 0; i < n; ++i) {
      samples[i].push_back(seconds[i]);
      ran_any[i] = static_cast<char>(ran_any[i] | ran[i]);
    }
  }
  std::vector<NodeTime> result(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto& v = samples[i];
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    result[i].name = g.nodes[i].name;
    result[i].op_type = g.nodes[i].op_type;
    result[i].seconds = v[v.size() / 2];
    result[i].ran = ran_any[i] != 0;
  }
  return result;
}

}  // namespace hepinfer
