/* capi_test MODEL ROWS.csv: evaluates a model through hepinfer's C interface and prints
 *   info <n_features> <n_outputs> <n_margins> <n_trees>
 *   batch <values of a row, comma-separated>        (predict_double, probability)
 *   margin <values>                                 (predict_float, margin)
 *   one <values>                                    (predict_one_double)
 *   onef <values>                                   (predict_one_float)
 *   leaf <leaf indices>                             (predict_leaf_double)
 *   error <status> <message>                        (the error paths it provokes)
 *   checks ok                                       (every error path gave the expected status)
 * capi_test --error-threads MODEL: 8 threads provoke different errors at the same moments,
 *   each must read back its own message from hepinfer_last_error() (a per-thread string),
 *   at once and after all others have failed too;
 *   prints "error-threads ok".
 * capi_test --n-threads N MODEL N_ROWS: predicts N_ROWS generated rows with n_threads = N
 *   and with 1, which must agree bit for bit (also where threads cannot be started: run
 *   under a low virtual-memory limit); prints "n-threads ok".
 * Pure C99 (plus POSIX threads): this file is compiled as C. */
#define _POSIX_C_SOURCE 200809L
#include <hepinfer/hepinfer_c.h>

#include <pthread.h>
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

/* ---- --error-threads: the last-error string is per thread */

enum { kErrorThreads = 8, kErrorRounds = 400 };

/* A reusable barrier (pthread_barrier_t is optional in POSIX and missing on macOS). */
typedef struct barrier {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int waiting, round;
} barrier;

static void barrier_wait(barrier* b) {
  int round;
  pthread_mutex_lock(&b->mutex);
  round = b->round;
  if (++b->waiting == kErrorThreads) {
    b->waiting = 0;
    ++b->round;
    pthread_cond_broadcast(&b->cond);
  } else {
    while (round == b->round) pthread_cond_wait(&b->cond, &b->mutex);
  }
  pthread_mutex_unlock(&b->mutex);
}

typedef struct error_thread {
  int index;
  const hepinfer_forest* forest;
  size_t n_features;
  barrier* barrier;
  int failures;
  char first_failure[512];
} error_thread;

static void error_mismatch(error_thread* t, int round, const char* want, const char* got) {
  if (t->failures++ == 0)
    snprintf(t->first_failure, sizeof t->first_failure, "thread %d, round %d: expected \"%s\" in \"%s\"", t->index,
             round, want, got);
}

/* Every thread provokes its own error (a file path or a feature count only it uses) and reads
 * the message back at once; then, after a barrier that all threads pass only once each has
 * made its own failing call, reads it again: a string shared between threads would now hold
 * the last thread's message for all of them. */
static void* error_thread_main(void* arg) {
  error_thread* t = (error_thread*)arg;
  char path[64], count[64];
  const char* want;
  size_t n_bad = t->n_features + 1 + (size_t)t->index;
  double row[64], out[16];
  hepinfer_forest* none = NULL;
  int round;
  memset(row, 0, sizeof row);
  snprintf(path, sizeof path, "/nonexistent/thread-%d/model.json", t->index);
  snprintf(count, sizeof count, "rows have %lu features", (unsigned long)n_bad);
  for (round = 0; round < kErrorRounds; ++round) {
    barrier_wait(t->barrier);
    if ((round + t->index) % 2 == 0) {
      want = path;
      if (hepinfer_forest_load(path, NULL, NULL, &none) != HEPINFER_ERROR_MODEL_FORMAT)
        error_mismatch(t, round, "status HEPINFER_ERROR_MODEL_FORMAT", "another status");
    } else {
      want = count;
      if (hepinfer_forest_predict_double(t->forest, row, 1, n_bad, HEPINFER_OUTPUT_MARGIN, 1, out, 16) !=
          HEPINFER_ERROR_INPUT)
        error_mismatch(t, round, "status HEPINFER_ERROR_INPUT", "another status");
    }
    if (strstr(hepinfer_last_error(), want) == NULL) error_mismatch(t, round, want, hepinfer_last_error());
    barrier_wait(t->barrier);
    if (strstr(hepinfer_last_error(), want) == NULL) error_mismatch(t, round, want, hepinfer_last_error());
  }
  return NULL;
}

