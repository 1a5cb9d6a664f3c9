// Bindings for the jagged part of hepinfer::core (converts arguments, releases the GIL, calls the core).
// Offsets and content arrive as 1-D numpy arrays that view the caller's (awkward's) buffers:
// nothing is copied; the JaggedView object keeps references to them while it lives.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hepinfer/jagged.hpp"

namespace py = pybind11;
using hepinfer::InputError;
using hepinfer::JaggedView;

namespace {

/// A validated JaggedView plus the numpy arrays whose memory it reads.
struct PyJagged {
  JaggedView view;
  py::object offsets;
  std::vector<py::array> columns;
};

bool is_dtype(const py::array& a, const py::dtype& d) { return a.dtype().equal(d); }

std::string dtype_name(const py::array& a) { return std::string(py::str(a.dtype())); }

PyJagged make_view(const py::array& offsets, const std::vector<py::array>& columns,
                   const std::vector<std::string>& names) {
  if (names.size() != columns.size())
    throw InputError("jagged array: " + std::to_string(columns.size()) + " columns but " +
                     std::to_string(names.size()) + " names");
  if (offsets.ndim() != 1) throw InputError("offsets must be 1-dimensional, got " + std::to_string(offsets.ndim()));
  if (offsets.shape(0) < 1) throw InputError("offsets must have at least one entry (n_events + 1)");
  if (!(offsets.flags() & py::array::c_style)) throw InputError("offsets must be contiguous");
  hepinfer::IndexType it;
  if (is_dtype(offsets, py::dtype::of<std::int64_t>())) it = hepinfer::IndexType::Int64;
  else if (is_dtype(offsets, py::dtype::of<std::int32_t>())) it = hepinfer::IndexType::Int32;
  else if (is_dtype(offsets, py::dtype::of<std::uint32_t>())) it = hepinfer::IndexType::UInt32;
  else throw InputError("offsets must be int32, uint32 or int64, got " + dtype_name(offsets));
  std::vector<hepinfer::JaggedColumn> cols;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const py::array& a = columns[c];
    hepinfer::JaggedColumn col;
    col.name = names[c];
    if (a.ndim() != 1)
      throw InputError("column \"" + names[c] + "\" must be 1-dimensional content, got " + std::to_string(a.ndim()) +
                       " dimensions");
    if (is_dtype(a, py::dtype::of<float>())) col.dtype = hepinfer::ValueType::Float32;
    else if (is_dtype(a, py::dtype::of<double>())) col.dtype = hepinfer::ValueType::Float64;
    else throw InputError("column \"" + names[c] + "\" must be float32 or float64, got " + dtype_name(a));
    col.size = static_cast<std::size_t>(a.shape(0));
    const auto item = static_cast<py::ssize_t>(a.itemsize());
    if (col.size > 1 && (a.strides(0) <= 0 || a.strides(0) % item != 0))
      throw InputError("column \"" + names[c] + "\" has a stride of " + std::to_string(a.strides(0)) +
                       " bytes; it must be a positive multiple of the item size");
    col.stride = col.size > 1 ? a.strides(0) / item : 1;
    col.data = a.data();
    cols.push_back(std::move(col));
  }
  PyJagged out{JaggedView(static_cast<std::size_t>(offsets.shape(0) - 1), offsets.data(), it, std::move(cols)), offsets,
               columns};
  out.view.validate();
  return out;
}

std::size_t column_of(const PyJagged& j, const py::object& col) {
  if (py::isinstance<py::str>(col)) return j.view.column_index(col.cast<std::string>());
  const auto c = col.cast<long long>();
  if (c < 0 || static_cast<std::size_t>(c) >= j.view.n_columns())
    throw InputError("column index " + std::to_string(c) + " is out of range (the array has " +
                     std::to_string(j.view.n_columns()) + " columns)");
  return static_cast<std::size_t>(c);
}

bool want_float32(const std::string& dtype) {
  if (dtype == "float32") return true;
  if (dtype == "float64") return false;
  throw InputError("dtype must be \"float32\" or \"float64\", not \"" + dtype + "\"");
}

/// Dense output shape and element layout: "events" = (n_events, length, n_columns),
/// "columns" = (n_columns, n_events, length).
std::pair<std::vector<py::ssize_t>, hepinfer::PaddedLayout> dense_layout(const std::string& layout, std::size_t n,
                                                                         std::size_t length, std::size_t nc) {
  const auto N = static_cast<py::ssize_t>(n), L = static_cast<py::ssize_t>(length), C = static_cast<py::ssize_t>(nc);
  if (layout == "events") return {{N, L, C}, hepinfer::PaddedLayout{L * C, C, 1}};
  if (layout == "columns") return {{C, N, L}, hepinfer::PaddedLayout{L, 1, N * L}};
  throw InputError("layout must be \"events\" or \"columns\", not \"" + layout + "\"");
}

