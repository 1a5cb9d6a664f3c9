// Jagged-array view validation and kernels (see hepinfer/jagged.hpp).
#include "hepinfer/jagged.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "common/parallel.hpp"

namespace hepinfer {

namespace {

constexpr double kPi = 3.14159265358979323846;

/// delta_phi's body, inline for the hot loops; select instructions instead of branches in
/// the common range (d in [-3 pi, 3 pi)), the same bits as numpy's (d + pi) % 2pi - pi.
inline double wrap_phi(double d) noexcept {
  const double two_pi = 2 * kPi;
  double r = d + kPi;
  if (r >= -two_pi && r < 2 * two_pi) {
    const double lo = r + two_pi, hi = r - two_pi;  // hi is exact (Sterbenz) where it is used
    r = r < 0 ? lo : (r >= two_pi ? hi : r);
  } else {
    r = std::fmod(r, two_pi);
    if (r < 0) r += two_pi;
  }
  return r - kPi;
}

/// Runs body(first, last) over [0, n) split into contiguous chunks, one per thread (those
/// of threads that could not be started run on the others); threads are only started when
/// each gets at least `min_per_thread` items.
template <class Body>
void parallel_for(std::size_t n, int n_threads, std::size_t min_per_thread, Body body) {
  std::size_t nt = parallel::resolve_threads(n_threads);
  if (min_per_thread == 0) min_per_thread = 1;
  nt = std::min(nt, std::max<std::size_t>(1, n / min_per_thread));
  if (nt <= 1) {
    body(std::size_t{0}, n);
    return;
  }
  parallel::parallel_for(n, (n + nt - 1) / nt, nt,
                         [&](std::size_t, std::size_t first, std::size_t last) { body(first, last); });
}

constexpr std::size_t kEventsPerThread = 16384;
constexpr std::size_t kValuesPerThread = 32768;

template <class T>
const T* column_ptr(const JaggedColumn& c) {
  return static_cast<const T*>(c.data);
}

/// Calls f(const T* data, stride) with the column's real element type.
template <class F>
void with_column(const JaggedColumn& c, F&& f) {
  if (c.dtype == ValueType::Float32) f(column_ptr<float>(c), c.stride);
  else f(column_ptr<double>(c), c.stride);
}

/// Offsets with their real element type, so the hot loops do not switch.
template <class F>
void with_offsets(const JaggedView& v, F&& f) {
  switch (v.offsets_type()) {
    case IndexType::Int32: f(static_cast<const std::int32_t*>(v.offsets())); return;
    case IndexType::UInt32: f(static_cast<const std::uint32_t*>(v.offsets())); return;
    case IndexType::Int64: f(static_cast<const std::int64_t*>(v.offsets())); return;
  }
}

std::string event_text(std::size_t e) { return std::to_string(e); }

/// A 64-bit key whose unsigned order is the requested order of x: NaN last in either
/// direction, -0 and +0 equal (a tie, as floating-point comparison has it).
inline std::uint64_t order_key(double x, bool descending) noexcept {
  if (std::isnan(x)) return ~std::uint64_t{0};
  if (x == 0) x = 0.0;
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  b = (b >> 63) != 0 ? ~b : (b | (std::uint64_t{1} << 63));  // monotone in x
  return descending ? ~b : b;                                // never all ones: +-inf map below it
}

/// The same for float32 keys, in 32 bits.
inline std::uint32_t order_key32(float x, bool descending) noexcept {
  if (std::isnan(x)) return ~std::uint32_t{0};
  if (x == 0) x = 0.0f;
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  b = (b >> 31) != 0 ? ~b : (b | (std::uint32_t{1} << 31));
  return descending ? ~b : b;
}

/// Per-thread scratch of order_top_k.
struct SortScratch {
  std::vector<std::uint64_t> keys;
  std::vector<std::uint64_t> kept;
  std::vector<std::int64_t> positions;
};

/// Writes the first min(k, n) positions (0..n-1) of the stable order of keys[0..n)
/// (stride `stride`, NaN last) into idx; returns min(k, n).
template <class K>
std::size_t order_top_k(const K* keys, std::ptrdiff_t stride, std::size_t n, std::size_t k, bool descending,
                        std::int64_t* idx, SortScratch& s) {
  const std::size_t m = std::min(n, k);
  if (m == 0) return 0;
  if (s.keys.size() < n) s.keys.resize(std::max<std::size_t>(n, 64));
  std::uint64_t* u = s.keys.data();
  if constexpr (std::is_same_v<K, float>) {
    if (n <= 16) {
      // float32 keys: (key, position) packed into one unique 64-bit number; the rank of an
      // object is the number of smaller ones.
      for (std::size_t i = 0; i < n; ++i)
        u[i] = (std::uint64_t{order_key32(keys[static_cast<std::ptrdiff_t>(i) * stride], descending)} << 32) | i;
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t rank = 0;
        const std::uint64_t ui = u[i];
        for (std::size_t j = 0; j < n; ++j) rank += u[j] < ui;
        if (rank < m) idx[rank] = static_cast<std::int64_t>(i);
      }
      return m;
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    u[i] = order_key(static_cast<double>(keys[static_cast<std::ptrdiff_t>(i) * stride]), descending);
  if (n <= 16) {
    // Rank of each object = objects before it in (key, position) order; branch-free.
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t rank = 0;
      const std::uint64_t ui = u[i];
      for (std::size_t j = 0; j < n; ++j) rank += (u[j] < ui) | ((u[j] == ui) & (j < i));
      if (rank < m) idx[rank] = static_cast<std::int64_t>(i);
    }
    return m;
  }
  if (k <= 16) {
    // Bounded insertion: keep the best m so far; a new object goes after equal ones (stable).
    if (s.kept.size() < m) s.kept.resize(std::max<std::size_t>(m, 16));
    std::uint64_t* kk = s.kept.data();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t ui = u[i];
      if (kept == m && ui >= kk[m - 1]) continue;
      std::size_t pos = kept < m ? kept : m - 1;
      while (pos > 0 && ui < kk[pos - 1]) {
        kk[pos] = kk[pos - 1];
        idx[pos] = idx[pos - 1];
        --pos;
      }
      kk[pos] = ui;
      idx[pos] = static_cast<std::int64_t>(i);
      if (kept < m) ++kept;
    }
    return m;
  }
  s.positions.resize(n);
  for (std::size_t i = 0; i < n; ++i) s.positions[i] = static_cast<std::int64_t>(i);
  const auto by_key = [u](std::int64_t a, std::int64_t b) {
    return u[static_cast<std::size_t>(a)] < u[static_cast<std::size_t>(b)];
  };
  if (m < n) {
    // Ties broken by position make the partial sort stable.
    std::partial_sort(s.positions.begin(), s.positions.begin() + static_cast<std::ptrdiff_t>(m), s.positions.end(),
                      [&](std::int64_t a, std::int64_t b) { return by_key(a, b) || (!by_key(b, a) && a < b); });
  } else {
    std::stable_sort(s.positions.begin(), s.positions.end(), by_key);
  }
  std::copy(s.positions.begin(), s.positions.begin() + static_cast<std::ptrdiff_t>(m), idx);
  return m;
}

void check_column(const JaggedView& v, std::size_t col, const char* what) {
  if (col >= v.n_columns())
    throw InputError(std::string(what) + " column index " + std::to_string(col) + " is out of range (the array has " +
                     std::to_string(v.n_columns()) + " columns)");
}

template <class Out>
void pad_impl(const JaggedView& v, std::size_t length, double fill, Out* out, const PaddedLayout& L, std::uint8_t* mask,
              int n_threads) {
  const Out f = static_cast<Out>(fill);
  with_offsets(v, [&](auto* off) {
    parallel_for(v.n_events(), n_threads, kEventsPerThread, [&](std::size_t e0, std::size_t e1) {
      for (std::size_t c = 0; c < v.n_columns(); ++c) {
        with_column(v.column(c), [&](auto* data, std::ptrdiff_t stride) {
          for (std::size_t e = e0; e < e1; ++e) {
            const auto b = static_cast<std::size_t>(off[e]);
            const std::size_t n = std::min(static_cast<std::size_t>(off[e + 1]) - b, length);
            Out* dst = out + static_cast<std::ptrdiff_t>(e) * L.event_stride +
                       static_cast<std::ptrdiff_t>(c) * L.column_stride;
            const auto* src = data + static_cast<std::ptrdiff_t>(b) * stride;
            std::size_t j = 0;
            if (L.slot_stride == 1 && stride == 1) {
              for (; j < n; ++j) dst[j] = static_cast<Out>(src[j]);
              for (; j < length; ++j) dst[j] = f;
            } else {
              for (; j < n; ++j)
                dst[static_cast<std::ptrdiff_t>(j) * L.slot_stride] =
                    static_cast<Out>(src[static_cast<std::ptrdiff_t>(j) * stride]);
              for (; j < length; ++j) dst[static_cast<std::ptrdiff_t>(j) * L.slot_stride] = f;
            }
          }
        });
      }
      if (mask != nullptr)
        for (std::size_t e = e0; e < e1; ++e) {
          const std::size_t n = std::min(static_cast<std::size_t>(off[e + 1] - off[e]), length);
          std::uint8_t* m = mask + e * length;
          for (std::size_t j = 0; j < length; ++j) m[j] = j < n ? 1 : 0;
        }
    });
  });
}

/// Top-k indices of the events [e0, e1): event e's k slots go to index[(e - e0) * k],
/// its count to cnt[e - e0] (cnt may be null).
template <class O>
void top_k_range(const JaggedView& v, const O* off, std::size_t key_column, std::size_t k, bool descending,
                 std::size_t e0, std::size_t e1, std::int64_t* index, std::int64_t* cnt, SortScratch& scratch) {
  with_column(v.column(key_column), [&](auto* keys, std::ptrdiff_t stride) {
    for (std::size_t e = e0; e < e1; ++e) {
      std::int64_t* idx = index + (e - e0) * k;
      const auto b = static_cast<std::size_t>(off[e]);
      const std::size_t m = order_top_k(keys + static_cast<std::ptrdiff_t>(b) * stride, stride,
                                        static_cast<std::size_t>(off[e + 1]) - b, k, descending, idx, scratch);
      for (std::size_t j = m; j < k; ++j) idx[j] = -1;
      if (cnt != nullptr) cnt[e - e0] = static_cast<std::int64_t>(m);
    }
  });
}

template <class Out>
void leading_impl(const JaggedView& v, std::size_t key_column, std::size_t k, SortOrder order, double fill, Out* out,
                  const PaddedLayout& L, std::uint8_t* mask, std::int64_t* index, int n_threads) {
  check_column(v, key_column, "key");
  const Out f = static_cast<Out>(fill);
  const bool descending = order == SortOrder::Descending;
  with_offsets(v, [&](auto* off) {
    parallel_for(v.n_events(), n_threads, kEventsPerThread, [&](std::size_t e0, std::size_t e1) {
      // Blocks of events: the indices stay in cache between the ordering and the gathers.
      constexpr std::size_t kBlock = 512;
      SortScratch scratch;
      std::vector<std::int64_t> counts(kBlock);
      std::vector<std::int64_t> local(index == nullptr ? kBlock * k : 0);
      for (std::size_t b0 = e0; b0 < e1; b0 += kBlock) {
        const std::size_t b1 = std::min(e1, b0 + kBlock);
        std::int64_t* idx = index != nullptr ? index + b0 * k : local.data();
        top_k_range(v, off, key_column, k, descending, b0, b1, idx, counts.data(), scratch);
        for (std::size_t c = 0; c < v.n_columns(); ++c) {
          with_column(v.column(c), [&](auto* data, std::ptrdiff_t stride) {
            for (std::size_t e = b0; e < b1; ++e) {
              const auto n = static_cast<std::size_t>(counts[e - b0]);
              const std::int64_t* ie = idx + (e - b0) * k;
              const auto* src = data + static_cast<std::ptrdiff_t>(off[e]) * stride;
              Out* dst = out + static_cast<std::ptrdiff_t>(e) * L.event_stride +
                         static_cast<std::ptrdiff_t>(c) * L.column_stride;
              std::size_t j = 0;
              for (; j < n; ++j)
                dst[static_cast<std::ptrdiff_t>(j) * L.slot_stride] = static_cast<Out>(src[ie[j] * stride]);
              for (; j < k; ++j) dst[static_cast<std::ptrdiff_t>(j) * L.slot_stride] = f;
            }
          });
        }
        if (mask != nullptr)
          for (std::size_t e = b0; e < b1; ++e) {
            const auto n = static_cast<std::size_t>(counts[e - b0]);
            std::uint8_t* m = mask + e * k;
            for (std::size_t j = 0; j < k; ++j) m[j] = j < n ? 1 : 0;
          }
      }
    });
  });
}

template <class Out>
void gather_impl(const JaggedView& v, std::size_t col, const std::int64_t* index, const std::int64_t* cnt,
                 std::size_t k, Out* out, int n_threads) {
  check_column(v, col, "gathered");
  const std::size_t n_events = v.n_events();
  // Where each event's selection starts in out: a prefix sum over the counts.
  std::vector<std::size_t> start(n_events + 1, 0);
  for (std::size_t e = 0; e < n_events; ++e) {
    if (cnt[e] < 0 || static_cast<std::size_t>(cnt[e]) > std::min(k, v.count(e)))
      throw InputError("selection count " + std::to_string(cnt[e]) + " of event " + event_text(e) +
                       " is out of range (event has " + std::to_string(v.count(e)) +
                       " objects, k = " + std::to_string(k) + ")");
    start[e + 1] = start[e] + static_cast<std::size_t>(cnt[e]);
  }
  for (std::size_t e = 0; e < n_events; ++e)
    for (std::size_t j = 0; j < static_cast<std::size_t>(cnt[e]); ++j) {
      const std::int64_t i = index[e * k + j];
      if (i < 0 || static_cast<std::size_t>(i) >= v.count(e))
        throw InputError("selection index " + std::to_string(i) + " of event " + event_text(e) +
                         " is out of range (event has " + std::to_string(v.count(e)) + " objects)");
    }
  with_column(v.column(col), [&](auto* data, std::ptrdiff_t stride) {
    parallel_for(n_events, n_threads, kEventsPerThread, [&](std::size_t e0, std::size_t e1) {
      for (std::size_t e = e0; e < e1; ++e) {
        const auto* src = data + static_cast<std::ptrdiff_t>(v.begin(e)) * stride;
        Out* dst = out + start[e];
        for (std::size_t j = 0; j < static_cast<std::size_t>(cnt[e]); ++j)
          dst[j] = static_cast<Out>(src[index[e * k + j] * stride]);
      }
    });
  });
}

// Four-vectors are computed in the input's precision (float32 math for float32 arrays, as
// numpy and `vector` do), with the `vector` package's formulas.
template <class T>
void to_ptetaphim_impl(const T* px, const T* py, const T* pz, const T* E, std::size_t n, T* pt, T* eta, T* phi, T* mass,
                       int n_threads) {
  parallel_for(n, n_threads, kValuesPerThread, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      // Squares in double: E^2 - p^2 cancels badly in float32 for light objects.
      const double x = px[i], y = py[i], z = pz[i], t = E[i];
      const double rho = std::sqrt(x * x + y * y);
      T h;
      if (rho != 0 || std::isnan(rho)) h = std::asinh(static_cast<T>(z / rho));
      else h = z == 0 ? T(0) : std::copysign(std::numeric_limits<T>::infinity(), static_cast<T>(z));  // as `vector`
      const double m2 = t * t - (x * x + y * y + z * z);
      pt[i] = static_cast<T>(rho);
      eta[i] = h;
      phi[i] = std::atan2(py[i], px[i]);
      mass[i] = static_cast<T>(std::copysign(std::sqrt(std::fabs(m2)), m2));
    }
  });
}

