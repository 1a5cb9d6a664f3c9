// Exact weighted distance covariance / correlation and its gradient (see hepinfer/disco.hpp).
//
// Both estimators share one form. With R^a_i = sum_j w_j a_ij, T^a = sum_i w_i R^a_i,
// r^a_i = R^a_i / rdiv, c^a = T^a / tdiv (V: rdiv = W, tdiv = W^2, norm = W^2 with W = sum w;
// U: w = 1, rdiv = n - 2, tdiv = (n - 1)(n - 2), norm = n (n - 3)) the centred matrix is
// A_ij = a_ij - r^a_i - r^a_j + c^a, and because the centring is an orthogonal projection
//   norm * dCov^2(x, y) = sum_ij w_i w_j a_ij B_ij = S - 2 sum_i w_i r^b_i R^a_i + c^b T^a,
// with S = sum_ij w_i w_j a_ij b_ij. The value is linear in a with coefficients w_i w_j B_ij, so
//   d dCov^2 / d x_k = (2 / norm) w_k sum_j w_j B_kj s_kj,   s_kj = d a_kj / d x_k,
// and d dCov^2(x, x) / d x_k is twice that with A in place of B.
// 1-D: S and sum_j w_j s_kj b_kj come from one dominance sweep (the merge sort by y of the
// x-ordered events, run backwards as stable binary splits of the y-ordered events by the bits of
// their x position: branch-free, and finished in cache once a group fits); every other term is
// a prefix sum in x or y order. The two orders come from LSD radix sorts of (key, index) pairs;
// the per-event values follow by one gather. N-D: two O(n^2) passes over row blocks.
#include "hepinfer/disco.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "common/parallel.hpp"
#include "hepinfer/errors.hpp"

namespace hepinfer::disco {
namespace {

/// Neumaier-compensated sum.
struct Sum {
  double s = 0.0, c = 0.0;
  void add(double v) {
    const double t = s + v;
    if (std::fabs(s) >= std::fabs(v)) c += (s - t) + v;
    else c += (v - t) + s;
    s = t;
  }
  double value() const { return s + c; }
};

std::string fmt(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return std::to_string(v);
}

void check_finite(const double* v, std::size_t n, std::size_t d, const char* name) {
  if (v == nullptr) throw InputError(std::string(name) + " is a null pointer");
  for (std::size_t i = 0; i < n * d; ++i) {
    if (!std::isfinite(v[i])) {
      std::string where = std::to_string(i / d);
      if (d > 1) where += ", " + std::to_string(i % d);
      throw InputError(std::string(name) + "[" + where + "] is not finite (" + fmt(v[i]) + ")");
    }
  }
}

/// Checks the event count, options and weights; returns the sum of the weights (n when w is null).
double checked_weight_sum(const double* w, std::size_t n, const Options& o) {
  if (o.unbiased) {
    if (n < 4) throw InputError("the unbiased distance correlation needs at least 4 events, got " + std::to_string(n));
    if (w != nullptr) throw InputError("the unbiased (U-centred) distance correlation does not support weights");
  } else if (n < 2) {
    throw InputError("the distance correlation needs at least 2 events, got " + std::to_string(n));
  }
  if (n >= static_cast<std::size_t>(std::numeric_limits<std::uint32_t>::max()))
    throw InputError("too many events for the distance correlation: " + std::to_string(n));
  if (o.n_threads < 0) throw InputError("n_threads must be >= 0, got " + std::to_string(o.n_threads));
  Sum total;
  if (w == nullptr) {
    for (std::size_t i = 0; i < n; ++i) total.add(1.0);
    return total.value();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(w[i])) throw InputError("weights[" + std::to_string(i) + "] is not finite (" + fmt(w[i]) + ")");
    if (w[i] < 0) throw InputError("weights[" + std::to_string(i) + "] is negative (" + fmt(w[i]) + ")");
    total.add(w[i]);
  }
  if (!(total.value() > 0)) throw InputError("the weights sum to zero");
  if (!std::isfinite(total.value())) throw InputError("the weights sum to infinity");
  return total.value();
}

/// Checks as checked_weight_sum; returns the weights (1 when w is null) and their sum.
std::vector<double> checked_weights(const double* w, std::size_t n, const Options& o, double& W) {
  W = checked_weight_sum(w, n, o);
  return w != nullptr ? std::vector<double>(w, w + n) : std::vector<double>(n, 1.0);
}

/// Normalisations of the V (weighted) and U (unit weights) centrings.
struct Centring {
  double norm, rdiv, tdiv;
};
Centring centring(const Options& o, double W, std::size_t n) {
  const double nd = static_cast<double>(n);
  if (o.unbiased) return {nd * (nd - 3.0), nd - 2.0, (nd - 1.0) * (nd - 2.0)};
  return {W * W, W, W * W};
}

/// Uninitialised buffer of n trivially constructible elements (no zero-filling pass).
template <class T>
using Buffer = std::unique_ptr<T[]>;
template <class T>
Buffer<T> buffer(std::size_t n) {
  static_assert(std::is_trivially_default_constructible_v<T>);
  return Buffer<T>(new T[n]);
}

/// Prefetch distance (elements) of the loops that gather or scatter in a permuted order.
constexpr std::size_t kAhead = 64;

/// Hint that *p will be read (write = false) or written (write = true) soon.
template <bool Write = false>
inline void prefetch(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, Write ? 1 : 0);
#else
  (void)p;
#endif
}

