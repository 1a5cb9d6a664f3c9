// Model::predict_jagged: set and graph models evaluated on jets of variable length without
// padding them to a common size. Jets are grouped by their evaluation length
// L = max(n, min_length, 1); each group (split into chunks of bounded size) runs through the
// unmodified graph as a batch [B, ..., L, ...] with the mask all ones for real particles and
// zeros (features = pad_value) for the slots that short jets need to reach min_length (the k of
// a kNN TopK), exactly as a padded input would hold them. Chunks depend only on the jets, not
// on the thread count, so results do not depend on n_threads.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <numeric>

#include "common/parallel.hpp"
#include "hepinfer/nn.hpp"
#include "nn/graph.hpp"

namespace hepinfer {
namespace {

using I64 = std::int64_t;
using Role = JaggedInputInfo::Role;

std::string dims_text(const TensorInfo& t) {
  std::string r = "(";
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    if (i) r += ", ";
    r += t.shape[i] >= 0 ? std::to_string(t.shape[i]) : !t.dim_names[i].empty() ? t.dim_names[i] : "?";
  }
  return r + ")";
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// How one graph input is filled: per jet, per particle (layout [B, outer, L, inner]) or mask.
struct InputPlan {
  JaggedInputInfo info;
  std::size_t outer = 1, inner = 1;  // elements before / after the particle axis (batch excluded)
};

struct Plan {
  std::vector<InputPlan> inputs;
  I64 min_length = 1;
};

Plan analyse(const nn::Graph& g, const JaggedOptions& o) {
  const std::string& src = g.source;
  Plan plan;
  std::vector<std::string> particle_dim_names;
  for (const TensorInfo& t : g.inputs) {
    InputPlan ip;
    ip.info.name = t.name;
    if (!t.has_shape)
      throw InputError(src + ": input '" + t.name + "' declares no shape; jagged evaluation needs declared shapes");
    if (t.shape.empty()) throw InputError(src + ": input '" + t.name + "' is a scalar; it has no batch dimension");
    if (t.shape[0] >= 0)
      throw InputError(src + ": input '" + t.name + "' has a fixed batch size of " + std::to_string(t.shape[0]) +
                       "; jagged evaluation needs a symbolic batch dimension");
    std::vector<int> symbolic;
    for (std::size_t i = 1; i < t.shape.size(); ++i)
      if (t.shape[i] < 0) symbolic.push_back(static_cast<int>(i));
    int axis = -1;
    if (o.particle_axis > 0) {
      if (o.particle_axis < static_cast<int>(t.shape.size()) && t.shape[static_cast<std::size_t>(o.particle_axis)] < 0)
        axis = o.particle_axis;
      for (int s : symbolic)
        if (s != axis)
          throw InputError(src + ": input '" + t.name + "' " + dims_text(t) + " has a symbolic dimension at position " +
                           std::to_string(s) + ", not at the particle axis " + std::to_string(o.particle_axis));
    } else if (o.particle_axis < 0) {
      throw InputError("particle_axis must be >= 1 (or 0 to detect it), got " + std::to_string(o.particle_axis));
    } else {
      if (symbolic.size() > 1)
        throw InputError(src + ": input '" + t.name + "' " + dims_text(t) +
                         " has several symbolic dimensions after the batch; give particle_axis");
      if (!symbolic.empty()) axis = symbolic[0];
    }
    if (axis < 0) {
      ip.info.role = Role::Jet;
      ip.info.n_features = 1;
      for (std::size_t i = 1; i < t.shape.size(); ++i) ip.info.n_features *= static_cast<std::size_t>(t.shape[i]);
    } else {
      ip.info.role = Role::Particle;
      ip.info.particle_axis = axis;
      for (int i = 1; i < static_cast<int>(t.shape.size()); ++i) {
        if (i < axis) ip.outer *= static_cast<std::size_t>(t.shape[static_cast<std::size_t>(i)]);
        if (i > axis) ip.inner *= static_cast<std::size_t>(t.shape[static_cast<std::size_t>(i)]);
      }
      ip.info.n_features = ip.outer * ip.inner;
      particle_dim_names.push_back(t.dim_names[static_cast<std::size_t>(axis)]);
    }
    plan.inputs.push_back(ip);
  }
  std::size_t n_particle = 0;
  for (const auto& ip : plan.inputs) n_particle += ip.info.role == Role::Particle;
  if (n_particle == 0) {
    std::string shapes;
    for (const TensorInfo& t : g.inputs) shapes += (shapes.empty() ? "'" : ", '") + t.name + "' " + dims_text(t);
    throw InputError(src + ": no input has a symbolic particle dimension (inputs: " + shapes +
                     "); jagged evaluation needs a set or graph model exported with a dynamic number of particles "
                     "(a model with a fixed particle dimension may depend on it and cannot be evaluated jagged)");
  }
  // the mask
  int mask = -1;
  if (!o.mask.empty()) {
    for (std::size_t i = 0; i < g.inputs.size(); ++i)
      if (g.inputs[i].name == o.mask) mask = static_cast<int>(i);
    if (mask < 0) {
      std::string names;
      for (const auto& t : g.inputs) names += (names.empty() ? "'" : ", '") + t.name + "'";
      throw InputError("mask input '" + o.mask + "' is not an input of the model (its inputs are " + names + ")");
    }
    if (plan.inputs[static_cast<std::size_t>(mask)].info.role != Role::Particle)
      throw InputError(src + ": mask input '" + o.mask + "' " + dims_text(g.inputs[static_cast<std::size_t>(mask)]) +
                       " has no particle axis");
  } else if (o.detect_mask) {
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
      if (plan.inputs[i].info.role != Role::Particle || lower(g.inputs[i].name).find("mask") == std::string::npos)
        continue;
      if (mask >= 0)
        throw InputError(src + ": inputs '" + g.inputs[static_cast<std::size_t>(mask)].name + "' and '" +
                         g.inputs[i].name + "' both look like a mask; name the mask input explicitly");
      mask = static_cast<int>(i);
    }
  }
  if (mask >= 0) {
    InputPlan& ip = plan.inputs[static_cast<std::size_t>(mask)];
    const TensorInfo& t = g.inputs[static_cast<std::size_t>(mask)];
    if (ip.info.n_features != 1)
      throw InputError(src + ": mask input '" + t.name + "' " + dims_text(t) +
                       " must hold one value per particle, it holds " + std::to_string(ip.info.n_features));
    ip.info.role = Role::Mask;
  }
  for (std::size_t i = 0; i < g.inputs.size(); ++i)
    if (plan.inputs[i].info.role == Role::Particle && g.inputs[i].type != ElementType::Float32)
      throw InputError(src + ": per-particle input '" + g.inputs[i].name + "' is " +
                       element_type_name(g.inputs[i].type) +
                       "; jagged evaluation fills float32 per-particle inputs only");
  // outputs must have one row per jet and no particle dimension
  for (const TensorInfo& t : g.outputs) {
    if (!t.has_shape) continue;
    for (std::size_t i = 1; i < t.shape.size(); ++i)
      if (!t.dim_names[i].empty() &&
          std::find(particle_dim_names.begin(), particle_dim_names.end(), t.dim_names[i]) != particle_dim_names.end())
        throw InputError(src + ": output '" + t.name + "' " + dims_text(t) +
                         " has a particle dimension; jagged evaluation gives one row per jet");
  }
  // minimal length: the largest k of the graph's TopK nodes (kNN needs at least k points)
  if (o.min_length >= 0) {
    plan.min_length = std::max<I64>(1, o.min_length);
  } else {
    I64 k_max = 1;
    for (const nn::Node& n : g.nodes) {
      if (n.op != nn::Op::TopK) continue;
      const int kid = n.in.size() > 1 ? n.in[1] : -1;
      const nn::Value* k = kid >= 0 ? g.constants[static_cast<std::size_t>(kid)].get() : nullptr;
      if (!k || k->type != ElementType::Int64 || k->numel != 1)
        throw InputError(src + ": node '" + n.name + "' (TopK) has a k that is not a constant; give min_length (the " +
                         "smallest number of particles the padded model is evaluated with)");
      k_max = std::max(k_max, k->i64()[0]);
    }
    plan.min_length = k_max;
  }
  return plan;
}

struct Chunk {
  std::size_t first = 0, count = 0;  // into the jet order
  I64 length = 0;
};

/// Per-thread input buffers (one per graph input, 8-byte aligned).
using Buffers = std::vector<std::vector<I64>>;

struct Run {
  const nn::Graph& g;
  const Plan& plan;
  const JaggedOptions& opt;
  const JaggedView& view;
  std::vector<std::size_t> first_column;       // per graph input: its first column in view
  std::vector<const InputTensor*> jet_inputs;  // per graph input (per-jet ones)
  std::vector<std::size_t> jet_row_bytes;      // per graph input (per-jet ones)
  const std::vector<std::size_t>& order;       // jets sorted by length
  std::vector<OutputTensor>& outputs;
  std::vector<std::size_t> out_row_bytes;

