#pragma once
// Kernels for trees stored as complete binary trees of one common depth D.
//
// Node i (0-based, breadth-first) has children 2i+1 (left) and 2i+2 (right), so a walk
// needs no child pointers: D steps of `i = 2i + 2 - go_left`. The kernels read an
// expanded row where column 2j is feature j with NaN replaced by -inf and column 2j+1
// with NaN replaced by +inf; a node holds the column matching its default direction
// (2j if NaN goes left, 2j+1 if right) and a float threshold, and goes left iff
// x < threshold: one comparison, no NaN test. A leaf that sits above depth D is padded
// by nodes that always go right (threshold NaN) down to depth D.
//
// The AVX2 variants walk 8 rows (or 8 trees) per vector with gathers; they are chosen at
// run time, so the library still runs on CPUs without AVX2.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hepinfer::detail {

struct CompleteTrees {
  int depth = 0;                   ///< D
  std::uint32_t n_internal = 0;    ///< 2^D - 1 nodes per tree
  std::uint32_t n_leaves = 0;      ///< 2^D leaf slots per tree
  std::vector<std::int32_t> feat;  ///< [slot * n_internal + i]: column in the expanded row (+32 padding)
  std::vector<float> thr;  ///< [slot * n_internal + i] (+32 padding: kernels load a level's 8..32 nodes at once)
  struct Pair {
    std::int32_t col;
    float thr;
  };
  std::vector<Pair> pairs;  ///< feat and thr interleaved, for the one-row walkers
  /// The same pairs for whole groups of kLanes consecutive slots, node-major and tree-minor:
  /// [(g * n_internal + i) * kLanes + k] is node i of slot kLanes * g + k (complete_walk_group).
  static constexpr int kLanes = 16;
  std::vector<Pair> lanes;
  std::vector<double> leaf;           ///< [slot * n_leaves + j]
  std::vector<float> leaf_f;          ///< float copy of `leaf` (float32-accumulating models only)
  std::vector<std::int32_t> leaf_id;  ///< [slot * n_leaves + j]: the source library's leaf index
};

/// True when the CPU executes AVX2 (checked once).
bool cpu_has_avx2() noexcept;

/// Walk tree `slot` for rows 0..n_rows-1 of a column-major expanded block: column c of
/// row r at block[r + c * cap]. n_rows must be a multiple of 8 (pad the block). Writes the leaf
/// slot (0..2^D-1) per row. With `acc` (needs leaf_f), also adds each row's float leaf
/// value to acc[row] in float32.
void complete_walk_rows(const CompleteTrees& trees, std::uint32_t slot, const float* block, std::size_t cap,
                        std::size_t n_rows, std::int32_t* leaf_out, float* acc = nullptr) noexcept;

/// Walk trees slot..slot+7 for one expanded row (column c at row[c * cs]). Writes 8 leaf slots.
void complete_walk_trees8(const CompleteTrees& trees, std::uint32_t slot, const float* row, std::size_t cs,
                          std::int32_t* leaf_out) noexcept;

/// Walk slots L*g..L*g+L-1 for one expanded, contiguous row (the single-row path), with
/// `lanes` holding groups of L trees. Each tree's position is kept as L * position + lane, so
/// a step is one load of [base + 8 * q], one of the row and a compare.
template <int L>
inline void complete_walk_group(const CompleteTrees& trees, const std::vector<CompleteTrees::Pair>& lanes,
                                std::size_t g, const float* row, std::int32_t* leaf_out) noexcept {
  const CompleteTrees::Pair* p = lanes.data() + g * trees.n_internal * L;
  std::uint32_t q[L];
#pragma GCC unroll 16
  for (int k = 0; k < L; ++k) q[k] = static_cast<std::uint32_t>(k);
  for (int l = 0; l < trees.depth; ++l) {
#pragma GCC unroll 16
    for (int k = 0; k < L; ++k) {
      const CompleteTrees::Pair& n = p[q[k]];
      const float x = row[static_cast<std::size_t>(n.col)];
      // child 2i + 2 - left: L * (2i + 2 - left) + k = 2 * (L * i + k) + 2L - k - L * left
      q[k] = 2 * q[k] + static_cast<std::uint32_t>(2 * L - k) - (x < n.thr ? static_cast<std::uint32_t>(L) : 0u);
    }
  }
#pragma GCC unroll 16
  for (int k = 0; k < L; ++k) leaf_out[k] = static_cast<std::int32_t>(q[k] / L - trees.n_internal);
}

/// Walk one tree for one row.
inline std::int32_t complete_walk_one(const CompleteTrees& trees, std::uint32_t slot, const float* row,
                                      std::size_t cs) noexcept {
  const CompleteTrees::Pair* p = trees.pairs.data() + static_cast<std::size_t>(slot) * trees.n_internal;
  std::uint32_t i = 0;
  for (int l = 0; l < trees.depth; ++l) {
    const float x = row[static_cast<std::size_t>(p[i].col) * cs];
    i = 2 * i + 2 - static_cast<std::uint32_t>(x < p[i].thr);
  }
  return static_cast<std::int32_t>(i - trees.n_internal);
}

}  // namespace hepinfer::detail
