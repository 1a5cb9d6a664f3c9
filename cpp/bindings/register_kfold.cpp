// Bindings of hepinfer::KFold (k-fold cross-application). Rows arrive as C-contiguous
// float32/float64 arrays, event numbers as int64 or uint64 arrays (hepinfer.kfold converts other
// integer types and refuses the rest); the GIL is released around the core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "hepinfer/errors.hpp"
#include "hepinfer/kfold.hpp"

namespace py = pybind11;
using hepinfer::InputError;
using hepinfer::KFold;

namespace {

void check_rows(const KFold& kf, const py::array& X) {
  if (X.ndim() != 2)
    throw InputError("X must be 2-dimensional (events, features), got " + std::to_string(X.ndim()) + " dimensions");
  if (static_cast<std::size_t>(X.shape(1)) != kf.n_features())
    throw InputError("X has " + std::to_string(X.shape(1)) + " features but the k-fold model expects " +
                     std::to_string(kf.n_features()));
  if (!(X.flags() & py::array::c_style)) throw InputError("X must be C-contiguous");
}

py::array_t<double> predict(const KFold& kf, const py::array& X, const py::array& events, const std::string& output,
                            int n_threads) {
  check_rows(kf, X);
  const bool f32 = X.dtype().equal(py::dtype::of<float>());
  if (!f32 && !X.dtype().equal(py::dtype::of<double>()))
    throw InputError("X must be float32 or float64, got dtype " + std::string(py::str(X.dtype())));
  const bool u64 = events.dtype().equal(py::dtype::of<std::uint64_t>());
  if (!u64 && !events.dtype().equal(py::dtype::of<std::int64_t>()))
    throw InputError("event_numbers must be int64 or uint64, got dtype " + std::string(py::str(events.dtype())));
  if (events.ndim() != 1 || !(events.flags() & py::array::c_style))
    throw InputError("event_numbers must be a contiguous 1-dimensional array");
  if (events.shape(0) != X.shape(0))
    throw InputError("event_numbers has " + std::to_string(events.shape(0)) + " entries for " +
                     std::to_string(X.shape(0)) + " events");
  const hepinfer::Output o = hepinfer::parse_output(output);
  const auto n = static_cast<std::size_t>(X.shape(0));
  py::array_t<double> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(kf.n_outputs(o))});
  double* dst = out.mutable_data();
  const void* rows = X.data();
  const void* ev = events.data();
  if (u64 && !f32) {
    // the uint64 overload takes float rows: reduce the event numbers first (exact), then the int64 path
    py::array_t<std::int64_t> folds(static_cast<py::ssize_t>(n));
    std::int64_t* fp = folds.mutable_data();
    const auto* e = static_cast<const std::uint64_t*>(ev);
    py::gil_scoped_release release;
    for (std::size_t i = 0; i < n; ++i) fp[i] = kf.fold_of(e[i]);
    kf.predict(static_cast<const double*>(rows), n, fp, dst, o, n_threads);
    return out;
  }
  py::gil_scoped_release release;
  if (u64) kf.predict(static_cast<const float*>(rows), n, static_cast<const std::uint64_t*>(ev), dst, o, n_threads);
  else if (f32) kf.predict(static_cast<const float*>(rows), n, static_cast<const std::int64_t*>(ev), dst, o, n_threads);
  else kf.predict(static_cast<const double*>(rows), n, static_cast<const std::int64_t*>(ev), dst, o, n_threads);
  return out;
}

py::array_t<std::int32_t> folds(const KFold& kf, const py::array& events) {
  const bool u64 = events.dtype().equal(py::dtype::of<std::uint64_t>());
  if (!u64 && !events.dtype().equal(py::dtype::of<std::int64_t>()))
    throw InputError("event_numbers must be int64 or uint64, got dtype " + std::string(py::str(events.dtype())));
  if (events.ndim() != 1 || !(events.flags() & py::array::c_style))
    throw InputError("event_numbers must be a contiguous 1-dimensional array");
  const auto n = static_cast<std::size_t>(events.shape(0));
  py::array_t<std::int32_t> out(static_cast<py::ssize_t>(n));
  std::int32_t* dst = out.mutable_data();
  const void* ev = events.data();
  py::gil_scoped_release release;
  for (std::size_t i = 0; i < n; ++i)
    dst[i] = u64 ? kf.fold_of(static_cast<const std::uint64_t*>(ev)[i])
                 : kf.fold_of(static_cast<const std::int64_t*>(ev)[i]);
  return out;
}

}  // namespace

void register_kfold(py::module_& m) {
  py::class_<KFold>(m, "KFold", "k models applied each to the events of its fold (event_number mod k).")
      .def_static("load",
                  [](const std::string& path, const std::string& format, const std::string& tmva_cut_op) {
    hepinfer::KFoldOptions opt;
    opt.forest.format = format;
    opt.forest.tmva_cut_op = hepinfer::parse_tmva_cut_op(tmva_cut_op);
    py::gil_scoped_release release;
    return KFold::load(path, opt);
  }, py::arg("path"), py::arg("format") = "auto", py::arg("tmva_cut_op") = ">=")
      .def_static("read_manifest",
                  [](const std::string& path) {
    const hepinfer::KFoldManifest mf = KFold::read_manifest(path);
    py::dict d;
    d["n_folds"] = mf.n_folds;
    d["event_number"] = mf.event_number;
    d["features"] = mf.features;
    d["members"] = mf.members;
    d["source"] = mf.source;
    return d;
  }, py::arg("path"))
      .def_property_readonly("n_folds", &KFold::n_folds)
      .def_property_readonly(
          "kind", [](const KFold& kf) { return kf.kind() == hepinfer::KFoldKind::Forest ? "forest" : "network"; })
      .def_property_readonly("event_number", &KFold::event_number)
      .def_property_readonly("feature_names", &KFold::feature_names)
      .def_property_readonly("n_features", &KFold::n_features)
      .def_property_readonly("member_paths", &KFold::member_paths)
      .def("n_outputs",
           [](const KFold& kf, const std::string& output) { return kf.n_outputs(hepinfer::parse_output(output)); },
           py::arg("output") = "probability")
      .def("folds", &folds, py::arg("event_numbers"), "The fold of each event (event_number mod n_folds).")
      .def("predict", &predict, py::arg("X"), py::arg("event_numbers"), py::arg("output") = "probability",
           py::arg("n_threads") = 1);
}
