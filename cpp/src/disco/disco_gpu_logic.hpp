#pragma once
// The per-pair and per-event arithmetic of the DisCo CUDA kernels (cpp/cuda/disco_cuda.cu), as
// HEPINFER_HD inline functions so that the host-side test (tests/cpp/test_cuda_logic.cpp) runs
// the same code on the CPU against hepinfer::disco::distance_correlation_1d/_nd.
//
// The device algorithm is the CPU engine's O(n^2) vector-valued path (disco.cpp, "pass 1/pass 2"):
//   pass 1: R^a_i = sum_j w_j a_ij,  R^b_i = sum_j w_j b_ij               (row sums)
//   reduce: T^a = sum_i w_i R^a_i, T^b likewise -> c^a = T^a / tdiv, c^b = T^b / tdiv
//   pass 2: S^xy_i = sum_j w_j a_ij b_ij, S^xx_i, S^yy_i, and for the gradient
//           g^c_i = sum_j w_j B_ij (x_i - x_j)/a_ij,  g^xx_i = sum_j w_j A_ij (x_i - x_j)/a_ij
//   reduce: the eight weighted sums, then assemble() as the CPU does; finally the per-event
//           gradient from g^c, g^xx (grad_element()).
// Summation order differs from the CPU (tiles of the kernel, tree reductions instead of
// Neumaier sums), so values agree to rounding (relative ~1e-12 for n up to 1e6), not bitwise.
#include <cmath>
#include <cstddef>

#include "common/host_device.hpp"

namespace hepinfer::disco::gpu {

/// Normalisations of the V (weighted) and U (unit weights) centrings (as disco.cpp).
struct Centring {
  double norm, rdiv, tdiv;
};
HEPINFER_HD Centring centring(bool unbiased, double W, double n) {
  if (unbiased) return {n * (n - 3.0), n - 2.0, (n - 1.0) * (n - 2.0)};
  return {W * W, W, W * W};
}

/// Euclidean distance of two d-vectors (|a - b| for d == 1), as the CPU engine computes it.
HEPINFER_HD double pair_distance(const double* a, const double* b, int d) {
  if (d == 1) return fabs(a[0] - b[0]);
  double s = 0;
  for (int t = 0; t < d; ++t) {
    const double e = a[t] - b[t];
    s += e * e;
  }
  return sqrt(s);
}

/// Pass 1, one pair (i, j): adds w_j a_ij and w_j b_ij to the row sums of i.
HEPINFER_HD void pass1_pair(const double* xi, const double* xj, int dx, const double* yi, const double* yj, int dy,
                            double wj, double& ra, double& rb) {
  ra += wj * pair_distance(xi, xj, dx);
  rb += wj * pair_distance(yi, yj, dy);
}

/// Per-row accumulators of pass 2.
struct Pass2 {
  double sxy = 0, sxx = 0, syy = 0;
};

/// Pass 2, one pair (i, j). rai = R^a_i / rdiv, raj = R^a_j / rdiv (likewise b); ca, cb the
/// centring constants. With gc/gxx (dx values each) the gradient sums of row i are updated
/// (pairs at distance 0 contribute nothing: d|t|/dt = 0 at t = 0).
HEPINFER_HD void pass2_pair(const double* xi, const double* xj, int dx, const double* yi, const double* yj, int dy,
                            double wj, double rai, double raj, double rbi, double rbj, double ca, double cb, Pass2& acc,
                            double* gc, double* gxx) {
  const double a = pair_distance(xi, xj, dx);
  const double b = pair_distance(yi, yj, dy);
  const double wa = wj * a;
  acc.sxy += wa * b;
  acc.sxx += wa * a;
  acc.syy += wj * b * b;
  if (gc != nullptr && a > 0) {
    const double B = b - rbi - rbj + cb;
    const double A = a - rai - raj + ca;
    for (int t = 0; t < dx; ++t) {
      const double u = (xi[t] - xj[t]) / a;
      gc[t] += wj * B * u;
      gxx[t] += wj * A * u;
    }
  }
}

/// The eight weighted sums over events that assemble() needs.
struct Totals {
  double Ta = 0, Tb = 0;                            ///< sum w_i R^a_i, sum w_i R^b_i
  double cross_ab = 0, cross_aa = 0, cross_bb = 0;  ///< sum w_i R^a_i R^b_i, ...
  double Sxy = 0, Sxx = 0, Syy = 0;                 ///< sum w_i S^xy_i, ...
};

/// Distance covariances and dCor^2 from the totals (the CPU engine's assemble()).
struct Value {
  double dcov_xy, dcov_xx, dcov_yy, dcor2;
};
HEPINFER_HD Value assemble(const Totals& t, const Centring& c) {
  Value r;
  r.dcov_xy = (t.Sxy - 2.0 * t.cross_ab / c.rdiv + t.Ta * t.Tb / c.tdiv) / c.norm;
  r.dcov_xx = (t.Sxx - 2.0 * t.cross_aa / c.rdiv + t.Ta * t.Ta / c.tdiv) / c.norm;
  r.dcov_yy = (t.Syy - 2.0 * t.cross_bb / c.rdiv + t.Tb * t.Tb / c.tdiv) / c.norm;
  const double den = sqrt(fabs(r.dcov_xx)) * sqrt(fabs(r.dcov_yy));
  r.dcor2 = den > 0 ? r.dcov_xy / den : 0.0;
  return r;
}

/// The gradients of one component from the raw pass-2 sums g^c, g^xx of its event (weight wi):
/// d dCov^2(x, y)/dx and d dCor^2/dx (0 when the denominator is 0).
HEPINFER_HD void grad_element(double gc_raw, double gxx_raw, double wi, const Centring& c, const Value& r,
                              double* grad_dcov, double* grad_dcor2) {
  const double gc = gc_raw * (2.0 / c.norm * wi);
  const double gxx = gxx_raw * (4.0 / c.norm * wi);
  if (grad_dcov != nullptr) *grad_dcov = gc;
  if (grad_dcor2 != nullptr) {
    const double den = sqrt(fabs(r.dcov_xx)) * sqrt(fabs(r.dcov_yy));
    *grad_dcor2 = den > 0 ? gc / den - 0.5 * r.dcor2 / r.dcov_xx * gxx : 0.0;
  }
}

}  // namespace hepinfer::disco::gpu
