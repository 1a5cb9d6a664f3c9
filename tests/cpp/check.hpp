#pragma once
// A minimal test harness: CHECK records failures and continues; main returns non-zero if any failed.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace check {
inline int& failures() {
  static int n = 0;
  return n;
}
inline std::vector<std::pair<std::string, std::function<void()>>>& registry() {
  static std::vector<std::pair<std::string, std::function<void()>>> r;
  return r;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { registry().emplace_back(name, std::move(fn)); }
};
inline int run_all() {
  int failed_cases = 0;
  for (auto& [name, fn] : registry()) {
    const int before = failures();
    try {
      fn();
    } catch (const std::exception& e) {
      std::printf("  unexpected exception: %s\n", e.what());
      ++failures();
    }
    const bool ok = failures() == before;
    failed_cases += !ok;
    std::printf("[%s] %s\n", ok ? " OK " : "FAIL", name.c_str());
  }
  std::printf("%zu passed, %d failed\n", registry().size() - static_cast<std::size_t>(failed_cases), failed_cases);
  return failed_cases == 0 ? 0 : 1;
}
}  // namespace check

#define TEST_CASE(name)                                  \
  static void name();                                    \
  static check::Register name##_registered(#name, name); \
  static void name()

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++check::failures();                                                   \
    }                                                                        \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                   \
  do {                                                                                          \
    const double va_ = (a), vb_ = (b);                                                          \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                                     \
      std::printf("  %s:%d: %s = %.17g vs %s = %.17g\n", __FILE__, __LINE__, #a, va_, #b, vb_); \
      ++check::failures();                                                                      \
    }                                                                                           \
  } while (0)

#define CHECK_THROWS(expr, Type, fragment)                                                                      \
  do {                                                                                                          \
    bool thrown_ = false;                                                                                       \
    try {                                                                                                       \
      (void)(expr);                                                                                             \
    } catch (const Type& e_) {                                                                                  \
      thrown_ = std::string(e_.what()).find(fragment) != std::string::npos;                                     \
      if (!thrown_) std::printf("  %s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__, e_.what(), fragment); \
    }                                                                                                           \
    if (!thrown_) {                                                                                             \
      std::printf("  %s:%d: %s did not throw %s\n", __FILE__, __LINE__, #expr, #Type);                          \
      ++check::failures();                                                                                      \
    }                                                                                                           \
  } while (0)