hepinfer::SortOrder order_of(bool ascending) {
  return ascending ? hepinfer::SortOrder::Ascending : hepinfer::SortOrder::Descending;
}

py::tuple pad(const PyJagged& j, std::size_t length, double fill, const std::string& dtype, const std::string& layout,
              int n_threads) {
  const bool f32 = want_float32(dtype);
  auto [shape, L] = dense_layout(layout, j.view.n_events(), length, j.view.n_columns());
  py::array_t<std::uint8_t> mask({static_cast<py::ssize_t>(j.view.n_events()), static_cast<py::ssize_t>(length)});
  std::uint8_t* m = mask.mutable_data();
  if (f32) {
    py::array_t<float> out(shape);
    float* o = out.mutable_data();
    {
      py::gil_scoped_release release;
      hepinfer::pad(j.view, length, fill, o, L, m, n_threads);
    }
    return py::make_tuple(out, mask.view("bool"));
  }
  py::array_t<double> out(shape);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    hepinfer::pad(j.view, length, fill, o, L, m, n_threads);
  }
  return py::make_tuple(out, mask.view("bool"));
}

py::tuple leading(const PyJagged& j, const py::object& key, std::size_t k, bool ascending, double fill,
                  const std::string& dtype, const std::string& layout, int n_threads) {
  const std::size_t kc = column_of(j, key);
  const bool f32 = want_float32(dtype);
  auto [shape, L] = dense_layout(layout, j.view.n_events(), k, j.view.n_columns());
  const auto N = static_cast<py::ssize_t>(j.view.n_events()), K = static_cast<py::ssize_t>(k);
  py::array_t<std::uint8_t> mask({N, K});
  py::array_t<std::int64_t> index({N, K});
  std::uint8_t* m = mask.mutable_data();
  std::int64_t* ix = index.mutable_data();
  py::array out = f32 ? py::array(py::array_t<float>(shape)) : py::array(py::array_t<double>(shape));
  void* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (f32) hepinfer::leading(j.view, kc, k, order_of(ascending), fill, static_cast<float*>(o), L, m, ix, n_threads);
    else hepinfer::leading(j.view, kc, k, order_of(ascending), fill, static_cast<double*>(o), L, m, ix, n_threads);
  }
  return py::make_tuple(out, mask.view("bool"), index);
}

py::tuple top_k_indices(const PyJagged& j, const py::object& key, std::size_t k, bool ascending, int n_threads) {
  const std::size_t kc = column_of(j, key);
  const auto N = static_cast<py::ssize_t>(j.view.n_events());
  py::array_t<std::int64_t> index({N, static_cast<py::ssize_t>(k)});
  py::array_t<std::int64_t> cnt(N);
  std::int64_t* ix = index.mutable_data();
  std::int64_t* c = cnt.mutable_data();
  {
    py::gil_scoped_release release;
    hepinfer::top_k_indices(j.view, kc, k, order_of(ascending), ix, c, n_threads);
  }
  return py::make_tuple(index, cnt);
}

py::array gather(const PyJagged& j, const py::object& col, const py::array_t<std::int64_t, py::array::c_style>& index,
                 const py::array_t<std::int64_t, py::array::c_style>& cnt, const std::string& dtype, int n_threads) {
  const std::size_t c = column_of(j, col);
  const bool f32 = want_float32(dtype);
  const auto N = static_cast<py::ssize_t>(j.view.n_events());
  if (index.ndim() != 2 || index.shape(0) != N)
    throw InputError("index must have shape (n_events, k) with n_events = " + std::to_string(N));
  if (cnt.ndim() != 1 || cnt.shape(0) != N) throw InputError("counts must have shape (n_events,)");
  const auto k = static_cast<std::size_t>(index.shape(1));
  py::ssize_t total = 0;
  for (py::ssize_t e = 0; e < N; ++e) total += std::max<std::int64_t>(cnt.at(e), 0);
  py::array out = f32 ? py::array(py::array_t<float>(total)) : py::array(py::array_t<double>(total));
  void* o = out.mutable_data();
  const std::int64_t* ix = index.data();
  const std::int64_t* cn = cnt.data();
  {
    py::gil_scoped_release release;
    if (f32) hepinfer::gather(j.view, c, ix, cn, k, static_cast<float*>(o), n_threads);
    else hepinfer::gather(j.view, c, ix, cn, k, static_cast<double*>(o), n_threads);
  }
  return out;
}

