// JaggedView validation and the jagged kernels, checked against straightforward loops written
// here (std::stable_sort with a NaN-last comparison, explicit padding, explicit min search).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "check.hpp"
#include "hepinfer/jagged.hpp"

using namespace hepinfer;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kPi = 3.14159265358979323846;

/// Random jagged data: counts ~ Poisson(mean) with empty events, keys with ties and NaN.
struct Data {
  std::vector<std::int64_t> offsets;
  std::vector<double> pt, eta;
  std::vector<float> phi;
};

Data make_data(std::mt19937_64& gen, std::size_t n_events, double mean, std::size_t start) {
  std::poisson_distribution<int> count(mean);
  std::uniform_int_distribution<int> tie(0, 5);
  std::uniform_real_distribution<double> u(-3.0, 3.0);
  Data d;
  d.offsets.push_back(static_cast<std::int64_t>(start));  // offsets need not start at 0
  for (std::size_t e = 0; e < n_events; ++e) d.offsets.push_back(d.offsets.back() + count(gen));
  const auto n = static_cast<std::size_t>(d.offsets.back());
  for (std::size_t i = 0; i < n; ++i) {
    const int t = tie(gen);
    d.pt.push_back(t == 0 ? kNaN : 10.0 * t);  // many ties, some NaN
    d.eta.push_back(u(gen));
    d.phi.push_back(static_cast<float>(u(gen)));
  }
  return d;
}

JaggedView view_of(const Data& d) {
  return JaggedView(d.offsets.size() - 1, d.offsets.data(), IndexType::Int64,
                    {{"pt", d.pt.data(), ValueType::Float64, 1, d.pt.size()},
                     {"eta", d.eta.data(), ValueType::Float64, 1, d.eta.size()},
                     {"phi", d.phi.data(), ValueType::Float32, 1, d.phi.size()}});
}

/// Reference order of one event: stable sort of positions, NaN last.
std::vector<std::int64_t> reference_order(const std::vector<double>& keys, bool descending) {
  std::vector<std::int64_t> idx(keys.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) {
    const double x = keys[static_cast<std::size_t>(a)], y = keys[static_cast<std::size_t>(b)];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return descending ? x > y : x < y;
  });
  return idx;
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

}  // namespace

TEST_CASE(validation_names_column_and_event) {
  std::vector<double> content(10, 1.0);
  std::vector<std::int64_t> bad_order{0, 4, 3, 10};
  CHECK_THROWS(
      JaggedView(3, bad_order.data(), IndexType::Int64, {{"pt", content.data(), ValueType::Float64, 1, 10}}).validate(),
      InputError, "offsets decrease at event 1");
  std::vector<std::int32_t> beyond{0, 4, 9, 12};
  CHECK_THROWS(
      JaggedView(3, beyond.data(), IndexType::Int32, {{"pt", content.data(), ValueType::Float64, 1, 10}}).validate(),
      InputError, "column \"pt\" has 10 values but the offsets reach 12 at event 2");
  std::vector<std::int32_t> negative{-2, 4};
  CHECK_THROWS(JaggedView(1, negative.data(), IndexType::Int32, {}).validate(), InputError, "negative");
  // Columns of different lengths: the short one is named.
  std::vector<std::uint32_t> ok{2, 5, 9};
  CHECK_THROWS(
      JaggedView(2, ok.data(), IndexType::UInt32,
                 {{"pt", content.data(), ValueType::Float64, 1, 10}, {"eta", content.data(), ValueType::Float64, 1, 7}})
          .validate(),
      InputError, "column \"eta\" has 7 values");
  CHECK_THROWS(
      JaggedView(2, ok.data(), IndexType::UInt32, {{"pt", content.data(), ValueType::Float64, 0, 10}}).validate(),
      InputError, "stride");
  CHECK_THROWS(JaggedView(2, nullptr, IndexType::UInt32, {}).validate(), InputError, "null");
  JaggedView good(2, ok.data(), IndexType::UInt32, {{"pt", content.data(), ValueType::Float64, 1, 10}});
  good.validate();
  CHECK(good.begin(0) == 2 && good.end(0) == 5 && good.count(1) == 4);
  CHECK(good.content_begin() == 2 && good.content_end() == 9);
  CHECK(good.column_index("pt") == 0);
  CHECK_THROWS(good.column_index("mass"), InputError, "no column \"mass\"");
  // Zero events: one offset, nothing to read.
  std::vector<std::int64_t> one{5};
  JaggedView empty(0, one.data(), IndexType::Int64, {{"pt", nullptr, ValueType::Float64, 1, 0}});
  empty.validate();
  CHECK(empty.content_begin() == 0 && empty.content_end() == 0);
}