/// Sort key of one event and its payload (an event index or a position in another order).
struct KeyIdx {
  std::uint64_t key;
  std::uint32_t idx, pad;
};

/// Order-preserving map of a double to an unsigned integer (-0.0 and +0.0 map to the same key).
std::uint64_t sort_key(double v) {
  v += 0.0;  // -0.0 -> +0.0
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return (b >> 63) ? ~b : (b | (std::uint64_t{1} << 63));
}

/// Inverse of sort_key.
double key_value(std::uint64_t k) {
  const std::uint64_t b = (k >> 63) ? (k & ~(std::uint64_t{1} << 63)) : ~k;
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

/// Digit histograms of the LSD radix sort (11-bit digits of the 64-bit keys), filled while the
/// keys are written so that the sort needs no extra pass over them.
class RadixHistogram {
 public:
  static constexpr int kBits = 11, kDigits = 6;
  static constexpr std::size_t kBuckets = std::size_t{1} << kBits, kMask = kBuckets - 1;
  explicit RadixHistogram(std::size_t n) : used_(n >= kMinRadix), counts_(used_ ? kDigits * kBuckets : 0, 0) {}
  bool used() const { return used_; }
  void add(std::uint64_t key) {
    std::size_t* c = counts_.data();
    for (int d = 0; d < kDigits; ++d, c += kBuckets) ++c[(key >> (d * kBits)) & kMask];
  }
  std::size_t* digit(int d) { return counts_.data() + static_cast<std::size_t>(d) * kBuckets; }
  static constexpr std::size_t kMinRadix = 4096;  ///< smaller arrays use std::sort

 private:
  bool used_;
  std::vector<std::size_t> counts_;
};

/// Sorts a[0, n) by (key, idx), i.e. stably by key when idx is the input position; tmp is scratch
/// of the same size; hist holds the digit counts of the keys when hist.used(). LSD radix sort
/// (digits equal for every element skipped) for large arrays. Returns the buffer holding the
/// result (a or tmp).
KeyIdx* sort_pairs(KeyIdx* a, KeyIdx* tmp, std::size_t n, RadixHistogram& hist) {
  if (!hist.used()) {
    std::sort(a, a + n,
              [](const KeyIdx& l, const KeyIdx& r) { return l.key < r.key || (l.key == r.key && l.idx < r.idx); });
    return a;
  }
  constexpr std::size_t kBuckets = RadixHistogram::kBuckets, kMask = RadixHistogram::kMask;
  for (int d = 0; d < RadixHistogram::kDigits; ++d) {
    std::size_t* h = hist.digit(d);
    const int shift = d * RadixHistogram::kBits;
    if (h[(a[0].key >> shift) & kMask] == n) continue;  // every element has this digit
    std::size_t pos = 0;
    for (std::size_t j = 0; j < kBuckets; ++j) {
      const std::size_t c = h[j];
      h[j] = pos;
      pos += c;
    }
    for (std::size_t i = 0; i < n; ++i) tmp[h[(a[i].key >> shift) & kMask]++] = a[i];
    std::swap(a, tmp);
  }
  return a;
}

/// For events sorted by key (equal keys: equal values) and two per-event quantities p, q in the
/// same order: out_p[k] = sum_{v_j < v_k} p_j - sum_{v_j > v_k} p_j, out_q likewise.
void signed_sums(const KeyIdx* keys, const double* p, const double* q, std::size_t n, double* out_p, double* out_q) {
  Sum total_p, total_q;
  for (std::size_t k = 0; k < n; ++k) {
    total_p.add(p[k]);
    total_q.add(q[k]);
  }
  const double tot_p = total_p.value(), tot_q = total_q.value();
  Sum before_p, before_q;
  std::size_t g0 = 0;
  while (g0 < n) {
    std::size_t g1 = g0 + 1;
    while (g1 < n && keys[g1].key == keys[g0].key) ++g1;
    Sum through_p = before_p, through_q = before_q;
    for (std::size_t k = g0; k < g1; ++k) {
      through_p.add(p[k]);
      through_q.add(q[k]);
    }
    const double vp = before_p.value() - (tot_p - through_p.value());
    const double vq = before_q.value() - (tot_q - through_q.value());
    for (std::size_t k = g0; k < g1; ++k) {
      out_p[k] = vp;
      out_q[k] = vq;
    }
    before_p = through_p;
    before_q = through_q;
    g0 = g1;
  }
}

/// Row sums R_k = sum_j w_j |v_k - v_j| for events sorted by key (vc: centred values, wt:
/// weights, same order). P (size n; may be R) receives sum_{v_j < v_k} w_j - sum_{v_j > v_k} w_j;
/// tmp is scratch of size 2n.
void row_sums_sorted(const KeyIdx* keys, const double* vc, const double* wt, std::size_t n, double* R, double* P,
                     double* tmp) {
  double* wx = tmp;
  double* X = tmp + n;
  for (std::size_t k = 0; k < n; ++k) wx[k] = wt[k] * vc[k];
  signed_sums(keys, wt, wx, n, P, X);
  for (std::size_t k = 0; k < n; ++k) R[k] = std::max(0.0, vc[k] * P[k] - X[k]);
}

/// One event in the dominance sweep: centred x and y, weight, gradient accumulator (only
/// with WithGrad), position in x order and event index.
template <bool WithGrad>
struct SweepItem {
  double x, y, w;
  std::uint32_t xpos, event;
};
template <>
struct SweepItem<true> {
  double x, y, w, acc;
  std::uint32_t xpos, event;
};

/// One group of the sweep: src[lo, hi) holds the events with x positions in [lo, hi) in y order;
/// those with x position < mid go, in the same order, to dst[lo, mid), the others to
/// dst[mid, hi). For every event k of the second kind, with c = sums of (w, wx, wy, wxy) over the
/// events of the first kind before it, adds w_k (x_k (y_k c0 - c2) - (y_k c1 - c3)) to the
/// returned sum and y_k c0 - c2 to acc_k. Branch-free.
template <bool WithGrad>
double split_group(const SweepItem<WithGrad>* src, SweepItem<WithGrad>* dst, std::size_t lo, std::size_t mid,
                   std::size_t hi) {
  std::size_t i0 = lo, i1 = mid;
  double c0 = 0, c1 = 0, c2 = 0, c3 = 0, part = 0;
  for (std::size_t k = lo; k < hi; ++k) {
    SweepItem<WithGrad> e = src[k];
    const std::size_t right = e.xpos >= mid;
    const double r = static_cast<double>(right), l = 1.0 - r;
    const double g = e.y * c0 - c2;
    part += r * e.w * (e.x * g - (e.y * c1 - c3));
    if constexpr (WithGrad) e.acc += r * g;
    const double lw = l * e.w, lwx = lw * e.x;
    c0 += lw;
    c1 += lwx;
    c2 += lw * e.y;
    c3 += lwx * e.y;
    dst[right ? i1 : i0] = e;
    i1 += right;
    i0 += 1 - right;
  }
  return part;
}

constexpr std::size_t kSweepBlock = 4096;  ///< groups at most this large are finished in cache
constexpr int kLeafBits = 3;               ///< groups at most 2^kLeafBits large are done pair by pair

/// Sweep of the events with x positions [lo, hi), held in y order in src, from bit `bit` of the
/// x position down to bit 0 (lo is a multiple of 2^(bit+1), hi - lo <= 2^(bit+1)). Every level
/// halves the groups (split_group) and moves the events to the other buffer; at the end every
/// group is one event, so the events are in x order, in src if the number of levels is even.
/// Adds the split_group sums to `sum`.
template <bool WithGrad>
void sweep(SweepItem<WithGrad>* src, SweepItem<WithGrad>* dst, std::size_t lo, std::size_t hi, int bit, Sum& sum) {
  if (bit < 0 || hi <= lo) return;
  if (hi - lo > kSweepBlock) {
    const std::size_t mid = std::min(hi, lo + (std::size_t{1} << bit));
    sum.add(split_group(src, dst, lo, mid, hi));
    sweep(dst, src, lo, mid, bit - 1, sum);
    sweep(dst, src, mid, hi, bit - 1, sum);
    return;
  }
  int b = bit;
  for (; b >= kLeafBits; --b) {
    const std::size_t half = std::size_t{1} << b;
    double level = 0;
    for (std::size_t g = lo; g < hi; g += 2 * half)
      level += split_group(src, dst, g, std::min(hi, g + half), std::min(hi, g + 2 * half));
    sum.add(level);
    std::swap(src, dst);
  }
  // the last b + 1 levels at once: groups of at most 2^kLeafBits events, pair by pair; the events
  // go where those levels would leave them (dst after an odd number of levels, else src)
  const std::size_t size = std::size_t{1} << (b + 1);
  SweepItem<WithGrad>* out = (b + 1) % 2 == 1 ? dst : src;
  double level = 0;
  for (std::size_t g = lo; g < hi; g += size) {
    const std::size_t m = std::min(hi, g + size) - g;
    SweepItem<WithGrad> e[std::size_t{1} << kLeafBits];
    std::copy(src + g, src + g + m, e);
    for (std::size_t k = 1; k < m; ++k) {
      double acc = 0;
      for (std::size_t j = 0; j < k; ++j) {
        // j is before k in y order; the pair counts when j is also before k in x order
        const double left = static_cast<double>(e[j].xpos < e[k].xpos);
        const double dy = left * e[j].w * (e[k].y - e[j].y);
        acc += dy;
        level += e[k].w * (e[k].x - e[j].x) * dy;
      }
      if constexpr (WithGrad) e[k].acc += acc;
    }
    for (std::size_t k = 0; k < m; ++k) out[e[k].xpos] = e[k];
  }
  sum.add(level);
}

/// Final assembly shared by the 1-D and N-D paths.
Result assemble(double S_xy, double S_xx, double S_yy, const double* w, const double* Ra, const double* Rb,
                std::size_t n, const Centring& c) {
  Sum Ta, Tb, cross_ab, cross_aa, cross_bb;
  for (std::size_t i = 0; i < n; ++i) {
    Ta.add(w[i] * Ra[i]);
    Tb.add(w[i] * Rb[i]);
    cross_ab.add(w[i] * Ra[i] * Rb[i]);
    cross_aa.add(w[i] * Ra[i] * Ra[i]);
    cross_bb.add(w[i] * Rb[i] * Rb[i]);
  }
  const double ta = Ta.value(), tb = Tb.value();
  Result r;
  r.dcov_xy = (S_xy - 2.0 * cross_ab.value() / c.rdiv + ta * tb / c.tdiv) / c.norm;
  r.dcov_xx = (S_xx - 2.0 * cross_aa.value() / c.rdiv + ta * ta / c.tdiv) / c.norm;
  r.dcov_yy = (S_yy - 2.0 * cross_bb.value() / c.rdiv + tb * tb / c.tdiv) / c.norm;
  const double den = std::sqrt(std::fabs(r.dcov_xx)) * std::sqrt(std::fabs(r.dcov_yy));
  r.dcor2 = den > 0 ? r.dcov_xy / den : 0.0;
  return r;
}

/// d dCor^2 from the gradients of dCov^2(x, y) (gc) and dCov^2(x, x) (gxx), in place into out.
void dcor_gradient(const Result& r, const double* gc, const double* gxx, std::size_t m, double* out) {
  const double den = std::sqrt(std::fabs(r.dcov_xx)) * std::sqrt(std::fabs(r.dcov_yy));
  if (!(den > 0)) {
    std::fill(out, out + m, 0.0);
    return;
  }
  const double f = 0.5 * r.dcor2 / r.dcov_xx;
  for (std::size_t k = 0; k < m; ++k) out[k] = gc[k] / den - f * gxx[k];
}

}  // namespace

