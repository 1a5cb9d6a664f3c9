// The graph passes that run once a model's graph IR is built (see passes.hpp): constant
// folding, Gemm/MatMul + bias + activation fusion, dead-node removal, buffer planning and the
// batch-separability test.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"
#include "nn/attention.hpp"
#include "nn/graph.hpp"
#include "nn/passes.hpp"

namespace hepinfer::nn {

namespace {

using I64 = std::int64_t;

bool is_elementwise_activation(const Node& n) {
  if (n.op != Op::Unary) return false;
  switch (n.act) {
    case Act::Relu:
    case Act::LeakyRelu:
    case Act::Elu:
    case Act::Selu:
    case Act::Gelu:
    case Act::GeluTanh:
    case Act::Sigmoid:
    case Act::Tanh:
    case Act::Clip:
    case Act::HardSigmoid:
    case Act::Softplus:
    case Act::Mish:
    case Act::HardSwish:
    case Act::Softsign:
    case Act::Celu:
    case Act::ThresholdedRelu:
    case Act::Shrink: return true;
    default: return false;
  }
}

// Reads the constant inputs that ops need at load (BatchNormalization statistics, Clip bounds)
// once constant folding has run.
void finalize_node(Graph& g, Node& n) {
  auto fail = [&](const Node& node, const std::string& msg) {
    throw ModelFormatError(g.source + ": node '" + node.name + "' (" + node.op_type + "): " + msg);
  };
  auto constant = [&](const Node& node, std::size_t k) -> const Value* {
    if (k >= node.in.size() || node.in[k] < 0) return nullptr;
    return g.constants[static_cast<std::size_t>(node.in[k])].get();
  };
  {
    if (n.op == Op::Unary && n.act == Act::Clip && n.i0 == 1) {
      for (std::size_t k = 1; k < 3 && k < n.in.size(); ++k) {
        if (n.in[k] < 0) continue;
        const Value* c = constant(n, k);
        if (!c) fail(n, "min/max inputs that are not constants are not supported");
        if (c->numel != 1 || c->type != ElementType::Float32) fail(n, "min/max must be float32 scalars");
        (k == 1 ? n.alpha : n.beta) = c->f()[0];
      }
      n.in.resize(1);
      n.i0 = 0;
    } else if (n.op == Op::BatchNorm && n.f0.empty()) {
      const Value* sc = constant(n, 1);
      const Value* bi = constant(n, 2);
      const Value* mu = constant(n, 3);
      const Value* va = constant(n, 4);
      if (!sc || !bi || !mu || !va) fail(n, "scale, B, mean and var must be constants");
      const std::size_t C = sc->numel;
      for (const Value* v : {sc, bi, mu, va})
        if (v->numel != C || v->type != ElementType::Float32 || v->shape.rank != 1)
          fail(n, "scale, B, mean and var must be 1-D float32 of equal length");
      n.f0.resize(C);
      n.f1.resize(C);
      for (std::size_t c = 0; c < C; ++c) {
        const float s = sc->f()[c] / std::sqrt(va->f()[c] + n.alpha);
        n.f0[c] = s;
        n.f1[c] = bi->f()[c] - mu->f()[c] * s;
      }
      n.in.resize(1);
    }
  }
}

}  // namespace

// Runs nodes whose inputs are all constants at load time and turns their outputs into constants.
// Folded constants together stay within load_budget_bytes(): a folded constant is freed once
// every node reading it is folded too (an Expand to 1 GiB reduced to a scalar costs 1 GiB
// while it folds, not for the model's lifetime), and a node whose outputs would take the live
// folded constants past the budget is not folded: it stays in the graph and runs at predict,
// as every node does without folding. A single tensor over max_tensor_bytes() is still an
// error (a shape that no machine could evaluate).
void fold_constants(Graph& g) {
  const std::size_t budget = load_budget_bytes();
  std::vector<int> uses(g.meta.size(), 0);  // readers not folded yet (+1 for graph outputs)
  for (const Node& n : g.nodes)
    for (int id : n.in)
      if (id >= 0) ++uses[static_cast<std::size_t>(id)];
  for (int id : g.output_ids) ++uses[static_cast<std::size_t>(id)];
  std::vector<std::shared_ptr<std::vector<I64>>> folded(g.meta.size());  // storage of folded constants
  std::size_t live = 0;
  auto bytes_of = [](const std::shared_ptr<std::vector<I64>>& b) { return b->size() * sizeof(I64); };
  std::vector<Node> kept;
  auto const_bool = [&](int id, bool& out) {
    const Value* c = g.constants[static_cast<std::size_t>(id)].get();
    if (!g.meta[static_cast<std::size_t>(id)].is_constant || !c) return false;
    if (c->type != ElementType::Bool || c->numel != 1) return false;  // an error at predict, named there
    out = c->b()[0] != 0;
    return true;
  };
  for (Node& n : g.nodes) {
    finalize_node(g, n);
    // the select of an If on a constant condition reads the taken branch only
    bool cond = false;
    if (n.run == run_if_select && const_bool(n.in[0], cond)) {
      const std::size_t k_out = n.out.size();
      for (std::size_t k = 0; k < k_out; ++k) {
        int& from = n.in[(cond ? 1 + k_out : 1) + k];
        const int to = n.in[(cond ? 1 : 1 + k_out) + k];
        if (from >= 0) --uses[static_cast<std::size_t>(from)];
        if (to >= 0) ++uses[static_cast<std::size_t>(to)];
        from = to;
      }
    }
    // inside an If branch: guards on a constant condition are resolved; a node of the branch not
    // taken is dropped, one whose guards are not all known stays (it must not run before they are)
    if (!n.guards.empty()) {
      bool taken = true;
      std::vector<Guard> open;
      for (const Guard& gd : n.guards) {
        bool c = false;
        if (!const_bool(gd.cond, c)) open.push_back(gd);
        else if (c != gd.when) taken = false;
      }
      if (!taken) {
        for (int id : n.in)
          if (id >= 0) --uses[static_cast<std::size_t>(id)];
        continue;
      }
      n.guards = std::move(open);
      if (!n.guards.empty()) {
        kept.push_back(std::move(n));
        continue;
      }
    }
    bool all_const = true;
    for (int id : n.in)
      if (id >= 0 && !g.meta[static_cast<std::size_t>(id)].is_constant) all_const = false;
    if (!all_const) {
      kept.push_back(std::move(n));
      continue;
    }
    Workspace ws;
    ws.values.resize(g.meta.size());
    for (int id : n.in)
      if (id >= 0) ws.values[static_cast<std::size_t>(id)] = *g.constants[static_cast<std::size_t>(id)];
    std::vector<std::shared_ptr<std::vector<I64>>> bufs;
    for (int id : n.out) {
      if (id < 0) continue;
      bufs.push_back(std::make_shared<std::vector<I64>>());
      ws.values[static_cast<std::size_t>(id)].buf = bufs.back().get();
    }
    try {
      const AllocBudgetScope scope(budget > live ? budget - live : 0);
      run_node(n, ws);
    } catch (const BudgetError&) {
      kept.push_back(std::move(n));  // too large to hold as a constant: computed at predict
      continue;
    } catch (const OpError& e) {
      throw ModelFormatError(g.source + ": node '" + n.name + "' (" + n.op_type + "): " + e.what());
    }
    // an aliasing op (Reshape...) points into its input: it gets a copy in its own storage
    std::size_t add = 0;
    {
      std::size_t bi = 0;
      for (int id : n.out) {
        if (id < 0) continue;
        const Value& v = ws.values[static_cast<std::size_t>(id)];
        add += std::max(bufs[bi++]->size() * sizeof(I64), v.numel * element_size(v.type) + 16);
      }
    }
    if (live + add > budget) {
      kept.push_back(std::move(n));
      continue;
    }
    std::size_t bi = 0;
    for (int id : n.out) {
      if (id < 0) continue;
      Value& v = ws.values[static_cast<std::size_t>(id)];
      auto storage = bufs[bi++];
      const std::size_t bytes = v.numel * element_size(v.type);
      if (storage->size() * 8 < bytes + 8) storage->resize(bytes / 8 + 2);
      if (v.data != storage->data() && bytes) std::memmove(storage->data(), v.data, bytes);
      v.data = storage->data();
      v.buf = nullptr;
      live += bytes_of(storage);
      folded[static_cast<std::size_t>(id)] = storage;
      g.constants[static_cast<std::size_t>(id)] = std::make_shared<Value>(v);
      g.meta[static_cast<std::size_t>(id)].is_constant = true;
    }
    // inputs no other node reads any more: a folded intermediate is freed now
    for (int id : n.in) {
      if (id < 0) continue;
      const auto k = static_cast<std::size_t>(id);
      if (--uses[k] == 0 && folded[k]) {
        live -= bytes_of(folded[k]);
        folded[k].reset();
        g.constants[k].reset();
      }
    }
  }
  for (auto& storage : folded)
    if (storage) g.constant_storage.push_back(std::move(storage));
  g.nodes = std::move(kept);
}

namespace {

std::vector<int> use_counts(const Graph& g) {
  std::vector<int> uses(g.meta.size(), 0);
  for (const Node& n : g.nodes)
    for (int id : n.in)
      if (id >= 0) ++uses[static_cast<std::size_t>(id)];
  for (int id : g.output_ids) uses[static_cast<std::size_t>(id)] += 1000;  // graph outputs are never fused away
  return uses;
}

}  // namespace

// Gemm / MatMul with constant weights -> Dense; + constant bias Add; + activation.
void fuse(Graph& g) {
  for (Node& n : g.nodes) {
    if (n.op == Op::Gemm && n.i0 == 0 && n.in.size() >= 2 && g.meta[static_cast<std::size_t>(n.in[1])].is_constant) {
      const Value& B = *g.constants[static_cast<std::size_t>(n.in[1])];
      if (B.shape.rank != 2) continue;
      const Value* C = n.in.size() > 2 && n.in[2] >= 0 && g.meta[static_cast<std::size_t>(n.in[2])].is_constant
                           ? g.constants[static_cast<std::size_t>(n.in[2])].get()
                           : nullptr;
      if (n.in.size() > 2 && n.in[2] >= 0 && !C) continue;
      const I64 K = n.i1 ? B.shape[1] : B.shape[0], N = n.i1 ? B.shape[0] : B.shape[1];
      if (C && !(C->numel == 1 || (C->numel == static_cast<std::size_t>(N) && C->shape[C->shape.rank - 1] == N)))
        continue;
      if (C && C->type != ElementType::Float32) continue;
      auto p = std::make_shared<PackedDense>();
      p->K = K;
      p->N = N;
      p->ldb = (N + 7) / 8 * 8;
      p->w.assign(static_cast<std::size_t>(K * p->ldb), 0.0f);
      p->bias.assign(static_cast<std::size_t>(p->ldb), 0.0f);
      for (I64 k = 0; k < K; ++k)
        for (I64 j = 0; j < N; ++j)
          p->w[static_cast<std::size_t>(k * p->ldb + j)] = n.alpha * B.f()[n.i1 ? j * K + k : k * N + j];
      if (C && n.beta != 0.0f)
        for (I64 j = 0; j < N; ++j) p->bias[static_cast<std::size_t>(j)] = n.beta * C->f()[C->numel == 1 ? 0 : j];
      n.op = Op::Dense;
      n.run = run_dense;
      n.dense = p;
      n.in.resize(1);
      n.alpha = n.beta = 0.0f;
      // Gemm requires a 2-D A: Dense accepts any rank, so keep the check by rank in a flag
      n.i0 = 2;
    } else if (n.op == Op::MatMul && g.meta[static_cast<std::size_t>(n.in[1])].is_constant) {
      const Value& B = *g.constants[static_cast<std::size_t>(n.in[1])];
      if (B.shape.rank != 2) continue;
      const I64 K = B.shape[0], N = B.shape[1];
      auto p = std::make_shared<PackedDense>();
      p->K = K;
      p->N = N;
      p->ldb = (N + 7) / 8 * 8;
      p->w.assign(static_cast<std::size_t>(K * p->ldb), 0.0f);
      p->bias.assign(static_cast<std::size_t>(p->ldb), 0.0f);
      for (I64 k = 0; k < K; ++k)
        for (I64 j = 0; j < N; ++j) p->w[static_cast<std::size_t>(k * p->ldb + j)] = B.f()[k * N + j];
      n.op = Op::Dense;
      n.run = run_dense;
      n.dense = p;
      n.in.resize(1);
      n.i0 = 0;
    }
  }
  // bias and activation fusion (a consumer with a single use of the dense output)
  bool changed = true;
  while (changed) {
    changed = false;
    const auto uses = use_counts(g);
    std::vector<int> producer(g.meta.size(), -1);
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
      for (int id : g.nodes[i].out)
        if (id >= 0) producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
      Node& c = g.nodes[i];
      if (c.op == Op::Identity && c.op_type == "<removed>") continue;
      int src = -1;
      if (c.op == Op::Binary && c.bin == BinOp::Add) {
        for (int k = 0; k < 2; ++k) {
          const int a = c.in[static_cast<std::size_t>(k)], o = c.in[static_cast<std::size_t>(1 - k)];
          if (a < 0 || o < 0 || !g.meta[static_cast<std::size_t>(o)].is_constant) continue;
          const int pi = producer[static_cast<std::size_t>(a)];
          if (pi < 0 || uses[static_cast<std::size_t>(a)] != 1) continue;
          Node& p = g.nodes[static_cast<std::size_t>(pi)];
          if (p.op != Op::Dense || p.act != Act::None || p.i0 == 2 || p.guards != c.guards) continue;
          const Value& bias = *g.constants[static_cast<std::size_t>(o)];
          if (bias.type != ElementType::Float32 || bias.shape.rank != 1 ||
              bias.numel != static_cast<std::size_t>(p.dense->N))
            continue;
          auto q = std::make_shared<PackedDense>(*p.dense);
          for (std::size_t j = 0; j < bias.numel; ++j) q->bias[j] += bias.f()[j];
          p.dense = q;
          src = pi;
          break;
        }
      } else if (c.op == Op::Binary && c.bin == BinOp::Mul && c.in.size() == 2) {
        // SiLU as torch exports it: y = Dense(x); Mul(y, Sigmoid(y)) -> Dense + Silu
        for (int k = 0; k < 2 && src < 0; ++k) {
          const int a = c.in[static_cast<std::size_t>(k)], sg = c.in[static_cast<std::size_t>(1 - k)];
          if (a < 0 || sg < 0 || a == sg) continue;
          const int pi = producer[static_cast<std::size_t>(a)], si = producer[static_cast<std::size_t>(sg)];
          if (pi < 0 || si < 0 || uses[static_cast<std::size_t>(a)] != 2 || uses[static_cast<std::size_t>(sg)] != 1)
            continue;
          Node& p = g.nodes[static_cast<std::size_t>(pi)];
          Node& sn = g.nodes[static_cast<std::size_t>(si)];
          if (p.op != Op::Dense || p.act != Act::None || p.guards != c.guards) continue;
          if (sn.op != Op::Unary || sn.act != Act::Sigmoid || sn.in.size() != 1 || sn.in[0] != a ||
              sn.guards != c.guards)
            continue;
          p.act = Act::Silu;
          p.alpha = p.beta = 0.0f;
          p.name += "+" + sn.name;
          p.op_type += "+" + sn.op_type;
          sn.op = Op::Identity;
          sn.op_type = "<removed>";
          sn.in.clear();
          sn.out.clear();
          src = pi;
        }
      } else if (is_elementwise_activation(c) && !c.in.empty()) {
        const int a = c.in[0];
        const int pi = a >= 0 ? producer[static_cast<std::size_t>(a)] : -1;
        if (pi >= 0 && uses[static_cast<std::size_t>(a)] == 1) {
          Node& p = g.nodes[static_cast<std::size_t>(pi)];
          if ((p.op == Op::Dense || p.op == Op::Conv) && p.act == Act::None && p.guards == c.guards) {
            p.act = c.act;
            p.alpha = c.alpha;
            p.beta = c.beta;
            src = pi;
          }
        }
      }
      if (src >= 0) {
        Node& p = g.nodes[static_cast<std::size_t>(src)];
        p.out[0] = c.out[0];
        p.name += "+" + c.name;
        p.op_type += "+" + c.op_type;
        c.op = Op::Identity;
        c.op_type = "<removed>";
        c.in.clear();
        c.out.clear();
        changed = true;
        break;
      }
    }
    if (changed) {
      std::vector<Node> kept;
      for (Node& n : g.nodes)
        if (n.op_type != "<removed>") kept.push_back(std::move(n));
      g.nodes = std::move(kept);
    }
  }
  for (Node& n : g.nodes) {
    if (n.op != Op::Dense) continue;
    n.i0 = 0;
    // weights in the GEMM kernels' panel layout, biases padded to whole panels
    auto q = std::make_shared<PackedDense>(*n.dense);
    const auto K = static_cast<std::size_t>(q->K), N = static_cast<std::size_t>(q->N);
    q->panels.assign(packed_panels_size(K, N), 0.0f);
    pack_panels(K, N, q->w.data(), static_cast<std::size_t>(q->ldb), q->panels.data());
    q->finite = std::all_of(q->w.begin(), q->w.end(), [](float v) { return std::isfinite(v); });
    q->bias.resize((N + kPanel - 1) / kPanel * kPanel, 0.0f);
    if (q->N <= kDotColumns) {
      q->cols.resize(K * N);
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t j = 0; j < N; ++j) q->cols[j * K + k] = q->w[k * static_cast<std::size_t>(q->ldb) + j];
    }
    n.dense = q;
  }
}

