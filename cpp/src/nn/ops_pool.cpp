// Pooling family: MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool, and Pad (import
// handlers and kernels, see op_import.hpp). Windows are held as 3-D (conv_geometry.hpp); for
// every output position the taps that fall inside the input are found once per axis, so the
// inner loops carry no bounds checks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "nn/conv_geometry.hpp"
#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

using std::size_t;

inline size_t uz(I64 v) { return static_cast<size_t>(v); }

void check_pool_input(const Value& x, const Node& n) {
  require_type(x, ElementType::Float32, "X");
  if (x.shape.rank < 3 || x.shape.rank > 5)
    throw OpError("X must be [N, C, spatial...] with 1 to 3 spatial dimensions, got shape " + x.shape.str());
  if (!n.v0.empty() && n.v0.size() != static_cast<size_t>(x.shape.rank - 2))
    throw OpError("kernel_shape has " + std::to_string(n.v0.size()) + " values; X " + x.shape.str() + " has " +
                  std::to_string(x.shape.rank - 2) + " spatial dimensions");
}

Shape pooled_shape(const Value& x, const Window3& w) {
  Shape os;
  os.push(x.shape[0]);
  os.push(x.shape[1]);
  const int sd = x.shape.rank - 2;
  for (int i = 0; i < sd; ++i) os.push(w.out[3 - sd + i]);
  return os;
}

/// Calls f(o, base[3], lo[3], hi[3], padded_count) for every output position o of a plane: base
/// is the window's first input coordinate per axis, [lo, hi) its taps inside the input. The per-axis
/// values are computed once per call into `tab` (per output index and axis: base, lo, hi and
/// the number of taps inside the padded input, for AveragePool's count_include_pad).
struct WindowTable {
  std::vector<I64>& tab;
  I64 off[3];
  WindowTable(const Window3& w, std::vector<I64>& scratch) : tab(scratch) {
    tab.resize(uz(4 * (w.out[0] + w.out[1] + w.out[2])));
    I64 at = 0;
    for (int j = 0; j < 3; ++j) {
      off[j] = at;
      for (I64 o = 0; o < w.out[j]; ++o, at += 4) {
        const I64 base = o * w.s[j] - w.pb[j];
        tab[uz(at)] = base;
        valid_taps(base, w.k[j], w.d[j], w.in[j], tab[uz(at + 1)], tab[uz(at + 2)]);
        I64 a, b;  // taps inside the padded input (not past it, as ceil_mode windows may be)
        valid_taps(base + w.pb[j], w.k[j], w.d[j], w.in[j] + w.pb[j] + w.pe[j], a, b);
        tab[uz(at + 3)] = b - a;
      }
    }
  }
};

template <class F>
void for_each_window(const Window3& w, const WindowTable& t, F&& f) {
  I64 o = 0;
  I64 base[3], lo[3], hi[3], cnt[3];
  const I64* tab = t.tab.data();
  for (I64 od = 0; od < w.out[0]; ++od) {
    const I64* e0 = tab + t.off[0] + 4 * od;
    base[0] = e0[0], lo[0] = e0[1], hi[0] = e0[2], cnt[0] = e0[3];
    for (I64 oh = 0; oh < w.out[1]; ++oh) {
      const I64* e1 = tab + t.off[1] + 4 * oh;
      base[1] = e1[0], lo[1] = e1[1], hi[1] = e1[2], cnt[1] = e1[3];
      for (I64 ow = 0; ow < w.out[2]; ++ow, ++o) {
        const I64* e2 = tab + t.off[2] + 4 * ow;
        base[2] = e2[0], lo[2] = e2[1], hi[2] = e2[2], cnt[2] = e2[3];
        f(o, base, lo, hi, cnt[0] * cnt[1] * cnt[2]);
      }
    }
  }
}