Result distance_correlation_1d(const double* x, const double* y, const double* w, std::size_t n, const Options& options,
                               double* grad_dcor2, double* grad_dcov) {
  const double W = checked_weight_sum(w, n, options);
  check_finite(x, n, 1, "x");
  check_finite(y, n, 1, "y");
  const Centring cen = centring(options, W, n);
  const bool want_grad = grad_dcor2 != nullptr || grad_dcov != nullptr;
  auto weight = [w](std::size_t i) { return w != nullptr ? w[i] : 1.0; };

  // ---- y order (ties by event index): centred y, weights, raw x, event index and the row sums
  // of b. Then the x order, ties broken by y position, from a stable sort of the y-ordered events.
  auto pairs_a = buffer<KeyIdx>(n), pairs_b = buffer<KeyIdx>(n);
  // x and w interleaved: gathered in y order below, one cache line per event instead of two
  auto xw = buffer<double>(2 * n);
  RadixHistogram hist_y(n), hist_x(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t key = sort_key(y[i]);
    pairs_a[i] = {key, static_cast<std::uint32_t>(i), 0};
    if (hist_y.used()) hist_y.add(key);
    xw[2 * i] = x[i];
    xw[2 * i + 1] = weight(i);
  }
  const KeyIdx* ysort = sort_pairs(pairs_a.get(), pairs_b.get(), n, hist_y);
  KeyIdx* xpairs = ysort == pairs_a.get() ? pairs_b.get() : pairs_a.get();
  const double y_mid = key_value(ysort[n / 2].key);
  auto yc_y = buffer<double>(n), w_y = buffer<double>(n), x_y = buffer<double>(n), Rb_y = buffer<double>(n);
  auto event = buffer<std::uint32_t>(n);  // event index of each y position
  for (std::size_t k = 0; k < n; ++k) {
    if (k + kAhead < n) prefetch(&xw[2 * std::size_t{ysort[k + kAhead].idx}]);
    const std::uint32_t i = ysort[k].idx;
    event[k] = i;
    yc_y[k] = key_value(ysort[k].key) - y_mid;
    const double xi = xw[2 * std::size_t{i}], wi = xw[2 * std::size_t{i} + 1];
    w_y[k] = wi;
    x_y[k] = xi;
    const std::uint64_t key = sort_key(xi);
    xpairs[k] = {key, static_cast<std::uint32_t>(k), 0};
    if (hist_x.used()) hist_x.add(key);
  }
  row_sums_sorted(ysort, yc_y.get(), w_y.get(), n, Rb_y.get(), Rb_y.get(), xw.get());  // xw: scratch from here

  // xsort[p].idx: y position of the event at x position p
  const KeyIdx* xsort = sort_pairs(xpairs, const_cast<KeyIdx*>(ysort), n, hist_x);
  const double x_mid = key_value(xsort[n / 2].key);

  // ---- S = sum_ij w_i w_j |dx| |dy| and DL_k = sum_{x_j < x_k} w_j |y_k - y_j|.
  // With c_k = sums of (w, wx, wy, wxy) over earlier events (in x order) with y_j <= y_k and t_k
  // the same over all earlier events, f_k(c) = x_k y_k c0 - x_k c2 - y_k c1 + c3 is linear and
  //   S / 2 = sum_k w_k [f_k(c_k) - f_k(t_k - c_k)] = sum_k w_k [2 f_k(c_k) - f_k(t_k)],
  //   DL_k (lexicographic) = 2 (y_k c0 - c2) - (y_k t0 - t2)
  // (pairs with equal y contribute 0, so which of them count as "y_j <= y_k" is immaterial).
  // The c_k terms come from a sweep over the bits of the x position, most significant first:
  // the y-ordered events are split into groups of consecutive x positions, halved at every
  // level (split_group); the events of a right half see the sums of the left half before them
  // in y order. After the last level the events are in x order; t_k are prefix sums.
  auto run_sweep = [&](auto tag, auto& out_x, auto& out_y, auto& out_w, double* acc) {
    constexpr bool G = decltype(tag)::value;
    auto a = buffer<SweepItem<G>>(n), b = buffer<SweepItem<G>>(n);
    {
      auto xpos = buffer<std::uint32_t>(n);
      for (std::size_t p = 0; p < n; ++p) {
        if (p + kAhead < n) prefetch<true>(&xpos[xsort[p + kAhead].idx]);
        xpos[xsort[p].idx] = static_cast<std::uint32_t>(p);
      }
      for (std::size_t k = 0; k < n; ++k) {
        SweepItem<G>& e = a[k];
        e.x = x_y[k] - x_mid;
        e.y = yc_y[k];
        e.w = w_y[k];
        if constexpr (G) e.acc = 0;
        e.xpos = xpos[k];
        e.event = event[k];
      }
    }
    int bits = 0;
    while ((std::size_t{1} << bits) < n) ++bits;
    Sum swept;
    sweep<G>(a.get(), b.get(), 0, n, bits - 1, swept);
    const SweepItem<G>* done = bits % 2 == 0 ? a.get() : b.get();
    for (std::size_t p = 0; p < n; ++p) {
      out_x[p] = done[p].x;
      out_y[p] = done[p].y;
      out_w[p] = done[p].w;
      event[p] = done[p].event;  // from here on: event index of each x position
      if constexpr (G) acc[p] = done[p].acc;
    }
    return swept.value();
  };
  // x-ordered arrays reuse the y-ordered buffers that are no longer needed
  auto& yc = yc_y;  // x-ordered arrays in the buffers of the y-ordered ones (read before the sweep)
  auto& ws = w_y;
  Buffer<double> DL;
  double swept;
  if (want_grad) {
    DL = buffer<double>(n);
    swept = run_sweep(std::true_type(), x_y, yc, ws, DL.get());
  } else {
    swept = run_sweep(std::false_type(), x_y, yc, ws, nullptr);
  }
  const auto xc = std::move(x_y);
  auto Rb_s = buffer<double>(n);
  for (std::size_t p = 0; p < n; ++p) {
    if (p + kAhead < n) prefetch(&Rb_y[xsort[p + kAhead].idx]);
    Rb_s[p] = Rb_y[xsort[p].idx];
  }
  Rb_y.reset();
  auto Ra_s = buffer<double>(n), P = buffer<double>(n);
  auto& scratch = xw;
  row_sums_sorted(xsort, xc.get(), ws.get(), n, Ra_s.get(), P.get(), scratch.get());

  Sum S_half;
  S_half.add(2.0 * swept);
  {
    double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const double xk = xc[k], yk = yc[k], wk = ws[k];
      S_half.add(-wk * (xk * (yk * t0 - t2) - (yk * t1 - t3)));
      if (want_grad) DL[k] = 2.0 * DL[k] - (yk * t0 - t2);
      t0 += wk;
      t1 += wk * xk;
      t2 += wk * yk;
      t3 += wk * xk * yk;
    }
  }
  const double S_xy = 2.0 * S_half.value();

  // S_xx = sum_ij w_i w_j (x_i - x_j)^2 = 2 W sum_i w_i (x_i - xbar)^2
  auto sum_sq = [&](const double* v) {
    Sum m;
    for (std::size_t k = 0; k < n; ++k) m.add(ws[k] * v[k]);
    const double mean = m.value() / W;
    Sum q;
    for (std::size_t k = 0; k < n; ++k) q.add(ws[k] * (v[k] - mean) * (v[k] - mean));
    return 2.0 * W * q.value();
  };
  const Result r = assemble(S_xy, sum_sq(xc.get()), sum_sq(yc.get()), ws.get(), Ra_s.get(), Rb_s.get(), n, cen);
  if (!want_grad) return r;

  // ---- gradients, in x order
  Sum Ta, Tb, Xw;
  for (std::size_t k = 0; k < n; ++k) {
    Ta.add(ws[k] * Ra_s[k]);
    Tb.add(ws[k] * Rb_s[k]);
    Xw.add(ws[k] * xc[k]);
  }
  const double ca = Ta.value() / cen.tdiv, cb = Tb.value() / cen.tdiv, sum_wx = Xw.value();
  double* Qa = scratch.get();
  double* Qb = scratch.get() + n;
  {
    auto qa = buffer<double>(n), qb = buffer<double>(n);
    for (std::size_t k = 0; k < n; ++k) {
      qa[k] = ws[k] * Ra_s[k] / cen.rdiv;
      qb[k] = ws[k] * Rb_s[k] / cen.rdiv;
    }
    signed_sums(xsort, qa.get(), qb.get(), n, Qa, Qb);
  }
  double* gc = Ra_s.get();  // overwritten in place: element k is read before it is written
  double* gxx = Rb_s.get();
  std::size_t g0 = 0;
  while (g0 < n) {
    std::size_t g1 = g0 + 1;
    while (g1 < n && xsort[g1].key == xsort[g0].key) ++g1;
    // tie_k = sum over the tie group of w_j |y_k - y_j| (the group is sorted by y)
    double gw = 0, gwy = 0;
    for (std::size_t k = g0; k < g1; ++k) {
      gw += ws[k];
      gwy += ws[k] * yc[k];
    }
    double bw = 0, bwy = 0;  // group members before k
    for (std::size_t k = g0; k < g1; ++k) {
      const double yk = yc[k];
      const double aw = gw - bw - ws[k], awy = gwy - bwy - ws[k] * yk;
      const double before = yk * bw - bwy;  // earlier members of the group (y_j <= y_k)
      const double tie = (g1 - g0 > 1) ? before + (awy - yk * aw) : 0.0;
      bw += ws[k];
      bwy += ws[k] * yk;
      const double dl = DL[k] - before;  // strictly smaller x only
      const double rbk = Rb_s[k], rak = Ra_s[k];
      const double D = 2.0 * dl - rbk + tie;
      const double Dx = W * xc[k] - sum_wx;
      const double rb = rbk / cen.rdiv, ra = rak / cen.rdiv;
      gc[k] = 2.0 / cen.norm * ws[k] * (D - (rb - cb) * P[k] - Qb[k]);
      gxx[k] = 4.0 / cen.norm * ws[k] * (Dx - (ra - ca) * P[k] - Qa[k]);
    }
    g0 = g1;
  }
  auto scatter = [&](const double* v, double* dst) {  // x order -> event order
    for (std::size_t k = 0; k < n; ++k) {
      if (k + kAhead < n) prefetch<true>(&dst[event[k + kAhead]]);
      dst[event[k]] = v[k];
    }
  };
  if (grad_dcov != nullptr) scatter(gc, grad_dcov);
  if (grad_dcor2 != nullptr) {
    double* out = scratch.get();
    dcor_gradient(r, gc, gxx, n, out);
    scatter(out, grad_dcor2);
  }
  return r;
}

