#pragma once
// Internal representation of a loaded ONNX graph and its executor.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <new>
#include <vector>

#include "hepinfer/errors.hpp"
#include "hepinfer/nn.hpp"

namespace hepinfer::nn {

constexpr int kMaxRank = 8;

/// A shape with at most kMaxRank dimensions, held inline (no heap allocation).
struct Shape {
  std::int64_t d[kMaxRank] = {};
  int rank = 0;
  std::int64_t operator[](int i) const noexcept { return d[i]; }
  std::int64_t& operator[](int i) noexcept { return d[i]; }
  std::size_t numel() const noexcept {
    std::size_t n = 1;
    for (int i = 0; i < rank; ++i) n *= static_cast<std::size_t>(d[i]);
    return n;
  }
  void push(std::int64_t v);  // throws OpError beyond kMaxRank
  bool operator==(const Shape& o) const noexcept {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  std::string str() const;
};

/// Raised by an op when its inputs do not fit; the executor adds the node and op names.
struct OpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// An OpError that depends on the values (an index out of range, integer division by zero),
/// not only on the shapes: the load-time dry run on zeros ignores it.
struct DataError : OpError {
  using OpError::OpError;
};

/// `s` with control characters and non-ASCII bytes escaped as \xNN (names from files may be anything).
std::string printable(const std::string& s);

inline std::size_t element_size(ElementType t) noexcept {
  return t == ElementType::Float32 ? 4 : t == ElementType::Int64 ? 8 : 1;
}

/// The largest tensor (in bytes) an op may allocate on this thread. Model loading lowers it
/// while it folds constants and dry-runs the graph (see LoadSizeGuard in
/// formats/load_onnx.cpp), so that a file cannot make load allocate absurd amounts; evaluation
/// only guards against overflow.
inline std::size_t& max_tensor_bytes() noexcept {
  static thread_local std::size_t limit = std::size_t{1} << 40;
  return limit;
}

/// The element count of `s`, after checking that the dims are non-negative and that the
/// tensor fits in max_tensor_bytes() (throws OpError naming the shape otherwise).
inline std::size_t checked_numel(ElementType t, const Shape& s) {
  for (int i = 0; i < s.rank; ++i)
    if (s[i] < 0) throw OpError("negative dimension in shape " + s.str());
  for (int i = 0; i < s.rank; ++i)
    if (s[i] == 0) return 0;
  const std::size_t limit = max_tensor_bytes() / element_size(t);
  std::size_t n = 1;
  for (int i = 0; i < s.rank; ++i) {
    const auto d = static_cast<std::size_t>(s[i]);
    if (n > limit / d) {
      throw OpError("a tensor of shape " + s.str() + " would need more than " +
                    std::to_string(max_tensor_bytes() >> 20) + " MiB");
    }
    n *= d;
  }
  return n;
}

/// Raised by Value::alloc when a buffer would grow past the load budget (below). Model loading
/// catches it: a constant too large to fold stays a node, a dry run stops there.
struct BudgetError : OpError {
  using OpError::OpError;
};

/// Bytes by which Value::alloc may still grow buffers on this thread, in total. Unlimited
/// (SIZE_MAX) except while a model loads: constant folding and the load-time dry run set it
/// from load_budget_bytes() and give bytes back when they free buffers (see passes.cpp and
/// executor.cpp), so that a small file cannot make load hold gigabytes in many tensors each
/// under the per-tensor limit.
inline std::size_t& alloc_budget_left() noexcept {
  static thread_local std::size_t left = static_cast<std::size_t>(-1);
  return left;
}

/// The total memory, in bytes, that loading a model may spend on folded constants and, apart,
/// on its dry run (inputs and live intermediates). 1 GiB; the fuzz harness lowers it.
inline std::size_t& load_budget_bytes() noexcept {
  static thread_local std::size_t budget = std::size_t{1} << 30;
  return budget;
}

/// Sets alloc_budget_left() for a scope and restores it after (an exception included).
class AllocBudgetScope {
 public:
  explicit AllocBudgetScope(std::size_t left) : saved_(alloc_budget_left()) { alloc_budget_left() = left; }
  ~AllocBudgetScope() { alloc_budget_left() = saved_; }
  AllocBudgetScope(const AllocBudgetScope&) = delete;
  AllocBudgetScope& operator=(const AllocBudgetScope&) = delete;

