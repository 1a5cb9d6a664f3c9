// The NN executor for CUDA devices, independent of CUDA itself: plan creation (which nodes run
// on the device, uploads), shape logic, per-jet / per-particle tensors and the host reference
// backend. The CUDA backend is in cpp/cuda/nn_kernels.cu; see cuda_plan.hpp.
#include "nn/cuda_plan.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>

#include "hepinfer/nn.hpp"

namespace hepinfer {
namespace nn {

namespace gpu {

// the codes of nn_math.cuh are the engine's enums
static_assert(act::Round == static_cast<int>(Act::Round) && act::Clip == static_cast<int>(Act::Clip) &&
              act::Relu == static_cast<int>(Act::Relu) && act::Sigmoid == static_cast<int>(Act::Sigmoid));
static_assert(bin::Min == static_cast<int>(BinOp::Min) && bin::Pow == static_cast<int>(BinOp::Pow));
static_assert(cmp::GreaterOrEqual == static_cast<int>(CmpOp::GreaterOrEqual));
static_assert(logic::Xor == static_cast<int>(LogicOp::Xor));
static_assert(red::SumSquare == static_cast<int>(ReduceOp::SumSquare) && red::Mean == static_cast<int>(ReduceOp::Mean));
static_assert(kMaxRank == nn::kMaxRank);

namespace {

using I64 = std::int64_t;

// ------------------------------------------------------------------ host reference backend
class HostBackend final : public Backend {
 public:
  void* scratch(std::size_t bytes) override {
    blocks_.emplace_back((bytes + 7) / 8 + 1);
    return blocks_.back().data();
  }
  std::shared_ptr<void> persistent(const void* host, std::size_t bytes) override {
    auto p = std::shared_ptr<std::vector<I64>>(new std::vector<I64>((bytes + 7) / 8 + 1));
    if (bytes) std::memcpy(p->data(), host, bytes);
    return std::shared_ptr<void>(p, p->data());
  }
  std::shared_ptr<void> keep(const void* src, std::size_t bytes) override { return persistent(src, bytes); }
  void to_backend(void* dst, const void* host, std::size_t bytes) override {
    if (bytes) std::memcpy(dst, host, bytes);
  }
  void to_host(void* host, const void* src, std::size_t bytes) override {
    if (bytes) std::memcpy(host, src, bytes);
  }
  void dense(const float* A, I64 M, const DenseWeights& w, float* C) override {
    for (I64 m = 0; m < M; ++m)
      for (I64 j = 0; j < w.N; ++j) {
        float s = 0.0f;
        for (I64 k = 0; k < w.K; ++k) s += A[m * w.K + k] * w.w[k * w.ldw + j];
        C[m * w.N + j] = dense_epilogue(s, w.bias[j], w.act, w.alpha, w.beta);
      }
  }
  void elementwise(const Elementwise& e) override {
    for (I64 i = 0; i < e.numel; ++i) e.out[i] = ew_element(e, i);
  }
  void softmax(const float* x, float* y, I64 outer, I64 len, I64 inner, bool log) override {
    for (I64 o = 0; o < outer; ++o)
      for (I64 i = 0; i < inner; ++i) softmax_line(x + o * len * inner + i, y + o * len * inner + i, len, inner, log);
  }
  void reduce(const float* x, float* y, const I64* offsets, I64 segments, I64 len, I64 inner, int op) override {
    for (I64 s = 0; s < segments; ++s)
      for (I64 i = 0; i < inner; ++i) {
        const I64 b = offsets ? offsets[s] : s * len, e = offsets ? offsets[s + 1] : (s + 1) * len;
        y[s * inner + i] = reduce_line(op, x + i, b, e, inner);
      }
  }
  void copy2d(const float* src, float* dst, I64 outer, I64 chunk, I64 src_stride, I64 dst_stride) override {
    for (I64 o = 0; o < outer; ++o)
      for (I64 j = 0; j < chunk; ++j) dst[o * dst_stride + j] = src[o * src_stride + j];
  }
  void finish() override {}

 private:
  std::vector<std::vector<I64>> blocks_;
};

/// Touches no memory: plan checks (a dry run of the shape logic) on backend pointers.
class NullBackend final : public Backend {
 public:
  void* scratch(std::size_t) override { return &dummy_; }
  std::shared_ptr<void> persistent(const void*, std::size_t) override { return nullptr; }
  std::shared_ptr<void> keep(const void*, std::size_t) override { return nullptr; }
  void to_backend(void*, const void*, std::size_t) override {}
  void to_host(void* host, const void*, std::size_t bytes) override {
    if (bytes) std::memset(host, 0, bytes);
  }
  void dense(const float*, I64, const DenseWeights&, float*) override {}
  void elementwise(const Elementwise&) override {}
  void softmax(const float*, float*, I64, I64, I64, bool) override {}
  void reduce(const float*, float*, const I64*, I64, I64, I64, int) override {}
  void copy2d(const float*, float*, I64, I64, I64, I64) override {}
  void finish() override {}

 private:
  I64 dummy_[8] = {};
};

std::string node_label(const Node& n) { return "node '" + printable(n.name) + "' (" + n.op_type + ")"; }

bool device_op(Op op) {
  switch (op) {
    case Op::Dense:
    case Op::Unary:
    case Op::Binary:
    case Op::Variadic:
    case Op::Compare:
    case Op::Logical:
    case Op::Not:
    case Op::Where:
    case Op::Softmax:
    case Op::LogSoftmax:
    case Op::Concat:
    case Op::Reshape:
    case Op::Flatten:
    case Op::Squeeze:
    case Op::Unsqueeze:
    case Op::Identity:
    case Op::Cast:
    case Op::Reduce:
    case Op::BatchNorm:
    case Op::ShapeOf:
    case Op::Size: return true;
    default: return false;
  }
}

std::vector<float> as_floats(const Value& v) {
  std::vector<float> f(std::max<std::size_t>(v.numel, 1), 0.0f);
  for (std::size_t i = 0; i < v.numel; ++i)
    f[i] = v.type == ElementType::Float32 ? v.f()[i]
           : v.type == ElementType::Int64 ? static_cast<float>(v.i64()[i])
                                          : static_cast<float>(v.b()[i]);
  return f;
}

/// A tensor during device evaluation. Per-particle tensors have shape [B, -1, ...] and
/// storage [rows, ...].
struct DVal {
  bool ready = false;
  bool particle = false;
  ElementType type = ElementType::Float32;
  Shape shape;
  const float* data = nullptr;
};

struct Segments {
  I64 jets = 0, rows = 0;
  const I64* offsets = nullptr;              // backend memory, jets + 1
  const std::int32_t* jet_of_row = nullptr;  // backend memory, rows
};

I64 norm_axis(I64 a, int rank, const Node& n) {
  if (a < -rank || a >= std::max(rank, 1))
    throw InputError(node_label(n) + ": axis " + std::to_string(a) + " is out of range");
  return a < 0 ? a + rank : a;
}

class Exec {
 public:
  Exec(const DevicePlan& p, Backend& be, bool jagged, const Segments& seg)
      : p_(p), g_(*p.graph), be_(be), jagged_(jagged), seg_(seg), ws_(g_.make_workspace()), v_(g_.meta.size()) {}

