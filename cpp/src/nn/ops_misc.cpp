// Miscellaneous ops: Mod, IsNaN/IsInf, PRelu, InstanceNormalization, GroupNormalization, Einsum
// and the element-wise activations that have an Act of their own (Mish, HardSwish, trig...).
// Import handlers and kernels in one file (see op_import.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HEPINFER_MISC_X86 1
#define HEPINFER_MISC_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace hepinfer::nn {
namespace {

// ------------------------------------------------------------------ broadcasting helpers

Shape broadcast2(const Shape& a, const Shape& b) {
  Shape o;
  o.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < o.rank; ++i) {
    const int ia = i - (o.rank - a.rank), ib = i - (o.rank - b.rank);
    const I64 da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da == db || db == 1) o[i] = da;
    else if (da == 1) o[i] = db;
    else throw OpError("shapes " + a.str() + " and " + b.str() + " cannot be broadcast together");
  }
  return o;
}

/// Element strides of `s` seen in the output shape `o` (0 along broadcast dimensions).
void strides_in(const Shape& o, const Shape& s, I64* st) {
  I64 stride = 1;
  for (int i = o.rank - 1; i >= 0; --i) {
    const int is = i - (o.rank - s.rank);
    st[i] = is >= 0 && s[is] != 1 ? stride : 0;
    if (is >= 0) stride *= s[is];
  }
}

/// Calls f(i, ia, ib) for every output element i of the broadcast of a and b (offsets ia, ib).
template <typename F>
void for_each_pair(const Shape& o, const Shape& a, const Shape& b, F&& f) {
  const std::size_t total = o.numel();
  if (total == 0) return;
  I64 sa[kMaxRank] = {}, sb[kMaxRank] = {}, idx[kMaxRank] = {};
  strides_in(o, a, sa);
  strides_in(o, b, sb);
  I64 oa = 0, ob = 0;
  for (std::size_t i = 0; i < total; ++i) {
    f(i, oa, ob);
    for (int d = o.rank - 1; d >= 0; --d) {
      ++idx[d];
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < o[d]) break;
      oa -= sa[d] * o[d];
      ob -= sb[d] * o[d];
      idx[d] = 0;
    }
  }
}

// ------------------------------------------------------------------ Mod
// i0: fmod attribute.
void run_mod(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  const Value& b = in(n, ws, 1);
  if (a.type != b.type) throw OpError(std::string("A is ") + type_name(a.type) + " but B is " + type_name(b.type));
  const Shape os = broadcast2(a.shape, b.shape);
  Value& o = out(n, ws, 0);
  if (a.type == ElementType::Float32) {
    if (!n.i0) throw OpError("fmod must be 1 for float inputs");
    float* d = static_cast<float*>(o.alloc(ElementType::Float32, os));
    const float *pa = a.f(), *pb = b.f();
    for_each_pair(os, a.shape, b.shape, [&](std::size_t i, I64 ia, I64 ib) { d[i] = std::fmod(pa[ia], pb[ib]); });
  } else if (a.type == ElementType::Int64) {
    I64* d = static_cast<I64*>(o.alloc(ElementType::Int64, os));
    const I64 *pa = a.i64(), *pb = b.i64();
    const bool fm = n.i0 != 0;
    for_each_pair(os, a.shape, b.shape, [&](std::size_t i, I64 ia, I64 ib) {
      const I64 x = pa[ia], y = pb[ib];
      if (y == 0) throw DataError("integer modulo by zero");
      if (y == -1) {  // x % -1 is 0, and INT64_MIN % -1 would trap
        d[i] = 0;
        return;
      }
      I64 r = x % y;                                      // sign of x (C fmod)
      if (!fm && r != 0 && ((r < 0) != (y < 0))) r += y;  // sign of y (Python %)
      d[i] = r;
    });
  } else {
    throw OpError("Mod of bool tensors is not supported");
  }
}