template <class T>
void to_pxpypze_impl(const T* pt, const T* eta, const T* phi, const T* mass, std::size_t n, T* px, T* py, T* pz, T* E,
                     int n_threads) {
  parallel_for(n, n_threads, kValuesPerThread, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      const T r = pt[i], f = phi[i];
      const double z = static_cast<double>(r) * static_cast<double>(std::sinh(eta[i]));
      const double rr = r, m = mass[i];
      px[i] = r * std::cos(f);
      py[i] = r * std::sin(f);
      pz[i] = static_cast<T>(z);
      E[i] = static_cast<T>(std::sqrt(std::max(rr * rr + z * z + std::copysign(m * m, m), 0.0)));
    }
  });
}

template <class T>
void delta_r_impl(const T* eta1, const T* phi1, const T* eta2, const T* phi2, std::size_t n, T* out, int n_threads) {
  parallel_for(n, n_threads, kValuesPerThread, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      const double de = static_cast<double>(eta1[i]) - static_cast<double>(eta2[i]);
      const double dp = wrap_phi(static_cast<double>(phi1[i]) - static_cast<double>(phi2[i]));
      out[i] = static_cast<T>(std::sqrt(de * de + dp * dp));
    }
  });
}

}  // namespace

std::size_t JaggedView::column_index(const std::string& name) const {
  for (std::size_t c = 0; c < columns_.size(); ++c)
    if (columns_[c].name == name) return c;
  std::string known;
  for (const auto& c : columns_) known += (known.empty() ? "" : ", ") + c.name;
  throw InputError("jagged array has no column \"" + name + "\" (columns: " + known + ")");
}

