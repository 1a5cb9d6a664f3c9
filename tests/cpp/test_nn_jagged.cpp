// hepinfer::Model::predict_jagged from C++ on two small ONNX graphs encoded here (protobuf wire
// format written by hand, so the test needs no files and no onnx library):
//  * masked mean: x [batch, n, 2], mask [batch, n], jet [batch, 1] ->
//    y = sum_p x * mask / sum_p mask + jet   (per-jet output [batch, 2])
//  * top-3 by a masked key: x [batch, n, 2], mask [batch, n] -> the 3 largest of
//    x[..., 0] * mask + (mask - 1) * 1e9 (padding sorts last at -1e9), a TopK with k = 3
// checked against direct computations; the fixed-particle model tests/data/nn/topk_particles.onnx
// and bad offsets / columns must be refused with InputError.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../cpp/src/common/parallel.hpp"
#include "check.hpp"
#include "hepinfer/nn.hpp"

using namespace hepinfer;

namespace {

std::string g_data_dir = ".";

// ---- a minimal protobuf writer for ONNX ModelProto
struct Pb {
  std::string s;
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      s += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    s += static_cast<char>(v);
  }
  Pb& num(int field, std::uint64_t v) {
    varint(static_cast<std::uint64_t>(field) << 3);
    varint(v);
    return *this;
  }
  Pb& bytes(int field, const std::string& b) {
    varint((static_cast<std::uint64_t>(field) << 3) | 2);
    varint(b.size());
    s += b;
    return *this;
  }
};

constexpr int kFloat = 1, kInt64 = 7;

// ValueInfoProto with a shape of fixed (>= 0) and symbolic ("" + name) dims
std::string value_info(const std::string& name, int elem, const std::vector<std::string>& dims) {
  Pb shape;
  for (const auto& d : dims) {
    Pb dim;
    if (!d.empty() && d[0] >= '0' && d[0] <= '9') dim.num(1, std::stoull(d));
    else dim.bytes(2, d);
    shape.bytes(1, dim.s);
  }
  Pb tensor;
  tensor.num(1, static_cast<std::uint64_t>(elem)).bytes(2, shape.s);
  Pb type;
  type.bytes(1, tensor.s);
  Pb vi;
  vi.bytes(1, name).bytes(2, type.s);
  return vi.s;
}

template <class T>
std::string tensor(const std::string& name, int elem, const std::vector<std::int64_t>& dims, const std::vector<T>& v) {
  Pb t;
  for (auto d : dims) t.num(1, static_cast<std::uint64_t>(d));
  t.num(2, static_cast<std::uint64_t>(elem));
  t.bytes(8, name);
  t.bytes(9, std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
  return t.s;
}

struct Attr {
  std::string name;
  std::int64_t i;
};

std::string node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                 const std::vector<Attr>& attrs = {}) {
  Pb n;
  for (const auto& x : in) n.bytes(1, x);
  for (const auto& x : out) n.bytes(2, x);
  n.bytes(3, out[0] + "_node");
  n.bytes(4, op);
  for (const auto& a : attrs) {
    Pb at;
    at.bytes(1, a.name).num(3, static_cast<std::uint64_t>(a.i)).num(20, 2);
    n.bytes(5, at.s);
  }
  return n.s;
}

std::string model(const std::vector<std::string>& nodes, const std::vector<std::string>& inits,
                  const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  Pb g;
  for (const auto& n : nodes) g.bytes(1, n);
  g.bytes(2, "g");
  for (const auto& t : inits) g.bytes(5, t);
  for (const auto& t : inputs) g.bytes(11, t);
  for (const auto& t : outputs) g.bytes(12, t);
  Pb opset;
  opset.bytes(1, "").num(2, 17);
  Pb m;
  m.num(1, 8).bytes(2, "hepinfer-test").bytes(7, g.s).bytes(8, opset.s);
  return m.s;
}

Model masked_mean_model() {
  return Model::load_from_memory(
      model({node("Unsqueeze", {"mask", "axes2"}, {"m3"}), node("Mul", {"x", "m3"}, {"xm"}),
             node("ReduceSum", {"xm", "axes1"}, {"s"}, {{"keepdims", 0}}),
             node("ReduceSum", {"mask", "axes1"}, {"c"}, {{"keepdims", 1}}), node("Div", {"s", "c"}, {"mean"}),
             node("Add", {"mean", "jet"}, {"y"})},
            {tensor<std::int64_t>("axes2", kInt64, {1}, {2}), tensor<std::int64_t>("axes1", kInt64, {1}, {1})},
            {value_info("x", kFloat, {"batch", "n", "2"}), value_info("mask", kFloat, {"batch", "n"}),
             value_info("jet", kFloat, {"batch", "1"})},
            {value_info("y", kFloat, {"batch", "2"})}),
      {}, "masked_mean");
}