 private:
  std::size_t saved_;
};

/// A tensor during evaluation: type, shape, data pointer (into `buf` or aliasing another value,
/// a graph input or a constant).
struct Value {
  ElementType type = ElementType::Float32;
  Shape shape;
  std::size_t numel = 0;
  const void* data = nullptr;
  std::vector<std::int64_t>* buf = nullptr;  // storage for results (8-byte aligned)

  void* alloc(ElementType t, const Shape& s) {
    checked_numel(t, s);  // before touching memory: no overflow, no absurd size
    type = t;
    shape = s;
    numel = s.numel();
    // 64-byte aligned (no vector load or store splits a cache line) and offset by a multiple of
    // 64 bytes that differs between buffers, so that one node's input and output rows do not
    // sit at the same address modulo 4 KiB (L1 aliasing of loads with stores)
    const std::size_t stagger = reinterpret_cast<std::uintptr_t>(buf) / sizeof(*buf) % 32 * 64;
    const std::size_t words = (numel * element_size(t) + 7) / 8 + 1 + (64 + stagger) / 8;
    if (buf->size() < words) {
      std::size_t& left = alloc_budget_left();
      if (left != static_cast<std::size_t>(-1)) {  // loading: count the growth against the budget
        const std::size_t grow = (words - buf->size()) * sizeof(std::int64_t);
        if (grow > left)
          throw BudgetError("a tensor of shape " + s.str() + " would take the memory used while loading past " +
                            std::to_string(load_budget_bytes() >> 20) + " MiB");
        left -= grow;
      }
      buf->resize(words);
    }
    const std::uintptr_t p = (reinterpret_cast<std::uintptr_t>(buf->data()) + 63) / 64 * 64 + stagger;
    data = reinterpret_cast<const void*>(p);
    return reinterpret_cast<void*>(p);
  }
  void alias(const Value& v, const Shape& s) {
    type = v.type;
    shape = s;
    numel = s.numel();
    data = v.data;
  }
  const float* f() const noexcept { return static_cast<const float*>(data); }
  const std::int64_t* i64() const noexcept { return static_cast<const std::int64_t*>(data); }
  const unsigned char* b() const noexcept { return static_cast<const unsigned char*>(data); }
};

enum class Op : std::uint16_t {
  Dense,  // fused MatMul/Gemm with constant packed weights + bias + activation
  Gemm,
  MatMul,
  Conv,
  Binary,
  Variadic,  // Max, Min, Sum, Mean
  Compare,
  Logical,  // And, Or, Xor
  Not,
  Where,
  Unary,
  Softmax,
  LogSoftmax,
  Concat,
  Reshape,
  Flatten,
  Squeeze,
  Unsqueeze,
  Transpose,
  Gather,
  GatherElements,
  GatherND,
  Slice,
  Expand,
  Tile,
  ShapeOf,
  Size,
  ConstantOfShape,
  Range,
  Cast,
  Identity,
  Reduce,
  BatchNorm,
  LayerNorm,
  TopK,
  Split,
  Kernel,  // an op with no Op of its own: run by Node::run (see op_import.hpp)
};

enum class Act : std::uint8_t {
  None,
  Relu,
  LeakyRelu,
  Elu,
  Selu,
  Gelu,
  GeluTanh,
  Sigmoid,
  Tanh,
  Exp,
  Log,
  Sqrt,
  Abs,
  Neg,
  Erf,
  Reciprocal,
  Floor,
  Ceil,
  Softplus,
  Clip,
  HardSigmoid,
  Sin,
  Cos,
  Sign,
  Silu,  // x * sigmoid(x): Dense + Sigmoid + Mul as torch exports SiLU (fuse pass)
  Round,
  // ops_misc.cpp's element-wise ops (not on the CUDA path, see cuda_plan.cpp)
  Mish,
  HardSwish,
  Softsign,
  Celu,
  ThresholdedRelu,
  Shrink,
  Tan,
  Asin,
  Acos,
  Atan,
  Sinh,
  Cosh,
  Asinh,
  Acosh,
  Atanh
};
enum class BinOp : std::uint8_t { Add, Sub, Mul, Div, Pow, Max, Min };  // Mod: its own kernel (ops_misc)
enum class CmpOp : std::uint8_t { Equal, Less, Greater, LessOrEqual, GreaterOrEqual };
enum class LogicOp : std::uint8_t { And, Or, Xor };
enum class ReduceOp : std::uint8_t { Sum, Mean, Max, Min, Prod, L2, SumSquare };

/// Allocates on 64-byte boundaries: packed weight panels start on a cache line, so every
/// 16-float row of a panel is one line and no vector load of it straddles two (measured: 10% on
/// the dense tiles, 30% on the sparse-row kernel against the 16-byte alignment of operator new).
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() noexcept = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const noexcept {
    return false;
  }
};
using AlignedFloats = std::vector<float, CacheAligned<float>>;

/// Weights of a dense layer packed as [K, ldb] row-major (ldb = N rounded up to 8, zero padded).
/// `panels` holds the same weights as the GEMM kernels read them (see pack_panels), filled by
/// pack_dense() once the biases are final; `bias` then has one entry per panel column.
struct PackedDense {
  std::int64_t K = 0, N = 0, ldb = 0;
  std::vector<float> w;     // K * ldb
  std::vector<float> bias;  // ldb (zeros where no bias); panel-padded after pack_dense()
  AlignedFloats panels;     // packed_panels_size(K, N), 64-byte aligned
  std::vector<float> cols;  // N <= kDotColumns: the N columns, each K contiguous floats
  bool finite = false;      // every weight finite: zero inputs may be skipped (gemm_packed)
};
/// Dense layers with at most this many outputs run as dot products (gemm_columns).
constexpr std::int64_t kDotColumns = 4;

struct Node;
struct Workspace;
/// Evaluates one node on the workspace values (throws OpError).
using RunFn = void (*)(const Node&, Workspace&);

/// A condition under which a node runs: the bool scalar value `cond` equals `when`. The nodes of
/// an ONNX If's branches are inlined into the graph (formats/load_onnx.cpp) with one guard per
/// enclosing If; the executor skips a node whose guards are not all met.
struct Guard {
  int cond = -1;
  bool when = true;
  bool operator==(const Guard& o) const noexcept { return cond == o.cond && when == o.when; }
};

struct Node {
  Op op = Op::Identity;
  RunFn run = nullptr;  // the kernel, set by the op's import handler (see op_import.hpp)
  std::string name, op_type;
  std::vector<int> in, out;  // value ids, -1 = absent optional input/output
  // parsed attributes (meaning depends on op)
  Act act = Act::None;
  float alpha = 0.0f, beta = 0.0f;
  BinOp bin = BinOp::Add;
  CmpOp cmp = CmpOp::Equal;
  LogicOp logic = LogicOp::And;
  ReduceOp reduce = ReduceOp::Sum;
  std::int64_t axis = 0;
  std::int64_t i0 = 0, i1 = 0, i2 = 0, i3 = 0;
  std::vector<std::int64_t> v0, v1, v2, v3;
  bool has_v0 = false;
  ElementType to = ElementType::Float32;
  std::shared_ptr<const PackedDense> dense;
  std::shared_ptr<const Value> constant;  // ConstantOfShape value; BatchNorm per-channel (a, b)
  std::vector<float> f0, f1;
  std::vector<Guard> guards;  // empty: always runs
};

/// Per-thread scratch memory: one Value per graph value and buffers shared by values whose
/// lifetimes do not overlap.
struct Workspace {
  std::vector<Value> values;
  std::vector<std::vector<std::int64_t>> slots;
  std::vector<float> scratch;  // temporaries inside ops (im2col, sort keys)
  std::vector<std::int64_t> scratch_i;
};

struct ValueMeta {
  std::string name;
  bool is_constant = false;
  int input_index = -1;  // graph input position
  int slot = -1;         // workspace slot for computed values
};

class Graph {
 public:
  std::string source;
  std::string producer;
  std::int64_t opset = 0;
  std::vector<TensorInfo> inputs, outputs;
  std::vector<int> input_ids, output_ids;
  std::vector<ValueMeta> meta;
  std::vector<std::shared_ptr<Value>> constants;  // by value id (null for non-constants)
  std::vector<std::shared_ptr<std::vector<std::int64_t>>> constant_storage;
  std::vector<Node> nodes;
  int n_slots = 0;
  std::vector<std::vector<int>> slots_free_after;  // by node: slots whose values are dead after it
  bool separable = false;

