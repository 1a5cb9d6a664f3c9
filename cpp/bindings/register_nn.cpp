// Bindings of hepinfer::Model (ONNX networks). Arrays arrive C-contiguous with the model's
// element types (the Python layer, hepinfer.nn, converts and orders them); results are
// fresh numpy arrays. The GIL is released during evaluation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "hepinfer/device.hpp"
#include "hepinfer/nn.hpp"
#include "hepinfer/nn_device_reference.hpp"  // the CUDA executor's plan on the host (tests)

namespace py = pybind11;
using hepinfer::DeviceModel;
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

// The graph's outputs as a list of numpy arrays (copied out of the engine's buffers).
py::list outputs_to_list(const std::vector<hepinfer::OutputTensor>& outs) {
  py::list result;
  for (const auto& o : outs) {
    std::vector<py::ssize_t> shape(o.shape.begin(), o.shape.end());
    py::array a(dtype_of(o.type), shape);
    if (!o.bytes.empty()) std::memcpy(a.mutable_data(), o.bytes.data(), o.bytes.size());
    result.append(a);
  }
  return result;
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
  return outputs_to_list(outs);
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
                       std::to_string(i) + "; the model expects " +
                       std::to_string(ti.shape[static_cast<std::size_t>(i)]));
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

// ---- jagged evaluation: offsets + per-particle columns (zero-copy views of numpy arrays)

hepinfer::JaggedOptions jagged_options(const std::string& mask, bool detect_mask, int particle_axis,
                                       std::int64_t min_length, float pad_value, std::size_t chunk_particles,
                                       int n_threads) {
  hepinfer::JaggedOptions o;
  o.mask = mask;
  o.detect_mask = detect_mask;
  o.particle_axis = particle_axis;
  o.min_length = min_length;
  o.pad_value = pad_value;
  o.chunk_particles = chunk_particles;
  o.n_threads = n_threads;
  return o;
}

// Columns of a [N] or [N, F] float32/float64 array (any positive element strides).
void add_columns(const std::string& input, const py::array& a, std::vector<hepinfer::JaggedColumn>& cols) {
  hepinfer::ValueType vt;
  if (a.dtype().equal(py::dtype::of<float>())) vt = hepinfer::ValueType::Float32;
  else if (a.dtype().equal(py::dtype::of<double>())) vt = hepinfer::ValueType::Float64;
  else
    throw InputError("per-particle input '" + input + "': content must be float32 or float64, got " +
                     std::string(py::str(a.dtype())));
  if (a.ndim() != 1 && a.ndim() != 2)
    throw InputError("per-particle input '" + input + "': content must have shape (n_particles,) or (n_particles, " +
                     "n_features), got " + std::to_string(a.ndim()) + " dimensions");
  const auto item = static_cast<py::ssize_t>(a.itemsize());
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.size() > 0 && a.shape(d) > 1 && (a.strides(d) <= 0 || a.strides(d) % item != 0))
      throw InputError("per-particle input '" + input + "': content has unsupported strides (make it contiguous)");
  const auto n = static_cast<std::size_t>(a.shape(0));
  const std::ptrdiff_t stride = a.shape(0) > 1 ? a.strides(0) / item : 1;
  const py::ssize_t n_feat = a.ndim() == 2 ? a.shape(1) : 1;
  const auto* base = static_cast<const unsigned char*>(a.data());
  for (py::ssize_t f = 0; f < n_feat; ++f) {
    hepinfer::JaggedColumn c;
    c.data = base + (a.ndim() == 2 ? f * a.strides(1) : 0);
    c.dtype = vt;
    c.stride = stride;
    c.size = n;
    cols.push_back(c);
  }
}

using Particles = std::vector<std::pair<std::string, std::vector<py::array>>>;
using Jets = std::vector<std::pair<std::string, py::array>>;

