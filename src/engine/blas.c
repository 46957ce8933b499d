/*
** blas.c: OpenBLAS, loaded when first needed, with its kernels chosen for the CPU.
**
** Debian's OpenBLAS is built for every x86-64 core (DYNAMIC_ARCH) and picks its kernels once, as
** it is loaded, from the CPU or from the environment variable OPENBLAS_CORETYPE. On AMD Zen 4 it
** picks its AVX-512 kernels (Cooperlake), but Zen 4 executes a 512-bit FMA as two 256-bit halves,
** and there its Haswell (AVX2) kernels are faster: 1 thread, OpenBLAS 0.3.21, bench/workloads.lua,
** W3 392-401 -> 360-365 ms, W2 1.50-1.51 -> 1.43-1.47 ms, W4 1.68-1.70 -> 1.61-1.64 ms.
**
** OpenBLAS also reads, at load time, how long its worker threads spin after a product before they
** sleep: 2^28 cycles by default, about 80 ms. luagrad's own loops run on a thread pool beside
** OpenBLAS's, and a worker spinning on the second core halved what the pool got: W3's SGD step at
** 2 threads, right after the backward pass's products, took 12.1 ms instead of 6.5 ms. luagrad asks
** for 2^12 cycles (about 1 us); a product big enough for two threads (64 MFLOP) takes far longer
** than a worker's wake-up.
**
** So luagrad does not link OpenBLAS: it loads libopenblas.so.0 on first use, with
** OPENBLAS_THREAD_TIMEOUT=12 and, on an AMD CPU with AVX-512, OPENBLAS_CORETYPE=Haswell set for
** the load and removed again (child processes see the environment they would have seen). A
** variable the user set wins; an OpenBLAS the host process had already loaded is used as it is.
*/
#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lg_blas_api lg_blas_fns;

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static char blas_error[512];
static char blas_chosen[64]; /* the core type luagrad asked for, or "" */

/* the core type to ask for on this CPU, or NULL for OpenBLAS's own choice */
static const char *preferred_coretype(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_is("amd") && __builtin_cpu_supports("avx512f")) return "Haswell";
#endif
  return NULL;
}

/* An OpenBLAS already in the process (under one of these names, as the host or another library
** loaded it), or NULL. libblas.so.3 counts only if it is OpenBLAS (Debian's alternatives). */
static void *loaded_openblas(void) {
  const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h && dlsym(h, "openblas_get_config")) return h;
    if (h) dlclose(h);
  }
  return NULL;
}

static void blas_load(void) {
  void *h = loaded_openblas();
  /* The variables are set only around the load. setenv is not safe beside a getenv in another
  ** thread; the load happens once, at the first product, thread setting or engine loop large
  ** enough to split across threads (which asks for OpenBLAS's thread count). */
  const char *want = h || getenv("OPENBLAS_CORETYPE") ? NULL : preferred_coretype();
  int set_timeout = !h && !getenv("OPENBLAS_THREAD_TIMEOUT");
  if (want) {
    setenv("OPENBLAS_CORETYPE", want, 0);
    snprintf(blas_chosen, sizeof blas_chosen, "%s", want);
  }
  if (set_timeout) setenv("OPENBLAS_THREAD_TIMEOUT", "12", 0);
  const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++)
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (want) unsetenv("OPENBLAS_CORETYPE");
  if (set_timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
  if (!h) {
    snprintf(blas_error, sizeof blas_error, "cannot load OpenBLAS (libopenblas.so.0): %s", dlerror());
    return;
  }
#define LOAD(field, sym)                                                                                     \
  if (!(*(void **)&lg_blas_fns.field = dlsym(h, sym))) {                                                     \
    snprintf(blas_error, sizeof blas_error, "OpenBLAS has no %s", sym);                                      \
    dlclose(h);                                                                                              \
    return;                                                                                                  \
  }
  LOAD(sgemm, "cblas_sgemm")
  LOAD(dgemm, "cblas_dgemm")
  LOAD(set_num_threads, "openblas_set_num_threads")
  LOAD(get_num_threads, "openblas_get_num_threads")
  LOAD(get_corename, "openblas_get_corename")
  LOAD(get_config, "openblas_get_config")
#undef LOAD
  /* its thread count before luagrad changes it (per product, see matmul.c): the default */
  lg_blas_fns.default_threads = lg_blas_fns.get_num_threads();
  lg_blas_fns.loaded = 1;
}

lg_status lg_blas_load(void) {
  pthread_once(&blas_once, blas_load);
  return lg_blas_fns.loaded ? LG_OK : lg_error(LG_EVALUE, "%s", blas_error);
}

const char *lg_blas_info(char *buf, size_t n) {
  if (lg_blas_load() != LG_OK)
    snprintf(buf, n, "%s", blas_error);
  else
    snprintf(buf, n, "%s, kernels %s%s", lg_blas_fns.get_config(), lg_blas_fns.get_corename(),
             blas_chosen[0] ? " (chosen by luagrad for this CPU)" : "");
  return buf;
}