  void bind(std::size_t input, const DVal& x) { v_[static_cast<std::size_t>(g_.input_ids[input])] = x; }

  void run() {
    for (std::size_t i = 0; i < g_.nodes.size(); ++i) {
      const Node& n = g_.nodes[i];
      const bool host = !n.out.empty() && n.out[0] >= 0 && p_.host_value[static_cast<std::size_t>(n.out[0])] &&
                        n.op != Op::ShapeOf && n.op != Op::Size;
      if (host) {
        try {
          run_node(n, *ws_);
        } catch (const OpError& e) {
          throw InputError(printable(node_label(n) + ": " + e.what()));
        }
        continue;
      }
      node(i, n);
    }
  }

  /// The value of a graph output (host values and constants uploaded on the way).
  const DVal& output(std::size_t k) { return operand(g_.output_ids[k]); }
  Backend& backend() { return be_; }

  Shape storage(const DVal& x) const {
    if (!x.particle) return x.shape;
    Shape s;
    s.push(seg_.rows);
    for (int i = 2; i < x.shape.rank; ++i) s.push(x.shape[i]);
    return s;
  }

 private:
  const DevicePlan& p_;
  const Graph& g_;
  Backend& be_;
  bool jagged_;
  Segments seg_;
  std::unique_ptr<Workspace> ws_;
  std::vector<DVal> v_;

  [[noreturn]] void unsupported(const Node& n, const std::string& why) const {
    throw DeviceError(node_label(n) + ": " + why + " is not supported on CUDA yet");
  }
  [[noreturn]] void bad_shape(const Node& n, const std::string& why) const {
    throw InputError(node_label(n) + ": " + why);
  }

  float* alloc(const Shape& storage_shape) {
    return static_cast<float*>(be_.scratch(std::max<std::size_t>(storage_shape.numel(), 1) * sizeof(float)));
  }

  const DVal& operand(int id) {
    DVal& d = v_[static_cast<std::size_t>(id)];
    if (d.ready) return d;
    const auto u = static_cast<std::size_t>(id);
    const Value* hv = g_.constants[u] ? g_.constants[u].get() : p_.host_value[u] ? &ws_->values[u] : nullptr;
    if (!hv) throw InputError("value '" + printable(g_.meta[u].name) + "' was not computed");
    d.type = hv->type;
    d.shape = hv->shape;
    if (g_.constants[u] && p_.constant[u]) {
      d.data = p_.constant[u];
    } else {
      const auto f = as_floats(*hv);
      float* dst = alloc(hv->shape);
      be_.to_backend(dst, f.data(), hv->numel * sizeof(float));
      d.data = dst;
    }
    d.ready = true;
    return d;
  }
  const Value& host(const Node& n, std::size_t k) {
    if (k >= n.in.size() || n.in[k] < 0) bad_shape(n, "input " + std::to_string(k) + " is missing");
    const auto id = static_cast<std::size_t>(n.in[k]);
    if (g_.constants[id]) return *g_.constants[id];
    if (!p_.host_value[id]) unsupported(n, "an axes/shape input computed from tensor values");
    return ws_->values[id];
  }
  static std::vector<I64> ints(const Value& v) {
    std::vector<I64> r(v.numel);
    for (std::size_t i = 0; i < v.numel; ++i)
      r[i] = v.type == ElementType::Int64 ? v.i64()[i]
                                          : static_cast<I64>(v.type == ElementType::Float32 ? v.f()[i] : v.b()[i]);
    return r;
  }
  DVal& out(const Node& n, std::size_t k = 0) { return v_[static_cast<std::size_t>(n.out[k])]; }
  void set(const Node& n, const DVal& x) {
    DVal& o = out(n);
    o = x;
    o.ready = true;
  }

