#pragma once
/// \file jagged.hpp
/// Jagged (variable-length per event) arrays and the kernels the models need on them:
/// top-k selection, padding to a fixed length with a mask, per-event reductions,
/// four-vector conversions and Delta R.
///
/// A JaggedView does not own memory. It reads an offsets array of n_events + 1
/// entries (int32, uint32 or int64, as awkward's ListOffsetArray and uproot give)
/// and one or several content columns (float32 or float64) that share it:
/// event e owns the content elements offsets[e] .. offsets[e+1]-1. The offsets need
/// not start at 0 (a sliced awkward array keeps its whole content buffer).
///
///     hepinfer::JaggedView jets(n_events, offsets, hepinfer::IndexType::Int64,
///                               {{"pt", pt, hepinfer::ValueType::Float32, 1, n_pt},
///                                {"eta", eta, hepinfer::ValueType::Float32, 1, n_eta}});
///     jets.validate();                     // throws hepinfer::InputError
///     for (std::size_t e = 0; e < jets.n_events(); ++e)
///       for (std::size_t i = jets.begin(e); i < jets.end(e); ++i) use(jets.value<double>(0, i));
///
/// All kernels are free functions that take a const JaggedView and write into caller
/// buffers; they are thread-safe and multi-threaded over events (`n_threads`: <= 0 uses
/// all hardware threads); results are identical for any n_threads.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"

namespace hepinfer {

/// Element type of an offsets array.
enum class IndexType : std::uint8_t { Int32, UInt32, Int64 };
/// Element type of a content column.
enum class ValueType : std::uint8_t { Float32, Float64 };

/// One content column of a jagged array (e.g. Jet_pt). Element i (an absolute index
/// into the content, as the offsets give) lives at data[i * stride].
struct JaggedColumn {
  std::string name;            ///< used in error messages ("pt", "Jet_pt", "column 2")
  const void* data = nullptr;  ///< first element of the content buffer
  ValueType dtype = ValueType::Float64;
  std::ptrdiff_t stride = 1;  ///< in elements, > 0 (1: contiguous; n_columns: interleaved)
  std::size_t size = 0;       ///< number of addressable elements
};

/// A non-owning view of a jagged array: n_events lists sharing one offsets array,
/// with N content columns. Cheap to copy. Call validate() before trusting it with
/// data from outside (every kernel below assumes a validated view).
class JaggedView {
 public:
  JaggedView() = default;
  /// `offsets` points at n_events + 1 entries of type `offsets_type`.
  JaggedView(std::size_t n_events, const void* offsets, IndexType offsets_type, std::vector<JaggedColumn> columns)
      : n_events_(n_events), offsets_(offsets), offsets_type_(offsets_type), columns_(std::move(columns)) {}

  std::size_t n_events() const noexcept { return n_events_; }
  std::size_t n_columns() const noexcept { return columns_.size(); }
  const JaggedColumn& column(std::size_t c) const { return columns_.at(c); }
  const std::vector<JaggedColumn>& columns() const noexcept { return columns_; }
  IndexType offsets_type() const noexcept { return offsets_type_; }
  const void* offsets() const noexcept { return offsets_; }
  /// Index of the column called `name`; throws InputError when there is none.
  std::size_t column_index(const std::string& name) const;

  /// offsets[j] as an unsigned index (j in 0..n_events). Valid after validate().
  std::size_t offset(std::size_t j) const noexcept {
    switch (offsets_type_) {
      case IndexType::Int32: return static_cast<std::size_t>(static_cast<const std::int32_t*>(offsets_)[j]);
      case IndexType::UInt32: return static_cast<std::size_t>(static_cast<const std::uint32_t*>(offsets_)[j]);
      case IndexType::Int64: break;
    }
    return static_cast<std::size_t>(static_cast<const std::int64_t*>(offsets_)[j]);
  }
  /// First content index of event e.
  std::size_t begin(std::size_t e) const noexcept { return offset(e); }
  /// One past the last content index of event e.
  std::size_t end(std::size_t e) const noexcept { return offset(e + 1); }
  /// Number of objects in event e.
  std::size_t count(std::size_t e) const noexcept { return offset(e + 1) - offset(e); }
  /// Content range used by all events: [begin(0), end(n_events-1)) (empty when n_events == 0).
  std::size_t content_begin() const noexcept { return n_events_ == 0 ? 0 : offset(0); }
  std::size_t content_end() const noexcept { return n_events_ == 0 ? 0 : offset(n_events_); }

