#pragma once
/// \file device.hpp
/// Where a computation runs. CPU always; CUDA only when hepinfer was built with
/// HEPINFER_CUDA=ON and a device is visible.

#include <string>

namespace hepinfer {

struct Device {
  enum class Kind { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;
};

/// True when this build contains the CUDA kernels.
bool built_with_cuda() noexcept;
/// Number of visible CUDA devices (0 in a CPU-only build or without a GPU).
int cuda_device_count() noexcept;
/// Parse "cpu", "cuda" or "cuda:N" and check it can be used: throws DeviceError
/// ("hepinfer was built without CUDA", or no such device) otherwise.
Device parse_device(const std::string& spec);

}  // namespace hepinfer
