/*
** blas.c: OpenBLAS, loaded when first needed, with its kernels chosen for the CPU.
**
** Debian's OpenBLAS (0.3.21) is built for every x86-64 core (DYNAMIC_ARCH) and picks its kernels
** once, as it is loaded, from the CPU or from the environment variable OPENBLAS_CORETYPE. It
** picks its AVX-512 kernels (Cooperlake) on both recent AMD cores, measured at 1 thread
** (bench/workloads.lua):
** - Zen 4 (family 19h with AVX-512) executes a 512-bit FMA as two 256-bit halves, and there the
**   Haswell (AVX2) kernels are faster: W3 392-401 -> 360-365 ms, W2 1.50-1.51 -> 1.43-1.47 ms,
**   W4 1.68-1.70 -> 1.61-1.64 ms. luagrad asks for them.
** - Zen 5 (family 1Ah) runs 512-bit FMAs at full width: OpenBLAS's choice stands. (luagrad used to
**   ask for Haswell on every AMD CPU with AVX-512; on Zen 5 that cost SGEMM 200 -> 108 GFLOP/s,
**   W3 209-218 -> 374 ms, W2 0.95 -> 1.53 ms, W5 64-66 -> 80 ms, W6 92-93 -> 139 ms.)
** On Intel CPUs OpenBLAS's own choice stands too (SkylakeX or Cooperlake with AVX-512, Haswell
** with AVX2). lg_blas_info() says which kernels run and why.
**
** OpenBLAS also reads, at load time, how long its worker threads spin after a product before they
** sleep: 2^28 cycles by default, about 80 ms. luagrad's own loops run on a thread pool beside
** OpenBLAS's, and a worker spinning on the second core halved what the pool got: W3's SGD step at
** 2 threads, right after the backward pass's products, took 12.1 ms instead of 6.5 ms. luagrad asks
** for 2^12 cycles (about 1 us); a product big enough for two threads (64 MFLOP) takes far longer
** than a worker's wake-up.
**
** So luagrad does not link OpenBLAS: it loads libopenblas.so.0 on first use, with
** OPENBLAS_THREAD_TIMEOUT=12 and the core type chosen here set for the load and removed again
** (child processes see the environment they would have seen). A variable the user set wins; an
** OpenBLAS the host process had already loaded is used as it is.
*/
#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

lg_blas_api lg_blas_fns;

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static char blas_error[512];
static char blas_chosen[64]; /* the core type luagrad asked for, or "" */
static const char *blas_why = "";

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
static unsigned cpu_family(void) { /* the displayed family: base + extended */
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  unsigned base = (a >> 8) & 0xf;
  return base == 0xf ? base + ((a >> 20) & 0xff) : base;
}
#endif

/* the core type to ask for on this CPU, or NULL for OpenBLAS's own choice; *why says which */
static const char *preferred_coretype(const char **why) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_is("amd") && __builtin_cpu_supports("avx512f")) {
    if (cpu_family() >= 0x1a) {
      *why = "OpenBLAS's own choice: AMD Zen 5 (family 1Ah) runs 512-bit FMAs at full width, and its "
             "AVX-512 kernels measured 1.7x faster than its AVX2 ones on W3";
      return NULL;
    }
    *why = "AMD Zen 4 (family 19h) splits a 512-bit FMA in two; OpenBLAS's AVX2 kernels measured faster "
           "there than its AVX-512 ones";
    return "Haswell";
  }
#endif
  *why = "OpenBLAS's own choice for this CPU";
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

/* ---- address space (ulimit -v) ----
** OpenBLAS maps a buffer of about 128 MiB for a thread when it needs one (more than once, seen in
** practice: a later, larger product mapped another), and retries forever, at 100% CPU, when the
** map fails: under a limit on address space a product, or even the process's exit, would hang.
** So under such a limit luagrad lets OpenBLAS run a product only while the room left holds a
** buffer more than the threads it asks for; otherwise the product runs in luagrad's own kernel
** (matmul.c), slower but bounded. Loading OpenBLAS under a limit asks it for one thread. */
#define LOAD_MIB 64    /* the library and its first thread */
#define BUFFER_MIB 136 /* one buffer, with its slack */

static size_t limit_bytes(void) { /* RLIMIT_AS, or 0 when there is none: read once, at the first product */
  static _Atomic size_t limit = (size_t)-1;
  size_t l = limit;
  if (l == (size_t)-1) {
    struct rlimit r;
    l = getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY ? 0 : (size_t)r.rlim_cur;
    limit = l;
  }
  return l;
}

