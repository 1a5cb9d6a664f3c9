// The O(n log n) distance-correlation path against an O(n^2) reference written here, the
// gradient against finite differences, and the error cases.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "check.hpp"
#include "hepinfer/disco.hpp"
#include "hepinfer/errors.hpp"

using namespace hepinfer;
using hepinfer::disco::Options;

namespace {

struct Ref {
  double cxy, cxx, cyy, dcor2;
};

/// Direct O(n^2) evaluation of the definitions (V: weighted; U: unit weights).
Ref reference(const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>& w0,
              bool unbiased) {
  const std::size_t n = x.size();
  std::vector<double> w = w0.empty() ? std::vector<double>(n, 1.0) : w0;
  double W = 0;
  for (double e : w) W += e;
  const double nd = static_cast<double>(n);
  for (double& e : w) e *= nd / W;
  auto centred = [&](const std::vector<double>& v) {
    std::vector<double> a(n * n), r(n, 0.0);
    double t = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) a[i * n + j] = std::fabs(v[i] - v[j]);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) r[i] += unbiased ? a[i * n + j] : w[j] * a[i * n + j] / nd;
      t += unbiased ? r[i] : w[i] * r[i] / nd;
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double& e = a[i * n + j];
        if (unbiased) e = i == j ? 0.0 : e - r[i] / (nd - 2) - r[j] / (nd - 2) + t / ((nd - 1) * (nd - 2));
        else e = e - r[i] - r[j] + t;
      }
    return a;
  };
  const auto A = centred(x), B = centred(y);
  auto cov = [&](const std::vector<double>& P, const std::vector<double>& Q) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) s += (unbiased ? 1.0 : w[i] * w[j]) * P[i * n + j] * Q[i * n + j];
    return s / (unbiased ? nd * (nd - 3) : nd * nd);
  };
  Ref r{cov(A, B), cov(A, A), cov(B, B), 0.0};
  const double den = std::sqrt(std::fabs(r.cxx * r.cyy));
  r.dcor2 = den > 0 ? r.cxy / den : 0.0;
  return r;
}

bool close(double a, double b, double rtol, double scale) { return std::fabs(a - b) <= rtol * scale; }

}  // namespace

TEST_CASE(fast_path_matches_quadratic_reference) {
  std::mt19937_64 gen(12345);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0.1, 2.0);
  for (std::size_t n : {2u, 3u, 4u, 5u, 17u, 100u, 257u}) {
    for (int ties = 0; ties < 2; ++ties) {
      std::vector<double> x(n), y(n), w(n);
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = 10 + nd(gen);
        y[i] = x[i] * x[i] / 10 + nd(gen);
        if (ties) {
          x[i] = std::round(x[i] * 2) / 2;
          y[i] = std::round(y[i]);
        }
        w[i] = ud(gen);
      }
      for (int unbiased = 0; unbiased < 2; ++unbiased) {
        if (unbiased && n < 4) continue;
        for (int weighted = 0; weighted < 2 - unbiased; ++weighted) {
          const auto ref = reference(x, y, weighted ? w : std::vector<double>(), unbiased);
          Options o;
          o.unbiased = unbiased;
          const auto got = disco::distance_correlation_1d(x.data(), y.data(), weighted ? w.data() : nullptr, n, o);
          const auto got_nd =
              disco::distance_correlation_nd(x.data(), 1, y.data(), 1, weighted ? w.data() : nullptr, n, o);
          const double scale = std::sqrt(std::fabs(ref.cxx * ref.cyy)) + 1e-300;
          CHECK(close(got.dcov_xy, ref.cxy, 1e-10, scale));
          CHECK(close(got.dcov_xx, ref.cxx, 1e-10, std::fabs(ref.cxx) + 1e-300));
          CHECK(close(got.dcov_yy, ref.cyy, 1e-10, std::fabs(ref.cyy) + 1e-300));
          CHECK(close(got_nd.dcov_xy, ref.cxy, 1e-10, scale));
          if (std::fabs(ref.cxx) > 1e-9 && std::fabs(ref.cyy) > 1e-9) {
            CHECK(close(got.dcor2, ref.dcor2, 1e-10, std::fabs(ref.dcor2) + 1e-3));
            CHECK(close(got_nd.dcor2, ref.dcor2, 1e-10, std::fabs(ref.dcor2) + 1e-3));
          }
        }
      }
    }
  }
}