void import_mod(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_mod;
  n.i0 = at.i("fmod", 0);
  if (n.i0 != 0 && n.i0 != 1) at.fail("fmod must be 0 or 1, got " + std::to_string(n.i0));
}

// ------------------------------------------------------------------ IsNaN, IsInf
// i0: 0 IsNaN, 1 IsInf; i1 detect_positive, i2 detect_negative.
void run_isnan_isinf(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  require_type(x, ElementType::Float32, "X");
  auto* d = static_cast<unsigned char*>(out(n, ws, 0).alloc(ElementType::Bool, x.shape));
  const float* p = x.f();
  if (n.i0 == 0) {
    for (std::size_t i = 0; i < x.numel; ++i) d[i] = p[i] != p[i];
  } else {
    for (std::size_t i = 0; i < x.numel; ++i) d[i] = std::isinf(p[i]) && (p[i] > 0 ? n.i1 != 0 : n.i2 != 0);
  }
}

void import_isnan(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_isnan_isinf;
  n.i0 = 0;
}

void import_isinf(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_isnan_isinf;
  n.i0 = 1;
  n.i1 = at.i("detect_positive", 1);
  n.i2 = at.i("detect_negative", 1);
}

// ------------------------------------------------------------------ PRelu
void prelu_run_portable(const float* x, float* d, std::size_t n, float a) {
  for (std::size_t j = 0; j < n; ++j) d[j] = x[j] < 0.0f ? a * x[j] : x[j];
}

#ifdef HEPINFER_MISC_X86
// Eight lanes: a * x where x < 0 (an ordered compare: NaN and -0 pass through as they are), the
// same values as the scalar form; GCC leaves that one as a branch per element (~4 ns each).
HEPINFER_MISC_AVX2 void prelu_run_avx2(const float* x, float* d, std::size_t n, float a) {
  const __m256 va = _mm256_set1_ps(a), zero = _mm256_setzero_ps();
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    _mm256_storeu_ps(d + j, _mm256_blendv_ps(v, _mm256_mul_ps(va, v), _mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
  }
  prelu_run_portable(x + j, d + j, n - j, a);
}
#endif

void prelu_run(const float* x, float* d, std::size_t n, float a) {
#ifdef HEPINFER_MISC_X86
  if (cpu_has_avx2_fma()) return prelu_run_avx2(x, d, n, a);
#endif
  prelu_run_portable(x, d, n, a);
}

void run_prelu(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& s = in(n, ws, 1);
  require_type(x, ElementType::Float32, "X");
  require_type(s, ElementType::Float32, "slope");
  bool fits = s.shape.rank <= x.shape.rank;  // unidirectional broadcast: slope to X
  for (int i = 0; fits && i < s.shape.rank; ++i) {
    const I64 ds = s.shape[i], dx = x.shape[i + x.shape.rank - s.shape.rank];
    fits = ds == 1 || ds == dx;
  }
  if (!fits) throw OpError("slope " + s.shape.str() + " does not broadcast to X " + x.shape.str());
  const Shape os = x.shape;
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const float *px = x.f(), *ps = s.f();
  // The slopes as exported (one, one per channel [C, 1, 1], one per feature [F]) vary along one
  // block of consecutive axes of X: X is then [outer, S, inner] with slope[k] for the middle
  // index, a loop the compiler vectorises instead of the per-element index arithmetic below
  // (DeepTau-like CNNs spent half their time there).
  const int off = x.shape.rank - s.shape.rank;
  int lo = x.shape.rank, hi = 0;  // the axes of X where the slope is not broadcast
  for (int i = 0; i < s.shape.rank; ++i)
    if (s.shape[i] != 1) lo = std::min(lo, i + off), hi = std::max(hi, i + off + 1);
  if (lo >= hi) lo = hi = 0;  // one slope for all
  bool block = true;
  for (int i = lo; block && i < hi; ++i) block = s.shape[i - off] == x.shape[i];
  if (block) {
    std::size_t outer = 1, mid = 1, inner = 1;
    for (int i = 0; i < x.shape.rank; ++i) {
      const auto dim = static_cast<std::size_t>(x.shape[i]);
      (i < lo ? outer : i < hi ? mid : inner) *= dim;
    }
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t k = 0; k < mid; ++k) {
        const float a = ps[k];
        prelu_run(px + (o * mid + k) * inner, d + (o * mid + k) * inner, inner, a);
      }
    return;
  }
  for_each_pair(os, x.shape, s.shape, [&](std::size_t i, I64 ix, I64 is) {
    const float v = px[ix];
    d[i] = v < 0.0f ? ps[is] * v : v;
  });
}

