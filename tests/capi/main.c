/* capi_test MODEL ROWS.csv: evaluates a model through hepinfer's C interface and prints
 *   info <n_features> <n_outputs> <n_margins> <n_trees>
 *   batch <values of a row, comma-separated>        (predict_double, probability)
 *   margin <values>                                 (predict_float, margin)
 *   one <values>                                    (predict_one_double)
 *   onef <values>                                   (predict_one_float)
 *   leaf <leaf indices>                             (predict_leaf_double)
 *   error <status> <message>                        (the error paths it provokes)
 *   checks ok                                       (every error path gave the expected status)
 * Pure C99: this file is compiled as C. */
#include <hepinfer/hepinfer_c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void expect(int got, int want, const char* what) {
  printf("error %d %s\n", got, got == HEPINFER_OK ? "" : hepinfer_last_error());
  if (got != want) {
    fprintf(stderr, "%s: expected status %d (%s), got %d (%s): %s\n", what, want, hepinfer_status_name(want), got,
            hepinfer_status_name(got), hepinfer_last_error());
    ++failures;
  }
}

static double* read_rows(const char* path, size_t n_features, size_t* n_rows) {
  FILE* f = fopen(path, "r");
  size_t cap = 64, n = 0;
  double* rows;
  double v;
  if (f == NULL) return NULL;
  rows = (double*)malloc(cap * sizeof(double));
  while (rows != NULL && fscanf(f, " %lf", &v) == 1) {
    if (n == cap) {
      double* grown = (double*)realloc(rows, 2 * cap * sizeof(double));
      if (grown == NULL) {
        free(rows);
        rows = NULL;
        break;
      }
      rows = grown;
      cap *= 2;
    }
    rows[n++] = v;
    (void)fscanf(f, " ,");
  }
  fclose(f);
  if (rows == NULL || n_features == 0 || n % n_features != 0) {
    free(rows);
    return NULL;
  }
  *n_rows = n / n_features;
  return rows;
}

static void print_values(const char* tag, const double* v, size_t n) {
  size_t i;
  printf("%s ", tag);
  for (i = 0; i < n; ++i) printf(i ? ",%.17g" : "%.17g", v[i]);
  printf("\n");
}

