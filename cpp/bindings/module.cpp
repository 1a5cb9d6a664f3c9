// hepinfer._core: the thin pybind11 layer. It converts arguments, releases the GIL and
// calls hepinfer::core; no algorithm lives here.
#include <pybind11/pybind11.h>

#include <cstring>

#include "hepinfer/device.hpp"
#include "hepinfer/errors.hpp"

namespace py = pybind11;

void register_forest(py::module_& m);
void register_jagged(py::module_& m);
void register_disco(py::module_& m);
void register_nn(py::module_& m);
void register_deploy(py::module_& m);
void register_kfold(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() =
      "hepinfer C++ core (tree ensembles, jagged kernels, distance correlation, ONNX networks; see the hepinfer "
      "package for the Python API)";
  m.attr("__version__") = HEPINFER_VERSION;

  // hepinfer.Error is the base of all; format and input errors are also ValueErrors, device
  // errors RuntimeErrors, so users may catch either.
  static py::exception<hepinfer::Error> error(m, "Error", PyExc_Exception);
  static py::exception<hepinfer::ModelFormatError> format_error(m, "ModelFormatError",
                                                                py::make_tuple(error, py::handle(PyExc_ValueError)));
  static py::exception<hepinfer::InputError> input_error(m, "InputError",
                                                         py::make_tuple(error, py::handle(PyExc_ValueError)));
  static py::exception<hepinfer::DeviceError> device_error(m, "DeviceError",
                                                           py::make_tuple(error, py::handle(PyExc_RuntimeError)));
  // Messages may quote bytes of a malformed file: decode them leniently.
  py::register_exception_translator([](std::exception_ptr p) {
    auto raise = [](PyObject* type, const char* what) {
      PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace");
      PyErr_SetObject(type, msg);
      Py_XDECREF(msg);
    };
    try {
      if (p) std::rethrow_exception(p);
    } catch (const hepinfer::ModelFormatError& e) {
      raise(format_error.ptr(), e.what());
    } catch (const hepinfer::InputError& e) {
      raise(input_error.ptr(), e.what());
    } catch (const hepinfer::DeviceError& e) {
      raise(device_error.ptr(), e.what());
    } catch (const hepinfer::Error& e) {
      raise(error.ptr(), e.what());
    }
  });

  m.def("built_with_cuda", &hepinfer::built_with_cuda, "True when this build contains the CUDA kernels.");
  m.def("cuda_device_count", &hepinfer::cuda_device_count, "Number of visible CUDA devices.");
  m.def("check_device", [](const std::string& spec) { hepinfer::parse_device(spec); }, py::arg("device"),
        "Raise DeviceError unless `device` (\"cpu\", \"cuda\", \"cuda:N\") can be used.");

  register_forest(m);
  register_jagged(m);
  register_disco(m);
  register_nn(m);
  register_deploy(m);
  register_kfold(m);
}