  // ---- elementwise with broadcasting over per-jet / per-particle operands
  DVal elementwise(const Node& n, const std::vector<const DVal*>& ops, EwOp op, int code, float alpha, float beta,
                   ElementType type) {
    bool particle = false;
    int R = 0;
    for (const DVal* x : ops) {
      particle = particle || x->particle;
      R = std::max(R, x->shape.rank);
    }
    Shape os;
    for (int i = 0; i < R; ++i) os.push(1);
    for (const DVal* x : ops) {
      if (particle && x->particle && x->shape.rank != R)
        unsupported(n, "broadcasting a per-particle tensor of rank " + std::to_string(x->shape.rank) + " to rank " +
                           std::to_string(R));
      for (int j = 0; j < x->shape.rank; ++j) {
        const int i = j + R - x->shape.rank;
        const I64 d = x->shape[j];
        if (particle && i == 1) {
          if (!x->particle && d != 1)
            unsupported(n, "a per-jet operand with " + std::to_string(d) + " entries along the particle axis");
          os[1] = -1;
          continue;
        }
        if (d == 1) continue;
        if (os[i] != 1 && os[i] != d)
          bad_shape(n, "operand shapes " + ops[0]->shape.str() + " and " + x->shape.str() + " do not broadcast");
        os[i] = d;
      }
    }
    if (particle) os[0] = seg_.jets;
    DVal r;
    r.particle = particle;
    r.type = type;
    r.shape = os;
    const Shape st = storage(r);
    Elementwise e;
    e.rank = st.rank;
    for (int i = 0; i < st.rank; ++i) e.shape[i] = st[i];
    e.numel = static_cast<I64>(st.numel());
    e.n_in = static_cast<int>(ops.size());
    e.op = op;
    e.code = code;
    e.alpha = alpha;
    e.beta = beta;
    e.jet_of_row = seg_.jet_of_row;
    for (std::size_t k = 0; k < ops.size(); ++k) {
      const DVal& x = *ops[k];
      EwOperand& o = e.in[k];
      o.data = x.data;
      const Shape xs = storage(x);
      I64 cs[nn::kMaxRank] = {};  // contiguous strides of x's storage
      I64 s = 1;
      for (int j = xs.rank - 1; j >= 0; --j) {
        cs[j] = s;
        s *= xs[j];
      }
      const int r_log = x.shape.rank;
      if (!particle) {
        for (int i = 0; i < R; ++i) {
          const int j = i - (R - r_log);
          o.stride[i] = j >= 0 && x.shape[j] != 1 ? cs[j] : 0;
        }
        continue;
      }
      // per-particle output: storage dim 0 is the row, dims 1.. are logical dims 2..
      if (x.particle) {
        for (int i = 0; i < st.rank; ++i) o.stride[i] = i == 0 || xs[i] != 1 ? cs[i] : 0;
        continue;
      }
      for (int i = 1; i < st.rank; ++i) {
        const int j = i + 1 - (R - r_log);
        o.stride[i] = j >= 0 && x.shape[j] != 1 ? cs[j] : 0;
      }
      if (r_log == R && x.shape[0] != 1) {
        if (x.shape[0] != seg_.jets)
          bad_shape(n, "a per-jet operand of shape " + x.shape.str() + " for " + std::to_string(seg_.jets) + " jets");
        o.rows = RowMode::ByJet;
        o.stride[0] = cs[0];
      } else {
        o.stride[0] = 0;
      }
    }
    float* d = alloc(st);
    e.out = d;
    if (e.numel > 0) be_.elementwise(e);
    r.data = d;
    r.ready = true;
    return r;
  }

  std::vector<const DVal*> inputs(const Node& n) {
    std::vector<const DVal*> r;
    for (int id : n.in)
      if (id >= 0) r.push_back(&operand(id));
    return r;
  }

  void node(std::size_t index, const Node& n) {
    if (!device_op(n.op)) unsupported(n, "this op");
    if ((n.op == Op::Unary || n.op == Op::Dense) && n.act > Act::Round) unsupported(n, "this activation");
    switch (n.op) {
      case Op::Dense: return dense(index, n);
      case Op::Unary: {
        const auto ops = inputs(n);
        set(n, elementwise(n, {ops[0]}, EwOp::Unary, static_cast<int>(n.act), n.alpha, n.beta, ops[0]->type));
        return;
      }
      case Op::Binary: {
        const auto ops = inputs(n);
        set(n, elementwise(n, ops, EwOp::Binary, static_cast<int>(n.bin), 0, 0, ops[0]->type));
        return;
      }
      case Op::Variadic: {
        const auto ops = inputs(n);
        DVal acc = *ops[0];
        if (ops.size() == 1) acc = elementwise(n, {ops[0]}, EwOp::Copy, 0, 0, 0, ops[0]->type);
        for (std::size_t k = 1; k < ops.size(); ++k)
          acc = elementwise(n, {&acc, ops[k]}, EwOp::Binary, static_cast<int>(n.bin), 0, 0, ops[0]->type);
        if (n.i0 == 1) acc = elementwise(n, {&acc}, EwOp::Scale, 0, static_cast<float>(ops.size()), 0, acc.type);
        set(n, acc);
        return;
      }
      case Op::Compare: {
        set(n, elementwise(n, inputs(n), EwOp::Compare, static_cast<int>(n.cmp), 0, 0, ElementType::Bool));
        return;
      }
      case Op::Logical: {
        set(n, elementwise(n, inputs(n), EwOp::Logical, static_cast<int>(n.logic), 0, 0, ElementType::Bool));
        return;
      }
      case Op::Not: {
        set(n, elementwise(n, inputs(n), EwOp::Not, 0, 0, 0, ElementType::Bool));
        return;
      }
      case Op::Where: {
        const auto ops = inputs(n);
        if (ops.size() != 3) bad_shape(n, "Where needs three inputs");
        set(n, elementwise(n, ops, EwOp::Where, 0, 0, 0, ops[1]->type));
        return;
      }
      case Op::Cast: {
        const DVal& x = operand(n.in[0]);
        DVal r = x;
        if (n.to == ElementType::Bool && x.type != ElementType::Bool)
          r = elementwise(n, {&x}, EwOp::ToBool, 0, 0, 0, ElementType::Bool);
        else if (n.to == ElementType::Int64 && x.type == ElementType::Float32)
          r = elementwise(n, {&x}, EwOp::ToInt, 0, 0, 0, ElementType::Int64);
        r.type = n.to;
        set(n, r);
        return;
      }
      case Op::Identity: {
        set(n, operand(n.in[0]));
        return;
      }
      case Op::Softmax:
      case Op::LogSoftmax: return softmax(n);
      case Op::Concat: return concat(n);
      case Op::Reshape:
      case Op::Flatten:
      case Op::Squeeze:
      case Op::Unsqueeze: return reshape(n);
      case Op::Reduce: return reduce(n);
      case Op::BatchNorm: return batchnorm(index, n);
      case Op::ShapeOf:
      case Op::Size: return shape_of(n);
      default: unsupported(n, "this op");
    }
  }

