#include "forest/forest_kernels.hpp"

#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64)
#define HEPINFER_X86 1
#include <immintrin.h>
#endif

namespace hepinfer::detail {

namespace {

void walk_rows_scalar(const CompleteTrees& trees, std::uint32_t slot, const float* block, std::size_t cap,
                      std::size_t n_rows, std::int32_t* out, float* acc) noexcept {
  const std::int32_t* f = trees.feat.data() + static_cast<std::size_t>(slot) * trees.n_internal;
  const float* t = trees.thr.data() + static_cast<std::size_t>(slot) * trees.n_internal;
  const int depth = trees.depth;
  for (std::size_t r = 0; r < n_rows; r += 8) {
    std::uint32_t idx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int l = 0; l < depth; ++l) {
      for (int k = 0; k < 8; ++k) {
        const float x = block[r + static_cast<std::size_t>(k) + static_cast<std::size_t>(f[idx[k]]) * cap];
        idx[k] = 2 * idx[k] + 2 - static_cast<std::uint32_t>(x < t[idx[k]]);
      }
    }
    for (int k = 0; k < 8; ++k)
      out[r + static_cast<std::size_t>(k)] = static_cast<std::int32_t>(idx[k] - trees.n_internal);
    if (acc) {
      const float* lv = trees.leaf_f.data() + static_cast<std::size_t>(slot) * trees.n_leaves;
      for (std::size_t k = 0; k < 8; ++k) acc[r + k] += lv[out[r + k]];
    }
  }
}

template <bool kUnitStride, int N = 8>
void walk_trees8_scalar(const CompleteTrees& trees, std::uint32_t slot, const float* row, std::size_t cs,
                        std::int32_t* out) noexcept {
  if (kUnitStride) cs = 1;  // a compile-time 1: no multiply in the dependency chain
  std::uint32_t idx[N] = {};
  const std::size_t ni = trees.n_internal;
  // (column, threshold) pairs: one cache line per step instead of two
  const CompleteTrees::Pair* p = trees.pairs.data() + static_cast<std::size_t>(slot) * ni;
  for (int l = 0; l < trees.depth; ++l) {
    for (int k = 0; k < N; ++k) {
      const CompleteTrees::Pair& n = p[static_cast<std::size_t>(k) * ni + idx[k]];
      const float x = row[static_cast<std::size_t>(n.col) * cs];
      idx[k] = 2 * idx[k] + 2 - static_cast<std::uint32_t>(x < n.thr);
    }
  }
  for (int k = 0; k < N; ++k) out[k] = static_cast<std::int32_t>(idx[k] - trees.n_internal);
}

#ifdef HEPINFER_X86
#define HEPINFER_AVX2 __attribute__((target("avx2")))

HEPINFER_AVX2 inline __m256i step8(__m256i idx, __m256 t, __m256 x) {
  const __m256i left = _mm256_castps_si256(_mm256_cmp_ps(x, t, _CMP_LT_OQ));  // -1 where left
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(idx, 1), _mm256_set1_epi32(2)), left);
}

// Fields of the nodes at level l (2^l nodes starting at `base`) for the lanes whose
// position within the level is p: up to 8 nodes by one permute of a loaded vector; 16 or
// 32 nodes (levels 4 and 5) by permutes of 2 or 4 vectors and blends on the high bits of p.
HEPINFER_AVX2 inline __m256 level_select(int l, __m256i p, const float* base) {
  if (l <= 3) return _mm256_permutevar8x32_ps(_mm256_loadu_ps(base), p);
  const __m256i lo = _mm256_and_si256(p, _mm256_set1_epi32(7));
  const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(p, 28));  // bit 3 -> sign bit
  const __m256 v01 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(base), lo),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(base + 8), lo), b3);
  if (l == 4) return v01;
  const __m256 v23 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(base + 16), lo),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(base + 24), lo), b3);
  const __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(p, 27));  // bit 4 -> sign bit
  return _mm256_blendv_ps(v01, v23, b4);
}
HEPINFER_AVX2 inline __m256i level_select(int l, __m256i p, const int* base) {
  return _mm256_castps_si256(level_select(l, p, reinterpret_cast<const float*>(base)));
}

