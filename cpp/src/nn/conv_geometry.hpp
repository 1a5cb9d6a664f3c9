#pragma once
// Window geometry shared by the convolution and pooling families (ops_conv.cpp, ops_pool.cpp):
// 1-D, 2-D and 3-D windows are all held as 3-D, the missing leading spatial dimensions of
// size 1 (kernel 1, stride 1, no padding), so that one loop nest serves every rank.
#include <algorithm>
#include <string>
#include <vector>

#include "nn/graph.hpp"
#include "nn/op_import.hpp"
#include "nn/op_util.hpp"

namespace hepinfer::nn {

/// auto_pad as stored in Node::i1.
enum AutoPad : std::int64_t { kNotSet = 0, kValid = 1, kSameUpper = 2, kSameLower = 3 };

inline std::int64_t parse_auto_pad(ImportContext& at) {
  const std::string ap = at.s("auto_pad", "NOTSET");
  if (ap == "NOTSET") return kNotSet;
  if (ap == "VALID") return kValid;
  if (ap == "SAME_UPPER") return kSameUpper;
  if (ap == "SAME_LOWER") return kSameLower;
  at.fail("auto_pad '" + ap + "' is not supported (NOTSET, VALID, SAME_UPPER or SAME_LOWER)");
}

/// Checks that strides (n.v1), pads (n.v2) and dilations (n.v3), where given, agree with each
/// other and with `ks` (kernel_shape, may be empty) on the number of spatial dimensions, that
/// there are at most 3 of them, and that the values are in range.
inline void check_window_attributes(ImportContext& at, const std::vector<I64>& ks, const Node& n) {
  const std::size_t sd = std::max({ks.size(), n.v1.size(), n.v2.size() / 2, n.v3.size()});
  if ((!ks.empty() && ks.size() != sd) || (!n.v1.empty() && n.v1.size() != sd) ||
      (!n.v2.empty() && n.v2.size() != 2 * sd) || (!n.v3.empty() && n.v3.size() != sd))
    at.fail("kernel_shape, strides, pads and dilations disagree on the number of spatial dimensions");
  if (sd > 3) at.fail(std::to_string(sd) + " spatial dimensions; at most 3 (1-D, 2-D, 3-D) are supported");
  for (I64 x : ks)
    if (x < 1) at.fail("kernel_shape must be >= 1");
  for (I64 x : n.v1)
    if (x < 1) at.fail("strides must be >= 1");
  for (I64 x : n.v3)
    if (x < 1) at.fail("dilations must be >= 1");
  for (I64 x : n.v2)
    if (x < 0) at.fail("pads must be >= 0");
}

/// A window over 3 spatial dimensions (1-D and 2-D windows padded with leading size-1 dims).
struct Window3 {
  I64 in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1};
  I64 pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0}, out[3] = {1, 1, 1};
  I64 n_in() const noexcept { return in[0] * in[1] * in[2]; }
  I64 n_out() const noexcept { return out[0] * out[1] * out[2]; }
  I64 n_k() const noexcept { return k[0] * k[1] * k[2]; }
};

/// Fills a Window3 from the node's strides (v1), pads (v2), dilations (v3) and auto_pad (i1)
/// for input spatial sizes `in` and kernel sizes `k` (sd of each), computing the output sizes
/// (ceil_mode: the pooling rule, a last window must start inside the input or its left
/// padding). Throws OpError when the attributes do not fit the input's rank or the window is
/// larger than the padded input.
inline Window3 make_window(const Node& n, int sd, const I64* in, const I64* k, bool ceil_mode,
                           bool use_dilations = true) {
  if (sd < 1 || sd > 3) throw OpError(std::to_string(sd) + " spatial dimensions; 1-D to 3-D windows are supported");
  const auto usd = static_cast<std::size_t>(sd);
  if ((!n.v1.empty() && n.v1.size() != usd) || (!n.v2.empty() && n.v2.size() != 2 * usd) ||
      (!n.v3.empty() && n.v3.size() != usd))
    throw OpError(
        "strides, pads or dilations are given for a different number of spatial dimensions than the input's " +
        std::to_string(sd));
  Window3 w;
  const int off = 3 - sd;
  for (int i = 0; i < sd; ++i) {
    const auto ui = static_cast<std::size_t>(i);
    const int j = i + off;
    w.in[j] = in[i];
    w.k[j] = k[i];
    w.s[j] = n.v1.empty() ? 1 : n.v1[ui];
    w.d[j] = n.v3.empty() || !use_dilations ? 1 : n.v3[ui];
    w.pb[j] = n.v2.empty() ? 0 : n.v2[ui];
    w.pe[j] = n.v2.empty() ? 0 : n.v2[ui + usd];
    const I64 dk = (w.k[j] - 1) * w.d[j] + 1;
    if (n.i1 == kValid) {
      w.pb[j] = w.pe[j] = 0;
    } else if (n.i1 == kSameUpper || n.i1 == kSameLower) {
      const I64 o = (w.in[j] + w.s[j] - 1) / w.s[j];
      const I64 total = std::max<I64>((o - 1) * w.s[j] + dk - w.in[j], 0);
      w.pb[j] = n.i1 == kSameUpper ? total / 2 : total - total / 2;
      w.pe[j] = total - w.pb[j];
    }
    const I64 span = w.in[j] + w.pb[j] + w.pe[j] - dk;
    if (span < 0)
      throw OpError("the window (" + std::to_string(dk) + " wide with dilation) is larger than the padded input (" +
                    std::to_string(w.in[j] + w.pb[j] + w.pe[j]) + ") in spatial dimension " + std::to_string(i));
    I64 o = span / w.s[j] + 1;
    if (ceil_mode && n.i1 == kNotSet) {
      o = (span + w.s[j] - 1) / w.s[j] + 1;
      if ((o - 1) * w.s[j] >= w.in[j] + w.pb[j]) --o;
    }
    w.out[j] = o;
  }
  return w;
}

/// The first and one-past-last kernel taps t (in [0, k)) whose input coordinate
/// base + t * d lies in [0, in).
inline void valid_taps(I64 base, I64 k, I64 d, I64 in, I64& lo, I64& hi) {
  lo = base >= 0 ? 0 : (-base + d - 1) / d;
  const I64 last = in - 1 - base;  // t * d <= last
  hi = last < 0 ? 0 : std::min(k, last / d + 1);
  if (hi < lo) hi = lo;
}

}  // namespace hepinfer::nn