/// MaxPool (without indices) or AveragePool over one plane, line by line: every output line
/// starts at the identity and takes in each valid (kd, kh) input row tap by tap, over the run
/// of output positions whose tap falls inside the row (kw_lo/kw_hi, per kw), so that the inner
/// loop is a plain strided max or sum.
template <bool Max>
void pool_plane_lines(const Window3& w, const WindowTable& t, const I64* kw_lo, const I64* kw_hi, const float* xp,
                      float* dp, bool include_pad) {
  const I64 Hi = w.in[1], Wi = w.in[2], Ho = w.out[1], Wo = w.out[2], s2 = w.s[2];
  const I64* tab = t.tab.data();
  for (I64 od = 0; od < w.out[0]; ++od) {
    const I64* e0 = tab + t.off[0] + 4 * od;
    for (I64 oh = 0; oh < Ho; ++oh) {
      const I64* e1 = tab + t.off[1] + 4 * oh;
      float* line = dp + (od * Ho + oh) * Wo;
      std::fill(line, line + Wo, Max ? std::numeric_limits<float>::lowest() : 0.0f);
      for (I64 kd = e0[1]; kd < e0[2]; ++kd) {
        const I64 id = e0[0] + kd * w.d[0];
        for (I64 kh = e1[1]; kh < e1[2]; ++kh) {
          const float* row = xp + (id * Hi + e1[0] + kh * w.d[1]) * Wi;
          for (I64 kw = 0; kw < w.k[2]; ++kw) {
            const I64 off = kw * w.d[2] - w.pb[2];  // row[ow * s2 + off] is inside the row for ow in [lo, hi)
            const I64 lo = kw_lo[kw], hi = kw_hi[kw];
            if (Max) {
              for (I64 ow = lo; ow < hi; ++ow) {
                const float v = row[ow * s2 + off];
                line[ow] = v > line[ow] || v != v ? v : line[ow];  // NaN propagates
              }
            } else {
              for (I64 ow = lo; ow < hi; ++ow) line[ow] += row[ow * s2 + off];
            }
          }
        }
      }
      if (!Max) {
        const I64 taps01 = include_pad ? e0[3] * e1[3] : (e0[2] - e0[1]) * (e1[2] - e1[1]);
        const I64* e2 = tab + t.off[2];
        for (I64 ow = 0; ow < Wo; ++ow, e2 += 4)
          line[ow] /= static_cast<float>(taps01 * (include_pad ? e2[3] : e2[2] - e2[1]));
      }
    }
  }
}

/// For each kernel tap kw along the last axis, the output positions [lo, hi) whose input
/// coordinate ow * s + kw * d - pb lies inside the input (in `kw_lo`/`kw_hi`).
void last_axis_runs(const Window3& w, std::vector<I64>& buf, const I64*& kw_lo, const I64*& kw_hi) {
  buf.resize(uz(2 * w.k[2]));
  for (I64 kw = 0; kw < w.k[2]; ++kw)
    valid_taps(kw * w.d[2] - w.pb[2], w.out[2], w.s[2], w.in[2], buf[uz(kw)], buf[uz(w.k[2] + kw)]);
  kw_lo = buf.data();
  kw_hi = buf.data() + w.k[2];
}

/// Whether every window is the whole input plane (one output per plane, no padding inside it):
/// then MaxPool / AveragePool are global pools, one pass over each plane.
bool window_is_plane(const Window3& w) {
  for (int j = 0; j < 3; ++j)
    if (w.out[j] != 1 || w.pb[j] != 0 || w.pe[j] != 0 || w.d[j] != 1 || w.k[j] != w.in[j]) return false;
  return true;
}

/// Max (NaN propagates) or mean of each of `planes` planes of `sp` values.
void pool_planes(const float* x, I64 planes, I64 sp, bool is_max, float* d) {
  for (I64 pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * sp;
    if (is_max) {
      float m = xp[0];
      for (I64 i = 1; i < sp; ++i)
        if (xp[i] > m || xp[i] != xp[i]) m = xp[i];  // NaN propagates (nothing compares above it)
      d[pl] = m;
    } else {
      float s = 0.0f;
      for (I64 i = 0; i < sp; ++i) s += xp[i];
      d[pl] = s / static_cast<float>(sp);
    }
  }
}