  template <class T>
  static void copy_column(const T* s, std::ptrdiff_t stride, std::size_t n, float* d, std::size_t step) {
    for (std::size_t p = 0; p < n; ++p) d[p * step] = static_cast<float>(s[static_cast<std::ptrdiff_t>(p) * stride]);
  }

  // Binds the inputs of a chunk of jets (dummy: one empty jet, for the shapes of an empty batch).
  void bind(const Chunk& c, nn::Workspace& ws, Buffers& bufs, bool dummy) const {
    const std::size_t B = c.count;
    const auto L = static_cast<std::size_t>(c.length);
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
      const TensorInfo& t = g.inputs[i];
      const InputPlan& ip = plan.inputs[i];
      nn::Value& v = ws.values[static_cast<std::size_t>(g.input_ids[i])];
      v.type = t.type;
      v.shape.rank = 0;
      for (std::size_t d = 0; d < t.shape.size(); ++d)
        v.shape.push(d == 0                                         ? static_cast<I64>(B)
                     : static_cast<int>(d) == ip.info.particle_axis ? c.length
                                                                    : t.shape[d]);
      v.numel = v.shape.numel();
      auto& buf = bufs[i];
      const std::size_t words = (v.numel * nn::element_size(t.type) + 7) / 8 + 1;
      if (buf.size() < words) buf.resize(words);
      v.data = buf.data();
      if (ip.info.role == Role::Jet) {
        const std::size_t rb = jet_row_bytes[i];
        auto* d = reinterpret_cast<unsigned char*>(buf.data());
        const auto* s = static_cast<const unsigned char*>(jet_inputs[i]->data);
        for (std::size_t b = 0; b < B; ++b) {
          if (dummy) std::memset(d + b * rb, 0, rb);
          else if (rb) std::memcpy(d + b * rb, s + order[c.first + b] * rb, rb);
        }
      } else if (ip.info.role == Role::Mask) {
        for (std::size_t b = 0; b < B; ++b) {
          const std::size_t n = dummy ? 0 : view.count(order[c.first + b]);
          if (t.type == ElementType::Float32) {
            float* d = reinterpret_cast<float*>(buf.data()) + b * L;
            std::fill(d, d + n, 1.0f);
            std::fill(d + n, d + L, 0.0f);
          } else if (t.type == ElementType::Int64) {
            I64* d = buf.data() + b * L;
            std::fill(d, d + n, I64{1});
            std::fill(d + n, d + L, I64{0});
          } else {
            unsigned char* d = reinterpret_cast<unsigned char*>(buf.data()) + b * L;
            std::fill(d, d + n, static_cast<unsigned char>(1));
            std::fill(d + n, d + L, static_cast<unsigned char>(0));
          }
        }
      } else {
        float* out = reinterpret_cast<float*>(buf.data());
        for (std::size_t b = 0; b < B; ++b) {
          const std::size_t e = dummy ? 0 : order[c.first + b];
          const std::size_t n = dummy ? 0 : view.count(e);
          const std::size_t beg = dummy ? 0 : view.begin(e);
          for (std::size_t o = 0; o < ip.outer; ++o)
            for (std::size_t in = 0; in < ip.inner; ++in) {
              const JaggedColumn& col = view.column(first_column[i] + o * ip.inner + in);
              float* d = out + ((b * ip.outer + o) * L) * ip.inner + in;
              const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(beg) * col.stride;
              if (n) {
                if (col.dtype == ValueType::Float32)
                  copy_column(static_cast<const float*>(col.data) + off, col.stride, n, d, ip.inner);
                else copy_column(static_cast<const double*>(col.data) + off, col.stride, n, d, ip.inner);
              }
              for (std::size_t p = n; p < L; ++p) d[p * ip.inner] = opt.pad_value;
            }
        }
      }
    }
  }