  std::unique_ptr<Workspace> make_workspace() const;
  std::unique_ptr<Workspace> acquire() const;
  void release(std::unique_ptr<Workspace> ws) const;
  /// Runs every node; graph inputs must already be bound in ws.values[input_ids[i]].
  void run(Workspace& ws) const;
  /// As run, adding each node's wall time in seconds to seconds[i] (node i; nodes an If skips
  /// add nothing and are not marked in ran[i]).
  void run_timed(Workspace& ws, std::vector<double>& seconds, std::vector<char>& ran) const;

 private:
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<Workspace>> pool_;
};

/// The inputs in the graph's order: matched by name where given, else by position. Throws
/// InputError for a wrong count, an unknown name (listing the model's) or an input given twice.
std::vector<const InputTensor*> order_inputs(const Graph& g, const std::vector<InputTensor>& inputs);

/// Evaluates one node: calls node.run (executor.cpp). Inputs/outputs are ws.values[node.in/out].
/// Throws OpError.
void run_node(const Node& node, Workspace& ws);
/// Whether every guard of `n` is met (executor.cpp). Throws OpError for a condition that is not
/// a single bool.
bool guards_met(const Node& n, const Workspace& ws);
/// The select that ends an inlined If (ops_control.cpp): in = {cond, then outputs..., else
/// outputs...}; copies the taken branch's outputs into out.
void run_if_select(const Node& node, Workspace& ws);
/// The kernel of a Dense node (ops_linear.cpp), which the fuse pass makes of a Gemm/MatMul.
void run_dense(const Node& node, Workspace& ws);

// ---- kernels (kernels.cpp)
/// C[m, n] = act(sum_k A[m, k] * B[k, n] + bias) for m < M, n < N. Row-major with leading
/// dimensions lda, ldb, ldc. bias_col: per column n (may be null); bias_row: per row m (may be null).
void gemm(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* B, std::size_t ldb,
          float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act, float alpha, float beta);
/// Columns per packed panel of B.
constexpr std::size_t kPanel = 16;
/// Floats needed to pack a [K, N] matrix: ceil(N / kPanel) panels of K x kPanel.
std::size_t packed_panels_size(std::size_t K, std::size_t N) noexcept;
/// Packs B [K, N] (row stride ldb) into panels of kPanel columns, each a contiguous
/// [K][kPanel] block, zero-padded past N.
void pack_panels(std::size_t K, std::size_t N, const float* B, std::size_t ldb, float* dst);
/// gemm() with B already packed by pack_panels; bias_col (may be null) must hold
/// ceil(N / kPanel) * kPanel values. b_finite: every weight is finite, so rows of A with many
/// exact zeros (ReLU outputs) may skip them (same values, fewer FMAs).
void gemm_packed(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* panels,
                 float* C, std::size_t ldc, const float* bias_col, const float* bias_row, Act act, float alpha,
                 float beta, bool b_finite = false);
/// gemm() for a few output columns, each a dot product with cols + j * K (K contiguous floats).
void gemm_columns(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda, const float* cols,
                  float* C, std::size_t ldc, const float* bias_col, Act act, float alpha, float beta);
/// Applies an activation in place.
void activate(float* x, std::size_t n, Act act, float alpha, float beta);
float activate_one(float x, Act act, float alpha, float beta);
bool cpu_has_avx2_fma() noexcept;
/// AVX-512F/VL present and HEPINFER_DISABLE_AVX512 unset.
bool cpu_has_avx512() noexcept;

}  // namespace hepinfer::nn
