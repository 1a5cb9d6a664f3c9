// Semantics of the forest engine on hand-made and random ForestIRs, checked against a
// direct interpreter of the IR written here (independent of the compiled layouts).
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "check.hpp"
#include "random_forest_ir.hpp"
#include "hepinfer/forest.hpp"

using namespace hepinfer;
using hepinfer_test::leaf;
using hepinfer_test::random_forest;
using hepinfer_test::random_rows;
using hepinfer_test::split;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

ForestIR stump(double threshold, bool default_left, NodeIR::Op op, bool float32_inputs) {
  ForestIR ir;
  ir.n_features = 1;
  ir.base_margin = {0.0};
  ir.float32_inputs = float32_inputs;
  TreeIR t;
  t.nodes = {split(0, threshold, 1, 2, default_left, op), leaf(-1.0), leaf(1.0)};
  ir.trees.push_back(t);
  return ir;
}

// ---- reference interpreter of the IR (slow, obviously correct)
template <typename In>
double ref_left(const ForestIR& ir, const NodeIR& n, const std::vector<double>& x) {
  (void)sizeof(In);
  switch (n.kind) {
    case NodeIR::Kind::Numerical: {
      const double v = x[static_cast<std::size_t>(n.feature)];
      if (std::isnan(v)) return n.default_left;
      if (n.zero_is_missing && std::fabs(v) <= static_cast<double>(1e-35f)) return n.default_left;
      return n.op == NodeIR::Op::Less ? v < n.threshold : v <= n.threshold;
    }
    case NodeIR::Kind::Categorical: {
      const double v = x[static_cast<std::size_t>(n.feature)];
      if (std::isnan(v)) return n.default_left;
      if (v <= -1.0 || v >= 2147483648.0 || (n.cat_negative_right && v < 0.0)) return false;
      const auto c = static_cast<std::uint32_t>(std::trunc(std::fabs(v)));
      if (c / 32 >= n.cat_end - n.cat_begin) return false;
      return (ir.categories[n.cat_begin + c / 32] >> (c % 32)) & 1u;
    }
    case NodeIR::Kind::Linear: {
      const double* c = ir.linear.data() + n.lin_begin;
      double v = c[ir.n_features];
      for (int j = 0; j < ir.n_features; ++j) v += c[j] * x[static_cast<std::size_t>(j)];
      if (std::isnan(v)) return n.default_left;
      return n.op == NodeIR::Op::Less ? v < n.threshold : v <= n.threshold;
    }
    case NodeIR::Kind::Leaf: break;
  }
  return false;
}

std::vector<double> ref_margins(const ForestIR& ir, std::vector<double> x, std::vector<std::int32_t>* leaves) {
  if (ir.float32_inputs)
    for (double& v : x) v = static_cast<double>(static_cast<float>(v));
  std::vector<double> m = ir.base_margin;
  for (const TreeIR& t : ir.trees) {
    std::size_t i = 0;
    while (t.nodes[i].kind != NodeIR::Kind::Leaf)
      i = static_cast<std::size_t>(ref_left<double>(ir, t.nodes[i], x) ? t.nodes[i].left : t.nodes[i].right);
    double& g = m[static_cast<std::size_t>(t.group)];
    g = ir.float32_accumulate ? static_cast<double>(static_cast<float>(g + t.nodes[i].value)) : g + t.nodes[i].value;
    if (leaves) leaves->push_back(t.nodes[i].leaf_id >= 0 ? t.nodes[i].leaf_id : static_cast<std::int32_t>(i));
  }
  return m;
}

}  // namespace

