// The executor of a loaded graph: workspaces, binding inputs, running the nodes (in one piece
// or in row blocks of a batch-separable graph), storing outputs, and the load-time dry run.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/nn.hpp"
#include "nn/executor.hpp"
#include "nn/graph.hpp"

namespace hepinfer::nn {

using I64 = std::int64_t;

// ---- Graph: workspaces and execution

void run_node(const Node& n, Workspace& ws) {
  if (!n.run) throw OpError("internal error: the node has no kernel");
  n.run(n, ws);
}

std::unique_ptr<Workspace> Graph::make_workspace() const {
  auto ws = std::make_unique<Workspace>();
  ws->values.resize(meta.size());
  ws->slots.resize(static_cast<std::size_t>(n_slots));
  for (std::size_t i = 0; i < meta.size(); ++i) {
    if (constants[i]) {
      ws->values[i] = *constants[i];
      ws->values[i].buf = nullptr;
    } else if (meta[i].slot >= 0) {
      ws->values[i].buf = &ws->slots[static_cast<std::size_t>(meta[i].slot)];
    }
  }
  return ws;
}

std::unique_ptr<Workspace> Graph::acquire() const {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!pool_.empty()) {
      auto ws = std::move(pool_.back());
      pool_.pop_back();
      return ws;
    }
  }
  return make_workspace();
}

void Graph::release(std::unique_ptr<Workspace> ws) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (pool_.size() < 64) pool_.push_back(std::move(ws));
}

bool guards_met(const Node& n, const Workspace& ws) {
  for (const Guard& gd : n.guards) {
    const Value& c = ws.values[static_cast<std::size_t>(gd.cond)];
    if (c.type != ElementType::Bool || c.numel != 1)
      throw OpError("the condition of its If is " + std::string(element_type_name(c.type)) + " of shape " +
                    c.shape.str() + ", not a single bool");
    if ((c.b()[0] != 0) != gd.when) return false;
  }
  return true;
}

void run_if_select(const Node& n, Workspace& ws) {
  const Value& c = ws.values[static_cast<std::size_t>(n.in[0])];
  if (c.type != ElementType::Bool || c.numel != 1)
    throw OpError("the condition is " + std::string(element_type_name(c.type)) + " of shape " + c.shape.str() +
                  ", not a single bool");
  const std::size_t k_out = n.out.size();
  const std::size_t base = c.b()[0] ? 1 : 1 + k_out;
  for (std::size_t k = 0; k < k_out; ++k) {
    if (n.out[k] < 0) continue;
    const Value& src = ws.values[static_cast<std::size_t>(n.in[base + k])];
    Value& dst = ws.values[static_cast<std::size_t>(n.out[k])];
    // a copy, not an alias: the branch's value may share its slot with values of the other branch
    void* d = dst.alloc(src.type, src.shape);
    const std::size_t bytes = src.numel * element_size(src.type);
    if (bytes) std::memcpy(d, src.data, bytes);
  }
}

void Graph::run(Workspace& ws) const {
  for (const Node& n : nodes) {
    try {
      if (!n.guards.empty() && !guards_met(n, ws)) continue;
      run_node(n, ws);
    } catch (const OpError& e) {
      throw InputError(printable("node '" + n.name + "' (" + n.op_type + "): " + e.what()));
    }
  }
}
void Graph::run_timed(Workspace& ws, std::vector<double>& seconds, std::vector<char>& ran) const {
  seconds.resize(nodes.size(), 0.0);
  ran.resize(nodes.size(), 0);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    try {
      if (!n.guards.empty() && !guards_met(n, ws)) continue;
      const auto t0 = std::chrono::steady_clock::now();
      run_node(n, ws);
      seconds[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ran[i] = 1;
    } catch (const OpError& e) {
      throw InputError(printable("node '" + n.name + "' (" + n.op_type + "): " + e.what()));
    }
  }
}

void check_input(const TensorInfo& t, const InputTensor& x, std::map<std::string, I64>& dims) {
  if (x.type != t.type)
    throw InputError("input '" + t.name + "' must be " + element_type_name(t.type) + ", got " +
                     element_type_name(x.type));
  if (x.shape.size() > static_cast<std::size_t>(kMaxRank)) throw InputError("input '" + t.name + "' has rank above 8");
  for (I64 d : x.shape)
    if (d < 0) throw InputError("input '" + t.name + "' has a negative dimension");
  if (x.data == nullptr) {
    std::size_t n = 1;
    for (I64 d : x.shape) n *= static_cast<std::size_t>(d);
    if (n) throw InputError("input '" + t.name + "' has no data");
  }
  if (!t.has_shape) return;
  auto shape_str = [](const std::vector<I64>& s, const std::vector<std::string>* names) {
    std::string r = "(";
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (i) r += ", ";
      r += s[i] >= 0 ? std::to_string(s[i]) : names && !(*names)[i].empty() ? (*names)[i] : "?";
    }
    return r + ")";
  };
  if (x.shape.size() != t.shape.size())
    throw InputError("input '" + t.name + "' has shape " + shape_str(x.shape, nullptr) + "; the model expects " +
                     shape_str(t.shape, &t.dim_names));
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] >= 0 && x.shape[i] != t.shape[i])
      throw InputError("input '" + t.name + "' has shape " + shape_str(x.shape, nullptr) + "; the model expects " +
                       shape_str(t.shape, &t.dim_names));
    if (t.shape[i] < 0 && !t.dim_names[i].empty()) {
      auto [it, fresh] = dims.emplace(t.dim_names[i], x.shape[i]);
      if (!fresh && it->second != x.shape[i])
        throw InputError("input '" + t.name + "' has " + t.dim_names[i] + " = " + std::to_string(x.shape[i]) +
                         " but another input has " + std::to_string(it->second));
    }
  }
}