void import_prelu(ImportContext& at, Node& n) {
  at.need_inputs(2, 2);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_prelu;
}

// ------------------------------------------------------------------ Instance / Group normalization
// Normalizes x [N, C, ...] over groups of C/G channels (all their spatial positions), then
// scales and shifts per channel. alpha: epsilon; i0: number of groups (0: one per channel,
// InstanceNormalization); i1: 1 when scale/bias hold one value per group (GroupNormalization-18).
void run_group_norm(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const Value& sc = in(n, ws, 1);
  const Value& bi = in(n, ws, 2);
  require_type(x, ElementType::Float32, "X");
  require_type(sc, ElementType::Float32, "scale");
  require_type(bi, ElementType::Float32, "bias");
  const int min_rank = n.i0 ? 2 : 3;  // InstanceNormalization: rank >= 3, as onnxruntime
  if (x.shape.rank < min_rank)
    throw OpError("X must have rank >= " + std::to_string(min_rank) + " (N, C, ...), got " + x.shape.str());
  const auto N = static_cast<std::size_t>(x.shape[0]), C = static_cast<std::size_t>(x.shape[1]);
  const std::size_t G = n.i0 ? static_cast<std::size_t>(n.i0) : C;
  if (n.i0 && (C == 0 || C % G))
    throw OpError("num_groups " + std::to_string(G) + " does not divide the " + std::to_string(C) + " channels");
  const std::size_t want = n.i1 ? G : C;
  const char* per = n.i1 ? "group" : "channel";
  if (sc.numel != want || sc.shape.rank != 1)
    throw OpError("scale " + sc.shape.str() + " must hold one value per " + per + " (" + std::to_string(want) + ")");
  if (bi.numel != want || bi.shape.rank != 1)
    throw OpError("bias " + bi.shape.str() + " must hold one value per " + per + " (" + std::to_string(want) + ")");
  std::size_t sp = 1;
  for (int i = 2; i < x.shape.rank; ++i) sp *= static_cast<std::size_t>(x.shape[i]);
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, x.shape));
  if (G == 0) return;
  const std::size_t cg = C / G, len = cg * sp;
  for (std::size_t b = 0; b < N; ++b)
    for (std::size_t g = 0; g < G; ++g) {
      const float* src = x.f() + (b * C + g * cg) * sp;
      float* dst = d + (b * C + g * cg) * sp;
      double mean = 0.0;
      for (std::size_t i = 0; i < len; ++i) mean += src[i];
      mean = len ? mean / static_cast<double>(len) : 0.0;
      double var = 0.0;
      for (std::size_t i = 0; i < len; ++i) {
        const double t = src[i] - mean;
        var += t * t;
      }
      var = len ? var / static_cast<double>(len) : 0.0;
      const auto inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(n.alpha)));
      const auto m = static_cast<float>(mean);
      for (std::size_t c = 0; c < cg; ++c) {
        const std::size_t k = n.i1 ? g : g * cg + c;
        const float s = sc.f()[k] * inv, t = bi.f()[k];
        for (std::size_t i = 0; i < sp; ++i) dst[c * sp + i] = (src[c * sp + i] - m) * s + t;
      }
    }
}

void import_instance_norm(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_group_norm;
  n.alpha = at.f("epsilon", 1e-5f);
  n.i0 = 0;
  n.i1 = 0;
}

