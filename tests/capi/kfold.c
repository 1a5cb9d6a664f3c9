/* hepinfer's C interface for k-fold bundles (hepinfer_kfold_*), in C99:
 *   capi_kfold BUNDLE ROWS.csv
 * ROWS.csv holds one event per line: the features, then the event number. Prints
 *   info <n_folds> <n_features> <n_outputs>
 *   fold <fold of each event>          (one line per event)
 *   batch <scores>                     (float rows, one line per event)
 *   batchd <scores>                    (double rows)
 *   error <status> <message>           (the error paths, one line each)
 */
#include <hepinfer/hepinfer_c.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_ROWS 4096
#define MAX_FEATURES 16

static int check(int status, const char* what) {
  if (status != HEPINFER_OK) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, hepinfer_status_name(status), hepinfer_last_error());
    exit(1);
  }
  return status;
}

int main(int argc, char** argv) {
  hepinfer_kfold* kfold = NULL;
  int32_t n_folds = 0, n_features = 0, n_outputs = 0, fold = 0;
  static double rows[MAX_ROWS * MAX_FEATURES], out[MAX_ROWS * 4];
  static float rows32[MAX_ROWS * MAX_FEATURES];
  static int64_t events[MAX_ROWS];
  size_t n = 0, i;
  int j, status;
  FILE* f;
  double e;
  if (argc != 3) {
    fprintf(stderr, "usage: capi_kfold BUNDLE ROWS.csv\n");
    return 2;
  }
  check(hepinfer_kfold_load(argv[1], &kfold), "hepinfer_kfold_load");
  check(hepinfer_kfold_n_folds(kfold, &n_folds), "n_folds");
  check(hepinfer_kfold_n_features(kfold, &n_features), "n_features");
  check(hepinfer_kfold_n_outputs(kfold, HEPINFER_OUTPUT_PROBABILITY, &n_outputs), "n_outputs");
  printf("info %d %d %d\n", (int)n_folds, (int)n_features, (int)n_outputs);
  if (n_features > MAX_FEATURES || n_outputs > 4) return 3;
  f = fopen(argv[2], "r");
  if (f == NULL) return 4;
  while (n < MAX_ROWS) {
    for (j = 0; j < n_features; ++j)
      if (fscanf(f, " %lf ,", &rows[n * (size_t)n_features + (size_t)j]) != 1) goto done;
    if (fscanf(f, " %lf", &e) != 1) goto done;
    events[n] = (int64_t)e;
    ++n;
  }
done:
  fclose(f);
  for (i = 0; i < n * (size_t)n_features; ++i) rows32[i] = (float)rows[i];
  for (i = 0; i < n; ++i) {
    check(hepinfer_kfold_fold_of(kfold, events[i], &fold), "fold_of");
    printf("fold %d\n", (int)fold);
  }
  check(hepinfer_kfold_predict_float(kfold, rows32, n, (size_t)n_features, events, HEPINFER_OUTPUT_PROBABILITY, 2, out,
                                     n * (size_t)n_outputs),
        "predict_float");
  for (i = 0; i < n; ++i) printf("batch %.17g\n", out[i * (size_t)n_outputs]);
  check(hepinfer_kfold_predict_double(kfold, rows, n, (size_t)n_features, events, HEPINFER_OUTPUT_PROBABILITY, 1, out,
                                      n * (size_t)n_outputs),
        "predict_double");
  for (i = 0; i < n; ++i) printf("batchd %.17g\n", out[i * (size_t)n_outputs]);

  status = hepinfer_kfold_predict_float(kfold, rows32, n, (size_t)n_features + 1, events, 0, 1, out, 4 * n);
  printf("error %d %s\n", status, hepinfer_last_error());
  status = hepinfer_kfold_predict_float(kfold, rows32, n, (size_t)n_features, events, 0, 1, out, n - 1);
  printf("error %d %s\n", status, hepinfer_last_error());
  status = hepinfer_kfold_predict_float(kfold, rows32, n, (size_t)n_features, NULL, 0, 1, out, n);
  printf("error %d %s\n", status, hepinfer_last_error());
  status = hepinfer_kfold_predict_float(kfold, rows32, n, (size_t)n_features, events, 7, 1, out, n);
  printf("error %d %s\n", status, hepinfer_last_error());
  hepinfer_kfold_free(kfold);
  kfold = NULL;
  status = hepinfer_kfold_load("no/such/bundle", &kfold);
  printf("error %d %s\n", status, hepinfer_last_error());
  status = hepinfer_kfold_n_folds(NULL, &n_folds);
  printf("error %d %s\n", status, hepinfer_last_error());
  hepinfer_kfold_free(NULL);
  return 0;
}
