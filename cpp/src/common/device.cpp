#include "hepinfer/device.hpp"

#include <cstdlib>

#include "hepinfer/errors.hpp"

namespace hepinfer {

#ifndef HEPINFER_WITH_CUDA
bool built_with_cuda() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }
#else
namespace cuda {
int device_count() noexcept;  // cpp/cuda/device_cuda.cu
}
bool built_with_cuda() noexcept { return true; }
int cuda_device_count() noexcept { return cuda::device_count(); }
#endif

Device parse_device(const std::string& spec) {
  Device d;
  if (spec == "cpu") return d;
  if (spec.rfind("cuda", 0) != 0)
    throw DeviceError("unknown device '" + spec + "' (expected \"cpu\", \"cuda\" or \"cuda:N\")");
  d.kind = Device::Kind::CUDA;
  if (spec.size() > 4) {
    if (spec[4] != ':' || spec.size() == 5) throw DeviceError("malformed device '" + spec + "' (expected \"cuda:N\")");
    char* end = nullptr;
    long idx = std::strtol(spec.c_str() + 5, &end, 10);
    if (*end != '\0' || idx < 0 || idx > 1024) throw DeviceError("malformed device index in '" + spec + "'");
    d.index = static_cast<int>(idx);
  }
  if (!built_with_cuda())
    throw DeviceError("device '" + spec +
                      "' requested but hepinfer was built without CUDA (rebuild with HEPINFER_CUDA=ON)");
  const int n = cuda_device_count();
  if (d.index >= n)
    throw DeviceError("device '" + spec + "' requested but " + std::to_string(n) + " CUDA device(s) are visible");
  return d;
}

}  // namespace hepinfer
