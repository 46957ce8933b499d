/*
** blas.h: the BLAS functions luagrad calls, loaded from OpenBLAS on first use (blas.c).
*/
#ifndef LG_BLAS_H
#define LG_BLAS_H

#include "internal.h"

#include <cblas.h>

typedef struct lg_blas_api {
  int loaded;
  int default_threads; /* OpenBLAS's thread count when it was loaded (cores, or OPENBLAS_NUM_THREADS) */
  __typeof__(cblas_sgemm) *sgemm;
  __typeof__(cblas_dgemm) *dgemm;
  void (*set_num_threads)(int);
  int (*get_num_threads)(void);
  char *(*get_corename)(void);
  char *(*get_config)(void);
} lg_blas_api;

/* The functions, valid once lg_blas_load() has returned LG_OK. */
extern lg_blas_api lg_blas_fns;

/* Loads OpenBLAS (once; thread-safe); an error names what failed. */
lg_status lg_blas_load(void);

#endif
