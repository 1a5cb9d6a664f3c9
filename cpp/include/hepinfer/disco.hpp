#pragma once
/// \file disco.hpp
/// Exact (weighted) distance covariance and distance correlation, and their gradient with
/// respect to the first variable: the DisCo decorrelation penalty (Kasieczka & Shih,
/// arXiv:2001.05310) without the n x n matrices.
///
/// Definitions (weights w normalised to mean 1, so that sum_i w_i = n):
///   a_ij = |x_i - x_j| (Euclidean norm for vector-valued x),
///   abar_i = mean_j(a_ij w_j),  abar = mean_i(abar_i w_i),
///   A_ij = a_ij - abar_i - abar_j + abar,  B_ij likewise from y,
///   dCov^2(x, y) = mean_i(w_i mean_j(A_ij B_ij w_j)),
///   dCor^2(x, y) = dCov^2(x, y) / sqrt(|dCov^2(x, x) dCov^2(y, y)|).
/// With all weights 1 this is the V-statistic of `dcor.distance_correlation_sqr`.
/// `unbiased = true` gives the U-centred (bias-corrected) estimator of
/// `dcor.u_distance_correlation_sqr`; it is defined for unit weights only.
///
/// Conventions:
///   - the V-statistic needs n >= 2 events, the unbiased estimator n >= 4 (InputError otherwise);
///   - when the denominator is 0 (a constant x or y), dCor^2 is defined as 0 and its gradient as 0;
///   - the gradient uses d|t|/dt = 0 at t = 0 (as torch does): pairs with x_i == x_j contribute
///     nothing; for vector x, pairs at distance 0 contribute nothing;
///   - NaN/inf in x, y or w, negative weights and weights summing to 0 throw InputError naming
///     the argument and the index.
///
/// Cost: 1-D x and y take O(n log n) time (radix sorts and a dominance sweep) and O(n) memory with
/// float64 accumulation; vector-valued x or y take O(n^2) time (threaded over row blocks) and
/// O(n) memory. All functions are thread-safe and their results do not depend on n_threads.

#include <cstddef>

#include "hepinfer/device.hpp"

namespace hepinfer::disco {

/// Options of the distance-correlation functions.
struct Options {
  bool unbiased = false;  ///< U-centred estimator (unit weights only, n >= 4)
  int n_threads = 1;      ///< threads for the O(n^2) vector-valued path (0: all hardware threads)
};

/// Distance covariances and the squared distance correlation of one pair of samples.
struct Result {
  double dcov_xy = 0.0;  ///< dCov^2(x, y)
  double dcov_xx = 0.0;  ///< dCov^2(x, x)
  double dcov_yy = 0.0;  ///< dCov^2(y, y)
  double dcor2 = 0.0;    ///< dCor^2(x, y) (0 when dcov_xx * dcov_yy == 0)
};

/// Scalar x and y (n events each), optional weights w (nullptr: unit weights; any positive
/// scale, they are normalised to mean 1). If grad_dcor2 (size n) is given it receives
/// d dCor^2 / d x_i; if grad_dcov (size n) is given it receives d dCov^2(x, y) / d x_i.
/// O(n log n) time, O(n) memory.
Result distance_correlation_1d(const double* x, const double* y, const double* w, std::size_t n,
                               const Options& options = Options(), double* grad_dcor2 = nullptr,
                               double* grad_dcov = nullptr);

/// Vector-valued x (n x dx, row-major) and y (n x dy, row-major), Euclidean distances.
/// Gradients, when requested, have the shape of x (n x dx, row-major).
/// O(n^2 (dx + dy)) time, O(n) memory, threaded over blocks of rows.
Result distance_correlation_nd(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                               std::size_t n, const Options& options = Options(), double* grad_dcor2 = nullptr,
                               double* grad_dcov = nullptr);

/// Either path on the device given: Device::Kind::CPU calls distance_correlation_1d (dx == dy == 1)
/// or distance_correlation_nd; Device::Kind::CUDA copies the host arrays to that GPU, runs
/// distance_correlation_device and copies the gradients back.
Result distance_correlation(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                            std::size_t n, Device device, const Options& options = Options(),
                            double* grad_dcor2 = nullptr, double* grad_dcov = nullptr);

/// On a CUDA device, with every pointer (x: n x dx, y: n x dy, w: n or null, the gradients: n x dx
/// or null) in device memory of `device` (torch/cupy tensors). Inputs are checked on the device
/// (InputError names the argument and the index, as on the CPU); only a few scalars cross to the
/// host. The algorithm is the O(n^2) pair sweep of distance_correlation_nd as tiled kernels (rows
/// over threads, columns through shared memory), for 1-D and vector-valued x and y alike; values
/// and gradients agree with the CPU functions to rounding (the summation order differs).
/// `stream` is a cudaStream_t (null: a stream of this call); the call returns when done.
/// Throws DeviceError("... built without CUDA ...") in CPU-only builds.
Result distance_correlation_device(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                                   std::size_t n, Device device, const Options& options = Options(),
                                   double* grad_dcor2 = nullptr, double* grad_dcov = nullptr, void* stream = nullptr);

}  // namespace hepinfer::disco
