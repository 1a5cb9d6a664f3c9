#pragma once
// Shared helpers of the libFuzzer harnesses in tests/fuzz (see .ci/fuzz).
//
// Contract of every harness: the fuzz input is the content of a model file. Loading may throw
// hepinfer::Error subclasses (ModelFormatError for a bad file; InputError from a predict whose
// inputs a weird-but-accepted model cannot take); nothing else may escape: std::bad_alloc,
// std::length_error, std::out_of_range, an ASan/UBSan report, a crash, a hang or an RSS over
// -rss_limit_mb are findings. When a model loads, it is evaluated on a few rows whose values
// (finite numbers, 0, -0, +-inf, NaN, huge and tiny values) are drawn from a generator seeded
// by a hash of the input, so a given input always replays the same way.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "hepinfer/errors.hpp"

namespace fuzz {

/// FNV-1a of the input bytes: the seed of the row values.
inline std::uint64_t hash_bytes(const std::uint8_t* data, std::size_t size) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/// splitmix64: small, deterministic, good enough for test values.
class Values {
 public:
  explicit Values(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// A feature value: mostly ordinary numbers, sometimes the special ones trees and
  /// networks must handle (missing = NaN, infinities, signed zero, extremes).
  double value() {
    const std::uint64_t r = next();
    const double u = static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
    switch (r % 16) {
      case 0: return std::numeric_limits<double>::quiet_NaN();
      case 1: return std::numeric_limits<double>::infinity();
      case 2: return -std::numeric_limits<double>::infinity();
      case 3: return 0.0;
      case 4: return -0.0;
      case 5: return static_cast<double>(static_cast<std::int64_t>(r >> 60) - 8);  // small integers (categories)
      case 6: return (u - 0.5) * 1e30;
      case 7: return (u - 0.5) * 1e-30;
      case 8: return std::numeric_limits<float>::max();
      case 9: return -std::numeric_limits<float>::denorm_min();
      default: return (u - 0.5) * 20.0;
    }
  }

 private:
  std::uint64_t state_;
};

/// Largest number of row values a harness evaluates (a model may declare any width; the
/// harness just does not evaluate absurdly wide ones, it does not call that a finding).
constexpr std::size_t kMaxValues = std::size_t{1} << 20;

/// Runs `body`, swallowing hepinfer::Error (the expected rejections); any other exception is
/// reported and aborts, which libFuzzer records as a crash with the input that caused it.
template <class Body>
void expect_only_hepinfer_errors(const char* what, Body&& body) {
  try {
    body();
  } catch (const hepinfer::Error&) {
    // expected: the file was rejected, or an accepted model rejected an input
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FUZZ FINDING: %s threw a non-hepinfer exception: %s\n", what, e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "FUZZ FINDING: %s threw a non-std exception\n", what);
    std::abort();
  }
}

}  // namespace fuzz
