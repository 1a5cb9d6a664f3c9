// Bindings for the disco part of hepinfer::core (converts arguments, releases the GIL, calls the core).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_disco(py::module_& m) { (void)m; }
