#pragma once
// HEPINFER_HD marks a function that runs both on the host and in CUDA kernels: the *_gpu_logic /
// *_gpu_layout / nn_math headers hold the per-row and per-element logic that the kernels run and
// the host-side tests check against the CPU engines. Without nvcc it is a plain inline function.
#if defined(__CUDACC__)
#define HEPINFER_HD __host__ __device__ __forceinline__
#else
#define HEPINFER_HD inline
#endif