void import_group_norm(ImportContext& at, Node& n) {
  at.need_inputs(3, 3);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_group_norm;
  n.alpha = at.f("epsilon", 1e-5f);
  if (!at.has("num_groups")) at.fail("num_groups is required");
  n.i0 = at.i("num_groups", 0);
  if (n.i0 < 1) at.fail("num_groups must be >= 1, got " + std::to_string(n.i0));
  const I64 stash = at.i("stash_type", 1);
  if (stash != 1) at.fail("stash_type " + std::to_string(stash) + " is not supported (only 1, float32)");
  n.i1 = at.opset() < 21;  // GroupNormalization-18: scale and bias per group
}

// ------------------------------------------------------------------ element-wise activations
struct ActSpec {
  Act act;
  const char* a;  // attribute read into alpha (or null)
  float a_def;
  const char* b;  // attribute read into beta (or null)
  float b_def;
};

const std::map<std::string, ActSpec>& act_ops() {
  static const std::map<std::string, ActSpec> m = {
      {"Mish", {Act::Mish, nullptr, 0, nullptr, 0}},
      {"HardSwish", {Act::HardSwish, nullptr, 0, nullptr, 0}},
      {"Softsign", {Act::Softsign, nullptr, 0, nullptr, 0}},
      {"Celu", {Act::Celu, "alpha", 1.0f, nullptr, 0}},
      {"ThresholdedRelu", {Act::ThresholdedRelu, "alpha", 1.0f, nullptr, 0}},
      {"Shrink", {Act::Shrink, "bias", 0.0f, "lambd", 0.5f}},
      {"Tan", {Act::Tan, nullptr, 0, nullptr, 0}},
      {"Asin", {Act::Asin, nullptr, 0, nullptr, 0}},
      {"Acos", {Act::Acos, nullptr, 0, nullptr, 0}},
      {"Atan", {Act::Atan, nullptr, 0, nullptr, 0}},
      {"Sinh", {Act::Sinh, nullptr, 0, nullptr, 0}},
      {"Cosh", {Act::Cosh, nullptr, 0, nullptr, 0}},
      {"Asinh", {Act::Asinh, nullptr, 0, nullptr, 0}},
      {"Acosh", {Act::Acosh, nullptr, 0, nullptr, 0}},
      {"Atanh", {Act::Atanh, nullptr, 0, nullptr, 0}},
  };
  return m;
}

// An Op::Unary node like Relu or Tanh (so that the fusion pass may fold it into a Dense layer),
// with its own kernel: activate() on float32.
void run_act(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  require_type(x, ElementType::Float32, "input");
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, x.shape));
  if (x.numel) std::memcpy(d, x.data, x.numel * sizeof(float));
  activate(d, x.numel, n.act, n.alpha, n.beta);
}

void import_act(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  const ActSpec& s = act_ops().at(at.op_type());
  n.op = Op::Unary;
  n.run = run_act;
  n.act = s.act;
  if (s.a) n.alpha = at.f(s.a, s.a_def);
  if (s.b) n.beta = at.f(s.b, s.b_def);
  if (s.act == Act::Celu && n.alpha == 0.0f) at.fail("alpha must not be 0");
}

// ------------------------------------------------------------------ Einsum
// The equation is parsed at import into letter codes: v0 holds, for each operand, its labels
// (letters 0..51, ellipsis dims as 52.. counted from the right: 52 is the last ellipsis dim)
// separated by -1, then -2 and the output labels. i0: number of operands.
constexpr I64 kEll = 52;

struct Term {
  std::vector<I64> labels;
};

/// One operand seen through its labels: dims and strides per distinct label (a repeated
/// label, a diagonal, gets the sum of its strides).
struct View {
  std::vector<I64> labels, dims, strides;
};