  void dense(std::size_t index, const Node& n) {
    const DVal& x = operand(n.in[0]);
    const DenseWeights& w = p_.dense[index];
    const int r = x.shape.rank;
    if (r < 1) bad_shape(n, "a scalar input");
    if (x.particle && r < 3) unsupported(n, "a dense layer across the particle axis");
    if (n.i0 == 2 && r != 2) bad_shape(n, "Gemm needs a 2-D input, got " + x.shape.str());
    if (x.shape[r - 1] != w.K)
      bad_shape(n, "input " + x.shape.str() + " has " + std::to_string(x.shape[r - 1]) +
                       " features, the weights take " + std::to_string(w.K));
    DVal o = x;
    o.type = ElementType::Float32;
    o.shape[r - 1] = w.N;
    const Shape si = storage(x);
    const I64 M = w.K ? static_cast<I64>(si.numel()) / w.K : static_cast<I64>(si.numel());
    float* d = alloc(storage(o));
    if (M > 0 && w.N > 0) be_.dense(x.data, M, w, d);
    o.data = d;
    set(n, o);
  }

  void softmax(const Node& n) {
    const DVal& x = operand(n.in[0]);
    const int r = std::max(x.shape.rank, 1);
    const I64 axis = norm_axis(n.axis, r, n);
    if (x.particle && axis < 2) unsupported(n, "a softmax over the jets or particles of a per-particle tensor");
    if (jagged_ && !x.particle && axis == 0) unsupported(n, "a softmax over the jets");
    const Shape st = storage(x);
    const int sa = static_cast<int>(axis) - (x.particle ? 1 : 0);
    I64 outer = 1, len = 1, inner = 1;
    for (int i = 0; i < st.rank; ++i) {
      if (i < sa) outer *= st[i];
      else if (i == sa || n.i0) len *= st[i];
      else inner *= st[i];
    }
    DVal o = x;
    float* d = alloc(st);
    if (outer * len * inner > 0) be_.softmax(x.data, d, outer, len, inner, n.op == Op::LogSoftmax);
    o.data = d;
    set(n, o);
  }

  void concat(const Node& n) {
    const auto ops = inputs(n);
    const DVal& f = *ops[0];
    const int r = f.shape.rank;
    const I64 axis = norm_axis(n.axis, r, n);
    for (const DVal* x : ops) {
      if (x->particle != f.particle) unsupported(n, "concatenating per-jet and per-particle tensors");
      if (x->shape.rank != r) bad_shape(n, "inputs of different ranks");
      for (int i = 0; i < r; ++i)
        if (i != axis && x->shape[i] != f.shape[i])
          bad_shape(n, "input shapes " + f.shape.str() + " and " + x->shape.str() + " differ");
    }
    if (f.particle && axis < 2) unsupported(n, "a concatenation along the jet or particle axis");
    if (jagged_ && axis == 0) unsupported(n, "a concatenation along the jet axis");
    DVal o = f;
    o.shape[static_cast<int>(axis)] = 0;
    for (const DVal* x : ops) o.shape[static_cast<int>(axis)] += x->shape[static_cast<int>(axis)];
    const Shape so = storage(o);
    const int sa = static_cast<int>(axis) - (f.particle ? 1 : 0);
    I64 outer = 1, out_chunk = 1;
    for (int i = 0; i < so.rank; ++i) (i < sa ? outer : out_chunk) *= so[i];
    float* d = alloc(so);
    I64 at = 0;
    for (const DVal* x : ops) {
      const Shape sx = storage(*x);
      I64 chunk = 1;
      for (int i = sa; i < sx.rank; ++i) chunk *= sx[i];
      if (outer * chunk > 0) be_.copy2d(x->data, d + at, outer, chunk, chunk, out_chunk);
      at += chunk;
    }
    o.data = d;
    set(n, o);
  }

  void reshape(const Node& n) {
    const DVal& x = operand(n.in[0]);
    const int r = x.shape.rank;
    Shape os;
    if (n.op == Op::Reshape) {
      if (x.particle) unsupported(n, "reshaping a per-particle tensor");
      const auto want = ints(host(n, 1));
      I64 known = 1;
      int infer = -1;
      for (std::size_t i = 0; i < want.size(); ++i) {
        I64 d = want[i];
        if (d == 0 && !n.i0) {
          if (static_cast<int>(i) >= r) bad_shape(n, "a 0 in the shape beyond the input's rank");
          d = x.shape[static_cast<int>(i)];
        }
        if (d == -1) {
          if (infer >= 0) bad_shape(n, "two -1 in the target shape");
          infer = static_cast<int>(i);
          os.push(1);
          continue;
        }
        if (d < 0) bad_shape(n, "a negative dimension in the target shape");
        os.push(d);
        known *= d;
      }
      const auto total = static_cast<I64>(x.shape.numel());
      if (infer >= 0) {
        if (known == 0 || total % known) bad_shape(n, "cannot reshape " + x.shape.str());
        os[infer] = total / known;
      }
      if (static_cast<I64>(os.numel()) != total) bad_shape(n, "cannot reshape " + x.shape.str() + " to " + os.str());
      if (jagged_ && (os.rank == 0 || os[0] != seg_.jets)) unsupported(n, "a reshape that mixes jets");
    } else if (n.op == Op::Flatten) {
      if (x.particle) unsupported(n, "flattening a per-particle tensor");
      const I64 axis = n.axis < 0 ? n.axis + r : n.axis;
      if (axis < 0 || axis > r) bad_shape(n, "axis out of range");
      I64 a = 1, b = 1;
      for (int i = 0; i < r; ++i) (i < axis ? a : b) *= x.shape[i];
      if (jagged_ && axis == 0) unsupported(n, "a flatten that mixes jets");
      os.push(a);
      os.push(b);
    } else {
      std::vector<I64> axes = n.has_v0 ? n.v0 : n.in.size() > 1 && n.in[1] >= 0 ? ints(host(n, 1)) : std::vector<I64>{};
      if (n.op == Op::Squeeze) {
        bool drop[nn::kMaxRank] = {};
        if (axes.empty()) {
          for (int i = x.particle ? 2 : 0; i < r; ++i) drop[i] = x.shape[i] == 1;
        } else {
          for (I64 a : axes) {
            const I64 i = norm_axis(a, r, n);
            if (x.particle && i < 2) unsupported(n, "squeezing the jet or particle axis");
            if (x.shape[static_cast<int>(i)] != 1)
              bad_shape(n, "cannot squeeze axis " + std::to_string(a) + " of " + x.shape.str());
            drop[i] = true;
          }
        }
        if (jagged_ && !x.particle && drop[0]) unsupported(n, "squeezing the jet axis");
        for (int i = 0; i < r; ++i)
          if (!drop[i]) os.push(x.shape[i]);
      } else {
        const int ro = r + static_cast<int>(axes.size());
        bool add[nn::kMaxRank] = {};
        for (I64 a : axes) {
          const I64 i = norm_axis(a, ro, n);
          if (add[i]) bad_shape(n, "repeated axis");
          if (x.particle && i < 2) unsupported(n, "a new axis before the particle axis of a per-particle tensor");
          if (jagged_ && i == 0) unsupported(n, "a new axis before the jet axis");
          add[i] = true;
        }
        int k = 0;
        for (int i = 0; i < ro; ++i) os.push(add[i] ? 1 : x.shape[k++]);
      }
    }
    DVal o = x;
    o.shape = os;
    set(n, o);
  }

