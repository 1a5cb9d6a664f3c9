#pragma once
/// The CUDA executor's plan of an NN model, run on the host: the same plan (the checks of
/// Model::to, the op sequence, the per-element functions of the CUDA kernels) evaluated with plain
/// loops, so that the device path's logic can be checked against the CPU engine and onnxruntime
/// on machines without a GPU. Slow; for tests and for debugging a device result.

#include <vector>

#include "hepinfer/nn.hpp"

namespace hepinfer::nn::gpu {

/// Evaluate `model` as the CUDA executor would (DeviceError for a model the device path refuses).
void host_reference_predict(const Model& model, const std::vector<InputTensor>& inputs,
                            std::vector<OutputTensor>& outputs);

/// Jagged evaluation of a set model (Deep Sets / PFN) as the CUDA executor would, particle rows
/// of all jets one after another.
void host_reference_predict_jagged(const Model& model, const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                                   const JaggedOptions& options = {});

}  // namespace hepinfer::nn::gpu