TEST_CASE(top_k_and_leading_match_stable_sort) {
  std::mt19937_64 gen(7);
  for (double mean : {3.0, 150.0}) {  // small events (insertion path) and large ones (full sort)
    const Data d = make_data(gen, 300, mean, 13);
    const JaggedView v = view_of(d);
    v.validate();
    for (std::size_t key : {std::size_t{0}, std::size_t{2}})  // float64 pt (ties, NaN) and float32 phi
      for (bool descending : {true, false}) {
        for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{4}, std::size_t{9}, std::size_t{400}}) {
          const std::size_t n = v.n_events();
          std::vector<std::int64_t> index(n * k), cnt(n), lead_index(n * k);
          const SortOrder order = descending ? SortOrder::Descending : SortOrder::Ascending;
          top_k_indices(v, key, k, order, index.data(), cnt.data(), 3);
          // leading: (n_events, k, 3 columns) float32.
          std::vector<float> dense(n * k * 3);
          std::vector<std::uint8_t> mask(n * k);
          leading(v, key, k, order, -1.0, dense.data(), PaddedLayout{static_cast<std::ptrdiff_t>(k * 3), 3, 1},
                  mask.data(), lead_index.data(), 2);
          CHECK(lead_index == index);
          for (std::size_t e = 0; e < n; ++e) {
            std::vector<double> keys;
            for (std::size_t i = v.begin(e); i < v.end(e); ++i) keys.push_back(v.value<double>(key, i));
            const auto ref = reference_order(keys, descending);
            const std::size_t m = std::min(k, ref.size());
            CHECK(cnt[e] == static_cast<std::int64_t>(m));
            for (std::size_t j = 0; j < k; ++j) {
              const std::int64_t want = j < m ? ref[j] : -1;
              CHECK(index[e * k + j] == want);
              CHECK(mask[e * k + j] == (j < m ? 1 : 0));
              for (std::size_t c = 0; c < 3; ++c) {
                const double expect =
                    j < m ? static_cast<float>(v.value<double>(c, v.begin(e) + static_cast<std::size_t>(want))) : -1.0;
                CHECK(same(dense[(e * k + j) * 3 + c], expect));
              }
            }
          }
          // gather: the jagged selection of eta.
          std::vector<double> selected(
              static_cast<std::size_t>(std::accumulate(cnt.begin(), cnt.end(), std::int64_t{0})));
          gather(v, 1, index.data(), cnt.data(), k, selected.data(), 2);
          std::size_t pos = 0;
          for (std::size_t e = 0; e < n; ++e)
            for (std::int64_t j = 0; j < cnt[e]; ++j)
              CHECK(selected[pos++] ==
                    d.eta[v.begin(e) + static_cast<std::size_t>(index[e * k + static_cast<std::size_t>(j)])]);
        }
      }
  }
}

TEST_CASE(pad_layouts_and_reductions) {
  std::mt19937_64 gen(11);
  constexpr std::size_t n = 500, L = 5;
  const Data d = make_data(gen, n, 4.0, 0);
  const JaggedView v = view_of(d);
  v.validate();
  CHECK(v.n_events() == n);
  // One (n_events, L) block per column.
  std::vector<double> out(3 * n * L);
  std::vector<std::uint8_t> mask(n * L);
  pad(v, L, 7.5, out.data(), PaddedLayout{static_cast<std::ptrdiff_t>(L), 1, static_cast<std::ptrdiff_t>(n * L)},
      mask.data(), 4);
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t e = 0; e < n; ++e)
      for (std::size_t j = 0; j < L; ++j) {
        const bool real = j < v.count(e);
        CHECK(mask[e * L + j] == (real ? 1 : 0));
        CHECK(same(out[c * n * L + e * L + j], real ? v.value<double>(c, v.begin(e) + j) : 7.5));
      }
  std::vector<double> sum(n), mx(n), mn(n), mean(n);
  std::vector<std::int64_t> cnt(n);
  reduce(v, 1, Reduction::Sum, -1.0, sum.data(), 3);
  reduce(v, 0, Reduction::Max, -1.0, mx.data(), 3);
  reduce(v, 0, Reduction::Min, -2.0, mn.data(), 1);
  reduce(v, 1, Reduction::Mean, -3.0, mean.data(), 2);
  counts(v, cnt.data(), 2);
  for (std::size_t e = 0; e < n; ++e) {
    double s = 0, hi = -INFINITY, lo = INFINITY;
    for (std::size_t i = v.begin(e); i < v.end(e); ++i) {
      s += d.eta[i];
      if (!std::isnan(d.pt[i])) hi = std::max(hi, d.pt[i]), lo = std::min(lo, d.pt[i]);
    }
    const bool empty = v.count(e) == 0;
    CHECK(cnt[e] == static_cast<std::int64_t>(v.count(e)));
    CHECK_NEAR(sum[e], s, 1e-12);
    CHECK(mx[e] == (empty ? -1.0 : hi));
    CHECK(mn[e] == (empty ? -2.0 : lo));
    if (empty) CHECK(mean[e] == -3.0);
    else CHECK_NEAR(mean[e], s / static_cast<double>(v.count(e)), 1e-12);
  }
}