// Rows in lanes. Node fields of levels 0..5 (up to 32 nodes) are picked with permutes of
// vectors loaded from the tree (L1-resident), so only the input values need gathers there;
// deeper levels gather the node fields too. The block is column-major, so at the root (one
// feature for every lane) the inputs are one contiguous load.
HEPINFER_AVX2 void walk_rows_avx2(const CompleteTrees& trees, std::uint32_t slot, const float* block, std::size_t cap,
                                  std::size_t n_rows, std::int32_t* out, float* acc) noexcept {
  const float* lv = acc ? trees.leaf_f.data() + static_cast<std::size_t>(slot) * trees.n_leaves : nullptr;
  const int* f = trees.feat.data() + static_cast<std::size_t>(slot) * trees.n_internal;
  const float* t = trees.thr.data() + static_cast<std::size_t>(slot) * trees.n_internal;
  const int depth = trees.depth;
  const __m256i capv = _mm256_set1_epi32(static_cast<int>(cap));
  const bool cap_pow2 = cap != 0 && (cap & (cap - 1)) == 0;
  int shift = 0;
  while (cap_pow2 && (std::size_t{1} << shift) < cap) ++shift;
  const __m128i shiftv = _mm_cvtsi32_si128(shift);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i offset = _mm256_set1_epi32(static_cast<int>(trees.n_internal));
  constexpr int U = 8;  // independent groups of 8 rows in flight

  for (std::size_t r = 0; r < n_rows; r += 8 * U) {
    const int groups = static_cast<int>(n_rows - r >= 8 * U ? U : (n_rows - r) / 8);
    __m256i idx[U];
    // root: one feature for all lanes -> contiguous loads
    {
      const int fd0 = f[0];
      const __m256 thv = _mm256_set1_ps(t[0]);
      const float* col = block + static_cast<std::size_t>(fd0) * cap + r;
      for (int u = 0; u < groups; ++u) idx[u] = step8(_mm256_setzero_si256(), thv, _mm256_loadu_ps(col + 8 * u));
    }
    for (int l = 1; l < depth; ++l) {
      const int first = (1 << l) - 1;
      const __m256i firstv = _mm256_set1_epi32(first);
      for (int u = 0; u < groups; ++u) {
        __m256i fd;
        __m256 th;
        if (l <= 5) {
          const __m256i p = _mm256_sub_epi32(idx[u], firstv);
          fd = level_select(l, p, f + first);
          th = level_select(l, p, t + first);
        } else {
          fd = _mm256_i32gather_epi32(f, idx[u], 4);
          th = _mm256_i32gather_ps(t, idx[u], 4);
        }
        __m256 x;
        if (l <= 2) {
          // 2 or 4 candidate columns: contiguous loads of each, blended per lane (no gather)
          const __m256i p = _mm256_sub_epi32(idx[u], firstv);
          const __m256 b0 = _mm256_castsi256_ps(_mm256_slli_epi32(p, 31));  // bit 0 -> sign
          const float* base = block + r + 8 * static_cast<std::size_t>(u);
          x = _mm256_blendv_ps(_mm256_loadu_ps(base + static_cast<std::size_t>(f[first]) * cap),
                               _mm256_loadu_ps(base + static_cast<std::size_t>(f[first + 1]) * cap), b0);
          if (l == 2) {
            const __m256 x23 =
                _mm256_blendv_ps(_mm256_loadu_ps(base + static_cast<std::size_t>(f[first + 2]) * cap),
                                 _mm256_loadu_ps(base + static_cast<std::size_t>(f[first + 3]) * cap), b0);
            x = _mm256_blendv_ps(x, x23, _mm256_castsi256_ps(_mm256_slli_epi32(p, 30)));  // bit 1 -> sign
          }
        } else {
          const __m256i colofs = cap_pow2 ? _mm256_sll_epi32(fd, shiftv) : _mm256_mullo_epi32(fd, capv);
          const __m256i rows = _mm256_add_epi32(iota, _mm256_set1_epi32(static_cast<int>(r) + 8 * u));
          x = _mm256_i32gather_ps(block, _mm256_add_epi32(rows, colofs), 4);
        }
        idx[u] = step8(idx[u], th, x);
      }
    }
    for (int u = 0; u < groups; ++u) {
      const __m256i leaf = _mm256_sub_epi32(idx[u], offset);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r + 8 * static_cast<std::size_t>(u)), leaf);
      if (lv) {  // float32 accumulation (XGBoost): one gather of leaf values, one add
        float* a = acc + r + 8 * static_cast<std::size_t>(u);
        _mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a), _mm256_i32gather_ps(lv, leaf, 4)));
      }
    }
  }
}
#endif

}  // namespace

bool cpu_has_avx2() noexcept {
#ifdef HEPINFER_X86
  // HEPINFER_DISABLE_AVX2=1 forces the portable kernels (used by the tests to check both).
  static const bool has = __builtin_cpu_supports("avx2") && std::getenv("HEPINFER_DISABLE_AVX2") == nullptr;
  return has;
#else
  return false;
#endif
}

void complete_walk_rows(const CompleteTrees& trees, std::uint32_t slot, const float* block, std::size_t cap,
                        std::size_t n_rows, std::int32_t* leaf_out, float* acc) noexcept {
#ifdef HEPINFER_X86
  if (cpu_has_avx2()) {
    walk_rows_avx2(trees, slot, block, cap, n_rows, leaf_out, acc);
    return;
  }
#endif
  walk_rows_scalar(trees, slot, block, cap, n_rows, leaf_out, acc);
}

void complete_walk_trees8(const CompleteTrees& trees, std::uint32_t slot, const float* row, std::size_t cs,
                          std::int32_t* leaf_out) noexcept {
  // Latency-bound (one row): eight independent scalar chains beat gathers here.
  if (cs == 1) walk_trees8_scalar<true>(trees, slot, row, cs, leaf_out);
  else walk_trees8_scalar<false>(trees, slot, row, cs, leaf_out);
}

}  // namespace hepinfer::detail