void remove_dead(Graph& g) {
  std::vector<char> live(g.meta.size(), 0);
  for (int id : g.output_ids) live[static_cast<std::size_t>(id)] = 1;
  std::vector<char> keep(g.nodes.size(), 0);
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool needed = false;
    for (int id : n.out)
      if (id >= 0 && live[static_cast<std::size_t>(id)]) needed = true;
    if (!needed) continue;
    keep[i] = 1;
    for (int id : n.in)
      if (id >= 0) live[static_cast<std::size_t>(id)] = 1;
  }
  std::vector<Node> kept;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (keep[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  // outputs nobody reads of the recurrent ops (which take every output as optional): not
  // computed. DeepJet reads only Y_h: Y ([S, D, batch, H], 15 KB per row for its 150-wide LSTM)
  // is neither written nor counted in the executor's row blocks.
  for (Node& n : g.nodes) {
    if (n.op_type != "LSTM" && n.op_type != "GRU" && n.op_type != "RNN") continue;
    for (int& id : n.out)
      if (id >= 0 && !live[static_cast<std::size_t>(id)]) id = -1;
  }
}

namespace {

bool may_alias(const Node& n) {
  switch (n.op) {
    case Op::Reshape:
    case Op::Flatten:
    case Op::Squeeze:
    case Op::Unsqueeze:
    case Op::Identity:
    case Op::Cast: return true;
    // a reduction aliases its input only with noop_with_empty_axes and no axes (op_reduce):
    // otherwise its small output must not keep the large input alive (and in one slot) until
    // the output's own last use
    case Op::Reduce: return n.i1 != 0;
    default: return false;
  }
}

}  // namespace

// Gives every computed value a buffer slot; values whose lifetimes (extended over aliases)
// do not overlap share a slot.
void plan_buffers(Graph& g) {
  const std::size_t nv = g.meta.size();
  std::vector<int> root(nv);
  for (std::size_t i = 0; i < nv; ++i) root[i] = static_cast<int>(i);
  auto find = [&](int x) {
    while (root[static_cast<std::size_t>(x)] != x)
      x = root[static_cast<std::size_t>(x)] = root[static_cast<std::size_t>(root[static_cast<std::size_t>(x)])];
    return x;
  };
  for (const Node& n : g.nodes)
    if (may_alias(n) && !n.in.empty() && n.in[0] >= 0)
      for (int o : n.out)
        if (o >= 0) root[static_cast<std::size_t>(find(o))] = find(n.in[0]);
  const int inf = std::numeric_limits<int>::max();
  std::vector<int> end(nv, -1);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].in)
      if (id >= 0)
        end[static_cast<std::size_t>(find(id))] =
            std::max(end[static_cast<std::size_t>(find(id))], static_cast<int>(i));
    for (int id : g.nodes[i].out)
      if (id >= 0)
        end[static_cast<std::size_t>(find(id))] =
            std::max(end[static_cast<std::size_t>(find(id))], static_cast<int>(i));
  }
  for (int id : g.output_ids) end[static_cast<std::size_t>(find(id))] = inf;
  std::vector<int> free_slots;
  std::vector<std::vector<int>> release_at(g.nodes.size());
  int n_slots = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].out) {
      if (id < 0) continue;
      int s;
      if (!free_slots.empty()) {
        s = free_slots.back();
        free_slots.pop_back();
      } else {
        s = n_slots++;
      }
      g.meta[static_cast<std::size_t>(id)].slot = s;
      const int e = end[static_cast<std::size_t>(find(id))];
      if (e != inf) release_at[static_cast<std::size_t>(std::max(e, static_cast<int>(i)))].push_back(s);
    }
    for (int s : release_at[i]) free_slots.push_back(s);
  }
  g.n_slots = n_slots;
  g.slots_free_after = std::move(release_at);
}

void mark_batch_separable(Graph& g) {
  std::string batch;
  bool sep = !g.inputs.empty();
  for (const auto* list : {&g.inputs, &g.outputs})
    for (const auto& t : *list) {
      if (!t.has_shape || t.shape.empty() || t.dim_names[0].empty()) {
        sep = false;
        continue;
      }
      if (batch.empty()) batch = t.dim_names[0];
      if (t.dim_names[0] != batch) sep = false;
    }
  g.separable = sep;
}

void run_passes(Graph& g, bool optimize) {
  fold_constants(g);
  if (optimize) fuse(g);
  if (optimize) fuse_attention(g);
  remove_dead(g);
  plan_buffers(g);
  mark_batch_separable(g);
}

}  // namespace hepinfer::nn
