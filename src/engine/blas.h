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
/* Before a product on *threads threads: 1 if OpenBLAS may run it (*threads lowered to what its
** buffers fit in under an address-space limit), 0 if the limit leaves too little room and the
** product must run elsewhere (blas.c says why). */
int lg_blas_room(int *threads);
/* openblas_set_num_threads with asynchronous signals blocked (the threads it starts inherit that). */
void lg_blas_set_threads(int n);

#endif
