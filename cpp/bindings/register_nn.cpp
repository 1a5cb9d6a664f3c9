// Bindings of hepinfer::Model (ONNX networks). Arrays arrive C-contiguous with the model's
// element types (the Python layer, hepinfer.nn, converts and orders them); results are
// fresh numpy arrays. The GIL is released during evaluation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "hepinfer/nn.hpp"

namespace py = pybind11;
using hepinfer::ElementType;
using hepinfer::InputError;
using hepinfer::Model;

namespace {

py::dtype dtype_of(ElementType t) {
  switch (t) {
    case ElementType::Float32: return py::dtype::of<float>();
    case ElementType::Int64: return py::dtype::of<std::int64_t>();
    case ElementType::Bool: return py::dtype::of<bool>();
  }
  return py::dtype::of<float>();
}

// names come from the file: decode them leniently (a corrupt name must not raise UnicodeDecodeError)
py::str text(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::list describe(const std::vector<hepinfer::TensorInfo>& ts) {
  py::list out;
  for (const auto& t : ts) {
    py::object shape = py::none();
    if (t.has_shape) {
      py::list dims;
      for (std::size_t i = 0; i < t.shape.size(); ++i) {
        if (t.shape[i] >= 0) dims.append(py::int_(t.shape[i]));
        else if (!t.dim_names[i].empty()) dims.append(text(t.dim_names[i]));
        else dims.append(py::none());
      }
      shape = py::tuple(dims);
    }
    out.append(py::make_tuple(text(t.name), hepinfer::element_type_name(t.type), shape));
  }
  return out;
}

hepinfer::InputTensor as_input(const Model& m, std::size_t k, const py::array& a) {
  const auto& info = m.inputs()[k];
  hepinfer::InputTensor x;
  x.name = info.name;
  x.type = info.type;
  if (!a.dtype().equal(dtype_of(info.type)))
    throw InputError("input '" + info.name + "' must be " + hepinfer::element_type_name(info.type) + ", got " +
                     std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw InputError("input '" + info.name + "' must be C-contiguous");
  for (py::ssize_t i = 0; i < a.ndim(); ++i) x.shape.push_back(static_cast<std::int64_t>(a.shape(i)));
  x.data = a.data();
  return x;
}

py::list predict(const Model& m, const std::vector<py::array>& arrays, int n_threads) {
  if (arrays.size() != m.inputs().size())
    throw InputError("the model has " + std::to_string(m.inputs().size()) + " inputs, " +
                     std::to_string(arrays.size()) + " were given");
  std::vector<hepinfer::InputTensor> xs;
  for (std::size_t k = 0; k < arrays.size(); ++k) xs.push_back(as_input(m, k, arrays[k]));
  std::vector<hepinfer::OutputTensor> outs;
  {
    py::gil_scoped_release release;
    m.predict(xs, outs, n_threads);
  }
  py::list result;
  for (auto& o : outs) {
    std::vector<py::ssize_t> shape(o.shape.begin(), o.shape.end());
    py::array a(dtype_of(o.type), shape);
    if (!o.bytes.empty()) std::memcpy(a.mutable_data(), o.bytes.data(), o.bytes.size());
    result.append(a);
  }
  return result;
}

// One float32 input [rows, ...] -> one float32 output [rows, ...], written straight into numpy.
py::array_t<float> predict_rows(const Model& m, const py::array& x, int n_threads) {
  const auto& ti = m.inputs().at(0);
  if (!x.dtype().equal(py::dtype::of<float>()))
    throw InputError("input '" + ti.name + "' must be float32, got " + std::string(py::str(x.dtype())));
  if (!(x.flags() & py::array::c_style)) throw InputError("input '" + ti.name + "' must be C-contiguous");
  const std::size_t per_in = m.input_size_per_row();
  if (x.ndim() != static_cast<py::ssize_t>(ti.shape.size()))
    throw InputError("input '" + ti.name + "' must have " + std::to_string(ti.shape.size()) + " dimensions, got " +
                     std::to_string(x.ndim()));
  for (py::ssize_t i = 1; i < x.ndim(); ++i)
    if (x.shape(i) != ti.shape[static_cast<std::size_t>(i)])
      throw InputError("input '" + ti.name + "' has " + std::to_string(x.shape(i)) + " entries along dimension " +
                       std::to_string(i) + "; the model expects " + std::to_string(ti.shape[static_cast<std::size_t>(i)]));
  (void)per_in;
  const auto n_rows = static_cast<std::size_t>(x.ndim() ? x.shape(0) : 0);
  const auto& to = m.outputs().at(0);
  std::vector<py::ssize_t> shape;
  shape.push_back(static_cast<py::ssize_t>(n_rows));
  for (std::size_t i = 1; i < to.shape.size(); ++i) shape.push_back(static_cast<py::ssize_t>(to.shape[i]));
  (void)m.output_size_per_row();
  py::array_t<float> out(shape);
  const float* src = static_cast<const float*>(x.data());
  float* dst = out.mutable_data();
  if (n_rows < 256) {
    m.predict(src, n_rows, dst, 1);  // short: keep the GIL, skip the release/acquire cost
  } else {
    py::gil_scoped_release release;
    m.predict(src, n_rows, dst, n_threads);
  }
  return out;
}

bool simple_rows(const Model& m) {
  if (m.inputs().size() != 1 || m.outputs().size() != 1) return false;
  try {
    (void)m.input_size_per_row();
    (void)m.output_size_per_row();
  } catch (const InputError&) {
    return false;
  }
  return true;
}

}  // namespace

void register_nn(py::module_& m) {
  py::class_<Model>(m, "Model", "An ONNX neural network, immutable after load.")
      .def_static(
          "load",
          [](const std::string& path, const std::string& external_data_dir, bool optimize) {
            hepinfer::ModelOptions opt;
            opt.external_data_dir = external_data_dir;
            opt.optimize = optimize;
            py::gil_scoped_release release;
            return Model::load(path, opt);
          },
          py::arg("path"), py::arg("external_data_dir") = "", py::arg("optimize") = true)
      .def_static(
          "load_from_memory",
          [](const py::bytes& content, const std::string& source_name, const std::string& external_data_dir,
             bool optimize) {
            hepinfer::ModelOptions opt;
            opt.external_data_dir = external_data_dir;
            opt.optimize = optimize;
            std::string data = content;
            py::gil_scoped_release release;
            return Model::load_from_memory(data, opt, source_name);
          },
          py::arg("content"), py::arg("source_name") = "<memory>", py::arg("external_data_dir") = "",
          py::arg("optimize") = true)
      .def_property_readonly("inputs", [](const Model& mo) { return describe(mo.inputs()); })
      .def_property_readonly("outputs", [](const Model& mo) { return describe(mo.outputs()); })
      .def_property_readonly("producer", [](const Model& mo) { return text(mo.producer()); })
      .def_property_readonly("opset", &Model::opset)
      .def_property_readonly("n_nodes", &Model::n_nodes)
      .def_property_readonly("batch_separable", &Model::batch_separable)
      .def_property_readonly("simple_rows", &simple_rows)
      .def("predict", &predict, py::arg("inputs"), py::arg("n_threads") = 1)
      .def("predict_rows", &predict_rows, py::arg("x"), py::arg("n_threads") = 1);
}