View make_view(const Value& v, const std::vector<I64>& term, I64 n_ell) {
  // expand the ellipsis to this operand's dims
  std::vector<I64> full;
  for (I64 l : term) {
    if (l == kEll) {
      for (I64 e = n_ell - 1; e >= 0; --e) full.push_back(kEll + e);
    } else {
      full.push_back(l);
    }
  }
  if (static_cast<int>(full.size()) != v.shape.rank) throw OpError("operand rank does not match the equation");
  View w;
  I64 stride = 1;
  std::vector<I64> st(full.size());
  for (int i = v.shape.rank - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = stride;
    stride *= v.shape[i];
  }
  for (std::size_t i = 0; i < full.size(); ++i) {
    const auto it = std::find(w.labels.begin(), w.labels.end(), full[i]);
    const I64 dim = v.shape[static_cast<int>(i)];
    if (it == w.labels.end()) {
      w.labels.push_back(full[i]);
      w.dims.push_back(dim);
      w.strides.push_back(dim == 1 ? 0 : st[i]);
    } else {
      const auto k = static_cast<std::size_t>(it - w.labels.begin());
      if (w.dims[k] != dim)
        throw OpError("a repeated label has dimensions " + std::to_string(w.dims[k]) + " and " + std::to_string(dim));
      w.strides[k] += st[i];
    }
  }
  return w;
}

/// dst[target order] = sum over the labels of `w` not in `target` of src (dims from `dim_of`;
/// labels of target absent from w broadcast).
template <typename T>
void gather_sum(const T* src, const View& w, const std::vector<I64>& target, const std::vector<I64>& dim_of, T* dst) {
  // loop dims: target labels first (output order), then summed labels
  std::vector<I64> dims, st;
  for (I64 l : target) {
    dims.push_back(dim_of[static_cast<std::size_t>(l)]);
    const auto it = std::find(w.labels.begin(), w.labels.end(), l);
    st.push_back(it == w.labels.end() ? 0 : w.strides[static_cast<std::size_t>(it - w.labels.begin())]);
  }
  std::vector<I64> sdims, sst;
  for (std::size_t k = 0; k < w.labels.size(); ++k)
    if (std::find(target.begin(), target.end(), w.labels[k]) == target.end()) {
      sdims.push_back(w.dims[k]);
      sst.push_back(w.strides[k]);
    }
  std::size_t total = 1, inner = 1;
  for (I64 d : dims) total *= static_cast<std::size_t>(d);
  for (I64 d : sdims) inner *= static_cast<std::size_t>(d);
  std::vector<I64> idx(dims.size(), 0), sidx(sdims.size(), 0);
  I64 off = 0;
  for (std::size_t i = 0; i < total; ++i) {
    T acc = T(0);
    if (inner) {
      I64 so = 0;
      std::fill(sidx.begin(), sidx.end(), 0);
      for (std::size_t j = 0; j < inner; ++j) {
        acc += src[off + so];
        for (std::size_t d = sdims.size(); d-- > 0;) {
          ++sidx[d];
          so += sst[d];
          if (sidx[d] < sdims[d]) break;
          so -= sst[d] * sdims[d];
          sidx[d] = 0;
        }
      }
    }
    dst[i] = acc;
    for (std::size_t d = dims.size(); d-- > 0;) {
      ++idx[d];
      off += st[d];
      if (idx[d] < dims[d]) break;
      off -= st[d] * dims[d];
      idx[d] = 0;
    }
  }
}