void JaggedView::validate() const {
  if (offsets_ == nullptr) throw InputError("jagged array: offsets pointer is null");
  // Offsets: non-negative and non-decreasing.
  with_offsets(*this, [&](auto* off) {
    using I = std::remove_const_t<std::remove_pointer_t<decltype(off)>>;
    if constexpr (std::is_signed_v<I>) {
      if (off[0] < 0) throw InputError("jagged array: offsets[0] = " + std::to_string(off[0]) + " is negative");
    }
    for (std::size_t e = 0; e < n_events_; ++e)
      if (off[e + 1] < off[e])
        throw InputError("jagged array: offsets decrease at event " + event_text(e) + " (offsets[" + std::to_string(e) +
                         "] = " + std::to_string(off[e]) + " > offsets[" + std::to_string(e + 1) +
                         "] = " + std::to_string(off[e + 1]) + ")");
  });
  // With no events nothing is read: only the offsets' sign and order matter.
  const std::size_t last = n_events_ == 0 ? 0 : offset(n_events_);
  for (const auto& c : columns_) {
    if (c.stride <= 0)
      throw InputError("jagged array column \"" + c.name + "\": stride " + std::to_string(c.stride) +
                       " must be positive");
    if (c.data == nullptr && c.size > 0)
      throw InputError("jagged array column \"" + c.name + "\": data pointer is null");
    if (last > c.size) {
      std::size_t e = 0;
      while (e < n_events_ && offset(e + 1) <= c.size) ++e;
      throw InputError("jagged array column \"" + c.name + "\" has " + std::to_string(c.size) +
                       " values but the offsets reach " + std::to_string(offset(e + 1)) + " at event " + event_text(e));
    }
  }
}