TEST_CASE(stump_less_float32) {
  // threshold 0.1 is not a float: "x < 0.1" with x rounded to float
  Forest f = Forest::from_ir(stump(0.1, true, NodeIR::Op::Less, true));
  const float below = std::nextafter(0.1f, 0.0f);  // 0.1f > 0.1, so 0.1f is not < 0.1
  CHECK(f.predict_one(&below, Output::Margin) == -1.0);
  const float at = 0.1f;
  CHECK(f.predict_one(&at, Output::Margin) == 1.0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(f.predict_one(&nan, Output::Margin) == -1.0);
  Forest g = Forest::from_ir(stump(0.1, false, NodeIR::Op::Less, true));
  CHECK(g.predict_one(&nan, Output::Margin) == 1.0);
  // double input is rounded to float first (XGBoost, TMVA)
  const double d = 0.1;
  double out;
  f.predict_one(&d, &out, Output::Margin);
  CHECK(out == 1.0);
}

TEST_CASE(stump_lessequal_double) {
  // LightGBM-like: x <= t compared in double
  const double t = 0.30000000000000004;
  Forest f = Forest::from_ir(stump(t, false, NodeIR::Op::LessEqual, false));
  double out;
  const double at = t, above = std::nextafter(t, 1.0);
  f.predict_one(&at, &out, Output::Margin);
  CHECK(out == -1.0);
  f.predict_one(&above, &out, Output::Margin);
  CHECK(out == 1.0);
  // float input: exact in double
  const float fl = 0.3f;  // 0.30000001192... > t
  CHECK(f.predict_one(&fl, Output::Margin) == 1.0);
  const float fl2 = std::nextafter(0.3f, 0.0f);
  CHECK(f.predict_one(&fl2, Output::Margin) == -1.0);
}

TEST_CASE(infinite_thresholds) {
  // LightGBM writes threshold=inf: x <= inf holds for every number, +inf included
  const double inf = std::numeric_limits<double>::infinity();
  for (bool f32 : {false, true}) {
    Forest f = Forest::from_ir(stump(inf, false, NodeIR::Op::LessEqual, f32));
    for (double x : {inf, 1e300, -inf, 0.0}) {
      double out;
      f.predict_one(&x, &out, Output::Margin);
      CHECK(out == -1.0);
      const float xf = static_cast<float>(x);
      CHECK(f.predict_one(&xf, Output::Margin) == -1.0);
    }
    Forest g = Forest::from_ir(stump(inf, false, NodeIR::Op::Less, f32));
    const double x = inf;
    double out;
    g.predict_one(&x, &out, Output::Margin);
    CHECK(out == 1.0);
  }
}

TEST_CASE(single_leaf_and_empty_batch) {
  ForestIR ir;
  ir.n_features = 3;
  ir.base_margin = {0.5};
  TreeIR t;
  t.nodes = {leaf(2.0)};
  ir.trees = {t, t};
  Forest f = Forest::from_ir(ir);
  const float row[3] = {1, 2, 3};
  CHECK(f.predict_one(row, Output::Margin) == 4.5);
  std::vector<double> out(1, -7.0);
  f.predict(row, std::size_t{0}, out.data());
  CHECK(out[0] == -7.0);  // nothing written for zero rows
  std::vector<std::int32_t> leaves(2);
  f.predict_leaf(row, RowLayout{1, 3, 1}, leaves.data());
  CHECK(leaves[0] == 0 && leaves[1] == 0);
}

TEST_CASE(postprocess_kinds) {
  ForestIR ir;
  ir.n_features = 1;
  ir.n_groups = 3;
  ir.base_margin = {0.0, 1.0, 2.0};
  for (int g = 0; g < 3; ++g) {
    TreeIR t;
    t.group = g;
    t.nodes = {leaf(0.5 * g)};
    ir.trees.push_back(t);
  }
  ir.postprocess = Postprocess::Softmax;
  Forest sm = Forest::from_ir(ir);
  CHECK(sm.n_outputs() == 3);
  const float x = 0;
  double p[3];
  sm.predict_one(&x, p);
  const double e0 = std::exp(0.0), e1 = std::exp(1.5), e2 = std::exp(3.0);
  CHECK_NEAR(p[0], e0 / (e0 + e1 + e2), 1e-15);
  CHECK_NEAR(p[2], e2 / (e0 + e1 + e2), 1e-15);
  ir.postprocess = Postprocess::ArgMax;
  Forest am = Forest::from_ir(ir);
  CHECK(am.n_outputs() == 1);
  CHECK(am.n_outputs(Output::Margin) == 3);
  CHECK(am.predict_one(&x) == 2.0);
  // averaged margins (a divisor, as LightGBM random forests) with ArgMax: still one value per
  // row, written into a one-column output with nothing past it touched
  ir.margin_divisor = 3.0;
  Forest am3 = Forest::from_ir(ir);
  const float xs[4] = {0, 1, 2, 3};
  double o[5] = {-7, -7, -7, -7, -7};
  am3.predict(xs, 4, o);
  for (int r = 0; r < 4; ++r) CHECK(o[r] == 2.0);
  CHECK(o[4] == -7.0);
  ir.margin_divisor = 1.0;

  ForestIR one = stump(0.0, true, NodeIR::Op::Less, true);
  one.postprocess = Postprocess::Sigmoid;
  const float pos = 1.0f;
  CHECK_NEAR(Forest::from_ir(one).predict_one(&pos), 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
  one.postprocess = Postprocess::TMVAGrad;
  CHECK_NEAR(Forest::from_ir(one).predict_one(&pos), 2.0 / (1.0 + std::exp(-2.0)) - 1.0, 1e-15);
  one.postprocess = Postprocess::Exp;
  CHECK_NEAR(Forest::from_ir(one).predict_one(&pos), std::exp(1.0), 1e-15);
  const float neg = -1.0f;
  one.postprocess = Postprocess::SignedSquare;
  CHECK(Forest::from_ir(one).predict_one(&neg) == -1.0);
  CHECK(Forest::from_ir(one).predict_one(&pos) == 1.0);
  one.postprocess = Postprocess::Log1pExp;
  CHECK_NEAR(Forest::from_ir(one).predict_one(&neg), std::log1p(std::exp(-1.0)), 1e-15);
  one.postprocess = Postprocess::Sigmoid;
  one.sigmoid_scale = 2.5;
  CHECK_NEAR(Forest::from_ir(one).predict_one(&neg), 1.0 / (1.0 + std::exp(2.5)), 1e-15);
}

TEST_CASE(random_forests_match_reference) {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 24; ++trial) {
    const bool specials = trial % 3 == 1;
    const bool f32 = trial % 2 == 0;
    const int depth = trial % 4 == 3 ? 14 : 1 + trial % 8;
    ForestIR ir = random_forest(rng, 1 + trial % 7, 1 + (trial * 7) % 40, 1 + trial % 3, specials, f32, depth);
    Forest f = Forest::from_ir(ir);
    const std::size_t n = 1 + static_cast<std::size_t>(rng() % 700);
    const auto X = random_rows(rng, ir, n);
    const std::size_t nf = static_cast<std::size_t>(ir.n_features), ng = static_cast<std::size_t>(ir.n_groups);
    std::vector<double> got(n * ng), got_t(n * ng);
    std::vector<std::int32_t> leaves(n * ir.trees.size());
    f.predict(X.data(), n, got.data(), Output::Margin, 1);
    f.predict(X.data(), n, got_t.data(), Output::Margin, 4);
    f.predict_leaf(X.data(), RowLayout{n, static_cast<std::ptrdiff_t>(nf), 1}, leaves.data(), 3);
    std::vector<float> Xf(X.begin(), X.end());
    std::vector<double> got_f(n * ng);
    f.predict(Xf.data(), n, got_f.data(), Output::Margin, 1);
    int bad = 0;
    for (std::size_t r = 0; r < n; ++r) {
      std::vector<std::int32_t> ref_leaves;
      const auto ref = ref_margins(ir,
                                   std::vector<double>(X.begin() + static_cast<std::ptrdiff_t>(r * nf),
                                                       X.begin() + static_cast<std::ptrdiff_t>((r + 1) * nf)),
                                   &ref_leaves);
      std::vector<double> xf(nf);
      for (std::size_t j = 0; j < nf; ++j) xf[j] = static_cast<double>(Xf[r * nf + j]);
      const auto ref_f = ref_margins(ir, xf, nullptr);
      for (std::size_t g = 0; g < ng; ++g) {
        bad += ref[g] != got[r * ng + g];
        bad += got_t[r * ng + g] != got[r * ng + g];
        bad += ref_f[g] != got_f[r * ng + g];
      }
      for (std::size_t t = 0; t < ir.trees.size(); ++t) bad += ref_leaves[t] != leaves[r * ir.trees.size() + t];
    }
    if (bad) std::printf("  trial %d: %d mismatches\n", trial, bad);
    CHECK(bad == 0);
  }
}

TEST_CASE(strided_inputs_and_predict_one) {
  std::mt19937 rng(7);
  ForestIR ir = random_forest(rng, 5, 30, 1, false, true, 6);
  Forest f = Forest::from_ir(ir);
  const std::size_t n = 300, nf = 5;
  const auto X = random_rows(rng, ir, n);
  std::vector<double> colmajor(n * nf);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < nf; ++j) colmajor[j * n + r] = X[r * nf + j];
  std::vector<double> a(n), b(n);
  f.predict(X.data(), n, a.data());
  f.predict(colmajor.data(), RowLayout{n, 1, static_cast<std::ptrdiff_t>(n)}, b.data());
  CHECK(a == b);
  for (std::size_t r = 0; r < n; r += 17) {
    double one;
    f.predict_one(X.data() + r * nf, &one);
    CHECK(one == a[r]);
  }
}