static int error_threads(const char* model) {
  hepinfer_forest* forest = NULL;
  int32_t n_features = 0;
  barrier b;
  error_thread threads[kErrorThreads];
  pthread_t ids[kErrorThreads];
  int i, started = 0, failures = 0;
  if (hepinfer_forest_load(model, NULL, NULL, &forest) != HEPINFER_OK ||
      hepinfer_forest_n_features(forest, &n_features) != HEPINFER_OK) {
    fprintf(stderr, "cannot load %s: %s\n", model, hepinfer_last_error());
    return 1;
  }
  if (n_features + kErrorThreads + 1 > 64) {
    fprintf(stderr, "%s: too many features for this test\n", model);
    return 1;
  }
  pthread_mutex_init(&b.mutex, NULL);
  pthread_cond_init(&b.cond, NULL);
  b.waiting = b.round = 0;
  for (i = 0; i < kErrorThreads; ++i) {
    threads[i].index = i;
    threads[i].forest = forest;
    threads[i].n_features = (size_t)n_features;
    threads[i].barrier = &b;
    threads[i].failures = 0;
    threads[i].first_failure[0] = '\0';
  }
  for (i = 0; i < kErrorThreads; ++i) {
    if (pthread_create(&ids[i], NULL, error_thread_main, &threads[i]) != 0) break;
    ++started;
  }
  if (started != kErrorThreads) {
    fprintf(stderr, "could only start %d threads\n", started);
    return 1; /* the started ones wait at the barrier forever: exit without joining */
  }
  for (i = 0; i < kErrorThreads; ++i) pthread_join(ids[i], NULL);
  for (i = 0; i < kErrorThreads; ++i) {
    if (threads[i].failures != 0) fprintf(stderr, "%s (%d failures)\n", threads[i].first_failure, threads[i].failures);
    failures += threads[i].failures;
  }
  pthread_cond_destroy(&b.cond);
  pthread_mutex_destroy(&b.mutex);
  hepinfer_forest_free(forest);
  printf("error-threads %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}

/* ---- --n-threads: many threads asked for, results as with one */

static int many_threads(int n_threads, const char* model, size_t n_rows) {
  hepinfer_forest* forest = NULL;
  int32_t n_features = 0, n_outputs = 0;
  size_t n_trees = 0, i, n_out;
  double *rows, *one, *many;
  int32_t *leaf_one, *leaf_many;
  unsigned long long state = 12345;
  int same;
  if (hepinfer_forest_load(model, NULL, NULL, &forest) != HEPINFER_OK ||
      hepinfer_forest_n_features(forest, &n_features) != HEPINFER_OK ||
      hepinfer_forest_n_outputs(forest, HEPINFER_OUTPUT_PROBABILITY, &n_outputs) != HEPINFER_OK ||
      hepinfer_forest_n_trees(forest, &n_trees) != HEPINFER_OK) {
    fprintf(stderr, "cannot load %s: %s\n", model, hepinfer_last_error());
    return 1;
  }
  n_out = n_rows * (size_t)n_outputs;
  rows = (double*)malloc(n_rows * (size_t)n_features * sizeof(double) + 1);
  one = (double*)malloc(n_out * sizeof(double) + 1);
  many = (double*)malloc(n_out * sizeof(double) + 1);
  leaf_one = (int32_t*)malloc(n_rows * n_trees * sizeof(int32_t) + 1);
  leaf_many = (int32_t*)malloc(n_rows * n_trees * sizeof(int32_t) + 1);
  if (rows == NULL || one == NULL || many == NULL || leaf_one == NULL || leaf_many == NULL) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (i = 0; i < n_rows * (size_t)n_features; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    rows[i] = (double)((state >> 33) % 2000) / 500.0 - 2.0;
  }
  if (hepinfer_forest_predict_double(forest, rows, n_rows, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 1, one,
                                     n_out) != HEPINFER_OK ||
      hepinfer_forest_predict_double(forest, rows, n_rows, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, n_threads,
                                     many, n_out) != HEPINFER_OK ||
      hepinfer_forest_predict_leaf_double(forest, rows, n_rows, (size_t)n_features, 1, leaf_one, n_rows * n_trees) !=
          HEPINFER_OK ||
      hepinfer_forest_predict_leaf_double(forest, rows, n_rows, (size_t)n_features, n_threads, leaf_many,
                                          n_rows * n_trees) != HEPINFER_OK) {
    fprintf(stderr, "predict failed: %s\n", hepinfer_last_error());
    return 1;
  }
  same = memcmp(one, many, n_out * sizeof(double)) == 0 &&
         memcmp(leaf_one, leaf_many, n_rows * n_trees * sizeof(int32_t)) == 0;
  printf("n-threads %s\n", same ? "ok" : "FAILED (results differ from n_threads = 1)");
  free(rows);
  free(one);
  free(many);
  free(leaf_one);
  free(leaf_many);
  hepinfer_forest_free(forest);
  return same ? 0 : 1;
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

  if (argc == 3 && strcmp(argv[1], "--error-threads") == 0) return error_threads(argv[2]);
  if (argc == 5 && strcmp(argv[1], "--n-threads") == 0)
    return many_threads(atoi(argv[2]), argv[3], (size_t)strtoul(argv[4], NULL, 10));
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL ROWS.csv | --error-threads MODEL | --n-threads N MODEL N_ROWS\n", argv[0]);
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

  status = hepinfer_forest_predict_double(forest, rows, n_rows, (size_t)n_features, HEPINFER_OUTPUT_PROBABILITY, 2, out,
                                          n_rows * (size_t)n_outputs);
  if (status != HEPINFER_OK) return fprintf(stderr, "%s\n", hepinfer_last_error()), 1;
  for (r = 0; r < n_rows; ++r) print_values("batch", out + r * (size_t)n_outputs, (size_t)n_outputs);
  status = hepinfer_forest_predict_float(forest, rows_f, n_rows, (size_t)n_features, HEPINFER_OUTPUT_MARGIN, 1, margins,
                                         n_rows * (size_t)n_margins);
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
  expect(hepinfer_forest_load("/nonexistent/model.json", NULL, NULL, &bad), HEPINFER_ERROR_MODEL_FORMAT,
         "missing file");
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