void bind(const Graph& g, Workspace& ws, const std::vector<const InputTensor*>& xs, I64 row0, I64 rows) {
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const InputTensor& x = *xs[i];
    Value& v = ws.values[static_cast<std::size_t>(g.input_ids[i])];
    v.type = x.type;
    v.shape.rank = 0;
    for (I64 d : x.shape) v.shape.push(d);
    const unsigned char* p = static_cast<const unsigned char*>(x.data);
    if (rows >= 0) {
      const std::size_t row_elems = v.shape[0] ? v.shape.numel() / static_cast<std::size_t>(v.shape[0]) : 0;
      p += static_cast<std::size_t>(row0) * row_elems * element_size(x.type);
      v.shape[0] = rows;
    }
    v.numel = v.shape.numel();
    v.data = p;
  }
}

void store_output(const Value& v, OutputTensor& o) {
  o.type = v.type;
  o.shape.assign(v.shape.d, v.shape.d + v.shape.rank);
  const std::size_t bytes = v.numel * element_size(v.type);
  o.bytes.resize(bytes);
  if (bytes) std::memcpy(o.bytes.data(), v.data, bytes);
}

// ---- evaluation of a batch-separable graph in row blocks: the block's intermediate tensors
// stay in L2 from one node to the next instead of every node's output streaming through memory.
constexpr std::size_t kBlockBytes = 256 * 1024;  // target bytes of computed values per block

I64 block_rows(const Graph& g, const Workspace& ws, I64 rows) {
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < g.meta.size(); ++i)
    if (g.meta[i].slot >= 0) bytes += ws.values[i].numel * element_size(ws.values[i].type);
  const std::size_t per_row = std::max<std::size_t>(1, bytes / static_cast<std::size_t>(std::max<I64>(rows, 1)));
  // every block reads each layer's packed weights again (a recurrent node: at every step): a
  // block must be tall enough to pay for that, at least one row per 4 KiB of the largest
  // weights (a 1024x1024 layer: 1024 rows, DeepJet's LSTM: ~90) whatever its intermediates
  // ... but not so tall that the block's intermediates leave the last-level cache: ParticleNet
  // holds ~5 MB per event (100 particles x 16 neighbours x 256 channels), where the weight rule
  // alone asked for 96 events (0.85x onnxruntime at batch 256; 1 to 4 events per block: ~1x)
  constexpr std::size_t kMaxBlockBytes = std::size_t{8} << 20;
  std::size_t weights = 0;
  for (const Node& n : g.nodes)
    if (n.dense) weights = std::max(weights, n.dense->panels.size() * sizeof(float));
  const std::size_t by_weights = std::min(weights / 4096, kMaxBlockBytes / per_row);
  const std::size_t lowest = per_row * 4 <= kMaxBlockBytes ? 4 : 1;
  return static_cast<I64>(std::clamp<std::size_t>(std::max(kBlockBytes / per_row, by_weights), lowest, 4096));
}

bool run_rows(const Graph& g, const std::vector<const InputTensor*>& xs, I64 r0, I64 r1,
              std::vector<OutputTensor>& part) {
  struct Lease {
    const Graph& g;
    std::unique_ptr<Workspace> ws;
    ~Lease() { g.release(std::move(ws)); }
  } lease{g, g.acquire()};
  Workspace& ws = *lease.ws;
  part.assign(g.outputs.size(), OutputTensor{});
  I64 block = r1 - r0 >= kMinBlockedRows ? kFirstBlock : std::max<I64>(r1 - r0, 1);
  I64 r = r0;
  bool first = true;
  do {
    const I64 rows = std::min(block, r1 - r);
    bind(g, ws, xs, r, rows);
    g.run(ws);
    for (std::size_t i = 0; i < g.outputs.size(); ++i) {
      const Value& v = ws.values[static_cast<std::size_t>(g.output_ids[i])];
      OutputTensor& o = part[i];
      if (v.shape.rank == 0 || v.shape[0] != rows) return false;
      const std::size_t bytes = v.numel * element_size(v.type);
      if (first) {
        o.type = v.type;
        o.shape.assign(v.shape.d, v.shape.d + v.shape.rank);
        if (rows > 0) o.bytes.reserve(bytes / static_cast<std::size_t>(rows) * static_cast<std::size_t>(r1 - r0));
      } else {
        if (v.type != o.type || static_cast<std::size_t>(v.shape.rank) != o.shape.size() ||
            !std::equal(o.shape.begin() + 1, o.shape.end(), v.shape.d + 1))
          return false;
        o.shape[0] += rows;
      }
      const std::size_t at = o.bytes.size();
      o.bytes.resize(at + bytes);
      if (bytes) std::memcpy(o.bytes.data() + at, v.data, bytes);
    }
    if (first && r1 - r0 >= kMinBlockedRows) block = block_rows(g, ws, rows);
    first = false;
    r += rows;
  } while (r < r1);
  return true;
}

