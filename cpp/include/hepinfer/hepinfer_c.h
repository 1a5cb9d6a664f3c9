#ifndef HEPINFER_HEPINFER_C_H
#define HEPINFER_HEPINFER_C_H
/** \file hepinfer_c.h
 * The C interface of hepinfer, for C programs, Fortran (ISO_C_BINDING), Julia, Go, ...
 *
 *     hepinfer_forest* forest = NULL;
 *     if (hepinfer_forest_load("model.json", NULL, NULL, &forest) != HEPINFER_OK) {
 *       fprintf(stderr, "%s\n", hepinfer_last_error());
 *       return 1;
 *     }
 *     int32_t n_features, n_outputs;
 *     hepinfer_forest_n_features(forest, &n_features);
 *     hepinfer_forest_n_outputs(forest, HEPINFER_OUTPUT_PROBABILITY, &n_outputs);
 *     double score;
 *     hepinfer_forest_predict_one_float(forest, row, n_features, HEPINFER_OUTPUT_PROBABILITY, &score, 1);
 *     hepinfer_forest_free(forest);
 *
 * Conventions:
 *  - Every function except the *_free functions and the string getters returns a
 *    hepinfer_status; HEPINFER_OK (0) means success. On failure nothing is written to the
 *    output arguments and hepinfer_last_error() describes what went wrong.
 *  - No C++ exception crosses this interface (std::bad_alloc included: HEPINFER_ERROR_OUT_OF_MEMORY).
 *  - Every pointer argument is checked: NULL gives HEPINFER_ERROR_NULL_ARGUMENT.
 *  - Sizes of caller buffers are passed explicitly and checked before anything is written
 *    (HEPINFER_ERROR_INPUT when too small or when the feature count is wrong).
 *  - A handle is immutable after it was loaded: the predict functions may be called on one
 *    handle from many threads at once. Free it exactly once, after the last use.
 *  - Tree ensembles are `hepinfer_forest` and use the `hepinfer_forest_*` functions; other
 *    model kinds get their own opaque handle and prefix (e.g. `hepinfer_model_*` for neural
 *    networks) with the same status codes, error string and buffer conventions.
 */

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(HEPINFER_BUILDING_SHARED)
#define HEPINFER_C_API __declspec(dllexport)
#elif defined(__GNUC__)
#define HEPINFER_C_API __attribute__((visibility("default")))
#else
#define HEPINFER_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes returned by every function. */
typedef enum hepinfer_status {
  HEPINFER_OK = 0,
  HEPINFER_ERROR_NULL_ARGUMENT = 1, /**< a required pointer argument was NULL */
  HEPINFER_ERROR_INPUT = 2,         /**< wrong sizes, feature count, option value */
  HEPINFER_ERROR_MODEL_FORMAT = 3,  /**< the model file cannot be opened, is malformed or unsupported */
  HEPINFER_ERROR_OUT_OF_MEMORY = 4, /**< an allocation failed */
  HEPINFER_ERROR_DEVICE = 5,        /**< a requested device is not available */
  HEPINFER_ERROR_INTERNAL = 6       /**< any other failure (a bug: please report it) */
} hepinfer_status;

/** What the predict functions return. */
typedef enum hepinfer_output {
  HEPINFER_OUTPUT_PROBABILITY = 0, /**< the library's own output (xgboost predict, lightgbm predict, TMVA MVA value) */
  HEPINFER_OUTPUT_MARGIN = 1       /**< the raw sum of leaves plus base margin */
} hepinfer_output;

/** An immutable tree ensemble (XGBoost, LightGBM or TMVA BDT). */
typedef struct hepinfer_forest hepinfer_forest;
/** An immutable k-fold bundle (hepinfer/kfold.hpp): k models, each event scored by the one of
 * its fold, event_number mod k. */
typedef struct hepinfer_kfold hepinfer_kfold;

/** The message of the last failed call on this thread ("" if none failed yet). The pointer
 * stays valid until the next failing hepinfer call on the same thread. */
HEPINFER_C_API const char* hepinfer_last_error(void);
/** The library version, e.g. "0.1.0". */
HEPINFER_C_API const char* hepinfer_version(void);
/** A short name for a status code ("ok", "input error", ...). */
HEPINFER_C_API const char* hepinfer_status_name(int status);

/** Load a forest from a file.
 * `format`: NULL or "auto" (detected from the content), "xgboost-json", "xgboost-ubj",
 * "lightgbm", "tmva". `tmva_cut_op`: NULL or ">=" (ROOT >= 6.18), ">" (ROOT <= 6.16), "auto".
 * On success *forest receives a new handle to release with hepinfer_forest_free. */
HEPINFER_C_API int hepinfer_forest_load(const char* path, const char* format, const char* tmva_cut_op,
                                        hepinfer_forest** forest);