void pad(const JaggedView& view, std::size_t length, double fill, float* out, const PaddedLayout& layout,
         std::uint8_t* mask, int n_threads) {
  pad_impl(view, length, fill, out, layout, mask, n_threads);
}
void pad(const JaggedView& view, std::size_t length, double fill, double* out, const PaddedLayout& layout,
         std::uint8_t* mask, int n_threads) {
  pad_impl(view, length, fill, out, layout, mask, n_threads);
}

void top_k_indices(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, std::int64_t* index,
                   std::int64_t* cnt, int n_threads) {
  check_column(view, key_column, "key");
  const bool descending = order == SortOrder::Descending;
  with_offsets(view, [&](auto* off) {
    parallel_for(view.n_events(), n_threads, kEventsPerThread, [&](std::size_t e0, std::size_t e1) {
      SortScratch scratch;
      top_k_range(view, off, key_column, k, descending, e0, e1, index + e0 * k, cnt == nullptr ? nullptr : cnt + e0,
                  scratch);
    });
  });
}

void leading(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, double fill, float* out,
             const PaddedLayout& layout, std::uint8_t* mask, std::int64_t* index, int n_threads) {
  leading_impl(view, key_column, k, order, fill, out, layout, mask, index, n_threads);
}
void leading(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, double fill, double* out,
             const PaddedLayout& layout, std::uint8_t* mask, std::int64_t* index, int n_threads) {
  leading_impl(view, key_column, k, order, fill, out, layout, mask, index, n_threads);
}

