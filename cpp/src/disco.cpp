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
// 1-D: S and sum_j w_j s_kj b_kj come from one merge sort by y of the x-ordered events;
// every other term is a prefix sum in x or y order. N-D: two O(n^2) passes over row blocks.
#include "hepinfer/disco.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "hepinfer/errors.hpp"

namespace hepinfer::disco {
namespace {

/// Neumaier-compensated sum.
struct Sum {
  double s = 0.0, c = 0.0;
  void add(double v) {
    const double t = s + v;
    if (std::fabs(s) >= std::fabs(v))
      c += (s - t) + v;
    else
      c += (v - t) + s;
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

/// Checks the event count, options and weights; returns the weights (1 when w is null).
std::vector<double> checked_weights(const double* w, std::size_t n, const Options& o) {
  if (o.unbiased) {
    if (n < 4) throw InputError("the unbiased distance correlation needs at least 4 events, got " + std::to_string(n));
    if (w != nullptr) throw InputError("the unbiased (U-centred) distance correlation does not support weights");
  } else if (n < 2) {
    throw InputError("the distance correlation needs at least 2 events, got " + std::to_string(n));
  }
  if (n >= static_cast<std::size_t>(std::numeric_limits<std::uint32_t>::max()))
    throw InputError("too many events for the distance correlation: " + std::to_string(n));
  if (o.n_threads < 0) throw InputError("n_threads must be >= 0, got " + std::to_string(o.n_threads));
  std::vector<double> wv(n, 1.0);
  if (w != nullptr) {
    Sum total;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(w[i])) throw InputError("weights[" + std::to_string(i) + "] is not finite (" + fmt(w[i]) + ")");
      if (w[i] < 0) throw InputError("weights[" + std::to_string(i) + "] is negative (" + fmt(w[i]) + ")");
      wv[i] = w[i];
      total.add(w[i]);
    }
    if (!(total.value() > 0)) throw InputError("the weights sum to zero");
    if (!std::isfinite(total.value())) throw InputError("the weights sum to infinity");
  }
  return wv;
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

/// For values v sorted ascending (ties equal) and per-event q in the same order:
/// out_k = sum_{v_j < v_k} q_j - sum_{v_j > v_k} q_j.
void signed_sums(const std::vector<double>& v, const std::vector<double>& q, std::vector<double>& out) {
  const std::size_t n = v.size();
  out.resize(n);
  Sum total;
  for (double e : q) total.add(e);
  const double tot = total.value();
  Sum before;
  std::size_t g0 = 0;
  while (g0 < n) {
    std::size_t g1 = g0 + 1;
    while (g1 < n && v[g1] == v[g0]) ++g1;
    Sum through = before;
    for (std::size_t k = g0; k < g1; ++k) through.add(q[k]);
    const double b = before.value();
    const double a = tot - through.value();
    for (std::size_t k = g0; k < g1; ++k) out[k] = b - a;
    before = through;
    g0 = g1;
  }
}

/// Row sums R_k = sum_j w_j |v_k - v_j| for v sorted ascending (vc: centred values, same order;
/// ties are detected on v).
void row_sums_sorted(const std::vector<double>& v, const std::vector<double>& vc, const std::vector<double>& wt,
                     std::vector<double>& R) {
  const std::size_t n = v.size();
  std::vector<double> P, wx(n);
  for (std::size_t k = 0; k < n; ++k) wx[k] = wt[k] * vc[k];
  signed_sums(v, wt, P);
  std::vector<double> X;
  signed_sums(v, wx, X);
  R.resize(n);
  for (std::size_t k = 0; k < n; ++k) R[k] = std::max(0.0, vc[k] * P[k] - X[k]);
}

/// One event in the merge sweep: centred x, y, weight, gradient accumulator, y rank, x position.
struct MergeItem {
  double x, y, w, acc;
  std::uint32_t yr, pos;
};

/// Bottom-up merge sort of `a` (in x order) by y rank. For every event k it adds to `sum`
/// w_k f_k(c_k) and to a[.].acc the term y_k c0 - c2, where c_k are the sums of (w, wx, wy, wxy)
/// over the events before k in x order with y rank <= y rank of k. On return `a` is sorted by y rank.
void merge_sweep(std::vector<MergeItem>& a, std::vector<MergeItem>& b, Sum& sum) {
  const std::size_t n = a.size();
  for (std::size_t width = 1; width < n; width *= 2) {
    for (std::size_t lo = 0; lo < n; lo += 2 * width) {
      const std::size_t mid = std::min(n, lo + width), hi = std::min(n, lo + 2 * width);
      std::size_t i = lo, j = mid, out = lo;
      double c0 = 0, c1 = 0, c2 = 0, c3 = 0, part = 0;
      while (j < hi) {
        if (i < mid && a[i].yr <= a[j].yr) {
          const MergeItem& e = a[i++];
          const double wx = e.w * e.x;
          c0 += e.w;
          c1 += wx;
          c2 += e.w * e.y;
          c3 += wx * e.y;
          b[out++] = e;
        } else {
          MergeItem e = a[j++];
          if (c0 != 0) {
            const double g = e.y * c0 - c2;
            part += e.w * (e.x * g - (e.y * c1 - c3));
            e.acc += g;
          }
          b[out++] = e;
        }
      }
      while (i < mid) b[out++] = a[i++];
      sum.add(part);
    }
    a.swap(b);
  }
}

/// Order-preserving map of a double to an unsigned integer (-0.0 and +0.0 map to the same key).
std::uint64_t sort_key(double v) {
  v += 0.0;  // -0.0 -> +0.0
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return (b >> 63) ? ~b : (b | (std::uint64_t{1} << 63));
}

/// Stable sort of `a` by the double key(e) ascending: LSD radix sort (8-bit digits, digits that
/// are equal for every element skipped) for large arrays, std::stable_sort for small ones.
template <class T, class Key>
void stable_sort_by(std::vector<T>& a, Key key) {
  const std::size_t n = a.size();
  if (n < 2048) {
    std::stable_sort(a.begin(), a.end(), [&](const T& l, const T& r) { return key(l) < key(r); });
    return;
  }
  constexpr int kBits = 8, kDigits = 8;
  constexpr std::size_t kBuckets = std::size_t{1} << kBits;
  std::vector<std::uint64_t> keys(n);
  std::vector<std::size_t> hist(kDigits * kBuckets, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t k = sort_key(key(a[i]));
    keys[i] = k;
    for (int d = 0; d < kDigits; ++d) ++hist[static_cast<std::size_t>(d) * kBuckets + ((k >> (d * kBits)) & (kBuckets - 1))];
  }
  std::vector<T> b(n);
  std::vector<std::uint64_t> keys_b(n);
  for (int d = 0; d < kDigits; ++d) {
    std::size_t* h = hist.data() + static_cast<std::size_t>(d) * kBuckets;
    const std::size_t first = (keys[0] >> (d * kBits)) & (kBuckets - 1);
    if (h[first] == n) continue;  // every element has this digit
    std::size_t pos = 0;
    for (std::size_t j = 0; j < kBuckets; ++j) {
      const std::size_t c = h[j];
      h[j] = pos;
      pos += c;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t dst = h[(keys[i] >> (d * kBits)) & (kBuckets - 1)]++;
      b[dst] = a[i];
      keys_b[dst] = keys[i];
    }
    a.swap(b);
    keys.swap(keys_b);
  }
}

/// Final assembly shared by the 1-D and N-D paths.
Result assemble(double S_xy, double S_xx, double S_yy, const std::vector<double>& w, const std::vector<double>& Ra,
                const std::vector<double>& Rb, const Centring& c) {
  Sum Ta, Tb, cross_ab, cross_aa, cross_bb;
  for (std::size_t i = 0; i < w.size(); ++i) {
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

Result distance_correlation_1d(const double* x, const double* y, const double* w, std::size_t n,
                               const Options& options, double* grad_dcor2, double* grad_dcov) {
  std::vector<double> wv = checked_weights(w, n, options);
  check_finite(x, n, 1, "x");
  check_finite(y, n, 1, "y");
  Sum Wsum;
  for (double e : wv) Wsum.add(e);
  const double W = Wsum.value();
  const Centring cen = centring(options, W, n);

  // ---- y order: dense ranks, centred values and row sums of b. The sort keys carry every
  // per-event value, so that no step after a sort gathers from memory at random.
  struct YKey {
    double y, x, w;
    std::uint32_t idx;
  };
  std::vector<YKey> ykeys(n);
  for (std::size_t i = 0; i < n; ++i) ykeys[i] = {y[i], x[i], wv[i], static_cast<std::uint32_t>(i)};
  stable_sort_by(ykeys, [](const YKey& e) { return e.y; });
  const double y_mid = ykeys[n / 2].y;
  std::size_t n_ranks = 0;
  // ---- x order (ties broken by y rank, so that a tie group is sorted by y)
  struct XKey {
    double x, y, w, Rb;
    std::uint32_t yr, idx;
  };
  std::vector<XKey> xkeys(n);
  {
    std::vector<double> v(n), vc(n), wt(n), R;
    for (std::size_t k = 0; k < n; ++k) {
      v[k] = ykeys[k].y;
      vc[k] = ykeys[k].y - y_mid;
      wt[k] = ykeys[k].w;
    }
    row_sums_sorted(v, vc, wt, R);
    for (std::size_t k = 0; k < n; ++k) {  // in y order, so that the stable sort breaks x ties by y rank
      if (k == 0 || v[k] != v[k - 1]) ++n_ranks;
      const YKey& e = ykeys[k];
      xkeys[k] = {e.x, vc[k], e.w, R[k], static_cast<std::uint32_t>(n_ranks), e.idx};
    }
  }
  ykeys = std::vector<YKey>();
  stable_sort_by(xkeys, [](const XKey& e) { return e.x; });
  const double x_mid = xkeys[n / 2].x;
  std::vector<double> xs(n), xc(n), yc(n), ws(n), Rb_s(n), Ra_s;
  for (std::size_t k = 0; k < n; ++k) {
    xs[k] = xkeys[k].x;
    xc[k] = xkeys[k].x - x_mid;
    yc[k] = xkeys[k].y;
    ws[k] = xkeys[k].w;
    Rb_s[k] = xkeys[k].Rb;
  }
  row_sums_sorted(xs, xc, ws, Ra_s);

  // ---- S = sum_ij w_i w_j |dx| |dy| and DL_k = sum_{x_j < x_k} w_j |y_k - y_j|.
  // With c_k = sums of (w, wx, wy, wxy) over earlier events (in x order) with y_j <= y_k and t_k
  // the same over all earlier events, f_k(c) = x_k y_k c0 - x_k c2 - y_k c1 + c3 is linear and
  //   S / 2 = sum_k w_k [f_k(c_k) - f_k(t_k - c_k)] = sum_k w_k [2 f_k(c_k) - f_k(t_k)],
  //   DL_k (lexicographic) = 2 (y_k c0 - c2) - (y_k t0 - t2).
  // The c_k terms come from a bottom-up merge sort by y rank of the x-ordered events (each merge
  // adds the left run's running sums to the right run's events), t_k from prefix sums.
  const bool want_grad = grad_dcor2 != nullptr || grad_dcov != nullptr;
  std::vector<double> DL(want_grad ? n : 0);
  Sum S_half;
  {
    std::vector<MergeItem> cur(n), nxt(n);
    for (std::size_t k = 0; k < n; ++k)
      cur[k] = {xc[k], yc[k], ws[k], 0.0, xkeys[k].yr, static_cast<std::uint32_t>(k)};
    Sum merged;
    merge_sweep(cur, nxt, merged);
    S_half.add(2.0 * merged.value());
    if (want_grad)
      for (const MergeItem& e : cur) DL[e.pos] = 2.0 * e.acc;
    double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const double xk = xc[k], yk = yc[k], wk = ws[k];
      S_half.add(-wk * (xk * (yk * t0 - t2) - (yk * t1 - t3)));
      if (want_grad) DL[k] -= yk * t0 - t2;
      t0 += wk;
      t1 += wk * xk;
      t2 += wk * yk;
      t3 += wk * xk * yk;
    }
  }
  const double S_xy = 2.0 * S_half.value();

  // S_xx = sum_ij w_i w_j (x_i - x_j)^2 = 2 W sum_i w_i (x_i - xbar)^2
  auto sum_sq = [&](const std::vector<double>& v) {
    Sum m;
    for (std::size_t k = 0; k < n; ++k) m.add(ws[k] * v[k]);
    const double mean = m.value() / W;
    Sum q;
    for (std::size_t k = 0; k < n; ++k) q.add(ws[k] * (v[k] - mean) * (v[k] - mean));
    return 2.0 * W * q.value();
  };
  const Result r = assemble(S_xy, sum_sq(xc), sum_sq(yc), ws, Ra_s, Rb_s, cen);
  if (!want_grad) return r;

  // ---- gradients, in x order
  Sum Ta, Tb, Xw;
  for (std::size_t k = 0; k < n; ++k) {
    Ta.add(ws[k] * Ra_s[k]);
    Tb.add(ws[k] * Rb_s[k]);
    Xw.add(ws[k] * xc[k]);
  }
  const double ca = Ta.value() / cen.tdiv, cb = Tb.value() / cen.tdiv, sum_wx = Xw.value();
  std::vector<double> P, Qa, Qb, q(n);
  signed_sums(xs, ws, P);
  for (std::size_t k = 0; k < n; ++k) q[k] = ws[k] * Ra_s[k] / cen.rdiv;
  signed_sums(xs, q, Qa);
  for (std::size_t k = 0; k < n; ++k) q[k] = ws[k] * Rb_s[k] / cen.rdiv;
  signed_sums(xs, q, Qb);
  std::vector<double> gc(n), gxx(n);
  std::size_t g0 = 0;
  while (g0 < n) {
    std::size_t g1 = g0 + 1;
    while (g1 < n && xs[g1] == xs[g0]) ++g1;
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
      const double D = 2.0 * dl - Rb_s[k] + tie;
      const double Dx = W * xc[k] - sum_wx;
      const double rb = Rb_s[k] / cen.rdiv, ra = Ra_s[k] / cen.rdiv;
      gc[k] = 2.0 / cen.norm * ws[k] * (D - (rb - cb) * P[k] - Qb[k]);
      gxx[k] = 4.0 / cen.norm * ws[k] * (Dx - (ra - ca) * P[k] - Qa[k]);
    }
    g0 = g1;
  }
  std::vector<double> out(n);
  if (grad_dcov != nullptr)
    for (std::size_t k = 0; k < n; ++k) grad_dcov[xkeys[k].idx] = gc[k];
  if (grad_dcor2 != nullptr) {
    dcor_gradient(r, gc.data(), gxx.data(), n, out.data());
    for (std::size_t k = 0; k < n; ++k) grad_dcor2[xkeys[k].idx] = out[k];
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
  const std::size_t n_blocks = (n + kRowBlock - 1) / kRowBlock;
  std::size_t nt = n_threads == 0 ? std::max(1u, std::thread::hardware_concurrency())
                                  : static_cast<std::size_t>(n_threads);
  nt = std::min(nt, n_blocks);
  std::atomic<std::size_t> next{0};
  auto worker = [&]() {
    for (std::size_t b = next++; b < n_blocks; b = next++) body(b * kRowBlock, std::min(n, (b + 1) * kRowBlock));
  };
  if (nt <= 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (std::size_t t = 0; t + 1 < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace

Result distance_correlation_nd(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                               std::size_t n, const Options& options, double* grad_dcor2, double* grad_dcov) {
  if (dx == 0) throw InputError("x must have at least one column");
  if (dy == 0) throw InputError("y must have at least one column");
  std::vector<double> wv = checked_weights(w, n, options);
  check_finite(x, n, dx, "x");
  check_finite(y, n, dy, "y");
  Sum Wsum;
  for (double e : wv) Wsum.add(e);
  const double W = Wsum.value();
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
  const Result r = assemble(sxy.value(), sxx.value(), syy.value(), wv, Ra, Rb, cen);
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