// ---------------------------------------------------------------- vector-valued x or y, O(n^2)
namespace {

constexpr std::size_t kRowBlock = 64;
constexpr std::size_t kColTile = 1024;

double distance(const double* a, const double* b, std::size_t d) {
  if (d == 1) return std::fabs(a[0] - b[0]);
  double s = 0;
  for (std::size_t t = 0; t < d; ++t) {
    const double e = a[t] - b[t];
    s += e * e;
  }
  return std::sqrt(s);
}

/// Runs body(first_row, end_row) over fixed row blocks on n_threads threads.
template <class Body>
void for_row_blocks(std::size_t n, int n_threads, const Body& body) {
  parallel::parallel_for(n, kRowBlock, parallel::resolve_threads(n_threads),
                         [&](std::size_t, std::size_t i0, std::size_t i1) { body(i0, i1); });
}

}  // namespace

Result distance_correlation_nd(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                               std::size_t n, const Options& options, double* grad_dcor2, double* grad_dcov) {
  if (dx == 0) throw InputError("x must have at least one column");
  if (dy == 0) throw InputError("y must have at least one column");
  double W = 0;
  const std::vector<double> wv = checked_weights(w, n, options, W);
  check_finite(x, n, dx, "x");
  check_finite(y, n, dy, "y");
  const Centring cen = centring(options, W, n);

  // pass 1: row sums of a and b
  std::vector<double> Ra(n), Rb(n);
  for_row_blocks(n, options.n_threads, [&](std::size_t i0, std::size_t i1) {
    double sa[kRowBlock] = {}, sb[kRowBlock] = {};
    for (std::size_t j0 = 0; j0 < n; j0 += kColTile) {
      const std::size_t j1 = std::min(n, j0 + kColTile);
      for (std::size_t i = i0; i < i1; ++i) {
        double a = 0, b = 0;
        for (std::size_t j = j0; j < j1; ++j) {
          a += wv[j] * distance(x + i * dx, x + j * dx, dx);
          b += wv[j] * distance(y + i * dy, y + j * dy, dy);
        }
        sa[i - i0] += a;
        sb[i - i0] += b;
      }
    }
    for (std::size_t i = i0; i < i1; ++i) {
      Ra[i] = sa[i - i0];
      Rb[i] = sb[i - i0];
    }
  });
  Sum Ta, Tb;
  for (std::size_t i = 0; i < n; ++i) {
    Ta.add(wv[i] * Ra[i]);
    Tb.add(wv[i] * Rb[i]);
  }
  const double ca = Ta.value() / cen.tdiv, cb = Tb.value() / cen.tdiv;

  // pass 2: per-row S sums and (optionally) the gradient sums
  const bool want_grad = grad_dcor2 != nullptr || grad_dcov != nullptr;
  std::vector<double> Sxy(n), Sxx(n), Syy(n);
  std::vector<double> gc(want_grad ? n * dx : 0), gxx(want_grad ? n * dx : 0);
  for_row_blocks(n, options.n_threads, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      Sxy[i] = Sxx[i] = Syy[i] = 0;
      if (want_grad)
        for (std::size_t t = 0; t < dx; ++t) gc[i * dx + t] = gxx[i * dx + t] = 0;
    }
    for (std::size_t j0 = 0; j0 < n; j0 += kColTile) {
      const std::size_t j1 = std::min(n, j0 + kColTile);
      for (std::size_t i = i0; i < i1; ++i) {
        const double* xi = x + i * dx;
        const double rai = Ra[i] / cen.rdiv, rbi = Rb[i] / cen.rdiv;
        double sxy = 0, sxx = 0, syy = 0;
        for (std::size_t j = j0; j < j1; ++j) {
          const double a = distance(xi, x + j * dx, dx);
          const double b = distance(y + i * dy, y + j * dy, dy);
          const double wa = wv[j] * a;
          sxy += wa * b;
          sxx += wa * a;
          syy += wv[j] * b * b;
          if (want_grad && a > 0) {
            const double B = b - rbi - Rb[j] / cen.rdiv + cb;
            const double A = a - rai - Ra[j] / cen.rdiv + ca;
            const double* xj = x + j * dx;
            for (std::size_t t = 0; t < dx; ++t) {
              const double u = (xi[t] - xj[t]) / a;
              gc[i * dx + t] += wv[j] * B * u;
              gxx[i * dx + t] += wv[j] * A * u;
            }
          }
        }
        Sxy[i] += sxy;
        Sxx[i] += sxx;
        Syy[i] += syy;
      }
    }
  });
  Sum sxy, sxx, syy;
  for (std::size_t i = 0; i < n; ++i) {
    sxy.add(wv[i] * Sxy[i]);
    sxx.add(wv[i] * Sxx[i]);
    syy.add(wv[i] * Syy[i]);
  }
  const Result r = assemble(sxy.value(), sxx.value(), syy.value(), wv.data(), Ra.data(), Rb.data(), n, cen);
  if (!want_grad) return r;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t t = 0; t < dx; ++t) {
      gc[i * dx + t] *= 2.0 / cen.norm * wv[i];
      gxx[i * dx + t] *= 4.0 / cen.norm * wv[i];
    }
  if (grad_dcov != nullptr) std::copy(gc.begin(), gc.end(), grad_dcov);
  if (grad_dcor2 != nullptr) dcor_gradient(r, gc.data(), gxx.data(), n * dx, grad_dcor2);
  return r;
}

}  // namespace hepinfer::disco