TEST_CASE(many_threads_share_one_model) {
  std::mt19937 rng(99);
  ForestIR ir = random_forest(rng, 8, 60, 2, true, true, 7);
  const Forest f = Forest::from_ir(ir);
  const std::size_t n = 2000;
  const auto X = random_rows(rng, ir, n);
  std::vector<double> expected(n * 2);
  f.predict(X.data(), n, expected.data(), Output::Probability, 1);
  std::vector<int> ok(16, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 16; ++k) {
    threads.emplace_back([&, k] {
      std::vector<double> out(n * 2);
      bool same = true;
      for (int rep = 0; rep < 5; ++rep) {
        f.predict(X.data(), n, out.data(), Output::Probability, 1 + k % 3);
        same = same && out == expected;
        double one[2];
        for (std::size_t r = static_cast<std::size_t>(k); r < n; r += 97) {
          f.predict_one(X.data() + r * 8, one);
          same = same && one[0] == expected[r * 2] && one[1] == expected[r * 2 + 1];
        }
      }
      ok[static_cast<std::size_t>(k)] = same;
    });
  }
  for (auto& t : threads) t.join();
  for (int v : ok) CHECK(v == 1);
}

TEST_CASE(invalid_ir_is_rejected) {
  ForestIR ir = stump(0.0, true, NodeIR::Op::Less, true);
  ir.trees[0].nodes[0].left = 0;
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "cycle");
  ir = stump(0.0, true, NodeIR::Op::Less, true);
  ir.trees[0].nodes[0].right = 9;
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "out of range");
  ir = stump(0.0, true, NodeIR::Op::Less, true);
  ir.trees[0].nodes[0].feature = 3;
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "feature 3 out of range");
  ir = stump(0.0, true, NodeIR::Op::Less, true);
  ir.trees[0].nodes.push_back(leaf(1.0));
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "not reachable");
  ir = stump(kNaN, true, NodeIR::Op::Less, true);
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "NaN");
  ir = stump(0.0, true, NodeIR::Op::Less, true);
  ir.base_margin.clear();
  CHECK_THROWS(Forest::from_ir(ir), ModelFormatError, "base margin");
}

int main() { return check::run_all(); }