/// Evaluates the equation on typed operands (T float or int64).
template <typename T>
void einsum_typed(const Node& n, Workspace& ws, ElementType type) {
  const auto n_ops = static_cast<std::size_t>(n.i0);
  std::vector<std::vector<I64>> terms(n_ops);
  std::vector<I64> out_term;
  {
    std::size_t k = 0;
    std::size_t i = 0;
    for (; i < n.v0.size() && n.v0[i] != -2; ++i) {
      if (n.v0[i] == -1) ++k;
      else terms[k].push_back(n.v0[i]);
    }
    for (++i; i < n.v0.size(); ++i) out_term.push_back(n.v0[i]);
  }
  // ellipsis rank and broadcast dims
  I64 n_ell = 0;
  std::vector<const Value*> vals(n_ops);
  std::vector<I64> ell_rank(n_ops, 0);
  for (std::size_t k = 0; k < n_ops; ++k) {
    vals[k] = &in(n, ws, k);
    if (vals[k]->type != type) throw OpError("the operands of Einsum must share one type");
    const bool has_ell = std::find(terms[k].begin(), terms[k].end(), kEll) != terms[k].end();
    const I64 named = static_cast<I64>(terms[k].size()) - has_ell;
    const I64 r = vals[k]->shape.rank - named;
    if (r < 0 || (!has_ell && r != 0))
      throw OpError("operand " + std::to_string(k) + " " + vals[k]->shape.str() +
                    " does not match its term in the equation");
    ell_rank[k] = r;
    n_ell = std::max(n_ell, r);
  }
  std::vector<I64> dim_of(kEll + kMaxRank + 1, -1);
  std::vector<View> views(n_ops);
  for (std::size_t k = 0; k < n_ops; ++k) {
    views[k] = make_view(*vals[k], terms[k], ell_rank[k]);
    for (std::size_t j = 0; j < views[k].labels.size(); ++j) {
      const auto l = static_cast<std::size_t>(views[k].labels[j]);
      const I64 d = views[k].dims[j];
      if (dim_of[l] < 0 || dim_of[l] == d) {
        dim_of[l] = d;
      } else if (l >= kEll && (d == 1 || dim_of[l] == 1)) {  // ellipsis dims broadcast
        dim_of[l] = std::max(dim_of[l], d);
      } else {
        throw OpError("label dimension mismatch: " + std::to_string(dim_of[l]) + " and " + std::to_string(d));
      }
    }
  }
  // output labels (the ellipsis expanded)
  std::vector<I64> out_labels;
  for (I64 l : out_term) {
    if (l == kEll) {
      for (I64 e = n_ell - 1; e >= 0; --e) out_labels.push_back(kEll + e);
    } else {
      if (dim_of[static_cast<std::size_t>(l)] < 0) throw OpError("an output label is not in any input");
      out_labels.push_back(l);
    }
  }
  Shape os;
  for (I64 l : out_labels) os.push(dim_of[static_cast<std::size_t>(l)]);
  Value& o = out(n, ws, 0);
  T* dst = static_cast<T*>(o.alloc(type, os));

  auto uses_later = [&](I64 l, std::size_t after) {
    if (std::find(out_labels.begin(), out_labels.end(), l) != out_labels.end()) return true;
    for (std::size_t k = after; k < n_ops; ++k)
      if (std::find(views[k].labels.begin(), views[k].labels.end(), l) != views[k].labels.end()) return true;
    return false;
  };
  auto numel_of = [&](const std::vector<I64>& ls) {
    std::size_t s = 1;
    for (I64 l : ls) s *= static_cast<std::size_t>(dim_of[static_cast<std::size_t>(l)]);
    return s;
  };
  // the running result: labels and contiguous data (first operand reduced to what is needed)
  std::vector<I64> cur_labels;
  for (I64 l : views[0].labels)
    if (uses_later(l, 1)) cur_labels.push_back(l);
  if (n_ops == 1) {
    gather_sum(static_cast<const T*>(vals[0]->data), views[0], out_labels, dim_of, dst);
    return;
  }
  std::vector<T> cur(numel_of(cur_labels));
  gather_sum(static_cast<const T*>(vals[0]->data), views[0], cur_labels, dim_of, cur.data());
  View cur_view;
  for (std::size_t k = 1; k < n_ops; ++k) {
    const View& w = views[k];
    auto in_cur = [&](I64 l) { return std::find(cur_labels.begin(), cur_labels.end(), l) != cur_labels.end(); };
    auto in_w = [&](I64 l) { return std::find(w.labels.begin(), w.labels.end(), l) != w.labels.end(); };
    // classify: batch (both, kept), M (cur only, kept), N (w only, kept), K (both, summed);
    // labels of w only and not kept are summed while w is gathered
    std::vector<I64> batch, Ml, Nl, Kl;
    for (I64 l : cur_labels) {
      const bool keep = uses_later(l, k + 1);
      if (in_w(l)) (keep ? batch : Kl).push_back(l);
      else Ml.push_back(l);  // only in cur: kept (cur holds only needed labels)
    }
    for (I64 l : w.labels)
      if (!in_cur(l) && uses_later(l, k + 1)) Nl.push_back(l);
    // A = cur as [batch, M, K], B = w as [batch, K, N]
    View cv;
    cv.labels = cur_labels;
    {
      I64 stride = 1;
      cv.dims.resize(cur_labels.size());
      cv.strides.resize(cur_labels.size());
      for (std::size_t j = cur_labels.size(); j-- > 0;) {
        cv.dims[j] = dim_of[static_cast<std::size_t>(cur_labels[j])];
        cv.strides[j] = stride;
        stride *= cv.dims[j];
      }
    }
    std::vector<I64> a_order = batch, b_order = batch;
    a_order.insert(a_order.end(), Ml.begin(), Ml.end());
    a_order.insert(a_order.end(), Kl.begin(), Kl.end());
    b_order.insert(b_order.end(), Kl.begin(), Kl.end());
    b_order.insert(b_order.end(), Nl.begin(), Nl.end());
    const std::size_t nb = numel_of(batch), M = numel_of(Ml), K = numel_of(Kl), N = numel_of(Nl);
    std::vector<T> A(nb * M * K), B(nb * K * N);
    gather_sum(cur.data(), cv, a_order, dim_of, A.data());
    gather_sum(static_cast<const T*>(vals[k]->data), w, b_order, dim_of, B.data());
    std::vector<I64> next_labels = batch;
    next_labels.insert(next_labels.end(), Ml.begin(), Ml.end());
    next_labels.insert(next_labels.end(), Nl.begin(), Nl.end());
    std::vector<T> next(nb * M * N);
    for (std::size_t b = 0; b < nb; ++b) {
      const T* pa = A.data() + b * M * K;
      const T* pb = B.data() + b * K * N;
      T* pc = next.data() + b * M * N;
      if constexpr (std::is_same<T, float>::value) {
        if (M && N && K) gemm(M, N, K, pa, K, pb, N, pc, N, nullptr, nullptr, Act::None, 0.0f, 0.0f);
        else std::fill(pc, pc + M * N, 0.0f);
      } else {
        for (std::size_t i = 0; i < M; ++i)
          for (std::size_t j = 0; j < N; ++j) {
            T s = 0;
            for (std::size_t q = 0; q < K; ++q) s += pa[i * K + q] * pb[q * N + j];
            pc[i * N + j] = s;
          }
      }
    }
    cur = std::move(next);
    cur_labels = std::move(next_labels);
  }
  // permute the result into the output order (every remaining label is an output label)
  View cv;
  cv.labels = cur_labels;
  {
    I64 stride = 1;
    cv.dims.resize(cur_labels.size());
    cv.strides.resize(cur_labels.size());
    for (std::size_t j = cur_labels.size(); j-- > 0;) {
      cv.dims[j] = dim_of[static_cast<std::size_t>(cur_labels[j])];
      cv.strides[j] = cv.dims[j] == 1 ? 0 : stride;
      stride *= cv.dims[j];
    }
  }
  gather_sum(cur.data(), cv, out_labels, dim_of, dst);
}

