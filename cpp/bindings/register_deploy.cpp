// Bindings for deployment helpers (code generation, exports): they read a forest's
// loader-independent description (hepinfer::ForestIR, see forest_ir.hpp) as numpy
// columns. Only conversion happens here; the generators live in python/hepinfer.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hepinfer/forest.hpp"

namespace py = pybind11;
using hepinfer::ForestIR;
using hepinfer::NodeIR;

namespace {

const char* postprocess_name(hepinfer::Postprocess p) {
  switch (p) {
    case hepinfer::Postprocess::Identity: return "identity";
    case hepinfer::Postprocess::Sigmoid: return "sigmoid";
    case hepinfer::Postprocess::Softmax: return "softmax";
    case hepinfer::Postprocess::ArgMax: return "argmax";
    case hepinfer::Postprocess::TMVAGrad: return "tmva_grad";
    case hepinfer::Postprocess::Exp: return "exp";
    case hepinfer::Postprocess::SignedSquare: return "signed_square";
    case hepinfer::Postprocess::Log1pExp: return "log1p_exp";
  }
  return "unknown";
}

const char* source_name(hepinfer::SourceFormat f) {
  switch (f) {
    case hepinfer::SourceFormat::XGBoost: return "xgboost";
    case hepinfer::SourceFormat::LightGBM: return "lightgbm";
    case hepinfer::SourceFormat::TMVA: return "tmva";
    case hepinfer::SourceFormat::Other: break;
  }
  return "other";
}

const char* transform_name(hepinfer::TransformIR::Kind k) {
  switch (k) {
    case hepinfer::TransformIR::Kind::Linear: return "linear";
    case hepinfer::TransformIR::Kind::Affine: return "affine";
    case hepinfer::TransformIR::Kind::CenteredLinear: return "centered_linear";
  }
  return "unknown";
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  T* d = a.mutable_data();
  for (std::size_t i = 0; i < v.size(); ++i) d[i] = v[i];
  return a;
}

/// The ForestIR as a dict of scalars, lists and numpy columns (nodes of all trees concatenated;
/// tree t owns nodes[tree_offsets[t]:tree_offsets[t+1]], child indices are relative to its start).
py::dict forest_ir(const hepinfer::Forest& forest) {
  const ForestIR& ir = forest.ir();
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int32_t> groups;
  std::vector<std::uint8_t> kind, op, default_left, zero_is_missing, cat_negative_right;
  std::vector<std::int32_t> feature, left, right, leaf_id;
  std::vector<std::uint32_t> cat_begin, cat_end, lin_begin;
  std::vector<double> threshold, value;
  for (const auto& tree : ir.trees) {
    groups.push_back(tree.group);
    for (const NodeIR& n : tree.nodes) {
      kind.push_back(static_cast<std::uint8_t>(n.kind));
      op.push_back(static_cast<std::uint8_t>(n.op));
      default_left.push_back(n.default_left ? 1 : 0);
      zero_is_missing.push_back(n.zero_is_missing ? 1 : 0);
      cat_negative_right.push_back(n.cat_negative_right ? 1 : 0);
      feature.push_back(n.feature);
      left.push_back(n.left);
      right.push_back(n.right);
      leaf_id.push_back(n.leaf_id);
      cat_begin.push_back(n.cat_begin);
      cat_end.push_back(n.cat_end);
      lin_begin.push_back(n.lin_begin);
      threshold.push_back(n.threshold);
      value.push_back(n.value);
    }
    offsets.push_back(static_cast<std::int64_t>(kind.size()));
  }
  py::dict d;
  d["source"] = source_name(ir.source);
  d["source_name"] = ir.source_name;
  d["objective"] = ir.objective;
  d["n_features"] = ir.n_features;
  d["n_groups"] = ir.n_groups;
  d["feature_names"] = ir.feature_names;
  d["feature_expressions"] = ir.feature_expressions;
  d["base_margin"] = to_array(ir.base_margin);
  d["postprocess"] = postprocess_name(ir.postprocess);
  d["sigmoid_scale"] = ir.sigmoid_scale;
  d["margin_divisor"] = ir.margin_divisor;
  d["float32_inputs"] = ir.float32_inputs;
  d["float32_accumulate"] = ir.float32_accumulate;
  d["categories"] = to_array(ir.categories);
  d["linear"] = to_array(ir.linear);
  py::list transforms;
  for (const auto& t : ir.transforms) {
    py::dict td;
    td["kind"] = transform_name(t.kind);
    td["matrix"] = to_array(t.matrix);
    td["offset"] = to_array(t.offset);
    td["scale"] = to_array(t.scale);
    td["shift"] = t.shift;
    transforms.append(td);
  }
  d["transforms"] = transforms;
  d["tree_offsets"] = to_array(offsets);
  d["tree_group"] = to_array(groups);
  py::dict nodes;
  nodes["kind"] = to_array(kind);  // 0 leaf, 1 numerical, 2 categorical, 3 linear
  nodes["op"] = to_array(op);      // 0 `<`, 1 `<=`
  nodes["default_left"] = to_array(default_left);
  nodes["zero_is_missing"] = to_array(zero_is_missing);
  nodes["cat_negative_right"] = to_array(cat_negative_right);
  nodes["feature"] = to_array(feature);
  nodes["left"] = to_array(left);
  nodes["right"] = to_array(right);
  nodes["threshold"] = to_array(threshold);
  nodes["cat_begin"] = to_array(cat_begin);
  nodes["cat_end"] = to_array(cat_end);
  nodes["lin_begin"] = to_array(lin_begin);
  nodes["value"] = to_array(value);
  nodes["leaf_id"] = to_array(leaf_id);
  d["nodes"] = nodes;
  return d;
}

}  // namespace

void register_deploy(py::module_& m) {
  m.def("split_threshold",
        [](double t, int op, bool float32) -> double {
    if (op != 0 && op != 1) throw hepinfer::InputError("split op must be 0 (<) or 1 (<=), not " + std::to_string(op));
    const auto o = op == 0 ? hepinfer::NodeIR::Op::Less : hepinfer::NodeIR::Op::LessEqual;
    return float32 ? static_cast<double>(hepinfer::split_threshold_float32(t, o))
                   : hepinfer::split_threshold_float64(t, o);
  }, py::arg("threshold"), py::arg("op"), py::arg("float32") = true,
        "The threshold c with 'left iff x < c' equal to 'left iff x OP threshold' (op 0: <, 1: <=) for "
        "every float32 x (float32=True) or double x: the engines' rule, for code generation and exports.");
  m.def("forest_ir", &forest_ir, py::arg("forest"),
        "The loader-independent description of a forest (hepinfer::ForestIR) as a dict of numpy "
        "columns, for code generation and exports.");
}