  void reduce(const Node& n) {
    const DVal& x = operand(n.in[0]);
    const int r = x.shape.rank;
    std::vector<I64> axes = n.has_v0 ? n.v0 : n.in.size() > 1 && n.in[1] >= 0 ? ints(host(n, 1)) : std::vector<I64>{};
    bool red_axes[nn::kMaxRank] = {};
    if (axes.empty()) {
      if (n.i1) {  // noop_with_empty_axes
        set(n, x);
        return;
      }
      for (int i = 0; i < r; ++i) red_axes[i] = true;
    } else {
      for (I64 a : axes) red_axes[norm_axis(a, r, n)] = true;
    }
    if (n.reduce == ReduceOp::Prod && x.particle && red_axes[1]) unsupported(n, "ReduceProd over particles");
    Shape os;
    for (int i = 0; i < r; ++i) {
      if (!red_axes[i]) os.push(i == 1 && x.particle ? -1 : x.shape[i]);
      else if (n.i0) os.push(1);
    }
    DVal o;
    o.type = x.type;
    o.shape = os;
    if (x.particle && red_axes[0]) unsupported(n, "a reduction over the jets");
    if (!x.particle && jagged_ && red_axes[0]) unsupported(n, "a reduction over the jets");
    if (x.particle && red_axes[1]) {
      for (int i = 2; i < r; ++i)
        if (red_axes[i]) unsupported(n, "a reduction over the particles and other axes at once");
      o.particle = false;
      o.shape[0] = seg_.jets;
      I64 inner = 1;
      for (int i = 2; i < r; ++i) inner *= x.shape[i];
      float* d = alloc(o.shape);
      if (seg_.jets * inner > 0) be_.reduce(x.data, d, seg_.offsets, seg_.jets, 0, inner, static_cast<int>(n.reduce));
      o.data = d;
      o.ready = true;
      set(n, o);
      return;
    }
    o.particle = x.particle;
    // the reduced axes must form one run (apart from size-1 axes): [outer, len, inner]
    const Shape st = storage(x);
    const int shift = x.particle ? 1 : 0;
    int first = -1, last = -1;
    for (int i = 0; i < r; ++i)
      if (red_axes[i]) {
        if (first < 0) first = i;
        last = i;
      }
    for (int i = first; i <= last; ++i)
      if (!red_axes[i] && x.shape[i] != 1) unsupported(n, "a reduction over axes that are not adjacent");
    I64 outer = 1, len = 1, inner = 1;
    for (int i = 0; i < st.rank; ++i) {
      const int li = i + shift;
      (li < first ? outer : li > last ? inner : len) *= st[i];
    }
    float* d = alloc(storage(o));
    if (outer * inner > 0) be_.reduce(x.data, d, nullptr, outer, len, inner, static_cast<int>(n.reduce));
    o.data = d;
    set(n, o);
  }

  void batchnorm(std::size_t index, const Node& n) {
    const DVal& x = operand(n.in[0]);
    if (x.particle) unsupported(n, "batch normalisation of a per-particle tensor (channel axis = particle axis)");
    const int r = x.shape.rank;
    const auto C = static_cast<I64>(n.f0.size());
    if (r < 2 || x.shape[1] != C)
      bad_shape(n, "input " + x.shape.str() + " does not have " + std::to_string(C) + " channels");
    Elementwise e;
    e.rank = r;
    I64 inner = 1;
    for (int i = r - 1; i >= 0; --i) {
      e.shape[i] = x.shape[i];
      e.in[0].stride[i] = inner;
      inner *= x.shape[i];
    }
    e.numel = inner;
    e.n_in = 3;
    e.op = EwOp::MulAdd;
    e.in[0].data = x.data;
    e.in[1].data = p_.batchnorm[index].first;
    e.in[2].data = p_.batchnorm[index].second;
    e.in[1].stride[1] = e.in[2].stride[1] = 1;
    DVal o = x;
    o.type = ElementType::Float32;
    float* d = alloc(x.shape);
    e.out = d;
    if (e.numel > 0) be_.elementwise(e);
    o.data = d;
    set(n, o);
  }

