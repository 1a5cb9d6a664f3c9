// Bindings for the disco part of hepinfer::core (converts arguments, releases the GIL, calls the core).
// x, y (1-D or 2-D (n, d)) and weights arrive as numpy arrays of float32 or float64; they are
// viewed zero-copy when already C-contiguous float64 and otherwise copied to float64 (the
// algorithm sorts or streams over them anyway, so the copy costs O(n)).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "hepinfer/device.hpp"
#include "hepinfer/disco.hpp"
#include "hepinfer/errors.hpp"

namespace py = pybind11;

namespace {

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

F64Array as_f64(const py::array& a, const char* name) {
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw hepinfer::InputError(std::string(name) + " must be a numeric array, got dtype " +
                               std::string(py::str(a.dtype())));
  if (a.ndim() != 1 && a.ndim() != 2)
    throw hepinfer::InputError(std::string(name) + " must be 1-dimensional (n,) or 2-dimensional (n, d), got " +
                               std::to_string(a.ndim()) + " dimensions");
  return F64Array::ensure(a);
}

std::size_t columns(const F64Array& a) { return a.ndim() == 1 ? 1 : static_cast<std::size_t>(a.shape(1)); }

py::tuple stats(const py::array& x_in, const py::array& y_in, const py::object& w_in, bool unbiased, int n_threads,
                bool gradient, const std::string& device) {
  const hepinfer::Device dev = hepinfer::parse_device(device);
  const F64Array x = as_f64(x_in, "x");
  const F64Array y = as_f64(y_in, "y");
  const auto n = static_cast<std::size_t>(x.shape(0));
  if (static_cast<std::size_t>(y.shape(0)) != n)
    throw hepinfer::InputError("x and y must have the same number of events, got " + std::to_string(n) + " and " +
                               std::to_string(y.shape(0)));
  F64Array w;
  const double* wp = nullptr;
  if (!w_in.is_none()) {
    w = as_f64(py::array::ensure(w_in), "weights");
    if (w.ndim() != 1 || static_cast<std::size_t>(w.shape(0)) != n)
      throw hepinfer::InputError("weights must be 1-dimensional with one entry per event (" + std::to_string(n) + ")");
    wp = w.data();
  }
  const std::size_t dx = columns(x), dy = columns(y);
  if (dx == 0 || dy == 0) throw hepinfer::InputError("x and y must have at least one column");
  hepinfer::disco::Options opt;
  opt.unbiased = unbiased;
  opt.n_threads = n_threads;
  py::array_t<double> g_cor, g_cov;
  double* gp_cor = nullptr;
  double* gp_cov = nullptr;
  if (gradient) {
    if (x.ndim() == 1) {
      g_cor = py::array_t<double>(static_cast<py::ssize_t>(n));
      g_cov = py::array_t<double>(static_cast<py::ssize_t>(n));
    } else {
      g_cor = py::array_t<double>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(dx)});
      g_cov = py::array_t<double>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(dx)});
    }
    gp_cor = g_cor.mutable_data();
    gp_cov = g_cov.mutable_data();
  }
  hepinfer::disco::Result r;
  {
    py::gil_scoped_release release;
    r = hepinfer::disco::distance_correlation(x.data(), dx, y.data(), dy, wp, n, dev, opt, gp_cor, gp_cov);
  }
  py::object gc = gradient ? py::object(g_cor) : py::object(py::none());
  py::object gv = gradient ? py::object(g_cov) : py::object(py::none());
  return py::make_tuple(r.dcov_xy, r.dcov_xx, r.dcov_yy, r.dcor2, gc, gv);
}

/// Device memory given as integer addresses (torch .data_ptr(), __cuda_array_interface__): float64,
/// C-contiguous, n x dx and n x dy; w and the gradient outputs may be 0 (absent).
py::tuple stats_device(std::uintptr_t x, std::size_t dx, std::uintptr_t y, std::size_t dy, std::uintptr_t w,
                       std::size_t n, const std::string& device, bool unbiased, std::uintptr_t grad_dcor2,
                       std::uintptr_t grad_dcov, std::uintptr_t stream) {
  const hepinfer::Device dev = hepinfer::parse_device(device);
  if (dev.kind != hepinfer::Device::Kind::CUDA)
    throw hepinfer::DeviceError("distance_stats_device needs a CUDA device, got \"" + device + "\"");
  hepinfer::disco::Options opt;
  opt.unbiased = unbiased;
  hepinfer::disco::Result r;
  {
    py::gil_scoped_release release;
    r = hepinfer::disco::distance_correlation_device(
        reinterpret_cast<const double*>(x), dx, reinterpret_cast<const double*>(y), dy,
        reinterpret_cast<const double*>(w), n, dev, opt, reinterpret_cast<double*>(grad_dcor2),
        reinterpret_cast<double*>(grad_dcov), reinterpret_cast<void*>(stream));
  }
  return py::make_tuple(r.dcov_xy, r.dcov_xx, r.dcov_yy, r.dcor2);
}

}  // namespace

void register_disco(py::module_& m) {
  m.def("distance_stats", &stats, py::arg("x"), py::arg("y"), py::arg("weights") = py::none(),
        py::arg("unbiased") = false, py::arg("n_threads") = 1, py::arg("gradient") = false, py::arg("device") = "cpu",
        "Squared distance covariances and correlation of x and y (1-D or (n, d) arrays), optionally with the "
        "gradients of dCor^2 and dCov^2(x, y) with respect to x. Returns (dcov_xy, dcov_xx, dcov_yy, dcor2, "
        "grad_dcor2 or None, grad_dcov or None). device=\"cuda[:N]\" copies the arrays to that GPU.");
  m.def("distance_stats_device", &stats_device, py::arg("x"), py::arg("dx"), py::arg("y"), py::arg("dy"),
        py::arg("weights"), py::arg("n"), py::arg("device"), py::arg("unbiased") = false, py::arg("grad_dcor2") = 0,
        py::arg("grad_dcov") = 0, py::arg("stream") = 0,
        "distance_stats on float64 device memory given by addresses (0 for absent weights/gradients); writes "
        "the gradients in place on the device. Returns (dcov_xy, dcov_xx, dcov_yy, dcor2).");
}