py::array_t<double> reduce(const PyJagged& j, const py::object& col, const std::string& op, double empty_value,
                           int n_threads) {
  const std::size_t c = column_of(j, col);
  hepinfer::Reduction r;
  if (op == "sum") r = hepinfer::Reduction::Sum;
  else if (op == "max") r = hepinfer::Reduction::Max;
  else if (op == "min") r = hepinfer::Reduction::Min;
  else if (op == "mean") r = hepinfer::Reduction::Mean;
  else throw InputError("reduction must be \"sum\", \"max\", \"min\" or \"mean\", not \"" + op + "\"");
  py::array_t<double> out(static_cast<py::ssize_t>(j.view.n_events()));
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    hepinfer::reduce(j.view, c, r, empty_value, o, n_threads);
  }
  return out;
}

py::array_t<std::int64_t> counts(const PyJagged& j, int n_threads) {
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(j.view.n_events()));
  std::int64_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    hepinfer::counts(j.view, o, n_threads);
  }
  return out;
}

/// Checks that the four arrays are 1-D, contiguous, the same float dtype and length.
bool check_four(const std::vector<py::array>& a, const char* names) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].ndim() != 1 || !(a[i].flags() & py::array::c_style))
      throw InputError(std::string("the arrays (") + names + ") must be 1-dimensional and contiguous");
    if (!a[i].dtype().equal(a[0].dtype()) || a[i].shape(0) != a[0].shape(0))
      throw InputError(std::string("the arrays (") + names + ") must have the same dtype and length");
  }
  if (a[0].dtype().equal(py::dtype::of<float>())) return true;
  if (a[0].dtype().equal(py::dtype::of<double>())) return false;
  throw InputError(std::string("the arrays (") + names + ") must be float32 or float64, got " + dtype_name(a[0]));
}

template <class T, class F>
py::tuple four_to_four(const std::vector<py::array>& in, int n_threads, F f) {
  const auto n = static_cast<py::ssize_t>(in[0].shape(0));
  py::array_t<T> o0(n), o1(n), o2(n), o3(n);
  const T* i0 = static_cast<const T*>(in[0].data());
  const T* i1 = static_cast<const T*>(in[1].data());
  const T* i2 = static_cast<const T*>(in[2].data());
  const T* i3 = static_cast<const T*>(in[3].data());
  T *p0 = o0.mutable_data(), *p1 = o1.mutable_data(), *p2 = o2.mutable_data(), *p3 = o3.mutable_data();
  {
    py::gil_scoped_release release;
    f(i0, i1, i2, i3, static_cast<std::size_t>(n), p0, p1, p2, p3, n_threads);
  }
  return py::make_tuple(o0, o1, o2, o3);
}

py::tuple to_pt_eta_phi_m(const py::array& px, const py::array& py_, const py::array& pz, const py::array& e,
                          int n_threads) {
  std::vector<py::array> in{px, py_, pz, e};
  if (check_four(in, "px, py, pz, E"))
    return four_to_four<float>(in, n_threads, [](auto... a) { hepinfer::to_pt_eta_phi_m(a...); });
  return four_to_four<double>(in, n_threads, [](auto... a) { hepinfer::to_pt_eta_phi_m(a...); });
}

py::tuple to_px_py_pz_e(const py::array& pt, const py::array& eta, const py::array& phi, const py::array& m,
                        int n_threads) {
  std::vector<py::array> in{pt, eta, phi, m};
  if (check_four(in, "pt, eta, phi, mass"))
    return four_to_four<float>(in, n_threads, [](auto... a) { hepinfer::to_px_py_pz_e(a...); });
  return four_to_four<double>(in, n_threads, [](auto... a) { hepinfer::to_px_py_pz_e(a...); });
}

py::array delta_r(const py::array& eta1, const py::array& phi1, const py::array& eta2, const py::array& phi2,
                  int n_threads) {
  std::vector<py::array> in{eta1, phi1, eta2, phi2};
  const bool f32 = check_four(in, "eta1, phi1, eta2, phi2");
  const auto n = static_cast<py::ssize_t>(eta1.shape(0));
  py::array out = f32 ? py::array(py::array_t<float>(n)) : py::array(py::array_t<double>(n));
  void* o = out.mutable_data();
  const void *a = eta1.data(), *b = phi1.data(), *c = eta2.data(), *d = phi2.data();
  {
    py::gil_scoped_release release;
    if (f32)
      hepinfer::delta_r(static_cast<const float*>(a), static_cast<const float*>(b), static_cast<const float*>(c),
                        static_cast<const float*>(d), static_cast<std::size_t>(n), static_cast<float*>(o), n_threads);
    else
      hepinfer::delta_r(static_cast<const double*>(a), static_cast<const double*>(b), static_cast<const double*>(c),
                        static_cast<const double*>(d), static_cast<std::size_t>(n), static_cast<double*>(o), n_threads);
  }
  return out;
}