void run_einsum(const Node& n, Workspace& ws) {
  const Value& a = in(n, ws, 0);
  if (a.type == ElementType::Float32) einsum_typed<float>(n, ws, a.type);
  else if (a.type == ElementType::Int64) einsum_typed<I64>(n, ws, a.type);
  else throw OpError("Einsum of bool tensors is not supported");
}

void import_einsum(ImportContext& at, Node& n) {
  at.need_outputs(1);
  if (at.n_inputs() < 1) at.fail("needs at least one input");
  for (std::size_t k = 0; k < at.n_inputs(); ++k)
    if (!at.has_input(k)) at.fail("input " + std::to_string(k) + " is missing");
  if (!at.has("equation")) at.fail("equation is required");
  const std::string eq = at.s("equation", "");
  auto bad = [&](const std::string& why) { at.fail("equation '" + eq + "': " + why); };
  std::string lhs = eq, rhs;
  const auto arrow = eq.find("->");
  const bool explicit_out = arrow != std::string::npos;
  if (explicit_out) {
    lhs = eq.substr(0, arrow);
    rhs = eq.substr(arrow + 2);
  }
  auto parse = [&](const std::string& s, bool out_term) {
    std::vector<I64> t;
    bool ell = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (c == ' ') continue;
      if (c == '.') {
        if (s.compare(i, 3, "...") != 0 || ell) bad("a malformed or repeated ellipsis");
        ell = true;
        t.push_back(kEll);
        i += 2;
      } else if (c >= 'a' && c <= 'z') {
        t.push_back(c - 'a');
      } else if (c >= 'A' && c <= 'Z') {
        t.push_back(26 + (c - 'A'));
      } else {
        bad(std::string("unexpected character '") + c + "'");
      }
      if (out_term && t.size() > 1 && std::count(t.begin(), t.end(), t.back()) > 1) bad("a repeated output label");
    }
    return t;
  };
  std::vector<std::vector<I64>> terms;
  std::size_t start = 0;
  while (true) {
    const auto comma = lhs.find(',', start);
    terms.push_back(parse(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start), false));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (terms.size() != at.n_inputs())
    bad("has " + std::to_string(terms.size()) + " terms for " + std::to_string(at.n_inputs()) + " inputs");
  std::vector<I64> out_t;
  if (explicit_out) {
    out_t = parse(rhs, true);
    for (I64 l : out_t) {
      bool found = false;
      for (const auto& t : terms) found = found || std::find(t.begin(), t.end(), l) != t.end();
      if (!found) bad(l == kEll ? "ellipsis in the output but in no input" : "output label not in any input");
    }
  } else {  // implicit: the ellipsis, then the labels seen once, in alphabetical order
    std::vector<int> count(kEll + 1, 0);
    for (const auto& t : terms)
      for (I64 l : t) ++count[static_cast<std::size_t>(l)];
    if (count[kEll]) out_t.push_back(kEll);
    for (I64 c = 0; c < kEll; ++c) {  // in ASCII order, as numpy: A-Z, then a-z
      const I64 l = c < 26 ? 26 + c : c - 26;
      if (count[static_cast<std::size_t>(l)] == 1) out_t.push_back(l);
    }
  }
  n.op = Op::Kernel;
  n.run = run_einsum;
  n.i0 = static_cast<I64>(terms.size());
  n.v0.clear();
  for (std::size_t k = 0; k < terms.size(); ++k) {
    if (k) n.v0.push_back(-1);
    n.v0.insert(n.v0.end(), terms[k].begin(), terms[k].end());
  }
  n.v0.push_back(-2);
  n.v0.insert(n.v0.end(), out_t.begin(), out_t.end());
}

}  // namespace

void add_misc_ops(OpTable& t) {
  t["Mod"] = import_mod;
  t["IsNaN"] = import_isnan;
  t["IsInf"] = import_isinf;
  t["PRelu"] = import_prelu;
  t["InstanceNormalization"] = import_instance_norm;
  t["GroupNormalization"] = import_group_norm;
  t["Einsum"] = import_einsum;
  for (const auto& kv : act_ops()) t[kv.first] = import_act;
}

}  // namespace hepinfer::nn
