// Host side of the GPU forest: the device node layout built from a ForestIR (forest_gpu_layout.hpp)
// and, in builds without CUDA, the ForestGPU entry points that raise "built without CUDA". With
// HEPINFER_CUDA=ON, ForestGPU's methods are defined in cpp/cuda/forest_cuda.cu.
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "forest/forest_gpu_layout.hpp"
#include "forest/split_thresholds.hpp"
#include "hepinfer/errors.hpp"
#include "hepinfer/forest_gpu.hpp"
#include "hepinfer/forest_ir.hpp"

namespace hepinfer::gpu {
using detail::is_plain;
using detail::strict_double_threshold;
using detail::strict_float_threshold;

Layout build_layout(const ForestIR& ir) {
  if (!ir.transforms.empty())
    throw DeviceError(
        ir.source_name +
        ": TMVA variable transformations are not evaluated on the GPU; use the CPU engine for this model");
  Layout L;
  L.n_features = ir.n_features;
  L.n_groups = ir.n_groups;
  L.float32_inputs = ir.float32_inputs;
  L.float32_accumulate = ir.float32_accumulate;
  L.postprocess = static_cast<int>(ir.postprocess);
  L.sigmoid_scale = ir.sigmoid_scale;
  L.margin_divisor = ir.margin_divisor;
  L.categories = ir.categories;
  L.linear = ir.linear;
  L.base_margin = ir.base_margin;
  if (L.base_margin.size() != static_cast<std::size_t>(ir.n_groups))
    L.base_margin.assign(static_cast<std::size_t>(ir.n_groups), 0.0);
  std::size_t total = 0;
  for (const TreeIR& t : ir.trees) total += t.nodes.size();
  if (total >= std::numeric_limits<std::uint32_t>::max() / 2)
    throw DeviceError(ir.source_name + ": too many nodes for the GPU layout");
  L.nodes.resize(total);
  L.thr_d.assign(total, 0.0);
  L.value.assign(total, 0.0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::size_t base = 0;
  std::vector<std::int32_t> queue;
  std::vector<std::uint32_t> slot;
  for (const TreeIR& tree : ir.trees) {
    const std::size_t n = tree.nodes.size();
    slot.assign(n, 0);
    queue.assign(1, 0);
    slot[0] = static_cast<std::uint32_t>(base);
    std::uint32_t next = static_cast<std::uint32_t>(base + 1);
    for (std::size_t q = 0; q < queue.size(); ++q) {
      const std::int32_t i = queue[q];
      const NodeIR& node = tree.nodes[static_cast<std::size_t>(i)];
      const std::uint32_t s = slot[static_cast<std::size_t>(i)];
      if (node.kind == NodeIR::Kind::Leaf) {
        L.nodes[s] = {std::numeric_limits<float>::quiet_NaN(), 0, s - 1u, kNodeLeaf};
        L.thr_d[s] = nan;
        L.value[s] = node.value;
        continue;
      }
      const std::uint32_t l = next;
      next += 2;
      slot[static_cast<std::size_t>(node.left)] = l;
      slot[static_cast<std::size_t>(node.right)] = l + 1;
      queue.push_back(node.left);
      queue.push_back(node.right);
      std::uint32_t flags = node.default_left ? kNodeDefaultLeft : 0u;
      const bool special = !is_plain(node);
      if (special) {
        flags |= kNodeSpecial | (static_cast<std::uint32_t>(L.specials.size()) << kNodeSpecialShift);
        L.specials.push_back({static_cast<std::uint8_t>(node.kind), static_cast<std::uint8_t>(node.op),
                              static_cast<std::uint8_t>(node.default_left),
                              static_cast<std::uint8_t>(node.zero_is_missing),
                              static_cast<std::uint8_t>(node.cat_negative_right), node.feature, node.threshold,
                              node.cat_begin, node.cat_end, node.lin_begin});
      }
      const std::int32_t feat = node.kind == NodeIR::Kind::Linear ? 0 : node.feature;
      L.nodes[s] = {special ? 0.0f : strict_float_threshold(node.threshold, node.op), feat, l, flags};
      L.thr_d[s] = special ? 0.0 : strict_double_threshold(node.threshold, node.op);
    }
    if (queue.size() != n) throw DeviceError(ir.source_name + ": unreachable nodes in a tree");
    L.roots.push_back(static_cast<std::uint32_t>(base));
    L.group.push_back(tree.group);
    base += n;
  }
  if (L.specials.size() >= (std::size_t{1} << (32 - kNodeSpecialShift)))
    throw DeviceError(ir.source_name + ": too many special splits for the GPU layout");
  // keep every array non-empty so views never hold null pointers
  if (L.categories.empty()) L.categories.push_back(0);
  if (L.linear.empty()) L.linear.push_back(0.0);
  if (L.specials.empty()) L.specials.push_back(Special{});
  if (L.nodes.empty()) {
    L.nodes.push_back(Node{});
    L.thr_d.push_back(0.0);
    L.value.push_back(0.0);
  }
  return L;
}

}  // namespace hepinfer::gpu

#ifndef HEPINFER_WITH_CUDA
namespace hepinfer {

struct ForestGPU::Impl {};

ForestGPU::ForestGPU(const Forest&, Device device) {
  if (device.kind == Device::Kind::CPU)
    throw DeviceError("ForestGPU needs a CUDA device, got \"cpu\" (use Forest::predict on the CPU)");
  throw DeviceError("ForestGPU on cuda:" + std::to_string(device.index) +
                    " requested but hepinfer was built without CUDA (rebuild with HEPINFER_CUDA=ON)");
}
Device ForestGPU::device() const noexcept { return Device{}; }
std::int32_t ForestGPU::n_features() const noexcept { return 0; }
std::int32_t ForestGPU::n_outputs(Output) const noexcept { return 0; }
void ForestGPU::predict(const float*, const RowLayout&, double*, Output) const {}
void ForestGPU::predict(const double*, const RowLayout&, double*, Output) const {}
void ForestGPU::predict_device(const float*, std::size_t, double*, Output, void*) const {}
void ForestGPU::predict_device(const double*, std::size_t, double*, Output, void*) const {}

}  // namespace hepinfer
#endif
