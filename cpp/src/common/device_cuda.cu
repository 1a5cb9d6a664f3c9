// CUDA side of device discovery. Built only with HEPINFER_CUDA=ON.
#include <cuda_runtime.h>

namespace hepinfer::cuda {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error state
    return 0;
  }
  return n;
}

}  // namespace hepinfer::cuda
