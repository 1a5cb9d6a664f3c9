#pragma once
/// \file forest_ir.hpp
/// The loader-independent description of a tree ensemble. Every loader
/// (XGBoost, LightGBM, TMVA) produces a ForestIR with the exact semantics of
/// the library it came from; Forest compiles it into its evaluation layout.
///
/// Conventions (what a loader must produce):
///  * A numerical split sends a row to the LEFT child iff `x OP threshold`,
///    with OP = `<` (Op::Less) or `<=` (Op::LessEqual), compared in double
///    after the input value was rounded to float32 when
///    ForestIR::float32_inputs is true (XGBoost, TMVA) or kept as given
///    (LightGBM: float64 inputs compare in double, float32 inputs are exact
///    in double). A loader whose library tests `x >= cut` to go right
///    expresses it as "left iff x < cut" (and swaps children where needed).
///  * NaN goes to the left child iff `default_left`. (LightGBM's "None"
///    missing type, where NaN is treated as 0, sets default_left to the side
///    that 0 takes.) TMVA has no NaN handling: NaN fails every comparison, so
///    the loader sets default_left to wherever a failed comparison leads.
///  * `zero_is_missing` (LightGBM missing type Zero): |x| <= (double)1e-35f and NaN
///    take the default child.
///  * A categorical split (LightGBM) sends a row LEFT iff the category (x truncated
///    toward zero) is in the bitset `categories[cat_begin, cat_end)` (32-bit words,
///    bit k of word k/32 means category k). NaN takes the default child (LightGBM:
///    right); x <= -1 and x >= 2^31 go right. With `cat_negative_right` (XGBoost)
///    every x < 0 goes right (XGBoost treats negative categories as invalid).
///  * A linear split (TMVA Fisher cut) computes
///    v = linear[lin_begin + n_features] + sum_j linear[lin_begin + j] * x_j
///    (in double, x as float) and goes LEFT iff `v OP threshold`.
///  * Leaves hold `value` (already multiplied by any per-tree weight the
///    loader wants baked in). A tree adds its leaf value to output `group`.

#include <cstdint>
#include <string>
#include <vector>

namespace hepinfer {

struct NodeIR {
  enum class Kind : std::uint8_t { Leaf, Numerical, Categorical, Linear };
  enum class Op : std::uint8_t { Less, LessEqual };

  Kind kind = Kind::Leaf;
  Op op = Op::Less;
  bool default_left = false;
  bool zero_is_missing = false;
  bool cat_negative_right = false;  ///< Categorical: all x < 0 go right (XGBoost), not only x <= -1
  std::int32_t feature = -1;        ///< input column (Numerical, Categorical)
  std::int32_t left = -1;           ///< index of left child within the tree
  std::int32_t right = -1;          ///< index of right child within the tree
  double threshold = 0.0;           ///< Numerical / Linear
  std::uint32_t cat_begin = 0;      ///< Categorical: range in ForestIR::categories
  std::uint32_t cat_end = 0;
  std::uint32_t lin_begin = 0;  ///< Linear: offset in ForestIR::linear (n_features+1 values)
  double value = 0.0;           ///< Leaf value
  std::int32_t leaf_id =
      -1;  ///< Leaf: its index in the source library's numbering (pred_leaf); -1 = position in `nodes`
};

struct TreeIR {
  std::vector<NodeIR> nodes;  ///< nodes[0] is the root
  std::int32_t group = 0;     ///< output column this tree adds to
};

/// A per-row transformation of the inputs applied before the trees (TMVA's
/// variable transformations). Applied in double, result stored as float32
/// (as TMVA's Reader holds transformed inputs), then the trees see it.
struct TransformIR {
  enum class Kind : std::uint8_t {
    /// y = M x (M is n x n row-major in `matrix`)
    Linear,
    /// y_i = (x_i - offset_i) * scale_i   (TMVA Norm: offset=min, scale=2/(max-min), then -1 in `shift`)
    Affine,
    /// y = M (x - mean)    (TMVA PCA: mean in `offset`, eigenvectors in `matrix`)
    CenteredLinear,
  };
  Kind kind = Kind::Linear;
  std::vector<double> matrix;  ///< n x n row-major
  std::vector<double> offset;  ///< n
  std::vector<double> scale;   ///< n
  double shift = 0.0;          ///< added after Affine
};

/// What turns the per-group margins into the reported output.
enum class Postprocess : std::uint8_t {
  Identity,      ///< output = margin
  Sigmoid,       ///< output = 1 / (1 + exp(-scale * margin)), scale = ForestIR::sigmoid_scale
  Softmax,       ///< output_k = exp(m_k) / sum_j exp(m_j)
  ArgMax,        ///< multi:softmax: the index of the largest margin (one column)
  TMVAGrad,      ///< output = 2 / (1 + exp(-2 margin)) - 1
  Exp,           ///< output = exp(margin) (log-link regressions: poisson, gamma, tweedie)
  SignedSquare,  ///< output = sign(margin) * margin^2 (LightGBM reg_sqrt)
  Log1pExp,      ///< output = log(1 + exp(margin)) (LightGBM cross_entropy_lambda)
};

/// Where a ForestIR came from; used in messages and for format-specific options.
enum class SourceFormat : std::uint8_t { XGBoost, LightGBM, TMVA, Other };

struct ForestIR {
  SourceFormat source = SourceFormat::Other;
  std::string source_name;  ///< file path or "<memory>", for messages
  std::int32_t n_features = 0;
  std::int32_t n_groups = 1;                     ///< number of margin columns
  std::vector<std::string> feature_names;        ///< empty or n_features names
  std::vector<std::string> feature_expressions;  ///< TMVA: the expression of each variable, else empty
  std::vector<double> base_margin;               ///< n_groups values added to the margins
  Postprocess postprocess = Postprocess::Identity;
  double sigmoid_scale = 1.0;
  double margin_divisor =
      1.0;  ///< outputs (not margins) use margin/margin_divisor (LightGBM rf)              ///< Sigmoid: 1/(1+exp(-sigmoid_scale*m)) (LightGBM sigmoid:<s>)
  bool float32_inputs = true;       ///< round inputs to float32 before comparing
  bool float32_accumulate = false;  ///< sum leaves in float32, tree by tree, as XGBoost does
  std::vector<TreeIR> trees;
  std::vector<std::uint32_t> categories;  ///< bitset words for categorical splits
  std::vector<double> linear;             ///< coefficient blocks for linear splits
  std::vector<TransformIR> transforms;    ///< applied in order before the trees
  std::string objective;                  ///< e.g. "binary:logistic", "lightgbm:binary", "tmva:AdaBoost"

  /// Throws ModelFormatError if indices are out of range, trees have cycles,
  /// unreachable nodes or absurd sizes.
  void validate() const;
};

/// The one rule for turning a split "left iff x OP t" (t a double, the comparison made in double)
/// into "left iff x < c": the float32 c that gives the same answer for every float32 x, or the
/// double c for every double x. The engines, the C++ code generator and the TMVA XML export all
/// use it (Python: hepinfer._core.split_threshold).
float split_threshold_float32(double t, NodeIR::Op op);
double split_threshold_float64(double t, NodeIR::Op op);

}  // namespace hepinfer
