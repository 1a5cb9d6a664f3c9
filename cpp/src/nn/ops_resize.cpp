// Resize and Upsample (import handlers and kernels, see op_import.hpp): nearest, linear and
// cubic interpolation over any axes, with the coordinate transformations and nearest-pixel
// rules of the ONNX spec (as onnxruntime evaluates them: in float). Every axis gets, per output
// index, a list of taps (input index, weight): 1 for nearest and for axes left unchanged, 2 for
// linear, 4 for cubic; an output element is the weighted sum over the taps of the resized axes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {
namespace {

using std::size_t;

inline size_t uz(I64 v) { return static_cast<size_t>(v); }

constexpr I64 kNearest = 0, kLinear = 1, kCubic = 2;  // modes
constexpr I64 kHalfPixel = 0, kAsymmetric = 1, kPytorchHalfPixel = 2, kAlignCorners = 3, kHalfPixelSymmetric = 4;
constexpr I64 kRoundPreferFloor = 0, kRoundPreferCeil = 1, kFloor = 2, kCeil = 3, kSimple = 4;  // nearest rules

float original_coordinate(float o, float scale, I64 out_len, I64 in_len, I64 coord) {
  switch (coord) {
    case kAsymmetric: return o / scale;
    case kPytorchHalfPixel: return out_len > 1 ? (o + 0.5f) / scale - 0.5f : 0.0f;
    case kAlignCorners:
      return out_len == 1 ? 0.0f : o * static_cast<float>(in_len - 1) / static_cast<float>(out_len - 1);
    case kHalfPixelSymmetric: {
      const float adj = static_cast<float>(out_len) / (scale * static_cast<float>(in_len));
      const float center = static_cast<float>(in_len) / 2.0f;
      return center * (1.0f - adj) + (o + 0.5f) / scale - 0.5f;
    }
    default: return (o + 0.5f) / scale - 0.5f;
  }
}

I64 nearest_index(float x, float scale, I64 rule) {
  switch (rule) {
    case kRoundPreferCeil: return static_cast<I64>(std::round(x));
    case kFloor: return static_cast<I64>(std::floor(x));
    case kCeil: return static_cast<I64>(std::ceil(x));
    case kSimple: return scale < 1.0f ? static_cast<I64>(std::ceil(x)) : static_cast<I64>(x);
    default:
      if (x == static_cast<float>(static_cast<I64>(x)) + 0.5f) return static_cast<I64>(x);
      return static_cast<I64>(std::round(x));
  }
}

// node: i0 mode, i1 coordinate transformation, i2 nearest rule, i3 keep_aspect_ratio_policy
// (0 stretch, 1 not_larger, 2 not_smaller), v0 axes (empty: all), f0 {cubic_coeff_a,
// exclude_outside}, f1 the scales of Upsample-7 (attribute); axis: the input index of scales
// (sizes follow it), -1 when the scales are f1.
void run_resize(const Node& n, Workspace& ws) {
  const Value& x = in(n, ws, 0);
  const int r = x.shape.rank;
  if (n.i0 != kNearest) require_type(x, ElementType::Float32, "X");
  std::vector<I64> axes;
  for (I64 a : n.v0) axes.push_back(norm_axis(a, r, "axes entry"));
  if (n.v0.empty())
    for (int i = 0; i < r; ++i) axes.push_back(i);
  float scale[kMaxRank];
  Shape os = x.shape;
  for (int i = 0; i < r; ++i) scale[i] = 1.0f;
  const Value* sv = n.axis >= 0 ? opt_in(n, ws, static_cast<size_t>(n.axis)) : nullptr;
  const Value* zv = n.axis >= 0 ? opt_in(n, ws, static_cast<size_t>(n.axis) + 1) : nullptr;
  if (sv && sv->numel == 0) sv = nullptr;
  if (zv && zv->numel == 0) zv = nullptr;
  if (sv && zv) throw OpError("scales and sizes are both given; only one may be");
  if (n.axis >= 0 && !sv && !zv) throw OpError("neither scales nor sizes is given");
  if (zv) {
    if (zv->type != ElementType::Int64) throw OpError(std::string("sizes must be int64, got ") + type_name(zv->type));
    if (zv->numel != axes.size())
      throw OpError("sizes has " + std::to_string(zv->numel) + " values for " + std::to_string(axes.size()) + " axes");
    if (n.i3 == 0) {
      for (size_t k = 0; k < axes.size(); ++k) {
        const int a = static_cast<int>(axes[k]);
        os[a] = zv->i64()[k];
        if (os[a] < 0) throw OpError("sizes must be >= 0");
        scale[a] = x.shape[a] > 0 ? static_cast<float>(os[a]) / static_cast<float>(x.shape[a]) : 1.0f;
      }
    } else {
      float s = n.i3 == 1 ? 3.4e38f : 0.0f;
      for (size_t k = 0; k < axes.size(); ++k) {
        const int a = static_cast<int>(axes[k]);
        const float q = static_cast<float>(zv->i64()[k]) / static_cast<float>(x.shape[a]);
        s = n.i3 == 1 ? std::min(s, q) : std::max(s, q);
      }
      for (I64 a : axes) {
        scale[a] = s;
        os[static_cast<int>(a)] = static_cast<I64>(std::round(s * static_cast<float>(x.shape[static_cast<int>(a)])));
      }
    }
  } else {
    const float* sc = nullptr;
    size_t count = 0;
    if (sv) {
      require_type(*sv, ElementType::Float32, "scales");
      sc = sv->f();
      count = sv->numel;
    } else {
      sc = n.f1.data();
      count = n.f1.size();
    }
    if (count != axes.size())
      throw OpError("scales has " + std::to_string(count) + " values for " + std::to_string(axes.size()) + " axes");
    for (size_t k = 0; k < axes.size(); ++k) {
      const int a = static_cast<int>(axes[k]);
      if (!(sc[k] > 0.0f)) throw OpError("scales must be > 0, got " + std::to_string(sc[k]));
      scale[a] = sc[k];
      os[a] = static_cast<I64>(sc[k] * static_cast<float>(x.shape[a]));
    }
  }
  Value& y = out(n, ws, 0);
  auto* dst = static_cast<unsigned char*>(y.alloc(x.type, os));
  const size_t total = os.numel();
  if (total == 0) return;
  for (int i = 0; i < r; ++i)
    if (x.shape[i] == 0)
      throw OpError("X " + x.shape.str() + " is empty along axis " + std::to_string(i) + " but the result is not");
  // taps per axis: T[i] taps for each output index, in scratch (indices) and scratch (weights)
  I64 T[kMaxRank], toff[kMaxRank];
  I64 ntaps = 0;
  const I64 mode_taps = n.i0 == kNearest ? 1 : n.i0 == kLinear ? 2 : 4;
  for (int i = 0; i < r; ++i) {
    const bool unchanged = os[i] == x.shape[i] && scale[i] == 1.0f;
    T[i] = unchanged ? 1 : mode_taps;
    toff[i] = ntaps;
    ntaps += T[i] * os[i];
  }
  std::vector<I64>& ti = ws.scratch_i;
  std::vector<float>& tw = ws.scratch;
  ti.resize(uz(ntaps));
  tw.resize(uz(ntaps));
  const float a = n.f0.empty() ? -0.75f : n.f0[0];
  const bool exclude_outside = n.f0.size() > 1 && n.f0[1] != 0.0f;
  for (int i = 0; i < r; ++i) {
    const I64 L = x.shape[i], O = os[i];
    I64* idx = ti.data() + toff[i];
    float* w = tw.data() + toff[i];
    for (I64 o = 0; o < O; ++o) {
      if (T[i] == 1 && os[i] == x.shape[i] && scale[i] == 1.0f) {
        idx[o] = o;
        w[o] = 1.0f;
        continue;
      }
      float xo = original_coordinate(static_cast<float>(o), scale[i], O, L, n.i1);
      if (n.i0 == kNearest) {
        idx[o] = std::clamp<I64>(nearest_index(xo, scale[i], n.i2), 0, L - 1);
        w[o] = 1.0f;
      } else if (n.i0 == kLinear) {
        xo = std::max(0.0f, std::min(xo, static_cast<float>(L - 1)));
        const I64 i1 = std::min(static_cast<I64>(xo), L - 1), i2 = std::min(i1 + 1, L - 1);
        float d1 = std::fabs(xo - static_cast<float>(i1)), d2 = std::fabs(xo - static_cast<float>(i2));
        if (i1 == i2) d1 = d2 = 0.5f;
        idx[2 * o] = i1;
        idx[2 * o + 1] = i2;
        w[2 * o] = d2;
        w[2 * o + 1] = d1;
      } else {
        const float fl = std::floor(xo), s = xo - fl;
        const float s0 = s + 1.0f, s1 = s, s2 = 1.0f - s, s3 = 2.0f - s;
        float c[4] = {((a * s0 - 5 * a) * s0 + 8 * a) * s0 - 4 * a, ((a + 2) * s1 - (a + 3)) * s1 * s1 + 1,
                      ((a + 2) * s2 - (a + 3)) * s2 * s2 + 1, ((a * s3 - 5 * a) * s3 + 8 * a) * s3 - 4 * a};
        float sum = 0.0f;
        for (int t = 0; t < 4; ++t) {
          const I64 k = static_cast<I64>(fl) - 1 + t;
          if (exclude_outside && (k < 0 || k >= L)) c[t] = 0.0f;
          sum += c[t];
          idx[4 * o + t] = std::clamp<I64>(k, 0, L - 1);
        }
        for (int t = 0; t < 4; ++t) w[4 * o + t] = exclude_outside && sum != 0.0f ? c[t] / sum : c[t];
      }
    }
  }
  I64 stride[kMaxRank];
  stride[r - 1] = 1;
  for (int i = r - 2; i >= 0; --i) stride[i] = stride[i + 1] * x.shape[i + 1];
  int active[kMaxRank];
  int na = 0;
  for (int i = 0; i < r; ++i)
    if (T[i] > 1) active[na++] = i;
  const size_t es = element_size(x.type);
  I64 o[kMaxRank] = {};
  for (size_t e = 0; e < total; ++e) {
    if (na == 0) {
      I64 off = 0;
      for (int i = 0; i < r; ++i) off += ti[uz(toff[i] + o[i])] * stride[i];
      std::memcpy(dst + e * es, x.b() + uz(off) * es, es);
    } else {
      I64 base = 0;
      for (int i = 0; i < r; ++i)
        if (T[i] == 1) base += ti[uz(toff[i] + o[i])] * stride[i];
      I64 tap[kMaxRank] = {};
      float s = 0.0f;
      while (true) {
        I64 off = base;
        float wt = 1.0f;
        for (int k = 0; k < na; ++k) {
          const int i = active[k];
          const size_t at = uz(toff[i] + o[i] * T[i] + tap[k]);
          off += ti[at] * stride[i];
          wt *= tw[at];
        }
        s += wt * x.f()[off];
        int k = na - 1;
        for (; k >= 0; --k) {
          if (++tap[k] < T[active[k]]) break;
          tap[k] = 0;
        }
        if (k < 0) break;
      }
      reinterpret_cast<float*>(dst)[e] = s;
    }
    for (int i = r - 1; i >= 0; --i) {
      if (++o[i] < os[i]) break;
      o[i] = 0;
    }
  }
}

void import_resize(ImportContext& at, Node& n) {
  n.op = Op::Kernel;
  n.run = run_resize;
  at.need_outputs(1);
  const bool upsample = at.op_type() == "Upsample";
  const std::int64_t opset = at.opset();
  std::string mode = at.s("mode", "nearest");
  if (mode == "bilinear" || mode == "trilinear") mode = "linear";  // Upsample-7 spellings
  n.i0 = mode == "nearest" ? kNearest : mode == "linear" ? kLinear : mode == "cubic" ? kCubic : -1;
  if (n.i0 < 0 || (upsample && n.i0 == kCubic)) at.fail("mode '" + mode + "' is not supported");
  n.i1 = kAsymmetric;
  n.i2 = kSimple;
  n.axis = 1;
  if (upsample) {
    if (opset < 9) {
      at.need_inputs(1, 1);
      if (!at.has("scales")) at.fail("needs a scales attribute");
      n.f1 = at.floats("scales");
      n.axis = -1;
    } else {
      at.need_inputs(2, 2);
    }
    return;
  }
  if (opset < 11) {
    at.need_inputs(2, 2);
    return;
  }
  at.need_inputs(1, 4);
  n.axis = 2;
  const std::string ct = at.s("coordinate_transformation_mode", "half_pixel");
  n.i1 = ct == "half_pixel"             ? kHalfPixel
         : ct == "asymmetric"           ? kAsymmetric
         : ct == "pytorch_half_pixel"   ? kPytorchHalfPixel
         : ct == "align_corners"        ? kAlignCorners
         : ct == "half_pixel_symmetric" ? kHalfPixelSymmetric
                                        : -1;
  if (n.i1 < 0)
    at.fail("coordinate_transformation_mode '" + ct + "' is not supported" +
            (ct == "tf_crop_and_resize" ? " (it needs the roi input)" : ""));
  const std::string nm = at.s("nearest_mode", "round_prefer_floor");
  n.i2 = nm == "round_prefer_floor"  ? kRoundPreferFloor
         : nm == "round_prefer_ceil" ? kRoundPreferCeil
         : nm == "floor"             ? kFloor
         : nm == "ceil"              ? kCeil
                                     : -1;
  if (n.i2 < 0) at.fail("nearest_mode '" + nm + "' is not supported");
  n.f0 = {at.f("cubic_coeff_a", -0.75f), static_cast<float>(at.i("exclude_outside", 0))};
  at.ignore("extrapolation_value");  // used by tf_crop_and_resize only
  if (at.i("antialias", 0) != 0) at.fail("antialias is not supported");
  n.v0 = at.ints("axes");
  const std::string kp = at.s("keep_aspect_ratio_policy", "stretch");
  n.i3 = kp == "stretch" ? 0 : kp == "not_larger" ? 1 : kp == "not_smaller" ? 2 : -1;
  if (n.i3 < 0) at.fail("keep_aspect_ratio_policy '" + kp + "' is not supported");
}

}  // namespace

void add_resize_ops(OpTable& t) {
  t["Resize"] = import_resize;
  t["Upsample"] = import_resize;
}

}  // namespace hepinfer::nn