Model top3_model() {
  return Model::load_from_memory(
      model({node("Gather", {"x", "zero"}, {"x0"}, {{"axis", 2}}), node("Mul", {"x0", "mask"}, {"a"}),
             node("Sub", {"mask", "one"}, {"mm1"}), node("Mul", {"mm1", "big"}, {"p"}),
             node("Add", {"a", "p"}, {"key"}), node("TopK", {"key", "k"}, {"y", "idx"}, {{"axis", 1}})},
            {tensor<std::int64_t>("zero", kInt64, {}, {0}), tensor<float>("one", kFloat, {}, {1.0f}),
             tensor<float>("big", kFloat, {}, {1e9f}), tensor<std::int64_t>("k", kInt64, {1}, {3})},
            {value_info("x", kFloat, {"batch", "n", "2"}), value_info("mask", kFloat, {"batch", "n"})},
            {value_info("y", kFloat, {"batch", "3"})}),
      {}, "top3");
}

struct Jets {
  std::vector<std::int64_t> offsets;
  std::vector<float> x;  // interleaved (n_particles, 2)
  std::vector<float> jet;
};

Jets random_jets(std::size_t n_jets, unsigned seed, std::int64_t first = 0) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> len(0, 40);
  std::normal_distribution<float> d(0.0f, 1.0f);
  Jets j;
  j.offsets.push_back(first);
  for (std::size_t e = 0; e < n_jets; ++e) {
    const int n = e < 6 ? static_cast<int>(e) : len(gen);  // 0..5 first: empty and short jets
    j.offsets.push_back(j.offsets.back() + n);
  }
  j.x.resize(static_cast<std::size_t>(j.offsets.back()) * 2);
  for (auto& v : j.x) v = d(gen);
  for (std::size_t e = 0; e < n_jets; ++e) j.jet.push_back(d(gen));
  return j;
}

JaggedJets view(const Jets& j, std::size_t n_jets) {
  JaggedJets jj;
  jj.n_jets = n_jets;
  jj.offsets = j.offsets.data();
  jj.offsets_type = IndexType::Int64;
  const std::size_t n = j.x.size() / 2;
  jj.particles.push_back(
      {"x", {{"eta", j.x.data(), ValueType::Float32, 2, n}, {"phi", j.x.data() + 1, ValueType::Float32, 2, n}}});
  InputTensor t;
  t.name = "jet";
  t.shape = {static_cast<std::int64_t>(n_jets), 1};
  t.data = j.jet.data();
  jj.jets.push_back(t);
  return jj;
}

}  // namespace

TEST_CASE(layout_of_set_and_knn_models) {
  const auto mean = masked_mean_model();
  const auto lay = mean.jagged_layout();
  CHECK(lay.inputs.size() == 3);
  CHECK(lay.inputs[0].role == JaggedInputInfo::Role::Particle && lay.inputs[0].particle_axis == 1 &&
        lay.inputs[0].n_features == 2);
  CHECK(lay.inputs[1].role == JaggedInputInfo::Role::Mask);
  CHECK(lay.inputs[2].role == JaggedInputInfo::Role::Jet && lay.inputs[2].n_features == 1);
  CHECK(lay.min_length == 1);
  CHECK(top3_model().jagged_layout().min_length == 3);
  JaggedOptions o;
  o.detect_mask = false;
  CHECK(mean.jagged_layout(o).inputs[1].role == JaggedInputInfo::Role::Particle);
}

TEST_CASE(masked_mean_matches_direct_computation) {
  const auto m = masked_mean_model();
  const std::size_t n_jets = 300;
  const Jets j = random_jets(n_jets, 11);
  std::vector<OutputTensor> out;
  m.predict_jagged(view(j, n_jets), out);
  CHECK(out.size() == 1 && out[0].shape == (std::vector<std::int64_t>{300, 2}));
  for (std::size_t e = 0; e < n_jets; ++e) {
    const auto a = static_cast<std::size_t>(j.offsets[e]), b = static_cast<std::size_t>(j.offsets[e + 1]);
    for (std::size_t f = 0; f < 2; ++f) {
      const float got = out[0].floats()[e * 2 + f];
      if (a == b) {
        CHECK(std::isnan(got));
        continue;
      }
      double s = 0;
      for (std::size_t p = a; p < b; ++p) s += j.x[p * 2 + f];
      CHECK_NEAR(got, s / static_cast<double>(b - a) + j.jet[e], 1e-5);
    }
  }
  // float64 columns, int32 offsets, offsets not starting at 0: the same values
  std::vector<double> x64(j.x.begin(), j.x.end());
  std::vector<std::int32_t> off32;
  for (std::size_t e = 2; e <= n_jets; ++e) off32.push_back(static_cast<std::int32_t>(j.offsets[e]));
  JaggedJets jj = view(j, n_jets - 2);
  jj.offsets = off32.data();
  jj.offsets_type = IndexType::Int32;
  const std::size_t n = x64.size() / 2;
  jj.particles[0].features = {{"", x64.data(), ValueType::Float64, 2, n},
                              {"", x64.data() + 1, ValueType::Float64, 2, n}};
  jj.jets[0].data = j.jet.data() + 2;
  std::vector<OutputTensor> out2;
  m.predict_jagged(jj, out2);
  CHECK(out2[0].shape[0] == static_cast<std::int64_t>(n_jets - 2));
  for (std::size_t i = 0; i < (n_jets - 2) * 2; ++i) {
    const float u = out2[0].floats()[i], v = out[0].floats()[i + 4];
    CHECK((std::isnan(u) && std::isnan(v)) || std::fabs(u - v) <= 1e-6f * (1 + std::fabs(v)));
  }
}