TEST_CASE(gradient_matches_finite_differences_and_quadratic_path) {
  std::mt19937_64 gen(7);
  std::normal_distribution<double> nd;
  const std::size_t n = 60;
  std::vector<double> x(n), y(n), w(n), g(n), gc(n), g2(n), gc2(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = nd(gen);
    y[i] = std::exp(x[i]) + nd(gen);
    w[i] = 0.5 + std::fabs(nd(gen));
  }
  for (int unbiased = 0; unbiased < 2; ++unbiased) {
    Options o;
    o.unbiased = unbiased;
    const double* wp = unbiased ? nullptr : w.data();
    disco::distance_correlation_1d(x.data(), y.data(), wp, n, o, g.data(), gc.data());
    disco::distance_correlation_nd(x.data(), 1, y.data(), 1, wp, n, o, g2.data(), gc2.data());
    double gmax = 0;
    for (double e : g) gmax = std::max(gmax, std::fabs(e));
    for (std::size_t k = 0; k < n; ++k) {
      CHECK_NEAR(g[k], g2[k], 1e-10 * gmax);
      CHECK_NEAR(gc[k], gc2[k], 1e-10 * gmax);
    }
    for (std::size_t k : {0u, 13u, 59u}) {
      const double h = 1e-6, keep = x[k];
      x[k] = keep + h;
      const double up = disco::distance_correlation_1d(x.data(), y.data(), wp, n, o).dcor2;
      x[k] = keep - h;
      const double down = disco::distance_correlation_1d(x.data(), y.data(), wp, n, o).dcor2;
      x[k] = keep;
      CHECK_NEAR(g[k], (up - down) / (2 * h), 1e-6 * gmax);
    }
  }
}

TEST_CASE(radix_sort_path_matches_quadratic_path) {
  // n above the radix-sort threshold (4096) and above one cache block of the sweep, not a power
  // of 2: the O(n log n) value and gradients against the O(n^2) path, on continuous data, heavy
  // ties (binary x, integer y), signed zeros, a wider dynamic range and zero weights.
  std::mt19937_64 gen(2024);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0.0, 2.0);
  const std::size_t n = 4500;
  for (int kind = 0; kind < 3; ++kind) {
    std::vector<double> x(n), y(n), w(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double u = nd(gen), v = nd(gen);
      if (kind == 0) {  // continuous, mixed signs
        x[i] = u;
        y[i] = 0.3 * u + v;
      } else if (kind == 1) {  // ties: binary x, integer y including -0.0 and +0.0
        x[i] = u > 0.3 ? 1.0 : 0.0;
        y[i] = std::round(2 * (u + v)) + 0.0;
        if (y[i] == 0.0 && (i % 2 == 1)) y[i] = -0.0;
      } else {  // wider dynamic range (powers of 10 from about -3 to 3) with ties in x
        x[i] = std::round(4 * u) * std::pow(10.0, std::round(v));
        y[i] = u * std::pow(10.0, std::round(v));
      }
      w[i] = i % 7 == 0 ? 0.0 : ud(gen);
    }
    for (int weighted = 0; weighted < 2; ++weighted) {
      const double* wp = weighted ? w.data() : nullptr;
      std::vector<double> g(n), gc(n), g2(n), gc2(n);
      const auto got = disco::distance_correlation_1d(x.data(), y.data(), wp, n, Options(), g.data(), gc.data());
      const auto ref =
          disco::distance_correlation_nd(x.data(), 1, y.data(), 1, wp, n, Options(), g2.data(), gc2.data());
      const double scale = std::sqrt(std::fabs(ref.dcov_xx * ref.dcov_yy));
      CHECK(close(got.dcov_xy, ref.dcov_xy, 1e-10, scale));
      CHECK(close(got.dcov_xx, ref.dcov_xx, 1e-10, ref.dcov_xx));
      CHECK(close(got.dcov_yy, ref.dcov_yy, 1e-10, ref.dcov_yy));
      CHECK(close(got.dcor2, ref.dcor2, 1e-10, std::fabs(ref.dcor2) + 1e-3));
      double gmax = 0, gcmax = 0;
      for (std::size_t k = 0; k < n; ++k) {
        gmax = std::max(gmax, std::fabs(g2[k]));
        gcmax = std::max(gcmax, std::fabs(gc2[k]));
      }
      CHECK(gmax > 0);
      for (std::size_t k = 0; k < n; ++k) {
        CHECK_NEAR(g[k], g2[k], 1e-9 * gmax);
        CHECK_NEAR(gc[k], gc2[k], 1e-9 * gcmax);
      }
    }
  }
}