int main(int argc, char** argv) {
  hepinfer_forest* forest = NULL;
  hepinfer_forest* bad = NULL;
  int32_t n_features = 0, n_outputs = 0, n_margins = 0;
  size_t n_trees = 0, n_rows = 0, r, j;
  double *rows, *out, *margins;
  float* rows_f;
  int32_t* leaves;
  int status;
  static const char garbage[] = "this is not a model";

  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL ROWS.csv\n", argv[0]);
    return 2;
  }
  status = hepinfer_forest_load(argv[1], NULL, NULL, &forest);
  if (status != HEPINFER_OK) {
    fprintf(stderr, "cannot load %s: %s (%s)\n", argv[1], hepinfer_last_error(), hepinfer_status_name(status));
    return 1;
  }
  if (hepinfer_forest_n_features(forest, &n_features) != HEPINFER_OK ||
      hepinfer_forest_n_outputs(forest, HEPINFER_OUTPUT_PROBABILITY, &n_outputs) != HEPINFER_OK ||
      hepinfer_forest_n_outputs(forest, HEPINFER_OUTPUT_MARGIN, &n_margins) != HEPINFER_OK ||
      hepinfer_forest_n_trees(forest, &n_trees) != HEPINFER_OK) {
    fprintf(stderr, "%s\n", hepinfer_last_error());
    return 1;
  }
  printf("info %d %d %d %lu\n", (int)n_features, (int)n_outputs, (int)n_margins, (unsigned long)n_trees);
  rows = read_rows(argv[2], (size_t)n_features, &n_rows);
  if (rows == NULL) {
    fprintf(stderr, "cannot read %s as rows of %d values\n", argv[2], (int)n_features);
    return 1;
  }
  out = (double*)malloc((n_rows * (size_t)n_outputs + 1) * sizeof(double));
  margins = (double*)malloc((n_rows * (size_t)n_margins + 1) * sizeof(double));
  rows_f = (float*)malloc((n_rows * (size_t)n_features + 1) * sizeof(float));
  leaves = (int32_t*)malloc((n_rows * n_trees + 1) * sizeof(int32_t));
  if (out == NULL || margins == NULL || rows_f == NULL || leaves == NULL) return 1;
  for (j = 0; j < n_rows * (size_t)n_features; ++j) rows_f[j] = (float)rows[j];

  status = hepinfer_forest_predict_double(forest, rows, n_rows, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 2,
                                          out, n_rows * (size_t)n_outputs);
  if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
  for (r = 0; r < n_rows; ++r) print_values("batch", out + r * (size_t)n_outputs, (size_t)n_outputs);
  status = hepinfer_forest_predict_float(forest, rows_f, n_rows, (size_t)n_features, HEPINFER_OUTPUT_MARGIN, 1,
                                         margins, n_rows * (size_t)n_margins);
  if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
  for (r = 0; r < n_rows; ++r) print_values("margin", margins + r * (size_t)n_margins, (size_t)n_margins);
  for (r = 0; r < n_rows; ++r) {
    status = hepinfer_forest_predict_one_double(forest, rows + r * (size_t)n_features, (size_t)n_features,
                                                HEPINFER_OUTPUT_PROBABILITY, out, (size_t)n_outputs);
    if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
    print_values("one", out, (size_t)n_outputs);
    status = hepinfer_forest_predict_one_float(forest, rows_f + r * (size_t)n_features, (size_t)n_features,
                                               HEPINFER_OUTPUT_PROBABILITY, out, (size_t)n_outputs);
    if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
    print_values("onef", out, (size_t)n_outputs);
  }
  status = hepinfer_forest_predict_leaf_double(forest, rows, n_rows, (size_t)n_features, 1, leaves, n_rows * n_trees);
  if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
  for (r = 0; r < n_rows; ++r) {
    printf("leaf ");
    for (j = 0; j < n_trees; ++j) printf(j ? ",%d" : "%d", (int)leaves[r * n_trees + j]);
    printf("\n");
  }

  /* error paths: each must give its status and a message, and leave the outputs alone */
  expect(hepinfer_forest_load("/nonexistent/model.json", NULL, NULL, &bad), HEPINFER_ERROR_MODEL_FORMAT, "missing file");
  if (bad != NULL) ++failures;
  expect(hepinfer_forest_load_from_memory(garbage, sizeof garbage - 1, NULL, NULL, &bad), HEPINFER_ERROR_MODEL_FORMAT,
         "garbage model");
  expect(hepinfer_forest_load(argv[1], "no-such-format", NULL, &bad), HEPINFER_ERROR_MODEL_FORMAT, "bad format name");
  expect(hepinfer_forest_load(argv[1], NULL, "<", &bad), HEPINFER_ERROR_INPUT, "bad tmva_cut_op");
  expect(hepinfer_forest_load(NULL, NULL, NULL, &bad), HEPINFER_ERROR_NULL_ARGUMENT, "NULL path");
  expect(hepinfer_forest_load(argv[1], NULL, NULL, NULL), HEPINFER_ERROR_NULL_ARGUMENT, "NULL handle pointer");
  if (bad != NULL) ++failures;
  expect(hepinfer_forest_predict_double(forest, rows, 1, (size_t)n_features + 1, HEPINFER_OUTPUT_PROBABILITY, 1, out,
                                        (size_t)n_outputs),
         HEPINFER_ERROR_INPUT, "wrong feature count");
  expect(hepinfer_forest_predict_double(forest, rows, n_rows, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 1, out,
                                        n_rows * (size_t)n_outputs - 1),
         HEPINFER_ERROR_INPUT, "output buffer too small");
  expect(hepinfer_forest_predict_one_float(forest, rows_f, (size_t)n_features, 7, out, (size_t)n_outputs),
         HEPINFER_ERROR_INPUT, "bad output kind");
  expect(hepinfer_forest_predict_one_float(forest, rows_f, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, out, 0),
         HEPINFER_ERROR_INPUT, "predict_one buffer too small");
  expect(hepinfer_forest_predict_leaf_float(forest, rows_f, n_rows, (size_t)n_features, 1, leaves, 0),
         HEPINFER_ERROR_INPUT, "leaf buffer too small");
  expect(hepinfer_forest_predict_double(NULL, rows, 1, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 1, out, 1),
         HEPINFER_ERROR_NULL_ARGUMENT, "NULL forest");
  expect(hepinfer_forest_predict_one_double(forest, NULL, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, out, 1),
         HEPINFER_ERROR_NULL_ARGUMENT, "NULL row");
  expect(hepinfer_forest_predict_float(forest, rows_f, 1, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 1, NULL, 1),
         HEPINFER_ERROR_NULL_ARGUMENT, "NULL out");
  expect(hepinfer_forest_n_features(NULL, &n_features), HEPINFER_ERROR_NULL_ARGUMENT, "n_features of NULL");
  expect(hepinfer_forest_n_outputs(forest, HEPINFER_OUTPUT_MARGIN, NULL), HEPINFER_ERROR_NULL_ARGUMENT,
         "NULL n_outputs");
  expect(hepinfer_forest_predict_double(forest, NULL, 0, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 1, NULL, 0),
         HEPINFER_OK, "zero rows");
  hepinfer_forest_free(NULL);
  if (strlen(hepinfer_version()) == 0) ++failures;
  printf("checks %s\n", failures == 0 ? "ok" : "FAILED");

  hepinfer_forest_free(forest);
  free(rows);
  free(rows_f);
  free(out);
  free(margins);
  free(leaves);
  return failures == 0 ? 0 : 1;
}