py::tuple min_delta_r(const PyJagged& a, const py::object& a_eta, const py::object& a_phi, const PyJagged& b,
                      const py::object& b_eta, const py::object& b_phi, double empty_value, int n_threads) {
  const std::size_t ae = column_of(a, a_eta), ap = column_of(a, a_phi), be = column_of(b, b_eta),
                    bp = column_of(b, b_phi);
  if (a.view.n_events() != b.view.n_events())
    throw InputError("min_delta_r: the collections have different numbers of events (" +
                     std::to_string(a.view.n_events()) + " and " + std::to_string(b.view.n_events()) + ")");
  const auto n = static_cast<py::ssize_t>(a.view.content_end() - a.view.content_begin());
  py::array_t<double> dr(n);
  py::array_t<std::int64_t> index(n);
  double* d = dr.mutable_data();
  std::int64_t* ix = index.mutable_data();
  {
    py::gil_scoped_release release;
    hepinfer::min_delta_r(a.view, ae, ap, b.view, be, bp, empty_value, d, ix, n_threads);
  }
  return py::make_tuple(dr, index);
}

}  // namespace

void register_jagged(py::module_& m) {
  py::class_<PyJagged>(m, "JaggedView",
                       "A validated, zero-copy view of a jagged array: offsets (n_events + 1, int32/uint32/int64) "
                       "and 1-D float32/float64 content columns sharing them. Keeps the arrays alive.")
      .def(py::init(&make_view), py::arg("offsets"), py::arg("columns"), py::arg("names"))
      .def_property_readonly("n_events", [](const PyJagged& j) { return j.view.n_events(); })
      .def_property_readonly("n_columns", [](const PyJagged& j) { return j.view.n_columns(); })
      .def_property_readonly("names",
                             [](const PyJagged& j) {
    std::vector<std::string> n;
    for (const auto& c : j.view.columns()) n.push_back(c.name);
    return n;
  })
      .def_property_readonly("column_dtypes",
                             [](const PyJagged& j) {
    std::vector<std::string> n;
    for (const auto& c : j.view.columns()) n.push_back(c.dtype == hepinfer::ValueType::Float32 ? "float32" : "float64");
    return n;
  })
      .def_property_readonly("content_begin", [](const PyJagged& j) { return j.view.content_begin(); })
      .def_property_readonly("content_end", [](const PyJagged& j) { return j.view.content_end(); })
      .def_property_readonly("offsets_address",
                             [](const PyJagged& j) { return reinterpret_cast<std::uintptr_t>(j.view.offsets()); },
                             "Address of the offsets buffer the view reads (to check that nothing was copied).")
      .def("column_address", [](const PyJagged& j, std::size_t c) {
    if (c >= j.view.n_columns()) throw InputError("column index out of range");
    return reinterpret_cast<std::uintptr_t>(j.view.column(c).data);
  }, py::arg("column"), "Address of a content column's buffer the view reads.");

  m.def("jagged_pad", &pad, py::arg("view"), py::arg("length"), py::arg("fill"), py::arg("dtype"),
        py::arg("layout") = "events", py::arg("n_threads") = 1);
  m.def("jagged_leading", &leading, py::arg("view"), py::arg("key"), py::arg("k"), py::arg("ascending"),
        py::arg("fill"), py::arg("dtype"), py::arg("layout") = "events", py::arg("n_threads") = 1);
  m.def("jagged_top_k_indices", &top_k_indices, py::arg("view"), py::arg("key"), py::arg("k"),
        py::arg("ascending") = false, py::arg("n_threads") = 1);
  m.def("jagged_gather", &gather, py::arg("view"), py::arg("column"), py::arg("index"), py::arg("counts"),
        py::arg("dtype"), py::arg("n_threads") = 1);
  m.def("jagged_reduce", &reduce, py::arg("view"), py::arg("column"), py::arg("op"), py::arg("empty_value"),
        py::arg("n_threads") = 1);
  m.def("jagged_counts", &counts, py::arg("view"), py::arg("n_threads") = 1);
  m.def("to_pt_eta_phi_m", &to_pt_eta_phi_m, py::arg("px"), py::arg("py"), py::arg("pz"), py::arg("energy"),
        py::arg("n_threads") = 1);
  m.def("to_px_py_pz_e", &to_px_py_pz_e, py::arg("pt"), py::arg("eta"), py::arg("phi"), py::arg("mass"),
        py::arg("n_threads") = 1);
  m.def("delta_r", &delta_r, py::arg("eta1"), py::arg("phi1"), py::arg("eta2"), py::arg("phi2"),
        py::arg("n_threads") = 1);
  m.def("jagged_min_delta_r", &min_delta_r, py::arg("a"), py::arg("a_eta"), py::arg("a_phi"), py::arg("b"),
        py::arg("b_eta"), py::arg("b_phi"), py::arg("empty_value"), py::arg("n_threads") = 1);
}