  void shape_of(const Node& n) {
    const auto id = static_cast<std::size_t>(n.in[0]);
    Shape s;
    if (g_.constants[id]) s = g_.constants[id]->shape;
    else if (p_.host_value[id]) s = ws_->values[id].shape;
    else {
      const DVal& x = operand(n.in[0]);
      if (x.particle) unsupported(n, "the shape of a per-particle tensor (it differs between jets)");
      s = x.shape;
    }
    Value& o = ws_->values[static_cast<std::size_t>(n.out[0])];
    if (n.op == Op::Size) {
      *static_cast<I64*>(o.alloc(ElementType::Int64, Shape{})) = static_cast<I64>(s.numel());
      return;
    }
    const I64 rank = s.rank;
    I64 b = n.i0 < 0 ? n.i0 + rank : n.i0, e = n.i1 < 0 ? n.i1 + rank : n.i1;
    b = std::clamp<I64>(b, 0, rank);
    e = std::clamp<I64>(e, 0, rank);
    Shape os;
    os.push(std::max<I64>(0, e - b));
    I64* d = static_cast<I64*>(o.alloc(ElementType::Int64, os));
    for (I64 i = b; i < e; ++i) d[i - b] = s[static_cast<int>(i)];
  }
};

void check_shape(const TensorInfo& t, const std::vector<I64>& shape, std::map<std::string, I64>& dims) {
  if (!t.has_shape) return;
  bool ok = shape.size() == t.shape.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i) {
    if (shape[i] < 0) ok = false;
    else if (t.shape[i] >= 0) ok = shape[i] == t.shape[i];
    else if (!t.dim_names[i].empty()) {
      auto [it, fresh] = dims.emplace(t.dim_names[i], shape[i]);
      ok = fresh || it->second == shape[i];
    }
  }
  if (!ok) {
    std::string got = "(", want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) got += (i ? ", " : "") + std::to_string(shape[i]);
    for (std::size_t i = 0; i < t.shape.size(); ++i)
      want += (i ? ", " : "") + (t.shape[i] >= 0          ? std::to_string(t.shape[i])
                                 : t.dim_names[i].empty() ? "?"
                                                          : t.dim_names[i]);
    throw InputError("input '" + t.name + "' has shape " + got + "); the model expects " + want + ")");
  }
}

/// Host-side element type conversion of n values to float.
std::vector<float> to_floats(const void* data, ElementType t, std::size_t n) {
  std::vector<float> f(std::max<std::size_t>(n, 1), 0.0f);
  for (std::size_t i = 0; i < n; ++i)
    f[i] = t == ElementType::Float32 ? static_cast<const float*>(data)[i]
           : t == ElementType::Int64 ? static_cast<float>(static_cast<const I64*>(data)[i])
                                     : static_cast<float>(static_cast<const unsigned char*>(data)[i]);
  return f;
}

void download(Exec& ex, const Graph& g, std::vector<OutputTensor>& outputs) {
  outputs.resize(g.outputs.size());
  std::vector<std::vector<float>> host(g.outputs.size());
  std::vector<const DVal*> vals;
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const DVal& v = ex.output(k);
    if (v.particle)
      throw InputError("output '" + g.outputs[k].name +
                       "' has a particle axis; jagged evaluation gives one row per jet");
    vals.push_back(&v);
    host[k].resize(v.shape.numel());
    if (!host[k].empty()) ex.backend().to_host(host[k].data(), v.data, host[k].size() * sizeof(float));
  }
  ex.backend().finish();
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const DVal& v = *vals[k];
    OutputTensor& o = outputs[k];
    o.name = g.outputs[k].name;
    o.type = v.type;
    o.shape.assign(v.shape.d, v.shape.d + v.shape.rank);
    const std::size_t n = host[k].size();
    o.bytes.resize(n * element_size(v.type));
    if (v.type == ElementType::Float32) {
      if (n) std::memcpy(o.bytes.data(), host[k].data(), n * 4);
    } else if (v.type == ElementType::Int64) {
      for (std::size_t i = 0; i < n; ++i) {
        const I64 x = static_cast<I64>(host[k][i]);
        std::memcpy(o.bytes.data() + 8 * i, &x, 8);
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) o.bytes[i] = host[k][i] != 0.0f;
    }
  }
}

/// Binds dense inputs (by name or position) and runs the graph.
void run_dense(Exec& ex, const Graph& g, const std::vector<InputTensor>& inputs, bool on_backend) {
  const std::vector<const InputTensor*> ordered = order_inputs(g, inputs);
  std::map<std::string, I64> dims;
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    const InputTensor& x = *ordered[i];
    const TensorInfo& t = g.inputs[i];
    if (x.type != t.type)
      throw InputError("input '" + t.name + "' must be " + element_type_name(t.type) + ", got " +
                       element_type_name(x.type));
    if (x.shape.size() > static_cast<std::size_t>(nn::kMaxRank))
      throw InputError("input '" + t.name + "' has rank above 8");
    check_shape(t, x.shape, dims);
    DVal d;
    d.type = x.type;
    for (I64 s : x.shape) d.shape.push(s);
    const std::size_t n = d.shape.numel();
    if (!x.data && n) throw InputError("input '" + t.name + "' has no data");
    if (on_backend) {
      if (x.type != ElementType::Float32) throw InputError("device input '" + t.name + "' must be float32");
      d.data = static_cast<const float*>(x.data);
    } else {
      const auto f = to_floats(x.data, x.type, n);
      float* p = static_cast<float*>(ex.backend().scratch(f.size() * sizeof(float)));
      ex.backend().to_backend(p, f.data(), n * sizeof(float));
      d.data = p;
    }
    d.ready = true;
    ex.bind(i, d);
  }
  ex.run();
}

}  // namespace

std::unique_ptr<Backend> make_host_backend() { return std::make_unique<HostBackend>(); }