// MaxPool. node: v0 kernel_shape, v1 strides, v2 pads, v3 dilations, i1 auto_pad, i0 ceil_mode,
// i2 storage_order. Output 1 (optional): the flat index of each maximum in X.
void run_max_pool(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  check_pool_input(x, n);
  const int sd = x.shape.rank - 2;
  const Window3 w = make_window(n, sd, &x.shape.d[2], n.v0.data(), n.i0 != 0);
  const Shape os = pooled_shape(x, w);
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  Value* iv = opt_out(n, ws, 1);
  I64* idx = iv ? static_cast<I64*>(iv->alloc(ElementType::Int64, os)) : nullptr;
  const I64 planes = x.shape[0] * x.shape[1], P = w.n_out(), Pin = w.n_in();
  const I64 Hi = w.in[1], Wi = w.in[2], Di = w.in[0];
  if (!idx && planes > 0 && window_is_plane(w)) {
    pool_planes(x.f(), planes, Pin, true, d);
    return;
  }
  const WindowTable table(w, ws.scratch_i);
  if (!idx) {
    std::vector<I64> runs;
    const I64 *kw_lo, *kw_hi;
    last_axis_runs(w, runs, kw_lo, kw_hi);
    for (I64 pl = 0; pl < planes; ++pl)
      pool_plane_lines<true>(w, table, kw_lo, kw_hi, x.f() + pl * Pin, d + pl * P, false);
    return;
  }
  for (I64 pl = 0; pl < planes; ++pl) {
    const float* xp = x.f() + pl * Pin;
    float* dp = d + pl * P;
    I64* ip = idx + pl * P;
    for_each_window(w, table, [&](I64 o, const I64* base, const I64* lo, const I64* hi, I64 /*padded_count*/) {
      float m = std::numeric_limits<float>::lowest();
      I64 at = -1;
      for (I64 kd = lo[0]; kd < hi[0]; ++kd) {
        const I64 id = base[0] + kd * w.d[0];
        for (I64 kh = lo[1]; kh < hi[1]; ++kh) {
          const I64 ih = base[1] + kh * w.d[1];
          const float* row = xp + (id * Hi + ih) * Wi;
          for (I64 kw = lo[2]; kw < hi[2]; ++kw) {
            const I64 iw = base[2] + kw * w.d[2];
            const float v = row[iw];
            if (v > m || (v != v && m == m)) {  // NaN propagates
              m = v;
              at = n.i2 ? (iw * Hi + ih) * Di + id : (id * Hi + ih) * Wi + iw;
            }
          }
        }
      }
      dp[o] = m;
      ip[o] = at < 0 ? at : pl * Pin + at;
    });
  }
}

// AveragePool. node: v0 kernel_shape, v1 strides, v2 pads, v3 dilations, i1 auto_pad,
// i0 ceil_mode, i2 count_include_pad.
void run_average_pool(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  check_pool_input(x, n);
  const int sd = x.shape.rank - 2;
  const Window3 w = make_window(n, sd, &x.shape.d[2], n.v0.data(), n.i0 != 0);
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, pooled_shape(x, w)));
  const I64 planes = x.shape[0] * x.shape[1], P = w.n_out(), Pin = w.n_in();
  const bool include_pad = n.i2 != 0;
  if (planes > 0 && window_is_plane(w)) {
    pool_planes(x.f(), planes, Pin, false, d);
    return;
  }
  const WindowTable table(w, ws.scratch_i);
  std::vector<I64> runs;
  const I64 *kw_lo, *kw_hi;
  last_axis_runs(w, runs, kw_lo, kw_hi);
  for (I64 pl = 0; pl < planes; ++pl)
    pool_plane_lines<false>(w, table, kw_lo, kw_hi, x.f() + pl * Pin, d + pl * P, include_pad);
}

void import_pool(ImportContext& at, Node& n, bool is_max) {
  at.need_inputs(1, 1);
  at.need_outputs(is_max ? 2 : 1);
  n.op = Op::Kernel;
  n.run = is_max ? run_max_pool : run_average_pool;
  n.i1 = parse_auto_pad(at);
  if (!at.has("kernel_shape")) at.fail("needs a kernel_shape attribute");
  n.v0 = at.ints("kernel_shape");
  if (n.v0.empty()) at.fail("kernel_shape is empty");
  n.v1 = at.ints("strides");
  n.v2 = at.ints("pads");
  n.v3 = at.ints("dilations");
  n.i0 = at.i("ceil_mode", 0);
  if (is_max) {
    n.i2 = at.i("storage_order", 0);
    if (n.i2 != 0 && n.i2 != 1) at.fail("storage_order must be 0 or 1");
    if (n.i2 == 1 && n.v0.size() != 2 && at.has_output(1))
      at.fail("storage_order 1 (column-major indices) is only defined for 2-D pooling");
  } else {
    n.i2 = at.i("count_include_pad", 0);
  }
  check_window_attributes(at, n.v0, n);
}

void import_max_pool(ImportContext& at, Node& n) { import_pool(at, n, true); }
void import_average_pool(ImportContext& at, Node& n) { import_pool(at, n, false); }