// Offsets + per-particle columns + per-jet arrays as JaggedJets (views of the numpy arrays).
hepinfer::JaggedJets jagged_jets(const Model& m, const py::array& offsets, const Particles& particles,
                                 const Jets& jets) {
  hepinfer::JaggedJets jj;
  if (offsets.dtype().equal(py::dtype::of<std::int64_t>())) jj.offsets_type = hepinfer::IndexType::Int64;
  else if (offsets.dtype().equal(py::dtype::of<std::int32_t>())) jj.offsets_type = hepinfer::IndexType::Int32;
  else if (offsets.dtype().equal(py::dtype::of<std::uint32_t>())) jj.offsets_type = hepinfer::IndexType::UInt32;
  else throw InputError("offsets must be int64, int32 or uint32, got " + std::string(py::str(offsets.dtype())));
  if (offsets.ndim() != 1 || offsets.shape(0) < 1)
    throw InputError("offsets must be a 1-D array of n_jets + 1 entries");
  if (!(offsets.flags() & py::array::c_style)) throw InputError("offsets must be C-contiguous");
  jj.n_jets = static_cast<std::size_t>(offsets.shape(0) - 1);
  jj.offsets = offsets.data();
  for (const auto& [name, arrays] : particles) {
    hepinfer::JaggedInput in;
    in.name = name;
    for (const auto& a : arrays) add_columns(name, a, in.features);
    jj.particles.push_back(std::move(in));
  }
  const auto& infos = m.inputs();
  for (const auto& [name, a] : jets) {
    std::size_t k = infos.size();
    for (std::size_t i = 0; i < infos.size(); ++i)
      if (infos[i].name == name) k = i;
    if (k == infos.size()) throw InputError("per-jet input '" + name + "' is not an input of the model");
    jj.jets.push_back(as_input(m, k, a));
  }
  return jj;
}

py::list predict_jagged(const Model& m, const py::array& offsets, const Particles& particles, const Jets& jets,
                        const std::string& mask, bool detect_mask, int particle_axis, std::int64_t min_length,
                        float pad_value, std::size_t chunk_particles, int n_threads) {
  const hepinfer::JaggedJets jj = jagged_jets(m, offsets, particles, jets);
  const auto opt = jagged_options(mask, detect_mask, particle_axis, min_length, pad_value, chunk_particles, n_threads);
  std::vector<hepinfer::OutputTensor> outs;
  {
    py::gil_scoped_release release;
    m.predict_jagged(jj, outs, opt);
  }
  return outputs_to_list(outs);
}

std::vector<hepinfer::InputTensor> host_inputs(const Model& m, const std::vector<py::array>& arrays) {
  if (arrays.size() != m.inputs().size())
    throw InputError("the model has " + std::to_string(m.inputs().size()) + " inputs, " +
                     std::to_string(arrays.size()) + " were given");
  std::vector<hepinfer::InputTensor> xs;
  for (std::size_t k = 0; k < arrays.size(); ++k) xs.push_back(as_input(m, k, arrays[k]));
  return xs;
}

// ---- the CUDA executor

/// A float32 output left on the device; exposes __cuda_array_interface__ (torch.as_tensor,
/// cupy.asarray and numba take it without a copy) and keeps the memory alive.
struct DeviceArray {
  hepinfer::DeviceTensor t;
};

py::dict cuda_array_interface(const DeviceArray& a) {
  py::dict d;
  py::list shape;
  for (auto s : a.t.shape) shape.append(py::int_(s));
  d["shape"] = py::tuple(shape);
  d["typestr"] = "<f4";
  d["data"] = py::make_tuple(py::int_(reinterpret_cast<std::uintptr_t>(a.t.data.get())), false);
  d["version"] = 3;
  d["strides"] = py::none();
  d["stream"] = py::none();  // ready: the call waited for its stream
  return d;
}

/// Inputs given as (device pointer, shape) pairs of C-contiguous float32 device memory.
py::list predict_on_device(const DeviceModel& dm,
                           const std::vector<std::pair<std::uintptr_t, std::vector<std::int64_t>>>& xs,
                           std::uintptr_t stream) {
  const auto& infos = dm.model().inputs();
  if (xs.size() != infos.size())
    throw InputError("the model has " + std::to_string(infos.size()) + " inputs, " + std::to_string(xs.size()) +
                     " were given");
  std::vector<hepinfer::InputTensor> ins;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    hepinfer::InputTensor x;
    x.name = infos[k].name;
    x.type = ElementType::Float32;
    x.shape = xs[k].second;
    x.data = reinterpret_cast<const void*>(xs[k].first);
    ins.push_back(std::move(x));
  }
  std::vector<hepinfer::DeviceTensor> outs;
  {
    py::gil_scoped_release release;
    dm.predict_on_device(ins, outs, stream);
  }
  py::list r;
  for (auto& o : outs) r.append(py::cast(DeviceArray{std::move(o)}));
  return r;
}

