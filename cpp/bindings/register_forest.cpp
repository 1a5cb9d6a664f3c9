// Bindings of hepinfer::Forest. Arrays arrive as float32/float64 numpy arrays with any
// strides (zero-copy); the Python layer (hepinfer.forest) does name matching and dtype
// conversion of other inputs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "hepinfer/device.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/forest_gpu.hpp"

namespace py = pybind11;
using hepinfer::Forest;
using hepinfer::InputError;
using hepinfer::Output;

namespace {

using hepinfer::parse_output;

hepinfer::TMVACutOp parse_cut_op(const std::string& s) { return hepinfer::parse_tmva_cut_op(s); }

std::string source_format_name(hepinfer::SourceFormat f) {
  switch (f) {
    case hepinfer::SourceFormat::XGBoost: return "xgboost";
    case hepinfer::SourceFormat::LightGBM: return "lightgbm";
    case hepinfer::SourceFormat::TMVA: return "tmva";
    case hepinfer::SourceFormat::Other: break;
  }
  return "other";
}

/// Checks a 2-D float array against the model and describes its layout (strides in elements).
hepinfer::RowLayout layout_of(const Forest& f, const py::array& X, const char* name) {
  if (X.ndim() != 2)
    throw InputError(std::string(name) + " must be 2-dimensional (rows, features), got " + std::to_string(X.ndim()) +
                     " dimensions");
  if (X.shape(1) != f.n_features())
    throw InputError(std::string(name) + " has " + std::to_string(X.shape(1)) + " features but the model expects " +
                     std::to_string(f.n_features()));
  const auto item = static_cast<py::ssize_t>(X.itemsize());
  if (X.strides(0) % item != 0 || X.strides(1) % item != 0)
    throw InputError(std::string(name) + " has strides that are not a multiple of its item size");
  return hepinfer::RowLayout{static_cast<std::size_t>(X.shape(0)), X.strides(0) / item, X.strides(1) / item};
}

bool is_f32(const py::array& a) { return a.dtype().equal(py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return a.dtype().equal(py::dtype::of<double>()); }

void require_float(const py::array& X, const char* name) {
  if (!is_f32(X) && !is_f64(X))
    throw InputError(std::string(name) + " must be float32 or float64, got dtype " + std::string(py::str(X.dtype())));
}

py::array_t<double> predict(const Forest& f, const py::array& X, const std::string& output, int n_threads,
                            py::object out_obj) {
  require_float(X, "X");
  const Output o = parse_output(output);
  const auto layout = layout_of(f, X, "X");
  const auto n_out = static_cast<py::ssize_t>(f.n_outputs(o));
  py::array_t<double> out;
  if (out_obj.is_none()) {
    out = py::array_t<double>({static_cast<py::ssize_t>(layout.n_rows), n_out});
  } else {
    out = py::reinterpret_borrow<py::array_t<double>>(out_obj);
    if (!py::isinstance<py::array_t<double>>(out_obj) || !out.dtype().equal(py::dtype::of<double>()))
      throw InputError("out must be a float64 numpy array");
    if (!(out.flags() & py::array::c_style) || !out.writeable())
      throw InputError("out must be a writeable C-contiguous array");
    if (out.size() != static_cast<py::ssize_t>(layout.n_rows) * n_out)
      throw InputError("out has " + std::to_string(out.size()) + " elements, expected " +
                       std::to_string(static_cast<py::ssize_t>(layout.n_rows) * n_out));
  }
  double* dst = out.mutable_data();
  if (is_f32(X)) {
    const float* src = static_cast<const float*>(X.data());
    py::gil_scoped_release release;
    f.predict(src, layout, dst, o, n_threads);
  } else {
    const double* src = static_cast<const double*>(X.data());
    py::gil_scoped_release release;
    f.predict(src, layout, dst, o, n_threads);
  }
  return out;
}

py::array_t<std::int32_t> predict_leaf(const Forest& f, const py::array& X, int n_threads) {
  require_float(X, "X");
  const auto layout = layout_of(f, X, "X");
  py::array_t<std::int32_t> out({static_cast<py::ssize_t>(layout.n_rows), static_cast<py::ssize_t>(f.n_trees())});
  std::int32_t* dst = out.mutable_data();
  if (is_f32(X)) {
    const float* src = static_cast<const float*>(X.data());
    py::gil_scoped_release release;
    f.predict_leaf(src, layout, dst, n_threads);
  } else {
    const double* src = static_cast<const double*>(X.data());
    py::gil_scoped_release release;
    f.predict_leaf(src, layout, dst, n_threads);
  }
  return out;
}

py::object predict_one(const Forest& f, const py::array& row, const std::string& output) {
  require_float(row, "row");
  const Output o = parse_output(output);
  if (row.ndim() != 1 || row.shape(0) != f.n_features())
    throw InputError("row must be 1-dimensional with " + std::to_string(f.n_features()) + " values");
  if (!(row.flags() & py::array::c_style)) throw InputError("row must be contiguous");
  const int n_out = f.n_outputs(o);
  if (n_out == 1) {
    double v;
    if (is_f32(row)) f.predict_one(static_cast<const float*>(row.data()), &v, o);
    else f.predict_one(static_cast<const double*>(row.data()), &v, o);
    return py::float_(v);
  }
  py::array_t<double> out(n_out);
  if (is_f32(row)) f.predict_one(static_cast<const float*>(row.data()), out.mutable_data(), o);
  else f.predict_one(static_cast<const double*>(row.data()), out.mutable_data(), o);
  return std::move(out);
}

py::array_t<double> predict_gpu(const hepinfer::ForestGPU& g, const Forest& f, const py::array& X,
                                const std::string& output) {
  require_float(X, "X");
  const Output o = parse_output(output);
  const auto layout = layout_of(f, X, "X");
  py::array_t<double> out({static_cast<py::ssize_t>(layout.n_rows), static_cast<py::ssize_t>(g.n_outputs(o))});
  double* dst = out.mutable_data();
  if (is_f32(X)) {
    const float* src = static_cast<const float*>(X.data());
    py::gil_scoped_release release;
    g.predict(src, layout, dst, o);
  } else {
    const double* src = static_cast<const double*>(X.data());
    py::gil_scoped_release release;
    g.predict(src, layout, dst, o);
  }
  return out;
}

}  // namespace

void register_forest(py::module_& m) {
  py::class_<Forest>(m, "Forest", "A tree ensemble (XGBoost, LightGBM or TMVA BDT), immutable after load.")
      .def_static("load",
                  [](const std::string& path, const std::string& format, const std::string& tmva_cut_op) {
    hepinfer::LoadOptions opt;
    opt.format = format;
    opt.tmva_cut_op = parse_cut_op(tmva_cut_op);
    py::gil_scoped_release release;
    return Forest::load(path, opt);
  }, py::arg("path"), py::arg("format") = "auto", py::arg("tmva_cut_op") = ">=")
      .def_static("load_from_memory",
                  [](const py::bytes& content, const std::string& format, const std::string& tmva_cut_op,
                     const std::string& source_name) {
    hepinfer::LoadOptions opt;
    opt.format = format;
    opt.tmva_cut_op = parse_cut_op(tmva_cut_op);
    std::string data = content;
    py::gil_scoped_release release;
    return Forest::load_from_memory(data, opt, source_name);
  },
                  py::arg("content"), py::arg("format") = "auto",
                  py::arg("tmva_cut_op") = ">=", py::arg("source_name") = "<memory>")
      .def_property_readonly("n_features", &Forest::n_features)
      .def_property_readonly("n_classes", &Forest::n_classes)
      .def_property_readonly("n_trees", &Forest::n_trees)
      .def("n_outputs", [](const Forest& f, const std::string& output) { return f.n_outputs(parse_output(output)); },
           py::arg("output") = "probability")
      .def_property_readonly("feature_names", &Forest::feature_names)
      .def_property_readonly("feature_expressions", [](const Forest& f) { return f.ir().feature_expressions; })
      .def_property_readonly("objective", &Forest::objective)
      .def_property_readonly("source_format", [](const Forest& f) { return source_format_name(f.source_format()); })
      .def("predict", &predict, py::arg("X"), py::arg("output") = "probability", py::arg("n_threads") = 1,
           py::arg("out") = py::none())
      .def("predict_leaf", &predict_leaf, py::arg("X"), py::arg("n_threads") = 1)
      .def("predict_one", &predict_one, py::arg("row"), py::arg("output") = "probability");

  // The forest uploaded to a GPU. Keeps a reference to its Forest (for input checks).
  struct GPUHandle {
    Forest forest;
    hepinfer::ForestGPU gpu;
  };
  py::class_<GPUHandle>(m, "ForestGPU", "A Forest uploaded to a CUDA device (bit-identical decisions and margins).")
      .def(py::init([](const Forest& f, const std::string& device) {
    const hepinfer::Device d = hepinfer::parse_device(device);
    if (d.kind != hepinfer::Device::Kind::CUDA)
      throw hepinfer::DeviceError("ForestGPU needs a CUDA device, got \"" + device + "\"");
    py::gil_scoped_release release;
    return new GPUHandle{f, hepinfer::ForestGPU(f, d)};
  }),
           py::arg("forest"), py::arg("device"))
      .def_property_readonly("device_index", [](const GPUHandle& h) { return h.gpu.device().index; })
      .def("n_outputs",
           [](const GPUHandle& h, const std::string& output) { return h.gpu.n_outputs(parse_output(output)); },
           py::arg("output") = "probability")
      .def("predict",
           [](const GPUHandle& h, const py::array& X, const std::string& output) {
    return predict_gpu(h.gpu, h.forest, X, output);
  }, py::arg("X"), py::arg("output") = "probability",
           "Host rows (numpy float32/float64) in, numpy out; the rows are copied to the device.")
      .def("predict_device",
           [](const GPUHandle& h, std::uintptr_t rows, std::size_t n_rows, const std::string& dtype, std::uintptr_t out,
              const std::string& output, std::uintptr_t stream) {
    const Output o = parse_output(output);
    py::gil_scoped_release release;
    if (dtype == "float32")
      h.gpu.predict_device(reinterpret_cast<const float*>(rows), n_rows, reinterpret_cast<double*>(out), o,
                           reinterpret_cast<void*>(stream));
    else if (dtype == "float64")
      h.gpu.predict_device(reinterpret_cast<const double*>(rows), n_rows, reinterpret_cast<double*>(out), o,
                           reinterpret_cast<void*>(stream));
    else throw InputError("dtype must be \"float32\" or \"float64\", not \"" + dtype + "\"");
  },
           py::arg("rows"), py::arg("n_rows"), py::arg("dtype"), py::arg("out"), py::arg("output") = "probability",
           py::arg("stream") = 0,
           "Device memory by address: rows (n_rows x n_features, C-contiguous) in, out (n_rows x n_outputs "
           "float64) written on the device.");
}