  void evaluate(const Chunk& c, nn::Workspace& ws, Buffers& bufs, bool dummy) const {
    bind(c, ws, bufs, dummy);
    try {
      g.run(ws);
    } catch (const InputError& e) {
      throw InputError("evaluating jets at length " + std::to_string(c.length) + ": " + e.what() +
                       " (does the model take a variable number of particles?)");
    }
  }

  // Checks the outputs of an evaluated chunk (one row per jet, rows of the same shape as in
  // the first chunk) and writes them into the jets' rows. `first`: set the outputs' shapes.
  void store(const Chunk& c, nn::Workspace& ws, bool first, bool dummy) {
    for (std::size_t k = 0; k < g.outputs.size(); ++k) {
      const nn::Value& v = ws.values[static_cast<std::size_t>(g.output_ids[k])];
      OutputTensor& o = outputs[k];
      if (v.shape.rank == 0 || static_cast<std::size_t>(v.shape[0]) != c.count)
        throw InputError("output '" + o.name + "' has shape " + v.shape.str() + " for a batch of " +
                         std::to_string(c.count) + " jets; jagged evaluation needs one row per jet");
      if (first) {
        o.type = v.type;
        o.shape.assign(v.shape.d, v.shape.d + v.shape.rank);
        o.shape[0] = dummy ? 0 : static_cast<I64>(view.n_events());
        out_row_bytes[k] = c.count ? v.numel * nn::element_size(v.type) / c.count : 0;
        o.bytes.assign(dummy ? 0 : view.n_events() * out_row_bytes[k], 0);
      } else {
        bool same = v.type == o.type && static_cast<std::size_t>(v.shape.rank) == o.shape.size();
        for (int d = 1; same && d < v.shape.rank; ++d) same = v.shape[d] == o.shape[static_cast<std::size_t>(d)];
        if (!same) {
          nn::Shape want;
          for (std::size_t d = 1; d < o.shape.size(); ++d) want.push(o.shape[d]);
          nn::Shape got;
          for (int d = 1; d < v.shape.rank; ++d) got.push(v.shape[d]);
          throw InputError(
              "output '" + o.name + "' has rows of shape " + got.str() + " for jets of length " +
              std::to_string(c.length) + " but " + want.str() +
              " for others; jagged evaluation needs outputs that do not depend on the number of particles");
        }
      }
      if (dummy) continue;
      const std::size_t rb = out_row_bytes[k];
      const auto* s = static_cast<const unsigned char*>(v.data);
      for (std::size_t b = 0; b < c.count; ++b)
        if (rb) std::memcpy(o.bytes.data() + order[c.first + b] * rb, s + b * rb, rb);
    }
  }
};