TEST_CASE(topk_jets_shorter_than_k_are_padded) {
  const auto m = top3_model();
  const std::size_t n_jets = 200;
  const Jets j = random_jets(n_jets, 12, 5);  // offsets start at 5: content before it is never read
  JaggedJets jj = view(j, n_jets);
  jj.jets.clear();
  std::vector<OutputTensor> out;
  m.predict_jagged(jj, out);
  CHECK(out[0].shape == (std::vector<std::int64_t>{200, 3}));
  for (std::size_t e = 0; e < n_jets; ++e) {
    std::vector<float> v;
    for (auto p = j.offsets[e]; p < j.offsets[e + 1]; ++p) v.push_back(j.x[static_cast<std::size_t>(p) * 2]);
    std::sort(v.begin(), v.end(), [](float a, float b) { return a > b; });
    while (v.size() < 3) v.push_back(-1e9f);
    for (std::size_t r = 0; r < 3; ++r) CHECK(out[0].floats()[e * 3 + r] == v[r]);
  }
}

TEST_CASE(threads_give_identical_results) {
  const auto m = masked_mean_model();
  const std::size_t n_jets = 3000;
  const Jets j = random_jets(n_jets, 13);
  std::vector<OutputTensor> one;
  JaggedOptions o;
  o.chunk_particles = 256;  // many chunks
  m.predict_jagged(view(j, n_jets), one, o);
  for (int nt : {2, 4, 0}) {
    o.n_threads = nt;
    std::vector<OutputTensor> out;
    m.predict_jagged(view(j, n_jets), out, o);
    CHECK(out[0].bytes == one[0].bytes);
  }
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      JaggedOptions ot;
      ot.n_threads = 2;
      std::vector<OutputTensor> out;
      m.predict_jagged(view(j, n_jets), out, ot);
      same[static_cast<std::size_t>(t)] = out[0].bytes == one[0].bytes;
    });
  for (auto& th : threads) th.join();
  for (int s : same) CHECK(s == 1);
}

TEST_CASE(threads_that_cannot_start_change_nothing) {
  // n_threads = 400 where the system refuses threads after the first 0, 1 or 3 (test hook):
  // the chunks run on the threads that started and the caller, with the same result
  const auto m = masked_mean_model();
  const std::size_t n_jets = 3000;
  const Jets j = random_jets(n_jets, 17);
  JaggedOptions o;
  o.chunk_particles = 256;
  std::vector<OutputTensor> one;
  m.predict_jagged(view(j, n_jets), one, o);
  o.n_threads = 400;
  for (int limit : {0, 1, 3}) {
    parallel::set_thread_start_limit_for_testing(limit);
    std::vector<OutputTensor> out;
    try {
      m.predict_jagged(view(j, n_jets), out, o);
    } catch (...) {
      parallel::set_thread_start_limit_for_testing(-1);
      throw;
    }
    parallel::set_thread_start_limit_for_testing(-1);
    CHECK(out.size() == 1 && out[0].bytes == one[0].bytes);
  }
}

TEST_CASE(empty_batch_and_single_jet) {
  const auto m = masked_mean_model();
  const Jets j = random_jets(1, 14);
  std::vector<OutputTensor> out;
  m.predict_jagged(view(j, 0), out);
  CHECK(out[0].shape == (std::vector<std::int64_t>{0, 2}) && out[0].bytes.empty());
  m.predict_jagged(view(j, 1), out);  // the first jet is empty: 0/0
  CHECK(out[0].shape == (std::vector<std::int64_t>{1, 2}) && std::isnan(out[0].floats()[0]));
}

TEST_CASE(errors) {
  const auto m = masked_mean_model();
  Jets j = random_jets(20, 15);
  {
    Jets bad = j;
    bad.offsets[7] = bad.offsets[6] - 1;
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(view(bad, 20), out), InputError, "offsets decrease at event 6");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.particles[0].features[1].size = 3;
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "has 3 values but the offsets reach");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.particles[0].features.pop_back();
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "takes 2 value(s) per particle, 1 column(s)");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.jets.clear();
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "per-jet input 'jet' (batch, 1) is missing");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.jets[0].shape = {19, 1};
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "per-jet input 'jet' has shape (19, 1)");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.particles.push_back({"mask", jj.particles[0].features});
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "is the mask");
  }
  {
    JaggedJets jj = view(j, 20);
    jj.offsets = nullptr;
    std::vector<OutputTensor> out;
    CHECK_THROWS(m.predict_jagged(jj, out), InputError, "offsets pointer is null");
  }
  const auto fixed = Model::load(g_data_dir + "/nn/topk_particles.onnx");
  CHECK_THROWS(fixed.jagged_layout(), InputError, "no input has a symbolic particle dimension");
}

int main(int argc, char** argv) {
  if (argc > 1) g_data_dir = argv[1];
  return check::run_all();
}
