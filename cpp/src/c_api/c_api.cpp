// The C interface (hepinfer_c.h): opaque handles around the C++ objects, every call wrapped
// so that no exception crosses `extern "C"`, a per-thread last-error string.
#include "hepinfer/hepinfer_c.h"

#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "hepinfer/errors.hpp"
#include "hepinfer/forest.hpp"
#include "hepinfer/kfold.hpp"

struct hepinfer_forest {
  hepinfer::Forest forest;
};

struct hepinfer_kfold {
  hepinfer::KFold kfold;
};

namespace {

thread_local std::string last_error;

int fail(int status, const char* what) noexcept {
  try {
    last_error = what;
  } catch (...) {  // no memory for the message: keep whatever was there
  }
  return status;
}

/// Runs `body` and turns any exception into a status code and the thread's last error.
template <typename F>
int guarded(const char* function, F&& body) noexcept {
  try {
    body();
    return HEPINFER_OK;
  } catch (const hepinfer::InputError& e) {
    return fail(HEPINFER_ERROR_INPUT, e.what());
  } catch (const hepinfer::ModelFormatError& e) {
    return fail(HEPINFER_ERROR_MODEL_FORMAT, e.what());
  } catch (const hepinfer::DeviceError& e) {
    return fail(HEPINFER_ERROR_DEVICE, e.what());
  } catch (const std::bad_alloc&) {
    return fail(HEPINFER_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    try {
      last_error = std::string(function) + ": " + e.what();
    } catch (...) {
    }
    return HEPINFER_ERROR_INTERNAL;
  } catch (...) {
    try {
      last_error = std::string(function) + ": unknown exception";
    } catch (...) {
    }
    return HEPINFER_ERROR_INTERNAL;
  }
}

int null_argument(const char* function, const char* argument) noexcept {
  try {
    last_error = std::string(function) + ": argument `" + argument + "` is NULL";
  } catch (...) {
  }
  return HEPINFER_ERROR_NULL_ARGUMENT;
}

// `function` names the C function in the message: inside the templates it is their argument.
#define HEPINFER_REQUIRE(ptr) \
  if ((ptr) == nullptr) return null_argument(function, #ptr)

hepinfer::Output parse_output(int output) {
  if (output == HEPINFER_OUTPUT_PROBABILITY) return hepinfer::Output::Probability;
  if (output == HEPINFER_OUTPUT_MARGIN) return hepinfer::Output::Margin;
  throw hepinfer::InputError("output must be HEPINFER_OUTPUT_PROBABILITY (0) or HEPINFER_OUTPUT_MARGIN (1), not " +
                             std::to_string(output));
}

hepinfer::LoadOptions parse_options(const char* format, const char* tmva_cut_op) {
  hepinfer::LoadOptions opt;
  if (format != nullptr) opt.format = format;
  if (tmva_cut_op != nullptr) {
    opt.tmva_cut_op = hepinfer::parse_tmva_cut_op(tmva_cut_op);
  }
  return opt;
}

void check_features(const hepinfer::Forest& f, std::size_t n_features) {
  if (n_features != static_cast<std::size_t>(f.n_features()))
    throw hepinfer::InputError("rows have " + std::to_string(n_features) + " features but the model expects " +
                               std::to_string(f.n_features()));
}

void check_room(std::size_t needed, std::size_t out_size) {
  if (out_size < needed)
    throw hepinfer::InputError("out has room for " + std::to_string(out_size) + " values, " + std::to_string(needed) +
                               " are needed");
}

std::size_t checked_product(std::size_t a, std::size_t b) {
  if (a != 0 && b > static_cast<std::size_t>(-1) / a) throw hepinfer::InputError("n_rows is too large");
  return a * b;
}

template <typename T>
int predict_rows(const char* function, const hepinfer_forest* forest, const T* rows, std::size_t n_rows,
                 std::size_t n_features, int output, int n_threads, double* out, std::size_t out_size) noexcept {
  HEPINFER_REQUIRE(forest);
  if (n_rows > 0) {
    HEPINFER_REQUIRE(rows);
    HEPINFER_REQUIRE(out);
  }
  return guarded(function, [&] {
    const hepinfer::Output o = parse_output(output);
    check_features(forest->forest, n_features);
    check_room(checked_product(n_rows, static_cast<std::size_t>(forest->forest.n_outputs(o))), out_size);
    if (n_rows > 0) forest->forest.predict(rows, n_rows, out, o, n_threads);
  });
}

template <typename T>
int predict_one(const char* function, const hepinfer_forest* forest, const T* row, std::size_t n_features, int output,
                double* out, std::size_t out_size) noexcept {
  HEPINFER_REQUIRE(forest);
  HEPINFER_REQUIRE(row);
  HEPINFER_REQUIRE(out);
  return guarded(function, [&] {
    const hepinfer::Output o = parse_output(output);
    check_features(forest->forest, n_features);
    check_room(static_cast<std::size_t>(forest->forest.n_outputs(o)), out_size);
    forest->forest.predict_one(row, out, o);
  });
}

template <typename T>
int predict_leaf(const char* function, const hepinfer_forest* forest, const T* rows, std::size_t n_rows,
                 std::size_t n_features, int n_threads, std::int32_t* out, std::size_t out_size) noexcept {
  HEPINFER_REQUIRE(forest);
  if (n_rows > 0) {
    HEPINFER_REQUIRE(rows);
    HEPINFER_REQUIRE(out);
  }
  return guarded(function, [&] {
    check_features(forest->forest, n_features);
    check_room(checked_product(n_rows, forest->forest.n_trees()), out_size);
    const hepinfer::RowLayout layout{n_rows, static_cast<std::ptrdiff_t>(n_features), 1};
    if (n_rows > 0) forest->forest.predict_leaf(rows, layout, out, n_threads);
  });
}

template <typename T>
int kfold_predict(const char* function, const hepinfer_kfold* kfold, const T* rows, std::size_t n_rows,
                  std::size_t n_features, const std::int64_t* event_numbers, int output, int n_threads, double* out,
                  std::size_t out_size) noexcept {
  HEPINFER_REQUIRE(kfold);
  if (n_rows > 0) {
    HEPINFER_REQUIRE(rows);
    HEPINFER_REQUIRE(event_numbers);
    HEPINFER_REQUIRE(out);
  }
  return guarded(function, [&] {
    const hepinfer::Output o = parse_output(output);
    if (n_features != kfold->kfold.n_features())
      throw hepinfer::InputError("rows have " + std::to_string(n_features) + " features but the k-fold model expects " +
                                 std::to_string(kfold->kfold.n_features()));
    check_room(checked_product(n_rows, kfold->kfold.n_outputs(o)), out_size);
    if (n_rows > 0) kfold->kfold.predict(rows, n_rows, event_numbers, out, o, n_threads);
  });
}

}  // namespace

extern "C" {

const char* hepinfer_last_error(void) { return last_error.c_str(); }

const char* hepinfer_version(void) { return HEPINFER_VERSION; }

const char* hepinfer_status_name(int status) {
  switch (status) {
    case HEPINFER_OK: return "ok";
    case HEPINFER_ERROR_NULL_ARGUMENT: return "null argument";
    case HEPINFER_ERROR_INPUT: return "input error";
    case HEPINFER_ERROR_MODEL_FORMAT: return "model format error";
    case HEPINFER_ERROR_OUT_OF_MEMORY: return "out of memory";
    case HEPINFER_ERROR_DEVICE: return "device error";
    case HEPINFER_ERROR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

int hepinfer_forest_load(const char* path, const char* format, const char* tmva_cut_op, hepinfer_forest** forest) {
  const char* function = __func__;
  HEPINFER_REQUIRE(path);
  HEPINFER_REQUIRE(forest);
  return guarded(function, [&] {
    const hepinfer::LoadOptions opt = parse_options(format, tmva_cut_op);
    *forest = new hepinfer_forest{hepinfer::Forest::load(path, opt)};
  });
}

int hepinfer_forest_load_from_memory(const void* data, size_t size, const char* format, const char* tmva_cut_op,
                                     hepinfer_forest** forest) {
  const char* function = __func__;
  HEPINFER_REQUIRE(data);
  HEPINFER_REQUIRE(forest);
  return guarded(function, [&] {
    const hepinfer::LoadOptions opt = parse_options(format, tmva_cut_op);
    const std::string content(static_cast<const char*>(data), size);
    *forest = new hepinfer_forest{hepinfer::Forest::load_from_memory(content, opt)};
  });
}

void hepinfer_forest_free(hepinfer_forest* forest) { delete forest; }

int hepinfer_forest_n_features(const hepinfer_forest* forest, int32_t* n_features) {
  const char* function = __func__;
  HEPINFER_REQUIRE(forest);
  HEPINFER_REQUIRE(n_features);
  *n_features = forest->forest.n_features();
  return HEPINFER_OK;
}

int hepinfer_forest_n_outputs(const hepinfer_forest* forest, int output, int32_t* n_outputs) {
  const char* function = __func__;
  HEPINFER_REQUIRE(forest);
  HEPINFER_REQUIRE(n_outputs);
  return guarded(function, [&] { *n_outputs = forest->forest.n_outputs(parse_output(output)); });
}

int hepinfer_forest_n_trees(const hepinfer_forest* forest, size_t* n_trees) {
  const char* function = __func__;
  HEPINFER_REQUIRE(forest);
  HEPINFER_REQUIRE(n_trees);
  *n_trees = forest->forest.n_trees();
  return HEPINFER_OK;
}

int hepinfer_forest_predict_float(const hepinfer_forest* forest, const float* rows, size_t n_rows, size_t n_features,
                                  int output, int n_threads, double* out, size_t out_size) {
  return predict_rows(__func__, forest, rows, n_rows, n_features, output, n_threads, out, out_size);
}

int hepinfer_forest_predict_double(const hepinfer_forest* forest, const double* rows, size_t n_rows, size_t n_features,
                                   int output, int n_threads, double* out, size_t out_size) {
  return predict_rows(__func__, forest, rows, n_rows, n_features, output, n_threads, out, out_size);
}

int hepinfer_forest_predict_one_float(const hepinfer_forest* forest, const float* row, size_t n_features, int output,
                                      double* out, size_t out_size) {
  return predict_one(__func__, forest, row, n_features, output, out, out_size);
}

int hepinfer_forest_predict_one_double(const hepinfer_forest* forest, const double* row, size_t n_features, int output,
                                       double* out, size_t out_size) {
  return predict_one(__func__, forest, row, n_features, output, out, out_size);
}

int hepinfer_forest_predict_leaf_float(const hepinfer_forest* forest, const float* rows, size_t n_rows,
                                       size_t n_features, int n_threads, int32_t* out, size_t out_size) {
  return predict_leaf(__func__, forest, rows, n_rows, n_features, n_threads, out, out_size);
}

int hepinfer_forest_predict_leaf_double(const hepinfer_forest* forest, const double* rows, size_t n_rows,
                                        size_t n_features, int n_threads, int32_t* out, size_t out_size) {
  return predict_leaf(__func__, forest, rows, n_rows, n_features, n_threads, out, out_size);
}

int hepinfer_kfold_load(const char* path, hepinfer_kfold** kfold) {
  const char* function = __func__;
  HEPINFER_REQUIRE(path);
  HEPINFER_REQUIRE(kfold);
  return guarded(function, [&] { *kfold = new hepinfer_kfold{hepinfer::KFold::load(path)}; });
}

void hepinfer_kfold_free(hepinfer_kfold* kfold) { delete kfold; }

int hepinfer_kfold_n_folds(const hepinfer_kfold* kfold, int32_t* n_folds) {
  const char* function = __func__;
  HEPINFER_REQUIRE(kfold);
  HEPINFER_REQUIRE(n_folds);
  *n_folds = kfold->kfold.n_folds();
  return HEPINFER_OK;
}

int hepinfer_kfold_n_features(const hepinfer_kfold* kfold, int32_t* n_features) {
  const char* function = __func__;
  HEPINFER_REQUIRE(kfold);
  HEPINFER_REQUIRE(n_features);
  *n_features = static_cast<int32_t>(kfold->kfold.n_features());
  return HEPINFER_OK;
}

int hepinfer_kfold_n_outputs(const hepinfer_kfold* kfold, int output, int32_t* n_outputs) {
  const char* function = __func__;
  HEPINFER_REQUIRE(kfold);
  HEPINFER_REQUIRE(n_outputs);
  return guarded(function, [&] { *n_outputs = static_cast<int32_t>(kfold->kfold.n_outputs(parse_output(output))); });
}

int hepinfer_kfold_fold_of(const hepinfer_kfold* kfold, int64_t event_number, int32_t* fold) {
  const char* function = __func__;
  HEPINFER_REQUIRE(kfold);
  HEPINFER_REQUIRE(fold);
  *fold = kfold->kfold.fold_of(static_cast<std::int64_t>(event_number));
  return HEPINFER_OK;
}

int hepinfer_kfold_predict_float(const hepinfer_kfold* kfold, const float* rows, size_t n_rows, size_t n_features,
                                 const int64_t* event_numbers, int output, int n_threads, double* out,
                                 size_t out_size) {
  return kfold_predict(__func__, kfold, rows, n_rows, n_features, event_numbers, output, n_threads, out, out_size);
}

int hepinfer_kfold_predict_double(const hepinfer_kfold* kfold, const double* rows, size_t n_rows, size_t n_features,
                                  const int64_t* event_numbers, int output, int n_threads, double* out,
                                  size_t out_size) {
  return kfold_predict(__func__, kfold, rows, n_rows, n_features, event_numbers, output, n_threads, out, out_size);
}

}  // extern "C"
