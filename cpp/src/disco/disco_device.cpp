// DisCo with a Device argument: the CPU functions, or the CUDA kernels (cpp/cuda/disco_cuda.cu)
// fed from host arrays. In builds without CUDA, distance_correlation_device raises
// DeviceError("... built without CUDA ...").
#include <string>
#include <vector>

#include "hepinfer/disco.hpp"
#include "hepinfer/errors.hpp"

#ifdef HEPINFER_WITH_CUDA
namespace hepinfer::disco::cuda_detail {
// cpp/cuda/disco_cuda.cu: host arrays copied to the device, evaluated, gradients copied back
Result from_host(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w, std::size_t n,
                 int device, const Options& options, double* grad_dcor2, double* grad_dcov);
}  // namespace hepinfer::disco::cuda_detail
#endif

namespace hepinfer::disco {

Result distance_correlation(const double* x, std::size_t dx, const double* y, std::size_t dy, const double* w,
                            std::size_t n, Device device, const Options& options, double* grad_dcor2,
                            double* grad_dcov) {
  if (device.kind == Device::Kind::CPU) {
    if (dx == 1 && dy == 1) return distance_correlation_1d(x, y, w, n, options, grad_dcor2, grad_dcov);
    return distance_correlation_nd(x, dx, y, dy, w, n, options, grad_dcor2, grad_dcov);
  }
#ifdef HEPINFER_WITH_CUDA
  return cuda_detail::from_host(x, dx, y, dy, w, n, device.index, options, grad_dcor2, grad_dcov);
#else
  (void)x, (void)y, (void)w, (void)n, (void)grad_dcor2, (void)grad_dcov, (void)options, (void)dx, (void)dy;
  throw DeviceError("distance correlation on cuda:" + std::to_string(device.index) +
                    " requested but hepinfer was built without CUDA (rebuild with HEPINFER_CUDA=ON)");
#endif
}

#ifndef HEPINFER_WITH_CUDA
Result distance_correlation_device(const double*, std::size_t, const double*, std::size_t, const double*, std::size_t,
                                   Device device, const Options&, double*, double*, void*) {
  throw DeviceError("distance correlation on cuda:" + std::to_string(device.index) +
                    " requested but hepinfer was built without CUDA (rebuild with HEPINFER_CUDA=ON)");
}
#endif

}  // namespace hepinfer::disco