py::tuple jagged_layout(const Model& m, const std::string& mask, bool detect_mask, int particle_axis,
                        std::int64_t min_length) {
  const auto layout = m.jagged_layout(jagged_options(mask, detect_mask, particle_axis, min_length, 0.0f, 1, 1));
  py::list inputs;
  for (const auto& x : layout.inputs) {
    const char* role = x.role == hepinfer::JaggedInputInfo::Role::Jet        ? "jet"
                       : x.role == hepinfer::JaggedInputInfo::Role::Particle ? "particle"
                                                                             : "mask";
    inputs.append(py::make_tuple(text(x.name), role, x.particle_axis, x.n_features));
  }
  return py::make_tuple(inputs, layout.min_length);
}

py::dict summary_dict(const hepinfer::OnnxSummary& r) {
  auto values = [](const std::vector<hepinfer::OnnxValueSummary>& vs) {
    py::list out;
    for (const auto& v : vs) {
      py::object shape = py::none();
      if (v.has_shape) {
        py::list dims;
        for (std::size_t i = 0; i < v.shape.size(); ++i) {
          if (v.shape[i] >= 0) dims.append(py::int_(v.shape[i]));
          else if (!v.dim_names[i].empty()) dims.append(text(v.dim_names[i]));
          else dims.append(py::none());
        }
        shape = py::tuple(dims);
      }
      out.append(py::make_tuple(text(v.name), v.type, shape));
    }
    return out;
  };
  py::list nodes;
  for (const auto& n : r.nodes)
    nodes.append(py::make_tuple(text(n.name), text(n.op_type), text(n.domain), n.supported));
  py::dict d;
  d["producer"] = text(r.producer);
  d["ir_version"] = r.ir_version;
  d["opset"] = r.opset;
  d["inputs"] = values(r.inputs);
  d["outputs"] = values(r.outputs);
  d["nodes"] = nodes;
  d["n_parameters"] = r.n_parameters;
  d["n_initializers"] = r.n_initializers;
  return d;
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
  m.def("describe_onnx", [](const std::string& path) {
    hepinfer::OnnxSummary r;
    {
      py::gil_scoped_release release;
      r = hepinfer::describe_onnx(path);
    }
    return summary_dict(r);
  }, py::arg("path"), "What an ONNX file declares (inputs, outputs, nodes with support), without loading it.");
  m.def("describe_onnx_bytes", [](const py::bytes& content, const std::string& source) {
    std::string c = content;
    hepinfer::OnnxSummary r;
    {
      py::gil_scoped_release release;
      r = hepinfer::describe_onnx_from_memory(c, source);
    }
    return summary_dict(r);
  }, py::arg("content"), py::arg("source") = "<bytes>");
  m.def("nn_supported_operators", &hepinfer::supported_operators,
        "Operators the NN engine implements (default domain).");
  m.def("nn_cpu_kernels",
        [] {
    const auto& k = hepinfer::nn::cpu_kernels();
    py::dict d;
    d["kernels"] = k.kernels;
    d["reason"] = k.reason;
    d["vendor"] = k.vendor;
    d["cpu"] = k.cpu;
    d["family"] = k.family;
    d["model"] = k.model;
    return d;
  },
        "The NN engine's CPU kernels chosen for this process (avx512 / avx2 / portable), why, and the CPU "
        "(cpuid vendor, brand, family, model). HEPINFER_NN_KERNELS=avx512|avx2|portable overrides the choice.");
  py::class_<Model>(m, "Model", "An ONNX neural network, immutable after load.")
      .def_static("load",
                  [](const std::string& path, const std::string& external_data_dir, bool optimize) {
    hepinfer::ModelOptions opt;
    opt.external_data_dir = external_data_dir;
    opt.optimize = optimize;
    py::gil_scoped_release release;
    return Model::load(path, opt);
  }, py::arg("path"), py::arg("external_data_dir") = "", py::arg("optimize") = true)
      .def_static("load_from_memory",
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
      .def("profile",
           [](const Model& mo, const std::vector<py::array>& arrays, int repeats) {
    if (arrays.size() != mo.inputs().size())
      throw InputError("the model has " + std::to_string(mo.inputs().size()) + " inputs, " +
                       std::to_string(arrays.size()) + " were given");
    std::vector<hepinfer::InputTensor> xs;
    for (std::size_t k = 0; k < arrays.size(); ++k) xs.push_back(as_input(mo, k, arrays[k]));
    std::vector<hepinfer::NodeTime> times;
    {
      py::gil_scoped_release release;
      times = mo.profile(xs, repeats);
    }
    py::list out;
    for (const auto& t : times) out.append(py::make_tuple(text(t.name), text(t.op_type), t.seconds, t.ran));
    return out;
  }, py::arg("inputs"), py::arg("repeats") = 10)
      .def("predict_rows", &predict_rows, py::arg("x"), py::arg("n_threads") = 1)
      .def("predict_jagged", &predict_jagged, py::arg("offsets"), py::arg("particles"), py::arg("jets"),
           py::arg("mask") = "", py::arg("detect_mask") = true, py::arg("particle_axis") = 0,
           py::arg("min_length") = -1, py::arg("pad_value") = 0.0f, py::arg("chunk_particles") = 2048,
           py::arg("n_threads") = 1)
      .def("jagged_layout", &jagged_layout, py::arg("mask") = "", py::arg("detect_mask") = true,
           py::arg("particle_axis") = 0, py::arg("min_length") = -1)
      .def("to_device",
           [](const Model& mo, const std::string& device) {
    const hepinfer::Device d = hepinfer::parse_device(device);
    py::gil_scoped_release release;
    return mo.to(d);
  }, py::arg("device"))
      // the CUDA executor's plan run by its host reference backend (tests without a GPU)
      .def("_device_plan_reference",
           [](const Model& mo, const std::vector<py::array>& arrays) {
    const auto xs = host_inputs(mo, arrays);
    std::vector<hepinfer::OutputTensor> outs;
    {
      py::gil_scoped_release release;
      hepinfer::nn::gpu::host_reference_predict(mo, xs, outs);
    }
    return outputs_to_list(outs);
  }, py::arg("inputs"))
      .def("_device_plan_reference_jagged",
           [](const Model& mo, const py::array& offsets, const Particles& particles, const Jets& jets,
              const std::string& mask, bool detect_mask, int particle_axis, std::int64_t min_length, float pad_value) {
    const hepinfer::JaggedJets jj = jagged_jets(mo, offsets, particles, jets);
    const auto opt = jagged_options(mask, detect_mask, particle_axis, min_length, pad_value, 1, 1);
    std::vector<hepinfer::OutputTensor> outs;
    {
      py::gil_scoped_release release;
      hepinfer::nn::gpu::host_reference_predict_jagged(mo, jj, outs, opt);
    }
    return outputs_to_list(outs);
  },
           py::arg("offsets"), py::arg("particles"), py::arg("jets"), py::arg("mask") = "",
           py::arg("detect_mask") = true, py::arg("particle_axis") = 0, py::arg("min_length") = -1,
           py::arg("pad_value") = 0.0f);

  py::class_<DeviceArray>(m, "DeviceArray", "A float32 output in CUDA device memory (__cuda_array_interface__).")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def_property_readonly("shape", [](const DeviceArray& a) {
    return a.t.shape;
  }).def_property_readonly("device", [](const DeviceArray& a) { return a.t.device; });

  py::class_<DeviceModel>(m, "DeviceModel", "A Model on a CUDA device (Model.to_device).")
      .def_property_readonly("device", [](const DeviceModel& dm) { return dm.device().index; })
      .def("predict",
           [](const DeviceModel& dm, const std::vector<py::array>& arrays) {
    const auto xs = host_inputs(dm.model(), arrays);
    std::vector<hepinfer::OutputTensor> outs;
    {
      py::gil_scoped_release release;
      dm.predict(xs, outs);
    }
    return outputs_to_list(outs);
  }, py::arg("inputs"))
      .def("predict_on_device", &predict_on_device, py::arg("inputs"), py::arg("stream") = 0)
      .def("predict_jagged",
           [](const DeviceModel& dm, const py::array& offsets, const Particles& particles, const Jets& jets,
              const std::string& mask, bool detect_mask, int particle_axis, std::int64_t min_length, float pad_value) {
    const hepinfer::JaggedJets jj = jagged_jets(dm.model(), offsets, particles, jets);
    const auto opt = jagged_options(mask, detect_mask, particle_axis, min_length, pad_value, 1, 1);
    std::vector<hepinfer::OutputTensor> outs;
    {
      py::gil_scoped_release release;
      dm.predict_jagged(jj, outs, opt);
    }
    return outputs_to_list(outs);
  },
           py::arg("offsets"), py::arg("particles"), py::arg("jets"), py::arg("mask") = "",
           py::arg("detect_mask") = true, py::arg("particle_axis") = 0, py::arg("min_length") = -1,
           py::arg("pad_value") = 0.0f);
}