std::shared_ptr<const DevicePlan> make_plan(std::shared_ptr<const Graph> graph, Backend& backend) {
  auto p = std::make_shared<DevicePlan>();
  const Graph& g = *graph;
  p->graph = graph;
  const std::size_t nv = g.meta.size();
  p->host_value.assign(nv, 0);
  for (std::size_t i = 0; i < nv; ++i) p->host_value[i] = g.meta[i].is_constant ? 1 : 0;
  for (const Node& n : g.nodes) {
    if (!n.guards.empty())
      throw DeviceError(g.source + ": " + node_label(n) +
                        ": a node inside an If branch is not supported on CUDA yet (the If's condition is only known "
                        "at run time)");
    bool host = n.op == Op::ShapeOf || n.op == Op::Size;
    if (!host) {
      host = true;
      for (int id : n.in)
        if (id >= 0 && !p->host_value[static_cast<std::size_t>(id)]) host = false;
    }
    for (int id : n.out)
      if (id >= 0) p->host_value[static_cast<std::size_t>(id)] = host;
    if (!host && !device_op(n.op))
      throw DeviceError(g.source + ": " + node_label(n) +
                        ": this op is not supported on CUDA yet (the CUDA executor runs dense layers, elementwise "
                        "ops, Softmax/LogSoftmax, Concat, reshapes, reductions and BatchNormalization)");
  }
  p->dense.resize(g.nodes.size());
  p->batchnorm.resize(g.nodes.size());
  p->constant.assign(nv, nullptr);
  auto upload = [&](const float* f, std::size_t n) {
    auto s = backend.persistent(f, std::max<std::size_t>(n, 1) * sizeof(float));
    p->storage.push_back(s);
    return static_cast<const float*>(s.get());
  };
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.out.empty() || n.out[0] < 0 || p->host_value[static_cast<std::size_t>(n.out[0])]) continue;
    if (n.op == Op::Dense) {
      const PackedDense& d = *n.dense;
      DenseWeights w;
      w.K = d.K;
      w.N = d.N;
      w.ldw = d.ldb;
      w.act = static_cast<int>(n.act);
      w.alpha = n.alpha;
      w.beta = n.beta;
      w.w = upload(d.w.data(), d.w.size());
      w.bias = upload(d.bias.data(), static_cast<std::size_t>(d.N));
      p->dense[i] = w;
      continue;
    }
    if (n.op == Op::BatchNorm) {
      p->batchnorm[i] = {upload(n.f0.data(), n.f0.size()), upload(n.f1.data(), n.f1.size())};
      continue;
    }
    for (int id : n.in) {
      if (id < 0 || !g.constants[static_cast<std::size_t>(id)] || p->constant[static_cast<std::size_t>(id)]) continue;
      const auto f = as_floats(*g.constants[static_cast<std::size_t>(id)]);
      p->constant[static_cast<std::size_t>(id)] = upload(f.data(), f.size());
    }
  }
  return p;
}

void execute(const DevicePlan& plan, Backend& backend, const std::vector<InputTensor>& inputs, bool inputs_on_backend,
             std::vector<OutputTensor>& outputs) {
  Exec ex(plan, backend, false, Segments{});
  run_dense(ex, *plan.graph, inputs, inputs_on_backend);
  download(ex, *plan.graph, outputs);
}

void execute_on_backend(const DevicePlan& plan, Backend& backend, const std::vector<InputTensor>& inputs,
                        bool inputs_on_backend, std::vector<BackendOutput>& outputs) {
  const Graph& g = *plan.graph;
  Exec ex(plan, backend, false, Segments{});
  run_dense(ex, g, inputs, inputs_on_backend);
  outputs.resize(g.outputs.size());
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const DVal& v = ex.output(k);
    if (v.type != ElementType::Float32)
      throw InputError("output '" + g.outputs[k].name + "' is " + element_type_name(v.type) +
                       "; outputs left on the device must be float32");
    outputs[k].name = g.outputs[k].name;
    outputs[k].shape.assign(v.shape.d, v.shape.d + v.shape.rank);
    outputs[k].data = const_cast<float*>(v.data);
  }
}