TEST_CASE(four_vectors_round_trip_and_conventions) {
  std::mt19937_64 gen(3);
  std::normal_distribution<double> g(0.0, 30.0);
  const std::size_t n = 1000;
  std::vector<double> px(n), py(n), pz(n), E(n);
  for (std::size_t i = 0; i < n; ++i) {
    px[i] = g(gen), py[i] = g(gen), pz[i] = g(gen);
    const double m = std::fabs(g(gen)) / 3;
    E[i] = std::sqrt(px[i] * px[i] + py[i] * py[i] + pz[i] * pz[i] + m * m);
  }
  px[0] = py[0] = 0;                                                        // pt = 0, pz != 0: eta = +-inf
  px[1] = py[1] = pz[1] = 0;                                                // all zero: eta = 0 (as `vector`)
  E[2] = std::sqrt(px[2] * px[2] + py[2] * py[2] + pz[2] * pz[2]) * 0.999;  // m2 < 0: negative mass
  std::vector<double> pt(n), eta(n), phi(n), m(n), x(n), y(n), z(n), t(n);
  to_pt_eta_phi_m(px.data(), py.data(), pz.data(), E.data(), n, pt.data(), eta.data(), phi.data(), m.data(), 2);
  CHECK(std::isinf(eta[0]) && (eta[0] > 0) == (pz[0] > 0));
  CHECK(eta[1] == 0.0);
  CHECK(m[2] < 0);
  const double m2 = E[2] * E[2] - (px[2] * px[2] + py[2] * py[2] + pz[2] * pz[2]);
  CHECK_NEAR(m[2], -std::sqrt(-m2), 1e-9);
  to_px_py_pz_e(pt.data(), eta.data(), phi.data(), m.data(), n, x.data(), y.data(), z.data(), t.data(), 3);
  for (std::size_t i = 2; i < n; ++i) {
    CHECK_NEAR(pt[i], std::hypot(px[i], py[i]), 1e-12 * pt[i]);
    CHECK_NEAR(phi[i], std::atan2(py[i], px[i]), 1e-15);
    CHECK_NEAR(x[i], px[i], 1e-9 * E[i]);
    CHECK_NEAR(y[i], py[i], 1e-9 * E[i]);
    CHECK_NEAR(z[i], pz[i], 1e-9 * E[i]);
    CHECK_NEAR(t[i], E[i], 1e-9 * E[i]);
  }
}

TEST_CASE(delta_phi_range_and_min_delta_r) {
  for (double a : {-10.0, -kPi, -1.0, 0.0, 1.0, kPi, 10.0})
    for (double b : {-kPi, 0.0, 2.0, kPi, 7.0}) {
      const double d = delta_phi(a, b);
      CHECK(d >= -kPi && d < kPi + 1e-15);
      CHECK_NEAR(std::remainder(d - (a - b), 2 * kPi), 0.0, 1e-12);
    }
  CHECK(delta_phi(kPi, 0.0) == -kPi);  // exactly pi apart: wrapped to -pi (half-open range)
  CHECK(delta_phi(0.0, kPi) == -kPi);
  CHECK(std::fabs(delta_phi(kPi, -kPi)) < 1e-15);  // 2 pi apart: the same direction
  std::mt19937_64 gen(5);
  const Data a = make_data(gen, 200, 4.0, 3);
  const Data b = make_data(gen, 200, 1.0, 0);
  const JaggedView va = view_of(a), vb = view_of(b);
  va.validate();
  vb.validate();
  const std::size_t n_a = va.content_end() - va.content_begin();
  std::vector<double> dr(n_a);
  std::vector<std::int64_t> idx(n_a);
  min_delta_r(va, 1, 2, vb, 1, 2, 99.0, dr.data(), idx.data(), 3);
  for (std::size_t e = 0; e < va.n_events(); ++e)
    for (std::size_t i = va.begin(e); i < va.end(e); ++i) {
      double best = 99.0;
      std::int64_t best_j = -1;
      for (std::size_t j = vb.begin(e); j < vb.end(e); ++j) {
        const double de = a.eta[i] - b.eta[j];
        const double dp = delta_phi(a.phi[i], b.phi[j]);
        const double r = std::sqrt(de * de + dp * dp);
        if (best_j < 0 || r < best) best = r, best_j = static_cast<std::int64_t>(j - vb.begin(e));
      }
      CHECK_NEAR(dr[i - va.content_begin()], best, 1e-12);
      CHECK(idx[i - va.content_begin()] == best_j);
    }
  std::vector<double> e1{0.0, 1.0}, p1{3.0, -3.0}, e2{0.0, 0.0}, p2{-3.0, 3.0}, out(2);
  delta_r(e1.data(), p1.data(), e2.data(), p2.data(), 2, out.data());
  CHECK_NEAR(out[0], 2 * kPi - 6.0, 1e-12);
  CHECK_NEAR(out[1], std::hypot(1.0, 2 * kPi - 6.0), 1e-12);
  const Data c = make_data(gen, 150, 1.0, 0);
  const JaggedView vc = view_of(c);
  CHECK_THROWS(min_delta_r(va, 1, 2, vc, 1, 2, 0.0, dr.data(), idx.data()), InputError, "different numbers of events");
  CHECK_THROWS(min_delta_r(va, 1, 7, vb, 1, 2, 0.0, dr.data(), idx.data()), InputError, "out of range");
}

int main() { return check::run_all(); }