void gather(const JaggedView& view, std::size_t col, const std::int64_t* index, const std::int64_t* cnt, std::size_t k,
            float* out, int n_threads) {
  gather_impl(view, col, index, cnt, k, out, n_threads);
}
void gather(const JaggedView& view, std::size_t col, const std::int64_t* index, const std::int64_t* cnt, std::size_t k,
            double* out, int n_threads) {
  gather_impl(view, col, index, cnt, k, out, n_threads);
}

void reduce(const JaggedView& view, std::size_t col, Reduction op, double empty_value, double* out, int n_threads) {
  check_column(view, col, "reduced");
  with_offsets(view, [&](auto* off) {
    with_column(view.column(col), [&](auto* data, std::ptrdiff_t stride) {
      parallel_for(view.n_events(), n_threads, kEventsPerThread * 4, [&](std::size_t e0, std::size_t e1) {
        for (std::size_t e = e0; e < e1; ++e) {
          const auto b = static_cast<std::size_t>(off[e]);
          const std::size_t n = static_cast<std::size_t>(off[e + 1]) - b;
          const auto* src = data + static_cast<std::ptrdiff_t>(b) * stride;
          auto at = [&](std::size_t j) { return static_cast<double>(src[static_cast<std::ptrdiff_t>(j) * stride]); };
          double r;
          if (op == Reduction::Sum || op == Reduction::Mean) {
            double sum = 0;
            for (std::size_t j = 0; j < n; ++j) sum += at(j);
            r = op == Reduction::Sum ? sum : (n == 0 ? empty_value : sum / static_cast<double>(n));
          } else if (op == Reduction::Max) {
            double m = -std::numeric_limits<double>::infinity();
            for (std::size_t j = 0; j < n; ++j) {
              const double x = at(j);
              m = x > m ? x : m;  // NaN never wins: skipped, as awkward does
            }
            r = n == 0 ? empty_value : m;
          } else {
            double m = std::numeric_limits<double>::infinity();
            for (std::size_t j = 0; j < n; ++j) {
              const double x = at(j);
              m = x < m ? x : m;
            }
            r = n == 0 ? empty_value : m;
          }
          out[e] = r;
        }
      });
    });
  });
}