std::string column_label(const std::string& input, std::size_t f, const JaggedColumn& c) {
  return c.name.empty() ? input + "[" + std::to_string(f) + "]" : input + ": " + c.name;
}

}  // namespace

JaggedLayout Model::jagged_layout(const JaggedOptions& options) const {
  const Plan plan = analyse(*graph_, options);
  JaggedLayout r;
  for (const auto& ip : plan.inputs) r.inputs.push_back(ip.info);
  r.min_length = plan.min_length;
  return r;
}

void Model::predict_jagged(const JaggedJets& jets, std::vector<OutputTensor>& outputs,
                           const JaggedOptions& options) const {
  const nn::Graph& g = *graph_;
  const Plan plan = analyse(g, options);
  const std::size_t n_inputs = g.inputs.size();
  auto input_index = [&](const std::string& name, const char* what) {
    for (std::size_t i = 0; i < n_inputs; ++i)
      if (g.inputs[i].name == name) return i;
    std::string names;
    for (const auto& t : g.inputs) names += (names.empty() ? "'" : ", '") + t.name + "'";
    throw InputError(std::string(what) + " '" + name + "' is not an input of the model (its inputs are " + names + ")");
  };
  // per-particle inputs: columns in graph input order
  std::vector<const JaggedInput*> given(n_inputs, nullptr);
  for (const JaggedInput& ji : jets.particles) {
    const std::size_t i = input_index(ji.name, "per-particle input");
    const InputPlan& ip = plan.inputs[i];
    if (ip.info.role == Role::Mask)
      throw InputError("input '" + ji.name + "' is the mask; it is built from the offsets, do not give it");
    if (ip.info.role == Role::Jet)
      throw InputError("input '" + ji.name + "' " + dims_text(g.inputs[i]) +
                       " has no particle axis; give it as a per-jet input [n_jets, ...]");
    if (given[i]) throw InputError("input '" + ji.name + "' is given twice");
    if (ji.features.size() != ip.info.n_features)
      throw InputError("input '" + ji.name + "' " + dims_text(g.inputs[i]) + " takes " +
                       std::to_string(ip.info.n_features) + " value(s) per particle, " +
                       std::to_string(ji.features.size()) + " column(s) were given");
    given[i] = &ji;
  }
  std::vector<const InputTensor*> jet_inputs(n_inputs, nullptr);
  std::vector<std::size_t> jet_row_bytes(n_inputs, 0);
  for (const InputTensor& x : jets.jets) {
    const std::size_t i = input_index(x.name, "per-jet input");
    const TensorInfo& t = g.inputs[i];
    if (plan.inputs[i].info.role != Role::Jet)
      throw InputError("input '" + x.name + "' " + dims_text(t) + " has a particle axis; give it as jagged columns");
    if (jet_inputs[i]) throw InputError("input '" + x.name + "' is given twice");
    if (x.type != t.type)
      throw InputError("input '" + t.name + "' must be " + element_type_name(t.type) + ", got " +
                       element_type_name(x.type));
    bool ok = x.shape.size() == t.shape.size() && !x.shape.empty() && x.shape[0] == static_cast<I64>(jets.n_jets);
    for (std::size_t d = 1; ok && d < t.shape.size(); ++d) ok = x.shape[d] == t.shape[d];
    if (!ok) {
      std::string s = "(";
      for (std::size_t d = 0; d < x.shape.size(); ++d) s += (d ? ", " : "") + std::to_string(x.shape[d]);
      throw InputError("per-jet input '" + t.name + "' has shape " + s + "); the model expects " + dims_text(t) +
                       " with " + std::to_string(jets.n_jets) + " jets");
    }
    jet_row_bytes[i] = plan.inputs[i].info.n_features * nn::element_size(t.type);
    if (x.data == nullptr && jets.n_jets * jet_row_bytes[i] != 0)
      throw InputError("per-jet input '" + t.name + "' has no data");
    jet_inputs[i] = &x;
  }
  for (std::size_t i = 0; i < n_inputs; ++i) {
    const Role r = plan.inputs[i].info.role;
    if ((r == Role::Particle && !given[i]) || (r == Role::Jet && !jet_inputs[i]))
      throw InputError(std::string(r == Role::Particle ? "per-particle" : "per-jet") + " input '" + g.inputs[i].name +
                       "' " + dims_text(g.inputs[i]) + " is missing");
  }
  // one view over every column, validated (offsets monotone and within every column)
  std::vector<JaggedColumn> columns;
  std::vector<std::size_t> first_column(n_inputs, 0);
  for (std::size_t i = 0; i < n_inputs; ++i) {
    first_column[i] = columns.size();
    if (!given[i]) continue;
    for (std::size_t f = 0; f < given[i]->features.size(); ++f) {
      JaggedColumn c = given[i]->features[f];
      c.name = column_label(given[i]->name, f, c);
      columns.push_back(std::move(c));
    }
  }
  const JaggedView view(jets.n_jets, jets.offsets, jets.offsets_type, columns);
  if (jets.n_jets > 0 || jets.offsets != nullptr) view.validate();

  // jets sorted by evaluation length, cut into chunks of at most chunk_particles values
  const std::size_t n_jets = jets.n_jets;
  std::vector<I64> length(n_jets);
  for (std::size_t e = 0; e < n_jets; ++e) length[e] = std::max(static_cast<I64>(view.count(e)), plan.min_length);
  std::vector<std::size_t> order(n_jets);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return length[a] < length[b]; });
  std::vector<Chunk> chunks;
  const std::size_t budget = std::max<std::size_t>(1, options.chunk_particles);
  for (std::size_t a = 0; a < n_jets;) {
    std::size_t b = a;
    const I64 L = length[order[a]];
    while (b < n_jets && length[order[b]] == L) ++b;
    const std::size_t per = std::max<std::size_t>(1, budget / static_cast<std::size_t>(L));
    for (std::size_t s = a; s < b; s += per) chunks.push_back(Chunk{s, std::min(per, b - s), L});
    a = b;
  }
  std::reverse(chunks.begin(), chunks.end());  // longest first: better balance over threads

  outputs.resize(g.outputs.size());
  for (std::size_t k = 0; k < g.outputs.size(); ++k) outputs[k].name = g.outputs[k].name;
  Run run{g,          plan,          options, view,    first_column,
          jet_inputs, jet_row_bytes, order,   outputs, std::vector<std::size_t>(g.outputs.size(), 0)};

  struct Lease {
    const nn::Graph& graph;
    std::unique_ptr<nn::Workspace> ws;
    ~Lease() {
      if (ws) graph.release(std::move(ws));
    }
  };
  Buffers bufs0(n_inputs);
  {
    Lease lease{g, g.acquire()};
    if (chunks.empty()) {  // no jets: evaluate one empty jet for the outputs' shapes
      const Chunk c{0, 1, plan.min_length};
      run.evaluate(c, *lease.ws, bufs0, true);
      run.store(c, *lease.ws, true, true);
      return;
    }
    run.evaluate(chunks[0], *lease.ws, bufs0, false);
    run.store(chunks[0], *lease.ws, true, false);
  }
  // chunks[1..] over the threads; worker w has its own buffers and workspace, taken on its
  // first chunk (a worker whose thread could not start takes none)
  const std::size_t nt = std::min(parallel::resolve_threads(options.n_threads), chunks.size() - 1);
  std::vector<Buffers> per_thread(nt > 1 ? nt - 1 : 0, Buffers(n_inputs));
  std::vector<std::unique_ptr<Lease>> leases(std::max<std::size_t>(nt, 1));
  parallel::parallel_for(chunks.size() - 1, 1, nt, [&](std::size_t w, std::size_t c0, std::size_t c1) {
    if (!leases[w]) leases[w].reset(new Lease{g, g.acquire()});
    Buffers& bufs = w == 0 ? bufs0 : per_thread[w - 1];
    for (std::size_t c = c0 + 1; c < c1 + 1; ++c) {
      run.evaluate(chunks[c], *leases[w]->ws, bufs, false);
      run.store(chunks[c], *leases[w]->ws, false, false);
    }
  });
}

}  // namespace hepinfer