// GlobalMaxPool (i0 = 1) / GlobalAveragePool (i0 = 0): one value per (event, channel).
void run_global_pool(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  require_type(x, ElementType::Float32, "X");
  if (x.shape.rank < 3) throw OpError("X must be [N, C, spatial...], got shape " + x.shape.str());
  Shape os = x.shape;
  I64 sp = 1;
  for (int i = 2; i < os.rank; ++i) {
    sp *= os[i];
    os[i] = 1;
  }
  float* d = static_cast<float*>(out(n, ws, 0).alloc(ElementType::Float32, os));
  const I64 planes = x.shape[0] * x.shape[1];
  if (planes > 0 && sp == 0) throw OpError("X " + x.shape.str() + " has no spatial elements to pool");
  pool_planes(x.f(), planes, sp, n.i0 != 0, d);
}

void import_global_pool(ImportContext& at, Node& n) {
  at.need_inputs(1, 1);
  at.need_outputs(1);
  n.op = Op::Kernel;
  n.run = run_global_pool;
  n.i0 = at.op_type() == "GlobalMaxPool";
}

// ---- Pad. node: i0 mode (0 constant, 1 reflect, 2 edge, 3 wrap); opset < 11: v0 pads and
// f0 {value} from the attributes (has_v0), else pads, constant_value and axes are inputs 1-3.

I64 pad_source_in(I64 c, I64 len, I64 mode) {
  switch (mode) {
    case 1: {  // reflect (repeatedly, as numpy does, when the pad exceeds the axis)
      if (len == 1) return 0;
      const I64 period = 2 * (len - 1);
      I64 m = c % period;
      if (m < 0) m += period;
      return m < len ? m : period - m;
    }
    case 2: return c < 0 ? 0 : len - 1;
    case 3: {
      I64 m = c % len;
      return m < 0 ? m + len : m;
    }
    default: return -1;
  }
}

/// The input index that output coordinate c (in input coordinates: o - pad_begin) reads, or -1
/// for the constant. Negative pads crop first: the padding modes see [lo, lo + len) only.
I64 pad_source(I64 c, I64 lo, I64 len, I64 mode) {
  c -= lo;
  if (c >= 0 && c < len) return c + lo;
  const I64 s = pad_source_in(c, len, mode);
  return s < 0 ? s : s + lo;
}

