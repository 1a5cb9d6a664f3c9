// Model::to(Device) and hepinfer::DeviceModel: the public face of the CUDA NN executor
// (cuda_plan.cpp for the plan and its executor, cpp/cuda/nn_kernels.cu for the kernels). A
// CPU-only build keeps the same API and throws DeviceError("... built without CUDA").
#include "hepinfer/nn.hpp"
#include "nn/cuda_plan.hpp"

namespace hepinfer {

#ifndef HEPINFER_WITH_CUDA

namespace {
[[noreturn]] void no_cuda() {
  throw DeviceError(
      "this model was asked to run on CUDA but hepinfer was built without CUDA (rebuild with HEPINFER_CUDA=ON)");
}
}  // namespace

DeviceModel Model::to(const Device& device) const {
  if (device.kind != Device::Kind::CUDA)
    throw DeviceError("Model::to makes a CUDA model; a Model already runs on the CPU");
  no_cuda();
}
void DeviceModel::predict(const std::vector<InputTensor>&, std::vector<OutputTensor>&) const { no_cuda(); }
void DeviceModel::predict_on_device(const std::vector<InputTensor>&, std::vector<DeviceTensor>&, std::uintptr_t) const {
  no_cuda();
}
void DeviceModel::predict_jagged(const JaggedJets&, std::vector<OutputTensor>&, const JaggedOptions&) const {
  no_cuda();
}

#else

DeviceModel Model::to(const Device& device) const {
  if (device.kind != Device::Kind::CUDA)
    throw DeviceError("Model::to makes a CUDA model; a Model already runs on the CPU");
  const int n = cuda_device_count();
  if (device.index < 0 || device.index >= n)
    throw DeviceError("CUDA device " + std::to_string(device.index) + " was requested but " + std::to_string(n) +
                      " CUDA device(s) are visible");
  auto backend = nn::gpu::make_cuda_backend(device.index, 0);
  auto plan = nn::gpu::make_plan(nn::GraphAccess::of(*this), *backend);
  backend->finish();
  nn::gpu::check_plan(*plan);
  return DeviceModel(*this, device, std::move(plan));
}

void DeviceModel::predict(const std::vector<InputTensor>& inputs, std::vector<OutputTensor>& outputs) const {
  auto backend = nn::gpu::make_cuda_backend(device_.index, 0);
  nn::gpu::execute(*plan_, *backend, inputs, false, outputs);
}

void DeviceModel::predict_on_device(const std::vector<InputTensor>& inputs, std::vector<DeviceTensor>& outputs,
                                    std::uintptr_t stream) const {
  auto backend = nn::gpu::make_cuda_backend(device_.index, stream);
  std::vector<nn::gpu::BackendOutput> outs;
  nn::gpu::execute_on_backend(*plan_, *backend, inputs, true, outs);
  outputs.resize(outs.size());
  for (std::size_t k = 0; k < outs.size(); ++k) {
    std::size_t n = 1;
    for (auto d : outs[k].shape) n *= static_cast<std::size_t>(d);
    outputs[k].name = outs[k].name;
    outputs[k].shape = outs[k].shape;
    outputs[k].device = device_.index;
    outputs[k].data = std::static_pointer_cast<float>(backend->keep(outs[k].data, n * sizeof(float)));
  }
  backend->finish();
}

void DeviceModel::predict_jagged(const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                                 const JaggedOptions& options) const {
  const JaggedLayout layout = model_.jagged_layout(options);
  auto backend = nn::gpu::make_cuda_backend(device_.index, 0);
  nn::gpu::execute_jagged(*plan_, *backend, layout, jets, options, outputs);
}

#endif

}  // namespace hepinfer