void counts(const JaggedView& view, std::int64_t* out, int n_threads) {
  parallel_for(view.n_events(), n_threads, kEventsPerThread * 4, [&](std::size_t e0, std::size_t e1) {
    for (std::size_t e = e0; e < e1; ++e) out[e] = static_cast<std::int64_t>(view.count(e));
  });
}

void to_pt_eta_phi_m(const float* px, const float* py, const float* pz, const float* energy, std::size_t n, float* pt,
                     float* eta, float* phi, float* mass, int n_threads) {
  to_ptetaphim_impl(px, py, pz, energy, n, pt, eta, phi, mass, n_threads);
}
void to_pt_eta_phi_m(const double* px, const double* py, const double* pz, const double* energy, std::size_t n,
                     double* pt, double* eta, double* phi, double* mass, int n_threads) {
  to_ptetaphim_impl(px, py, pz, energy, n, pt, eta, phi, mass, n_threads);
}
void to_px_py_pz_e(const float* pt, const float* eta, const float* phi, const float* mass, std::size_t n, float* px,
                   float* py, float* pz, float* energy, int n_threads) {
  to_pxpypze_impl(pt, eta, phi, mass, n, px, py, pz, energy, n_threads);
}
void to_px_py_pz_e(const double* pt, const double* eta, const double* phi, const double* mass, std::size_t n,
                   double* px, double* py, double* pz, double* energy, int n_threads) {
  to_pxpypze_impl(pt, eta, phi, mass, n, px, py, pz, energy, n_threads);
}