void run_pad(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const int r = x.shape.rank;
  std::vector<I64> pads;
  if (n.has_v0) {
    pads = n.v0;
  } else {
    read_ints(in(n, ws, 1), pads, "pads");
  }
  std::vector<I64> axes;
  if (const Value* av = opt_in(n, ws, 3)) {
    read_ints(*av, axes, "axes");
    for (I64& a : axes) a = norm_axis(a, r, "axes entry");
    for (size_t i = 0; i < axes.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (axes[i] == axes[j]) throw OpError("axes lists axis " + std::to_string(axes[i]) + " twice");
  } else {
    for (int i = 0; i < r; ++i) axes.push_back(i);
  }
  if (pads.size() != 2 * axes.size())
    throw OpError("pads has " + std::to_string(pads.size()) + " values; expected " + std::to_string(2 * axes.size()) +
                  " for input " + x.shape.str());
  I64 pb[kMaxRank] = {}, pe[kMaxRank] = {};
  for (size_t i = 0; i < axes.size(); ++i) {
    pb[axes[i]] = pads[i];
    pe[axes[i]] = pads[i + axes.size()];
  }
  Shape os = x.shape;
  for (int i = 0; i < r; ++i) {
    os[i] = x.shape[i] + pb[i] + pe[i];
    if (os[i] < 0)
      throw OpError("pads " + std::to_string(pb[i]) + ", " + std::to_string(pe[i]) + " remove more than the " +
                    std::to_string(x.shape[i]) + " elements of axis " + std::to_string(i));
    if (n.i0 != 0 && x.shape[i] == 0 && os[i] > 0)
      throw OpError("axis " + std::to_string(i) + " is empty: it cannot be padded in reflect, edge or wrap mode");
  }
  // the constant as raw bytes of the element type
  unsigned char pat[8] = {};
  const size_t es = element_size(x.type);
  if (n.i0 == 0) {
    const Value* cv = opt_in(n, ws, 2);
    if (cv) {
      if (cv->type != x.type)
        throw OpError(std::string("constant_value must be ") + type_name(x.type) + ", got " + type_name(cv->type));
      if (cv->numel != 1) throw OpError("constant_value must hold one value, got shape " + cv->shape.str());
      std::memcpy(pat, cv->data, es);
    } else if (!n.f0.empty()) {
      const float v = n.f0[0];
      if (x.type == ElementType::Float32) std::memcpy(pat, &v, 4);
      else if (x.type == ElementType::Int64) {
        const auto iv = static_cast<I64>(v);
        std::memcpy(pat, &iv, 8);
      } else {
        pat[0] = v != 0.0f;
      }
    }
  }
  Value& y = out(n, ws, 0);
  auto* dst = static_cast<unsigned char*>(y.alloc(x.type, os));
  const size_t total = os.numel();
  if (total == 0) return;
  const auto* src = x.b();
  if (r == 0) {
    std::memcpy(dst, src, es);
    return;
  }
  const I64 last = os[r - 1], in_last = x.shape[r - 1];
  I64 in_stride[kMaxRank];
  in_stride[r - 1] = 1;
  for (int i = r - 2; i >= 0; --i) in_stride[i] = in_stride[i + 1] * x.shape[i + 1];
  auto fill = [&](unsigned char* p, I64 count) {
    for (I64 k = 0; k < count; ++k) std::memcpy(p + uz(k) * es, pat, es);
  };
  I64 lo[kMaxRank], len[kMaxRank];  // the input range left after negative pads
  for (int i = 0; i < r; ++i) {
    lo[i] = std::max<I64>(-pb[i], 0);
    len[i] = x.shape[i] - lo[i] - std::max<I64>(-pe[i], 0);
    if (n.i0 != 0 && len[i] <= 0 && os[i] > 0)
      throw OpError("axis " + std::to_string(i) + " has no elements left after the negative pads to pad from");
  }
  I64 idx[kMaxRank] = {};
  const size_t rows = total / uz(last);
  for (size_t row = 0; row < rows; ++row) {
    unsigned char* d = dst + row * uz(last) * es;
    // the source row: outer coordinates mapped axis by axis
    I64 off = 0;
    bool outside = false;
    for (int i = 0; i < r - 1; ++i) {
      const I64 s = pad_source(idx[i] - pb[i], lo[i], len[i], n.i0);
      if (s < 0) outside = true;
      else off += s * in_stride[i];
    }
    if (outside) {
      fill(d, last);
    } else {
      const unsigned char* srow = src + uz(off) * es;
      // interior: output o with o - pb in [0, in_last)
      const I64 a = std::clamp<I64>(pb[r - 1], 0, last), b = std::clamp<I64>(pb[r - 1] + in_last, a, last);
      for (I64 o = 0; o < a; ++o) {
        const I64 s = pad_source(o - pb[r - 1], lo[r - 1], len[r - 1], n.i0);
        if (s < 0) fill(d + uz(o) * es, 1);
        else std::memcpy(d + uz(o) * es, srow + uz(s) * es, es);
      }
      if (b > a) std::memcpy(d + uz(a) * es, srow + uz(a - pb[r - 1]) * es, uz(b - a) * es);
      for (I64 o = b; o < last; ++o) {
        const I64 s = pad_source(o - pb[r - 1], lo[r - 1], len[r - 1], n.i0);
        if (s < 0) fill(d + uz(o) * es, 1);
        else std::memcpy(d + uz(o) * es, srow + uz(s) * es, es);
      }
    }
    for (int i = r - 2; i >= 0; --i) {  // next row
      if (++idx[i] < os[i]) break;
      idx[i] = 0;
    }
  }
}

void import_pad(ImportContext& at, Node& n) {
  n.op = Op::Kernel;
  n.run = run_pad;
  at.need_outputs(1);
  const std::string mode = at.s("mode", "constant");
  n.i0 = mode == "constant" ? 0 : mode == "reflect" ? 1 : mode == "edge" ? 2 : mode == "wrap" ? 3 : -1;
  if (n.i0 < 0) at.fail("mode '" + mode + "' is not supported (constant, reflect, edge or wrap)");
  if (at.opset() < 11) {
    at.need_inputs(1, 1);
    if (!at.has("pads")) at.fail("needs a pads attribute");
    n.v0 = at.ints("pads");
    n.has_v0 = true;
    n.f0 = {at.f("value", 0.0f)};
  } else {
    at.need_inputs(2, 4);
  }
}

}  // namespace

void add_pool_ops(OpTable& t) {
  t["MaxPool"] = import_max_pool;
  t["AveragePool"] = import_average_pool;
  t["GlobalMaxPool"] = import_global_pool;
  t["GlobalAveragePool"] = import_global_pool;
  t["Pad"] = import_pad;
}

}  // namespace hepinfer::nn
