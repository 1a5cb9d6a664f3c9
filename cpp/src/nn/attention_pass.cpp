// The pass that replaces attention and erf-GELU patterns by fused nodes (see attention.hpp).
// It matches the graphs as torch's TorchScript exporter writes them:
//   scores = MatMul(Q', Kt') [; scores = Add(scores, mask)]; p = Softmax(scores, axis=-1);
//   out = MatMul(p, V)
// (Q' and Kt' are the scaled query and transposed key; their Mul/Transpose nodes stay), and
//   Mul(Mul(x, Add(Erf(Div(x, c)), c1)), c2)
// with float scalar constants c, c1, c2 in any operand order (with c = sqrt(2), c1 = 1, c2 = 0.5
// and scalar constants the fused node is a Unary Gelu, which the CUDA plan knows too). A fused node takes the place of
// the pattern's last node; the pattern's other nodes then have no use and remove_dead drops them.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nn/attention.hpp"
#include "nn/graph.hpp"

namespace hepinfer::nn {
namespace {

struct Uses {
  std::vector<int> count;     // readers of each value (+1000 for graph outputs)
  std::vector<int> producer;  // node index of each value's producer, -1 for inputs/constants
  std::vector<int> reader;    // the last reader of each value (meaningful when count == 1)
};

Uses uses_of(const Graph& g) {
  Uses u;
  u.count.assign(g.meta.size(), 0);
  u.producer.assign(g.meta.size(), -1);
  u.reader.assign(g.meta.size(), -1);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].in)
      if (id >= 0) {
        ++u.count[static_cast<std::size_t>(id)];
        u.reader[static_cast<std::size_t>(id)] = static_cast<int>(i);
      }
    for (int id : g.nodes[i].out)
      if (id >= 0) u.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
  }
  for (int id : g.output_ids) u.count[static_cast<std::size_t>(id)] += 1000;
  return u;
}

/// The node that alone reads value `id` (null when it has several readers or is a graph output).
Node* only_reader(Graph& g, const Uses& u, int id) {
  if (id < 0 || u.count[static_cast<std::size_t>(id)] != 1) return nullptr;
  return &g.nodes[static_cast<std::size_t>(u.reader[static_cast<std::size_t>(id)])];
}

Node* producer_of(Graph& g, const Uses& u, int id) {
  if (id < 0) return nullptr;
  const int p = u.producer[static_cast<std::size_t>(id)];
  return p < 0 ? nullptr : &g.nodes[static_cast<std::size_t>(p)];
}

bool single_output(const Node& n) { return n.out.size() == 1 && n.out[0] >= 0; }

/// The value of a float32 constant with one element (rank in `rank`), else false.
bool scalar_constant(const Graph& g, int id, float& value, int& rank) {
  if (id < 0 || !g.meta[static_cast<std::size_t>(id)].is_constant) return false;
  const Value* c = g.constants[static_cast<std::size_t>(id)].get();
  if (!c || c->type != ElementType::Float32 || c->numel != 1) return false;
  value = c->f()[0];
  rank = c->shape.rank;
  return true;
}

bool is_binary(const Node& n, BinOp op) {
  return n.op == Op::Binary && n.bin == op && n.in.size() == 2 && single_output(n);
}

