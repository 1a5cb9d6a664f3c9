#pragma once
/// \file forest_gpu.hpp
/// A Forest evaluated on a CUDA device.
///
///     auto forest = hepinfer::Forest::load("model.json");
///     hepinfer::ForestGPU gpu(forest, hepinfer::parse_device("cuda:0"));   // uploads the trees once
///     gpu.predict(rows, layout, out);                      // host arrays in and out
///     gpu.predict_device(d_rows, n_rows, d_out);           // device pointers (torch/cupy memory)
///
/// Decisions and margins are bit-identical to Forest::predict: the same float/double comparisons,
/// NaN default directions, categorical, zero-as-missing and linear splits, and the same summation
/// order per row (base margin, then every tree in model order, in float32 for XGBoost models).
/// Transformed outputs (sigmoid, softmax, exp, ...) use the device's exp/log1p and agree with the
/// CPU engine to within a few ulp. Not on the GPU: TMVA variable transformations and
/// predict_leaf (DeviceError). A ForestGPU is immutable; every method is const and thread-safe
/// (each call uses its own stream).
///
/// In a build without CUDA (HEPINFER_CUDA=OFF) the constructor throws
/// DeviceError("... hepinfer was built without CUDA ...").

#include <cstddef>
#include <memory>

#include "hepinfer/device.hpp"
#include "hepinfer/forest.hpp"

namespace hepinfer {

class ForestGPU {
 public:
  /// Uploads `forest` to `device` (Device::Kind::CUDA). Throws DeviceError when this build has no
  /// CUDA, the device does not exist, or the model uses something the GPU path does not evaluate.
  ForestGPU(const Forest& forest, Device device);

  Device device() const noexcept;
  std::int32_t n_features() const noexcept;
  std::int32_t n_outputs(Output output = Output::Probability) const noexcept;

  /// Host rows (any strides) in, host results (n_rows * n_outputs, row-major) out. The rows are
  /// packed and copied to the device, evaluated, and the results copied back.
  void predict(const float* data, const RowLayout& layout, double* out, Output output = Output::Probability) const;
  void predict(const double* data, const RowLayout& layout, double* out, Output output = Output::Probability) const;

  /// Device memory in and out: `rows` is n_rows x n_features, row-major and contiguous, on this
  /// object's device; `out` receives n_rows * n_outputs doubles. `stream` is a cudaStream_t (null:
  /// a stream of this call); the call returns when the results are written.
  void predict_device(const float* rows, std::size_t n_rows, double* out, Output output = Output::Probability,
                      void* stream = nullptr) const;
  void predict_device(const double* rows, std::size_t n_rows, double* out, Output output = Output::Probability,
                      void* stream = nullptr) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace hepinfer