void execute_jagged(const DevicePlan& plan, Backend& backend, const JaggedLayout& layout, const JaggedJets& jets,
                    const JaggedOptions& options, std::vector<OutputTensor>& outputs) {
  const Graph& g = *plan.graph;
  using Role = JaggedInputInfo::Role;
  const std::size_t n_inputs = g.inputs.size();
  auto index_of = [&](const std::string& name, const char* what) {
    for (std::size_t i = 0; i < n_inputs; ++i)
      if (g.inputs[i].name == name) return i;
    throw InputError(std::string(what) + " '" + name + "' is not an input of the model");
  };
  std::vector<const JaggedInput*> given(n_inputs, nullptr);
  for (const JaggedInput& ji : jets.particles) {
    const std::size_t i = index_of(ji.name, "per-particle input");
    const JaggedInputInfo& info = layout.inputs[i];
    if (info.role != Role::Particle)
      throw InputError("input '" + ji.name + "' is " +
                       (info.role == Role::Mask ? "the mask (built from the offsets)" : "a per-jet input"));
    if (given[i]) throw InputError("input '" + ji.name + "' is given twice");
    if (ji.features.size() != info.n_features)
      throw InputError("input '" + ji.name + "' takes " + std::to_string(info.n_features) + " value(s) per particle, " +
                       std::to_string(ji.features.size()) + " column(s) were given");
    given[i] = &ji;
  }
  std::vector<const InputTensor*> jet_in(n_inputs, nullptr);
  for (const InputTensor& x : jets.jets) {
    const std::size_t i = index_of(x.name, "per-jet input");
    if (layout.inputs[i].role != Role::Jet)
      throw InputError("input '" + x.name + "' has a particle axis; give it as jagged columns");
    if (jet_in[i]) throw InputError("input '" + x.name + "' is given twice");
    jet_in[i] = &x;
  }
  for (std::size_t i = 0; i < n_inputs; ++i) {
    const Role r = layout.inputs[i].role;
    if ((r == Role::Particle && !given[i]) || (r == Role::Jet && !jet_in[i]))
      throw InputError(std::string(r == Role::Particle ? "per-particle" : "per-jet") + " input '" + g.inputs[i].name +
                       "' is missing");
    if (r != Role::Jet && layout.inputs[i].particle_axis != 1)
      throw DeviceError("input '" + g.inputs[i].name + "' has its particle axis at position " +
                        std::to_string(layout.inputs[i].particle_axis) +
                        "; per-particle inputs other than [batch, particles, ...] are not supported on CUDA yet");
  }
  std::vector<JaggedColumn> columns;
  std::vector<std::size_t> first(n_inputs, 0);
  for (std::size_t i = 0; i < n_inputs; ++i) {
    first[i] = columns.size();
    if (given[i]) columns.insert(columns.end(), given[i]->features.begin(), given[i]->features.end());
  }
  const JaggedView view(jets.n_jets, jets.offsets, jets.offsets_type, columns);
  if (jets.n_jets > 0 || jets.offsets != nullptr) view.validate();
  const auto B = static_cast<I64>(jets.n_jets);
  const I64 min_len = std::max<I64>(1, layout.min_length);
  std::vector<I64> offsets(static_cast<std::size_t>(B) + 1, 0);
  for (I64 j = 0; j < B; ++j)
    offsets[static_cast<std::size_t>(j) + 1] =
        offsets[static_cast<std::size_t>(j)] +
        std::max<I64>(static_cast<I64>(view.count(static_cast<std::size_t>(j))), min_len);
  const I64 rows = offsets.back();
  if (rows >= (I64{1} << 31)) throw InputError("more than 2^31 particles in one call; split the jets");
  std::vector<std::int32_t> jet_of_row(static_cast<std::size_t>(std::max<I64>(rows, 1)), 0);
  for (I64 j = 0; j < B; ++j)
    for (I64 r = offsets[static_cast<std::size_t>(j)]; r < offsets[static_cast<std::size_t>(j) + 1]; ++r)
      jet_of_row[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(j);
  Segments seg;
  seg.jets = B;
  seg.rows = rows;
  auto* off_d = static_cast<I64*>(backend.scratch(offsets.size() * sizeof(I64)));
  backend.to_backend(off_d, offsets.data(), offsets.size() * sizeof(I64));
  auto* jor_d = static_cast<std::int32_t*>(backend.scratch(jet_of_row.size() * sizeof(std::int32_t)));
  backend.to_backend(jor_d, jet_of_row.data(), jet_of_row.size() * sizeof(std::int32_t));
  seg.offsets = off_d;
  seg.jet_of_row = jor_d;

  Exec ex(plan, backend, true, seg);
  for (std::size_t i = 0; i < n_inputs; ++i) {
    const TensorInfo& t = g.inputs[i];
    const JaggedInputInfo& info = layout.inputs[i];
    DVal d;
    d.type = t.type;
    d.ready = true;
    if (info.role == Role::Jet) {
      const InputTensor& x = *jet_in[i];
      if (x.type != t.type)
        throw InputError("input '" + t.name + "' must be " + element_type_name(t.type) + ", got " +
                         element_type_name(x.type));
      bool ok = x.shape.size() == t.shape.size() && !x.shape.empty() && x.shape[0] == B;
      for (std::size_t k = 1; ok && k < t.shape.size(); ++k) ok = x.shape[k] == t.shape[k];
      if (!ok)
        throw InputError("per-jet input '" + t.name + "' does not have the model's shape with " + std::to_string(B) +
                         " jets");
      for (I64 s : x.shape) d.shape.push(s);
      const std::size_t n = d.shape.numel();
      if (!x.data && n) throw InputError("per-jet input '" + t.name + "' has no data");
      const auto f = to_floats(x.data, x.type, n);
      float* p = static_cast<float*>(backend.scratch(f.size() * sizeof(float)));
      backend.to_backend(p, f.data(), n * sizeof(float));
      d.data = p;
      ex.bind(i, d);
      continue;
    }
    d.particle = true;
    d.shape.push(B);
    d.shape.push(-1);
    for (std::size_t k = 2; k < t.shape.size(); ++k) d.shape.push(t.shape[k]);
    const std::size_t F = info.n_features;
    std::vector<float> h(std::max<std::size_t>(static_cast<std::size_t>(rows) * F, 1), 0.0f);
    for (I64 j = 0; j < B; ++j) {
      const auto e = static_cast<std::size_t>(j);
      const std::size_t n = view.count(e), beg = view.begin(e);
      const auto r0 = static_cast<std::size_t>(offsets[e]), r1 = static_cast<std::size_t>(offsets[e + 1]);
      if (info.role == Role::Mask) {
        for (std::size_t r = r0; r < r1; ++r) h[r] = r - r0 < n ? 1.0f : 0.0f;
        continue;
      }
      for (std::size_t f = 0; f < F; ++f) {
        const JaggedColumn& c = view.column(first[i] + f);
        for (std::size_t q = 0; q < r1 - r0; ++q) {
          float x = options.pad_value;
          if (q < n) {
            const std::ptrdiff_t at = static_cast<std::ptrdiff_t>(beg + q) * c.stride;
            x = c.dtype == ValueType::Float32 ? static_cast<const float*>(c.data)[at]
                                              : static_cast<float>(static_cast<const double*>(c.data)[at]);
          }
          h[(r0 + q) * F + f] = x;
        }
      }
    }
    float* p = static_cast<float*>(backend.scratch(h.size() * sizeof(float)));
    backend.to_backend(p, h.data(), static_cast<std::size_t>(rows) * F * sizeof(float));
    d.data = p;
    ex.bind(i, d);
  }
  ex.run();
  download(ex, g, outputs);
}

void check_plan(const DevicePlan& plan) {
  const Graph& g = *plan.graph;
  std::vector<InputTensor> xs;
  for (const TensorInfo& t : g.inputs) {
    if (!t.has_shape || t.shape.empty()) return;
    InputTensor x;
    x.name = t.name;
    x.type = t.type;
    x.shape = t.shape;
    for (std::size_t i = 0; i < x.shape.size(); ++i)
      if (x.shape[i] < 0) {
        if (i > 0) return;  // other symbolic dims: checked at the first call
        x.shape[i] = 2;
      }
    x.data = &x;  // never read by the null backend
    xs.push_back(x);
  }
  NullBackend nb;
  std::vector<OutputTensor> outs;
  try {
    Exec ex(plan, nb, false, Segments{});
    run_dense(ex, g, xs, true);
    for (std::size_t k = 0; k < g.outputs.size(); ++k) (void)ex.output(k);
  } catch (const DeviceError& e) {
    throw DeviceError(g.source + ": " + e.what());
  } catch (const Error&) {
    // shapes that only fit real data are checked at the first call
  }
}

void host_reference_predict(const Model& model, const std::vector<InputTensor>& inputs,
                            std::vector<OutputTensor>& outputs) {
  auto be = make_host_backend();
  const auto plan = make_plan(GraphAccess::of(model), *be);
  check_plan(*plan);
  execute(*plan, *be, inputs, false, outputs);
}

void host_reference_predict_jagged(const Model& model, const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                                   const JaggedOptions& options) {
  auto be = make_host_backend();
  const auto plan = make_plan(GraphAccess::of(model), *be);
  execute_jagged(*plan, *be, model.jagged_layout(options), jets, options, outputs);
}

}  // namespace gpu
}  // namespace nn
}  // namespace hepinfer