std::vector<const InputTensor*> order_inputs(const Graph& g, const std::vector<InputTensor>& inputs) {
  if (inputs.size() != g.inputs.size())
    throw InputError("the model has " + std::to_string(g.inputs.size()) + " inputs, " + std::to_string(inputs.size()) +
                     " were given");
  std::vector<const InputTensor*> ordered(g.inputs.size(), nullptr);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::size_t k = i;
    if (!inputs[i].name.empty()) {
      k = g.inputs.size();
      for (std::size_t j = 0; j < g.inputs.size(); ++j)
        if (g.inputs[j].name == inputs[i].name) k = j;
      if (k == g.inputs.size()) {
        std::string names;
        for (const auto& t : g.inputs) names += (names.empty() ? "'" : ", '") + t.name + "'";
        throw InputError("the model has no input '" + inputs[i].name + "' (its inputs are " + names + ")");
      }
    }
    if (ordered[k]) throw InputError("input '" + g.inputs[k].name + "' is given twice");
    ordered[k] = &inputs[i];
  }
  return ordered;
}

void dry_run(const Graph& g, const std::string& source_name) {
  // Dry run at load where every input shape is fixed apart from a symbolic batch dimension (set
  // to 1): shapes that do not fit are reported now (as ModelFormatError), not at the first
  // predict. It is only a check, so it must stay cheap: it runs within load_budget_bytes() in
  // all (zero inputs plus live intermediates, each slot freed after the last node reading it),
  // and where that would not be enough, at the inputs or at some node, it is skipped or
  // stopped there and the model loads as onnxruntime's would: a model whose declared inputs
  // alone take gigabytes (16 inputs of 2^26 floats) or whose intermediates do (Expand
  // branches to 1 GiB each) is legitimate ONNX, and the memory is spent, or refused by the
  // user's own machine, only when predict is called with such inputs. A single tensor over
  // the per-tensor load limit (4 GiB, see LoadSizeGuard in formats/load_onnx.cpp) is still an
  // error naming the node.
  const std::size_t budget = load_budget_bytes();
  bool fixed = true;
  double input_bytes = 0;  // at batch 1; in double: declared dims may be anything up to 2^63
  for (const auto& t : g.inputs) {
    if (!t.has_shape) fixed = false;
    double elements = 1;
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0 && t.shape[i] < 0) fixed = false;
      elements *= t.shape[i] < 0 ? 1.0 : static_cast<double>(t.shape[i]);
    }
    input_bytes += elements * static_cast<double>(element_size(t.type)) + 16;
  }
  if (input_bytes > static_cast<double>(budget) / 2) fixed = false;  // too large to try on zeros
  if (fixed) {
    std::vector<std::vector<std::int64_t>> data;
    std::vector<InputTensor> xs;
    std::size_t used = 0;
    for (const auto& t : g.inputs) {
      InputTensor x;
      x.name = t.name;
      x.type = t.type;
      x.shape = t.shape;
      if (!x.shape.empty() && x.shape[0] < 0) x.shape[0] = 1;
      std::size_t n = 1;
      for (auto d : x.shape) n *= static_cast<std::size_t>(d);
      data.emplace_back((n * element_size(t.type) + 7) / 8 + 1, 0);
      used += data.back().size() * sizeof(std::int64_t);
      x.data = data.back().data();
      xs.push_back(x);
    }
    try {
      auto ws = g.acquire();
      bind(g, *ws, [&] {
        std::vector<const InputTensor*> p;
        for (const auto& x : xs) p.push_back(&x);
        return p;
      }(), 0, -1);
      const AllocBudgetScope scope(budget - std::min(used, budget));
      for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        try {
          if (n.guards.empty() || guards_met(n, *ws)) run_node(n, *ws);
        } catch (const BudgetError&) {
          break;  // the check would cost more than the budget: the rest is checked at predict
        } catch (const DataError&) {
          break;  // depends on the values (zeros here), not on the shapes
        } catch (const OpError& e) {
          throw InputError(printable("node '" + n.name + "' (" + n.op_type + "): " + e.what()));
        }
        // values no later node reads: their memory goes back to the budget
        if (i < g.slots_free_after.size())
          for (int slot : g.slots_free_after[i]) {
            auto& buf = ws->slots[static_cast<std::size_t>(slot)];
            alloc_budget_left() += buf.size() * sizeof(std::int64_t);
            std::vector<std::int64_t>().swap(buf);
          }
      }
    } catch (const InputError& e) {
      throw ModelFormatError(source_name +
                             ": the graph cannot be evaluated with its declared input shapes: " + e.what());
    }
  }
}

}  // namespace hepinfer::nn