TEST_CASE(ties_in_x_give_the_torch_subgradient) {
  // x has a tie group; the reference sums sign(x_k - x_j) B_kj with sign(0) = 0
  const std::vector<double> x = {0, 1, 1, 1, 2, 3, 3}, y = {0.5, 2, -1, 0.3, 4, 1, 1};
  const std::size_t n = x.size();
  std::vector<double> g(n), gc(n), gnd(n), gcnd(n);
  disco::distance_correlation_1d(x.data(), y.data(), nullptr, n, Options(), g.data(), gc.data());
  disco::distance_correlation_nd(x.data(), 1, y.data(), 1, nullptr, n, Options(), gnd.data(), gcnd.data());
  for (std::size_t k = 0; k < n; ++k) {
    CHECK_NEAR(g[k], gnd[k], 1e-12);
    CHECK_NEAR(gc[k], gcnd[k], 1e-12);
  }
}

TEST_CASE(constant_input_gives_zero) {
  const std::vector<double> x = {1, 2, 3, 4, 5}, c(5, 7.0);
  std::vector<double> g(5, 1.0);
  const auto r = disco::distance_correlation_1d(x.data(), c.data(), nullptr, 5, Options(), g.data());
  CHECK(r.dcor2 == 0.0);
  for (double e : g) CHECK(e == 0.0);
}

TEST_CASE(error_cases) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 1, 4, 3, 5};
  CHECK_THROWS(disco::distance_correlation_1d(x.data(), y.data(), nullptr, 1), InputError, "at least 2 events");
  Options u;
  u.unbiased = true;
  CHECK_THROWS(disco::distance_correlation_1d(x.data(), y.data(), nullptr, 3, u), InputError, "at least 4 events");
  std::vector<double> w = {1, 1, 1, 1, 1};
  CHECK_THROWS(disco::distance_correlation_1d(x.data(), y.data(), w.data(), 5, u), InputError, "weights");
  std::vector<double> xb = x;
  xb[2] = nan;
  CHECK_THROWS(disco::distance_correlation_1d(xb.data(), y.data(), nullptr, 5), InputError, "x[2] is not finite");
  CHECK_THROWS(disco::distance_correlation_nd(x.data(), 1, xb.data(), 1, nullptr, 5), InputError, "y[2]");
  CHECK_THROWS(disco::distance_correlation_nd(xb.data(), 2, y.data(), 1, nullptr, 2), InputError, "x[1, 0]");
  w[4] = -1;
  CHECK_THROWS(disco::distance_correlation_1d(x.data(), y.data(), w.data(), 5), InputError, "weights[4] is negative");
  std::vector<double> z(5, 0.0);
  CHECK_THROWS(disco::distance_correlation_1d(x.data(), y.data(), z.data(), 5), InputError, "sum to zero");
  CHECK_THROWS(disco::distance_correlation_1d(nullptr, y.data(), nullptr, 5), InputError, "null");
}

int main() { return check::run_all(); }