  /// Content element i (absolute index) of column `col`, converted to T.
  template <class T>
  T value(std::size_t col, std::size_t i) const noexcept {
    const JaggedColumn& c = columns_[col];
    const auto k = static_cast<std::ptrdiff_t>(i) * c.stride;
    if (c.dtype == ValueType::Float32) return static_cast<T>(static_cast<const float*>(c.data)[k]);
    return static_cast<T>(static_cast<const double*>(c.data)[k]);
  }

  /// Checks the view: non-null pointers, offsets non-negative and non-decreasing,
  /// last offset within every column's size, strides positive. Throws InputError
  /// naming the column and the offending event index.
  void validate() const;

 private:
  std::size_t n_events_ = 0;
  const void* offsets_ = nullptr;
  IndexType offsets_type_ = IndexType::Int64;
  std::vector<JaggedColumn> columns_;
};

/// Layout of a dense padded output: element (event e, slot j, column c) lives at
/// out[e * event_stride + j * slot_stride + c * column_stride] (in elements).
/// (n_events, length, n_columns) C order: {length * n_columns, n_columns, 1};
/// one (n_events, length) array per column, stacked: {length, 1, n_events * length}.
struct PaddedLayout {
  std::ptrdiff_t event_stride = 0;
  std::ptrdiff_t slot_stride = 0;
  std::ptrdiff_t column_stride = 0;
};

/// Sorting direction of top_k / leading. Sorting is stable (ties keep their original
/// order) and NaN keys always go last, in either direction.
enum class SortOrder : std::uint8_t { Descending, Ascending };

/// Pads (or truncates) every event of every column of `view` to `length` slots:
/// slot j of event e is the j-th object when j < count(e), `fill` otherwise.
/// `mask` (n_events * length, may be null) receives 1 for real objects, 0 for padding.
void pad(const JaggedView& view, std::size_t length, double fill, float* out, const PaddedLayout& layout,
         std::uint8_t* mask, int n_threads = 1);
void pad(const JaggedView& view, std::size_t length, double fill, double* out, const PaddedLayout& layout,
         std::uint8_t* mask, int n_threads = 1);

/// Per-event order of objects by column `key_column` (stable, NaN last), keeping at
/// most k per event. Writes `counts` (n_events: min(count(e), k)) and `index`
/// (n_events * k, row-major; local indices 0..count(e)-1 within the event, -1 in unused slots).
void top_k_indices(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, std::int64_t* index,
                   std::int64_t* counts, int n_threads = 1);

/// The common feature build in one pass: the k leading objects by `key_column`,
/// every column of `view`, padded with `fill`, as a dense array in `layout`, plus
/// `mask` (n_events * k) and optionally `index` (n_events * k local indices, -1 for
/// padding; may be null).
void leading(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, double fill, float* out,
             const PaddedLayout& layout, std::uint8_t* mask, std::int64_t* index, int n_threads = 1);
void leading(const JaggedView& view, std::size_t key_column, std::size_t k, SortOrder order, double fill, double* out,
             const PaddedLayout& layout, std::uint8_t* mask, std::int64_t* index, int n_threads = 1);

/// Gathers a jagged selection: given `counts` and `index` from top_k_indices (k slots
/// per event), writes column `col` of the selected objects contiguously (sum(counts)
/// values, events in order) into out.
void gather(const JaggedView& view, std::size_t col, const std::int64_t* index, const std::int64_t* counts,
            std::size_t k, float* out, int n_threads = 1);
void gather(const JaggedView& view, std::size_t col, const std::int64_t* index, const std::int64_t* counts,
            std::size_t k, double* out, int n_threads = 1);

/// Per-event reduction of one column.
enum class Reduction : std::uint8_t {
  Sum,   ///< sum (0 for an empty event), accumulated in double
  Max,   ///< largest value (NaN values are skipped, as awkward does); `empty_value` for empty events
  Min,   ///< smallest value (NaN values skipped); `empty_value` for empty events
  Mean,  ///< sum / count; `empty_value` for empty events
};
/// out[e] = reduction of column `col` over event e; `empty_value` for events
/// without objects (Max, Min, Mean; Sum gives 0).
void reduce(const JaggedView& view, std::size_t col, Reduction op, double empty_value, double* out, int n_threads = 1);
/// out[e] = count(e).
void counts(const JaggedView& view, std::int64_t* out, int n_threads = 1);

/// Four-vector conversions, elementwise over n values (flat arrays, or the content of
/// jagged arrays). Sums of squares (and so m2 = E^2 - p^2) are formed in double for both
/// precisions; sin/cos/sinh/asinh/atan2 run in the arrays' precision. Conventions follow
/// the `vector` package:
/// pt = hypot(px, py); phi = atan2(py, px); eta = asinh(pz / pt) (so +-inf when pt == 0
/// and pz != 0, NaN when pt == pz == 0); m = sign(m2) * sqrt(|m2|) with m2 = E^2 - p^2.
void to_pt_eta_phi_m(const float* px, const float* py, const float* pz, const float* energy, std::size_t n, float* pt,
                     float* eta, float* phi, float* mass, int n_threads = 1);
void to_pt_eta_phi_m(const double* px, const double* py, const double* pz, const double* energy, std::size_t n,
                     double* pt, double* eta, double* phi, double* mass, int n_threads = 1);
/// px = pt cos(phi), py = pt sin(phi), pz = pt sinh(eta), E = sqrt(max(p^2 + m|m|, 0))
/// (a negative mass stands for a negative m2, as in `vector`).
void to_px_py_pz_e(const float* pt, const float* eta, const float* phi, const float* mass, std::size_t n, float* px,
                   float* py, float* pz, float* energy, int n_threads = 1);
void to_px_py_pz_e(const double* pt, const double* eta, const double* phi, const double* mass, std::size_t n,
                   double* px, double* py, double* pz, double* energy, int n_threads = 1);

/// phi1 - phi2 wrapped into [-pi, pi): (d + pi) mod 2 pi - pi, bit for bit as numpy's
/// `(d + np.pi) % (2 * np.pi) - np.pi` (the `vector` package's formula).
double delta_phi(double phi1, double phi2) noexcept;
/// Elementwise Delta R = sqrt(Delta eta^2 + Delta phi^2) of aligned arrays (n values).
void delta_r(const float* eta1, const float* phi1, const float* eta2, const float* phi2, std::size_t n, float* out,
             int n_threads = 1);
void delta_r(const double* eta1, const double* phi1, const double* eta2, const double* phi2, std::size_t n, double* out,
             int n_threads = 1);

/// For each object of `a` (per event), the smallest Delta R to an object of `b` in the
/// same event and that object's local index. a and b must have the same n_events;
/// eta and phi are column indices in each view. Writes, per object of a in content order
/// (a.content_end() - a.content_begin() values; object i of a goes to i - a.content_begin()):
/// min_dr (`empty_value` and index -1 when the event has no b object, or only NaN
/// distances). Ties keep the first b object; NaN distances are skipped. `index` may be null.
void min_delta_r(const JaggedView& a, std::size_t a_eta, std::size_t a_phi, const JaggedView& b, std::size_t b_eta,
                 std::size_t b_phi, double empty_value, double* min_dr, std::int64_t* index, int n_threads = 1);

}  // namespace hepinfer
