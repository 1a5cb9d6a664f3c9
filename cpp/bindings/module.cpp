// hepinfer._core: the thin pybind11 layer. It converts arguments, releases the GIL and
// calls hepinfer::core; no algorithm lives here.
#include <pybind11/pybind11.h>

#include "hepinfer/device.hpp"
#include "hepinfer/errors.hpp"

namespace py = pybind11;

void register_forest(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "hepinfer C++ core (tree ensembles; see the hepinfer package for the Python API)";
  m.attr("__version__") = HEPINFER_VERSION;

  // Exception hierarchy: hepinfer.Error is the base; format and input errors are ValueErrors.
  static py::exception<hepinfer::Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<hepinfer::ModelFormatError> format_error(m, "ModelFormatError", PyExc_ValueError);
  static py::exception<hepinfer::InputError> input_error(m, "InputError", PyExc_ValueError);
  static py::exception<hepinfer::DeviceError> device_error(m, "DeviceError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const hepinfer::ModelFormatError& e) {
      py::set_error(format_error, e.what());
    } catch (const hepinfer::InputError& e) {
      py::set_error(input_error, e.what());
    } catch (const hepinfer::DeviceError& e) {
      py::set_error(device_error, e.what());
    } catch (const hepinfer::Error& e) {
      py::set_error(error, e.what());
    }
  });

  m.def("built_with_cuda", &hepinfer::built_with_cuda, "True when this build contains the CUDA kernels.");
  m.def("cuda_device_count", &hepinfer::cuda_device_count, "Number of visible CUDA devices.");
  m.def(
      "check_device", [](const std::string& spec) { hepinfer::parse_device(spec); }, py::arg("device"),
      "Raise DeviceError unless `device` (\"cpu\", \"cuda\", \"cuda:N\") can be used.");

  register_forest(m);
}