/** Load a forest from the content of a model file held in memory (`size` bytes). */
HEPINFER_C_API int hepinfer_forest_load_from_memory(const void* data, size_t size, const char* format,
                                                    const char* tmva_cut_op, hepinfer_forest** forest);
/** Release a handle (NULL is allowed and does nothing). */
HEPINFER_C_API void hepinfer_forest_free(hepinfer_forest* forest);

/** Number of input features each row must have. */
HEPINFER_C_API int hepinfer_forest_n_features(const hepinfer_forest* forest, int32_t* n_features);
/** Number of values per row the predict functions write for `output` (a hepinfer_output). */
HEPINFER_C_API int hepinfer_forest_n_outputs(const hepinfer_forest* forest, int output, int32_t* n_outputs);
/** Number of trees (the columns of the leaf-index output). */
HEPINFER_C_API int hepinfer_forest_n_trees(const hepinfer_forest* forest, size_t* n_trees);

/** Evaluate `n_rows` rows of `n_features` contiguous values each (row-major).
 * `out` has room for `out_size` doubles and receives n_rows * n_outputs values, row-major.
 * `n_threads` <= 0 uses every hardware thread; results do not depend on it. */
HEPINFER_C_API int hepinfer_forest_predict_float(const hepinfer_forest* forest, const float* rows, size_t n_rows,
                                                 size_t n_features, int output, int n_threads, double* out,
                                                 size_t out_size);
HEPINFER_C_API int hepinfer_forest_predict_double(const hepinfer_forest* forest, const double* rows, size_t n_rows,
                                                  size_t n_features, int output, int n_threads, double* out,
                                                  size_t out_size);
/** One event: `row` holds n_features values; `out` receives n_outputs values. Allocates
 * nothing after the first call on a thread (the low-latency path). */
HEPINFER_C_API int hepinfer_forest_predict_one_float(const hepinfer_forest* forest, const float* row, size_t n_features,
                                                     int output, double* out, size_t out_size);
HEPINFER_C_API int hepinfer_forest_predict_one_double(const hepinfer_forest* forest, const double* row,
                                                      size_t n_features, int output, double* out, size_t out_size);
/** The leaf each row reaches in each tree (the source library's leaf numbering, as
 * xgboost's pred_leaf): n_rows * n_trees values in `out` (room for `out_size`). */
HEPINFER_C_API int hepinfer_forest_predict_leaf_float(const hepinfer_forest* forest, const float* rows, size_t n_rows,
                                                      size_t n_features, int n_threads, int32_t* out, size_t out_size);
HEPINFER_C_API int hepinfer_forest_predict_leaf_double(const hepinfer_forest* forest, const double* rows, size_t n_rows,
                                                       size_t n_features, int n_threads, int32_t* out, size_t out_size);

/** Load a k-fold bundle: a folder holding kfold.json, or the manifest file itself (see
 * hepinfer/kfold.hpp for its format). On success *kfold receives a new handle to release with
 * hepinfer_kfold_free. */
HEPINFER_C_API int hepinfer_kfold_load(const char* path, hepinfer_kfold** kfold);
/** Release a handle (NULL is allowed and does nothing). */
HEPINFER_C_API void hepinfer_kfold_free(hepinfer_kfold* kfold);
/** Number of folds (and member models). */
HEPINFER_C_API int hepinfer_kfold_n_folds(const hepinfer_kfold* kfold, int32_t* n_folds);
/** Number of input features each row must have. */
HEPINFER_C_API int hepinfer_kfold_n_features(const hepinfer_kfold* kfold, int32_t* n_features);
/** Number of values per row hepinfer_kfold_predict_* write for `output` (forest members; networks
 * give their output whatever `output` is). */
HEPINFER_C_API int hepinfer_kfold_n_outputs(const hepinfer_kfold* kfold, int output, int32_t* n_outputs);
/** The fold of an event: event_number mod n_folds, in [0, n_folds). */
HEPINFER_C_API int hepinfer_kfold_fold_of(const hepinfer_kfold* kfold, int64_t event_number, int32_t* fold);
/** Evaluate `n_rows` rows of `n_features` values (row-major), row i with the member of the fold
 * of event_numbers[i]; `out` (room for `out_size` doubles) receives n_rows * n_outputs values. */
HEPINFER_C_API int hepinfer_kfold_predict_float(const hepinfer_kfold* kfold, const float* rows, size_t n_rows,
                                                size_t n_features, const int64_t* event_numbers, int output,
                                                int n_threads, double* out, size_t out_size);
HEPINFER_C_API int hepinfer_kfold_predict_double(const hepinfer_kfold* kfold, const double* rows, size_t n_rows,
                                                 size_t n_features, const int64_t* event_numbers, int output,
                                                 int n_threads, double* out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* HEPINFER_HEPINFER_C_H */