double delta_phi(double phi1, double phi2) noexcept {
  // (d + pi) mod 2pi - pi with the sign of the divisor, as numpy's % (and `vector`) computes it.
  return wrap_phi(phi1 - phi2);
}

void delta_r(const float* eta1, const float* phi1, const float* eta2, const float* phi2, std::size_t n, float* out,
             int n_threads) {
  delta_r_impl(eta1, phi1, eta2, phi2, n, out, n_threads);
}
void delta_r(const double* eta1, const double* phi1, const double* eta2, const double* phi2, std::size_t n, double* out,
             int n_threads) {
  delta_r_impl(eta1, phi1, eta2, phi2, n, out, n_threads);
}

void min_delta_r(const JaggedView& a, std::size_t a_eta, std::size_t a_phi, const JaggedView& b, std::size_t b_eta,
                 std::size_t b_phi, double empty_value, double* min_dr, std::int64_t* index, int n_threads) {
  check_column(a, a_eta, "eta (first collection)");
  check_column(a, a_phi, "phi (first collection)");
  check_column(b, b_eta, "eta (second collection)");
  check_column(b, b_phi, "phi (second collection)");
  if (a.n_events() != b.n_events())
    throw InputError("min_delta_r: the collections have different numbers of events (" + std::to_string(a.n_events()) +
                     " and " + std::to_string(b.n_events()) + ")");
  const std::size_t base = a.content_begin();
  parallel_for(a.n_events(), n_threads, kEventsPerThread, [&](std::size_t e0, std::size_t e1) {
    std::vector<double> beta, bphi;
    for (std::size_t e = e0; e < e1; ++e) {
      const std::size_t nb = b.count(e), bb = b.begin(e);
      beta.resize(nb);
      bphi.resize(nb);
      for (std::size_t j = 0; j < nb; ++j) {
        beta[j] = b.value<double>(b_eta, bb + j);
        bphi[j] = b.value<double>(b_phi, bb + j);
      }
      for (std::size_t i = a.begin(e); i < a.end(e); ++i) {
        const double eta = a.value<double>(a_eta, i), phi = a.value<double>(a_phi, i);
        double best = std::numeric_limits<double>::infinity();
        std::int64_t best_j = -1;
        for (std::size_t j = 0; j < nb; ++j) {
          const double de = eta - beta[j], dp = wrap_phi(phi - bphi[j]);
          const double d2 = de * de + dp * dp;
          const bool better = d2 < best;
          best = better ? d2 : best;
          best_j = better ? static_cast<std::int64_t>(j) : best_j;
        }
        min_dr[i - base] = best_j < 0 ? empty_value : std::sqrt(best);
        if (index != nullptr) index[i - base] = best_j;
      }
    }
  });
}

}  // namespace hepinfer