/// Softmax(-1) -> MatMul(., V) with the scores from MatMul(Q, Kt) [+ mask]: the final MatMul
/// becomes the fused node.
bool fuse_one_attention(Graph& g, const Uses& u, Node& sm) {
  if (sm.op != Op::Softmax || sm.axis != -1 || sm.in.size() != 1 || !single_output(sm)) return false;
  Node* pv = only_reader(g, u, sm.out[0]);
  if (!pv || pv->op != Op::MatMul || pv->in.size() != 2 || pv->in[0] != sm.out[0] || !single_output(*pv) ||
      pv->guards != sm.guards)
    return false;
  Node* s = producer_of(g, u, sm.in[0]);
  if (!s || u.count[static_cast<std::size_t>(sm.in[0])] != 1 || s->guards != sm.guards) return false;
  int mask = -1;
  if (is_binary(*s, BinOp::Add)) {
    Node* qk = nullptr;
    for (int k = 0; k < 2 && !qk; ++k) {
      const int a = s->in[static_cast<std::size_t>(k)];
      Node* p = producer_of(g, u, a);
      if (p && p->op == Op::MatMul && p->in.size() == 2 && single_output(*p) &&
          u.count[static_cast<std::size_t>(a)] == 1 && p->guards == sm.guards) {
        qk = p;
        mask = s->in[static_cast<std::size_t>(1 - k)];
      }
    }
    if (!qk || mask < 0) return false;
    s = qk;
  } else if (!(s->op == Op::MatMul && s->in.size() == 2 && single_output(*s))) {
    return false;
  }
  const int q = s->in[0], kt = s->in[1], v = pv->in[1];
  if (q < 0 || kt < 0 || v < 0) return false;
  pv->op = Op::Kernel;
  pv->run = run_fused_attention;
  pv->in = {q, kt, v, mask};
  pv->name = s->name + "+" + sm.name + "+" + pv->name;
  pv->op_type = mask >= 0 ? "MatMul+Add+Softmax+MatMul" : "MatMul+Softmax+MatMul";
  return true;
}

/// Mul(Mul(x, Add(Erf(Div(x, c)), c1)), c2): the last Mul becomes the fused node.
bool fuse_one_gelu(Graph& g, const Uses& u, Node& erf) {
  if (erf.op != Op::Unary || erf.act != Act::Erf || erf.in.size() != 1 || !single_output(erf)) return false;
  Node* div = producer_of(g, u, erf.in[0]);
  if (!div || !is_binary(*div, BinOp::Div) || u.count[static_cast<std::size_t>(erf.in[0])] != 1 ||
      div->guards != erf.guards)
    return false;
  float c = 0, c1 = 0, c2 = 0;
  int r = 0, r1 = 0, r2 = 0;
  const int x = div->in[0];
  if (x < 0 || !scalar_constant(g, div->in[1], c, r)) return false;
  Node* add = only_reader(g, u, erf.out[0]);
  if (!add || !is_binary(*add, BinOp::Add) || add->guards != erf.guards) return false;
  const int k_add = add->in[0] == erf.out[0] ? 1 : 0;
  if (!scalar_constant(g, add->in[static_cast<std::size_t>(k_add)], c1, r1)) return false;
  Node* mul = only_reader(g, u, add->out[0]);
  if (!mul || !is_binary(*mul, BinOp::Mul) || mul->guards != erf.guards) return false;
  if (!((mul->in[0] == x && mul->in[1] == add->out[0]) || (mul->in[1] == x && mul->in[0] == add->out[0]))) return false;
  Node* half = only_reader(g, u, mul->out[0]);
  if (!half || !is_binary(*half, BinOp::Mul) || half->guards != erf.guards) return false;
  const int k_half = half->in[0] == mul->out[0] ? 1 : 0;
  if (!scalar_constant(g, half->in[static_cast<std::size_t>(k_half)], c2, r2)) return false;
  half->run = run_fused_gelu;
  half->in = {x};
  half->alpha = half->beta = 0.0f;
  half->f0 = {c, c1, c2};
  half->i0 = std::max(r, std::max(r1, r2));
  half->name = div->name + "+" + erf.name + "+" + half->name;
  half->op_type = "Gelu(erf)";
  if (half->i0 == 0 && c == static_cast<float>(std::sqrt(2.0)) && c1 == 1.0f && c2 == 0.5f) {
    // torch's GELU exactly: an ordinary Gelu activation (which the CUDA plan also runs) whose
    // CPU kernel is the vectorised one
    half->op = Op::Unary;
    half->act = Act::Gelu;
  } else {
    half->op = Op::Kernel;
  }
  return true;
}

}  // namespace

void fuse_attention(Graph& g) {
  // each fusion leaves the use counts of the other patterns' values as they were (the
  // replaced nodes become unread, not read twice), so one count serves the whole pass
  const Uses u = uses_of(g);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (n.op == Op::Softmax) fuse_one_attention(g, u, n);
    else if (n.op == Op::Unary && n.act == Act::Erf) fuse_one_gelu(g, u, n);
  }
}

}  // namespace hepinfer::nn