static size_t room_mib(size_t limit) { /* the limit less the address space in use (VmSize) */
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  size_t used = (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
  return limit > used ? (limit - used) >> 20 : 0;
}

static _Atomic int fallback_used; /* for lg_blas_info */

int lg_blas_room(int *threads) {
  size_t limit = limit_bytes();
  if (!limit) return 1;
  size_t room = room_mib(limit);
  int fit = (int)(room / BUFFER_MIB) - 1;
  if (!lg_blas_fns.loaded) fit = room < LOAD_MIB ? 0 : (int)((room - LOAD_MIB) / BUFFER_MIB) - 1;
  if (fit < 1) {
    fallback_used = 1;
    return 0;
  }
  if (*threads > fit) *threads = fit;
  return 1;
}

static void blas_load(void) {
  size_t limit = limit_bytes();
  void *h = loaded_openblas();
  /* The variables are set only around the load. setenv is not safe beside a getenv in another
  ** thread; the load happens once, at the first product, thread setting or engine loop large
  ** enough to split across threads (which asks for OpenBLAS's thread count). */
  const char *want = NULL;
  if (h)
    blas_why = "the host process had loaded OpenBLAS already";
  else if (getenv("OPENBLAS_CORETYPE"))
    blas_why = "OPENBLAS_CORETYPE set in the environment";
  else
    want = preferred_coretype(&blas_why);
  int set_timeout = !h && !getenv("OPENBLAS_THREAD_TIMEOUT");
  if (want) {
    setenv("OPENBLAS_CORETYPE", want, 0);
    snprintf(blas_chosen, sizeof blas_chosen, "%s", want);
  }
  if (set_timeout) setenv("OPENBLAS_THREAD_TIMEOUT", "12", 0);
  /* under an address-space limit, one thread: each more costs a stack and a buffer */
  int one_thread = !h && limit && !getenv("OPENBLAS_NUM_THREADS");
  if (one_thread) setenv("OPENBLAS_NUM_THREADS", "1", 0);
  const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++)
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (want) unsetenv("OPENBLAS_CORETYPE");
  if (set_timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
  if (one_thread) unsetenv("OPENBLAS_NUM_THREADS");
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

/* OpenBLAS starts its threads as it loads and when its thread count grows: with the asynchronous
** signals blocked here, they inherit that mask, and a host's handler runs on the host's threads. */
static void blas_load_masked(void) {
  sigset_t old;
  lg_block_signals(&old);
  blas_load();
  lg_restore_signals(&old);
}

void lg_blas_set_threads(int n) {
  /* under an address-space limit, no more threads than buffers fit: each maps one, and a thread
  ** that cannot spins forever, even at the process's exit */
  size_t limit = limit_bytes();
  if (limit && n > 1) {
    int fit = (int)(room_mib(limit) / BUFFER_MIB) - 1;
    if (n > fit) n = fit < 1 ? 1 : fit;
  }
  sigset_t old;
  lg_block_signals(&old);
  lg_blas_fns.set_num_threads(n);
  lg_restore_signals(&old);
}

lg_status lg_blas_load(void) {
  pthread_once(&blas_once, blas_load_masked);
  return lg_blas_fns.loaded ? LG_OK : lg_error(LG_EVALUE, "%s", blas_error);
}

int lg_blas_avx512_kernels(void) {
  if (lg_blas_load() != LG_OK) return 0;
  const char *core = lg_blas_fns.get_corename();
  const char *avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
  for (size_t i = 0; core && i < sizeof avx512 / sizeof avx512[0]; i++)
    if (!strcasecmp(core, avx512[i])) return 1;
  return 0;
}

const char *lg_blas_info(char *buf, size_t n) {
  if (lg_blas_load() != LG_OK)
    snprintf(buf, n, "%s", blas_error);
  else
    snprintf(buf, n, "%s, kernels %s (%s%s); small float32 products: %s; elementwise loops: %s%s",
             lg_blas_fns.get_config(), lg_blas_fns.get_corename(),
             blas_chosen[0] ? "chosen by luagrad: " : "", blas_why, lg_gemm_small_kernel(), lg_wide_kernel(),
             fallback_used
                 ? "; some products ran in luagrad's own kernel: the address-space limit (ulimit -v) "
                   "left too little room for OpenBLAS's buffers"
                 : "");
  return buf;
}
