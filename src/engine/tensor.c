/*
** tensor.c: storage and tensors, the strided iterator, views, copies, creation, errors and the
** runtime settings (default dtype, threads).
**
** A tensor is a view: (storage, offset, shape, stride, dtype). Storage is reference counted and
** freed with its last view; tensor objects are reference counted too, because the Lua binding and
** the autograd tape may both hold one.
*/
#include "internal.h"

#include "blas.h"
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors ---- */

static _Thread_local char errbuf[1024];

const char *lg_errmsg(void) { return errbuf; }

lg_status lg_error(lg_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return st;
}

char *lg_shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "{");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "}");
  return buf;
}

/* ---- dtypes ---- */

static const char *const dtype_names[LG_NDTYPES] = {"float32", "float64", "int64"};
static const size_t dtype_sizes[LG_NDTYPES] = {4, 8, 8};

const char *lg_dtype_name(lg_dtype dt) { return dt < LG_NDTYPES ? dtype_names[dt] : "?"; }
size_t lg_dtype_size(lg_dtype dt) { return dtype_sizes[dt]; }
int lg_dtype_is_float(lg_dtype dt) { return dt == LG_FLOAT32 || dt == LG_FLOAT64; }
lg_dtype lg_default_dtype(void) { return lg_ctx()->default_dtype; }
void lg_set_default_dtype(lg_dtype dt) { lg_ctx()->default_dtype = dt; }

/* ---- contexts ----
** Freed contexts are kept for reuse rather than returned to the system: a thread that last ran a
** lua_State now closed may still point at its context, and must find valid memory there. */

#define CTX_DEFAULTS                                                                                         \
  { .grad_enabled = 1, .default_dtype = LG_FLOAT32, .seed = LG_DEFAULT_SEED }
_Thread_local lg_context lg_ctx_thread = CTX_DEFAULTS;
_Thread_local lg_context *lg_ctx_cur;
static lg_context *ctx_free_list;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int contexts_alive;

int lg_contexts_alive(void) { return atomic_load_explicit(&contexts_alive, memory_order_relaxed); }

lg_context *lg_context_new(void) {
  atomic_fetch_add_explicit(&contexts_alive, 1, memory_order_relaxed);
  pthread_mutex_lock(&ctx_lock);
  lg_context *c = ctx_free_list;
  if (c) ctx_free_list = c->next_free;
  pthread_mutex_unlock(&ctx_lock);
  if (!c && !(c = malloc(sizeof *c))) {
    atomic_fetch_sub_explicit(&contexts_alive, 1, memory_order_relaxed);
    return NULL;
  }
  *c = (lg_context)CTX_DEFAULTS;
  return c;
}

void lg_context_free(lg_context *c) {
  if (!c) return;
  atomic_fetch_sub_explicit(&contexts_alive, 1, memory_order_relaxed);
  if (lg_ctx_cur == c) lg_ctx_cur = NULL;
  pthread_mutex_lock(&ctx_lock);
  c->next_free = ctx_free_list;
  ctx_free_list = c;
  pthread_mutex_unlock(&ctx_lock);
}

lg_context *lg_context_use(lg_context *c) {
  lg_context *prev = lg_ctx_cur;
  lg_ctx_cur = c;
  return prev;
}

int lg_dtype_from_name(const char *name, lg_dtype *dt) {
  for (int i = 0; i < LG_NDTYPES; i++)
    if (strcmp(name, dtype_names[i]) == 0) {
      *dt = (lg_dtype)i;
      return 1;
    }
  if (strcmp(name, "float") == 0) {
    *dt = LG_FLOAT32;
    return 1;
  }
  if (strcmp(name, "double") == 0) {
    *dt = LG_FLOAT64;
    return 1;
  }
  if (strcmp(name, "long") == 0) {
    *dt = LG_INT64;
    return 1;
  }
  return 0;
}

/* int64 < float32 < float64 */
lg_dtype lg_promote(lg_dtype a, lg_dtype b) {
  if (a == LG_FLOAT64 || b == LG_FLOAT64) return LG_FLOAT64;
  if (a == LG_FLOAT32 || b == LG_FLOAT32) return LG_FLOAT32;
  return LG_INT64;
}

/* ---- threads ---- */

int lg_nthreads = 0; /* 0: not set, OpenBLAS's default */

void lg_set_num_threads(int n) {
  if (n < 1) n = 1;
  lg_nthreads = n;
  if (lg_blas_load() == LG_OK) lg_blas_set_threads(n); /* matmul.c lowers it per call for small products */
  lg_blas_threads_reset();
}

/* set, or else OpenBLAS's default (one per core unless OPENBLAS_NUM_THREADS), read when it loaded:
** its current count is no guide, as matmul.c lowers it to 1 for each small product */
int lg_get_num_threads(void) {
  if (lg_nthreads) return lg_nthreads;
  return lg_blas_load() == LG_OK ? lg_blas_fns.default_threads : 1;
}

/* ---- storage: a caching allocator ----
** Freed buffers wait on free lists by size class and are handed out again, so a training loop
** that allocates the same shapes every step stops calling malloc (and stops touching fresh pages).
** Classes: multiples of 64 bytes up to 1 KB, then four per power of two (at most 25% slack). The
** cache holds at most the larger of CACHE_MIN and the most tensor memory ever in use at once;
** past that, buffers go back to the system. (A loop whose steps need more than a fixed cap, an
** evaluation over batches of 500 images, say, would otherwise hand its buffers back every step
** and fault fresh pages in again: under a hypervisor that is about 3 ms per MB, ten times the
** work of the ops.) When a freed buffer does not fit, cached buffers of other classes go back
** first, the largest classes first: the cache follows the shapes in use now. (Without this, a
** process that trained one model and then another kept the first one's buffers and gave every
** buffer of the second back at each step: an MLP of width 2048 stepped in 125-170 ms after other
** models in the same process, 39 ms alone.) lg_empty_cache gives it all back. Storage headers
** are recycled the same way. Tensor memory in use (what the Lua collector is told about) counts
** live buffers only. */

#define CACHE_MIN ((size_t)128 << 20)
#define NCLASSES 256

/* The counts are the process's (atomic, relaxed: statistics); the caches are each thread's, so the
** hot path takes no lock (a buffer freed on another thread joins that thread's cache). A thread's
** caches go back to the system when it exits. */
static _Atomic size_t bytes_in_use;
static _Atomic size_t bytes_peak;        /* the most bytes_in_use has been */
static _Thread_local size_t bytes_total; /* this thread's allocations (the binding paces its GC by them) */
static _Thread_local size_t bytes_cached;
static _Thread_local void *buffers[NCLASSES]; /* free buffers, linked through their first word */
static _Thread_local lg_storage *headers;     /* free storage headers, linked through ->data */
static _Thread_local lg_tensor *tensor_pool;  /* free tensor objects, linked through ->storage */
static _Thread_local int tensor_pool_n;
static void thread_caches_register(void);

size_t lg_bytes_in_use(void) { return atomic_load_explicit(&bytes_in_use, memory_order_relaxed); }
size_t lg_bytes_allocated_total(void) { return bytes_total; }
size_t lg_bytes_cached(void) { return bytes_cached; }

/* The class of an n-byte request, and the capacity of that class's buffers. */
static int size_class(size_t n, size_t *cap) {
  if (n <= 1024) {
    size_t c = n ? (n + 63) / 64 : 1;
    *cap = c * 64;
    return (int)c; /* 1..16 */
  }
  int k = 63 - __builtin_clzll((unsigned long long)(n - 1));                       /* 2^k < n <= 2^(k+1) */
  size_t base = (size_t)1 << k, step = base / 4, j = (n - base + step - 1) / step; /* 1..4 */
  *cap = base + j * step;
  return 16 + (k - 10) * 4 + (int)j;
}

static void tensor_pool_empty(void);

void lg_empty_cache(void) {
  tensor_pool_empty();
  lg_node_pool_empty();
  for (int c = 0; c < NCLASSES; c++)
    while (buffers[c]) {
      void *b = buffers[c];
      buffers[c] = *(void **)b;
      free(b);
    }
  bytes_cached = 0;
  while (headers) {
    lg_storage *h = headers;
    headers = h->data;
    free(h);
  }
}

/* The tensor pool's and the tape's node pool's, emptied with the caches at thread exit. */
static void tensor_pool_empty(void) {
  while (tensor_pool) {
    lg_tensor *t = tensor_pool;
    tensor_pool = (lg_tensor *)t->storage;
    free(t);
  }
  tensor_pool_n = 0;
}

static pthread_key_t caches_key;
static pthread_once_t caches_once = PTHREAD_ONCE_INIT;
static _Thread_local int caches_registered;

static void thread_exit(void *unused) {
  (void)unused;
  lg_empty_cache();
  tensor_pool_empty();
  lg_node_pool_empty();
}
static void caches_key_make(void) { pthread_key_create(&caches_key, thread_exit); }

/* The first allocation of a thread arranges for its caches to be freed when it exits. */
static void thread_caches_register(void) {
  if (caches_registered) return;
  caches_registered = 1;
  pthread_once(&caches_once, caches_key_make);
  pthread_setspecific(caches_key, (void *)1);
}

static lg_storage *storage_new(size_t nbytes) {
  thread_caches_register();
  size_t cap;
  int c = nbytes > ((size_t)1 << 60) ? -1 : size_class(nbytes, &cap);
  if (c < 0 || c >= NCLASSES) return NULL;
  lg_storage *s = headers;
  if (s)
    headers = s->data;
  else if (!(s = malloc(sizeof *s)))
    return NULL;
  if (buffers[c]) {
    s->data = buffers[c];
    buffers[c] = *(void **)s->data;
    bytes_cached -= cap;
  } else if (!(s->data = malloc(cap))) {
    lg_empty_cache(); /* give the cache back and try once more */
    if (!(s->data = malloc(cap))) {
      free(s);
      return NULL;
    }
  }
  s->nbytes = nbytes;
  s->capacity = cap;
  s->refcount = 1;
  s->version = 0;
  size_t used = atomic_fetch_add_explicit(&bytes_in_use, nbytes, memory_order_relaxed) + nbytes;
  size_t peak = atomic_load_explicit(&bytes_peak, memory_order_relaxed);
  while (used > peak && !atomic_compare_exchange_weak_explicit(&bytes_peak, &peak, used, memory_order_relaxed,
                                                               memory_order_relaxed)) {
  }
  bytes_total += nbytes;
  return s;
}

/* the capacity of class c's buffers (size_class's inverse) */
static size_t class_cap(int c) {
  if (c <= 16) return (size_t)c * 64;
  int k = 10 + (c - 17) / 4, j = (c - 17) % 4 + 1;
  return ((size_t)1 << k) + (size_t)j * (((size_t)1 << k) / 4);
}

/* Gives cached buffers of classes other than keep back to the system, the largest classes
** first, until need bytes went back or none are left. */
static void cache_evict(size_t need, int keep) {
  size_t freed = 0;
  for (int c = NCLASSES - 1; c >= 1 && freed < need; c--) {
    if (c == keep || !buffers[c]) continue; /* (classes past 2^60 bytes are never filled) */
    size_t cap = class_cap(c);
    while (buffers[c] && freed < need) {
      void *b = buffers[c];
      buffers[c] = *(void **)b;
      free(b);
      bytes_cached -= cap;
      freed += cap;
    }
  }
}

static void storage_release(lg_storage *s) {
  if (!s || --s->refcount > 0) return;
  atomic_fetch_sub_explicit(&bytes_in_use, s->nbytes, memory_order_relaxed);
  size_t cap;
  int c = size_class(s->capacity, &cap);
  size_t peak = atomic_load_explicit(&bytes_peak, memory_order_relaxed);
  size_t limit = peak > CACHE_MIN ? peak : CACHE_MIN;
  if (cap == s->capacity && cap <= limit && bytes_cached + cap > limit)
    cache_evict(bytes_cached + cap - limit, c);
  if (cap == s->capacity && bytes_cached + cap <= limit) {
    *(void **)s->data = buffers[c];
    buffers[c] = s->data;
    bytes_cached += cap;
  } else {
    free(s->data);
  }
  s->data = headers;
  headers = s;
}

/* ---- shapes ---- */

int64_t lg_shape_numel(const int64_t *shape, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] && n > INT64_MAX / shape[i]) return -1;
    n *= shape[i];
  }
  return n;
}

void lg_contiguous_strides(const int64_t *shape, int ndim, int64_t *stride) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i] > 1 ? shape[i] : 1;
  }
}

int64_t lg_numel(const lg_tensor *t) { return lg_shape_numel(t->shape, t->ndim); }

int lg_is_contiguous(const lg_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 0) return 1;
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

void *lg_data(const lg_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)dtype_sizes[t->dtype];
}

lg_status lg_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                              int64_t *out, int *nout) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int64_t x = i < n - na ? 1 : a[i - (n - na)];
    int64_t y = i < n - nb ? 1 : b[i - (n - nb)];
    if (x != y && x != 1 && y != 1)
      return lg_error(LG_ESHAPE, "%s: shapes %s and %s do not broadcast (%lld ~= %lld at dimension %d)", op,
                      SHAPEV(a, na), SHAPEV(b, nb), (long long)x, (long long)y, i + 1);
    out[i] = x == 1 ? y : x;
  }
  *nout = n;
  return LG_OK;
}

void lg_broadcast_strides(const lg_tensor *t, const int64_t *shape, int ndim, int64_t *stride) {
  int off = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    if (i < off)
      stride[i] = 0;
    else
      stride[i] = (t->shape[i - off] == 1 && shape[i] != 1) ? 0 : t->stride[i - off];
  }
}

/* ---- the strided iterator ---- */

void lg_iter_init(lg_iter *it, const int64_t *shape, int ndim) {
  it->nops = 0;
  it->ndim = ndim;
  if (ndim) memcpy(it->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

void lg_iter_add(lg_iter *it, lg_tensor *t, const int64_t *stride) {
  int k = it->nops++;
  if (!stride) stride = t->stride;
  if (it->ndim) memcpy(it->stride[k], stride, sizeof(int64_t) * (size_t)it->ndim);
  it->elsize[k] = dtype_sizes[t->dtype];
  it->base[k] = lg_data(t);
}

/* Drop size-1 dims, then merge dim i into i+1 wherever every operand allows it. */
static void iter_coalesce(lg_iter *it) {
  int n = 0;
  for (int i = 0; i < it->ndim; i++) {
    if (it->shape[i] == 1) continue;
    it->shape[n] = it->shape[i];
    for (int k = 0; k < it->nops; k++) it->stride[k][n] = it->stride[k][i];
    n++;
  }
  if (n == 0) {
    it->shape[0] = 1;
    for (int k = 0; k < it->nops; k++) it->stride[k][0] = 0;
    n = 1;
  }
  int m = 0;
  for (int i = 1; i < n; i++) {
    int ok = 1;
    for (int k = 0; k < it->nops; k++)
      if (it->stride[k][m] != it->stride[k][i] * it->shape[i]) {
        ok = 0;
        break;
      }
    if (ok) {
      it->shape[m] *= it->shape[i];
      for (int k = 0; k < it->nops; k++) it->stride[k][m] = it->stride[k][i];
    } else {
      m++;
      it->shape[m] = it->shape[i];
      for (int k = 0; k < it->nops; k++) it->stride[k][m] = it->stride[k][i];
    }
  }
  it->ndim = m + 1;
}

/* ---- parallel loops ----
** lg_parallel_for splits [0, n) into one contiguous range per thread when n is large enough to
** pay for it; fn must treat elements independently (then the result does not depend on the
** number of threads). The workers are a small pthread pool that sleeps on a condition variable
** between jobs: spinning workers (OpenMP's default) fought OpenBLAS's own spinning threads for
** the two cores and made a wide MLP's step slower than running these loops on one thread. */
#define LG_PARALLEL_GRAIN 65536
#define LG_MAX_WORKERS 64

static struct {
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  int nworkers, generation, pending;
  void (*fn)(void *ctx, int64_t lo, int64_t hi);
  void *ctx;
  int64_t n;
  int parts;
} pool = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL, 0, 0};

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg, seen = 0;
  for (;;) {
    pthread_mutex_lock(&pool.mu);
    while (pool.generation == seen) pthread_cond_wait(&pool.go, &pool.mu);
    seen = pool.generation;
    int parts = pool.parts;
    int64_t n = pool.n;
    pthread_mutex_unlock(&pool.mu);
    if (id < parts) pool.fn(pool.ctx, n * id / parts, n * (id + 1) / parts);
    pthread_mutex_lock(&pool.mu);
    if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    pthread_mutex_unlock(&pool.mu);
  }
  return NULL;
}

/* One job at a time: a thread that finds the pool busy (another thread's job) runs its own loop
** itself. */
static pthread_mutex_t pool_run = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pool_atfork_once = PTHREAD_ONCE_INIT;

/* A forked child has only the thread that forked: it starts with no workers, and locks that a
** worker may have held at the fork are made anew. */
static void pool_after_fork(void) {
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.go, NULL);
  pthread_cond_init(&pool.done, NULL);
  pthread_mutex_init(&pool_run, NULL);
  pthread_mutex_init(&ctx_lock, NULL);
  pool.nworkers = pool.generation = pool.pending = 0;
}
static void pool_register_atfork(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

lg_status lg_thread_create(void *(*fn)(void *), void *arg) {
  sigset_t old;
  lg_block_signals(&old);
  pthread_t th;
  int rc = pthread_create(&th, NULL, fn, arg);
  lg_restore_signals(&old);
  if (rc != 0) return lg_error(LG_ENOMEM, "thread: cannot start a worker thread (error %d)", rc);
  pthread_detach(th);
  return LG_OK;
}

void lg_block_signals(sigset_t *old) {
  sigset_t async;
  sigfillset(&async);
  /* the synchronous ones stay deliverable: blocking them would turn a fault into a silent kill */
  int sync[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof sync / sizeof sync[0]; i++) sigdelset(&async, sync[i]);
  pthread_sigmask(SIG_BLOCK, &async, old);
}
void lg_restore_signals(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

void lg_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
  lg_parallel_for_cost(n, 1, fn, ctx);
}

/* The least work per thread worth a split, learned from the machine: waking a sleeping worker
** took about 0.2 ms on a virtual machine here, so the SGD update of three 512 x 512 weights
** (262,144 elements each, 40 us of work) ran 2.3x slower on two threads than on one, and an MLP
** step of batch 8 went from 0.55 to 1.25 ms. After each split the caller compares how long it
** waited for the workers after its own part with that part: waiting longer than the part means
** the split lost (one thread would have done both parts in about twice the part), and the grain
** doubles; waiting under a quarter of it means there was room, and it halves back toward
** LG_PARALLEL_GRAIN. One loop in 64 that the learned grain keeps on one thread but the default
** would split is split anyway, to measure again: a grain raised by a bad moment (the machine
** busy elsewhere) comes back down. Results do not depend on it (fn's elements are independent). */
static _Atomic int64_t parallel_grain = LG_PARALLEL_GRAIN;
static _Atomic unsigned parallel_probe;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lg_parallel_for_cost(int64_t n, int64_t cost, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
  int nt = lg_get_num_threads();
  int64_t work = cost > 0 && n > INT64_MAX / cost ? INT64_MAX : n * (cost > 0 ? cost : 1);
  int64_t learned = parallel_grain, grain = learned;
  int probe = 0;
  if (nt > 1 && learned > LG_PARALLEL_GRAIN && work >= 2 * LG_PARALLEL_GRAIN && work < 2 * learned &&
      (atomic_fetch_add_explicit(&parallel_probe, 1, memory_order_relaxed) & 63) == 63)
    grain = LG_PARALLEL_GRAIN, probe = 1;
  if (nt > work / grain) nt = (int)(work / grain);
  if (nt > n) nt = (int)n;
  if (nt > LG_MAX_WORKERS + 1) nt = LG_MAX_WORKERS + 1;
  pthread_once(&pool_atfork_once, pool_register_atfork);
  if (nt <= 1 || pthread_mutex_trylock(&pool_run) != 0) {
    fn(ctx, 0, n);
    return;
  }
  /* workers 1..nt-1 (the caller is part 0), started with asynchronous signals blocked: a host's
  ** signal handler runs on the host's own threads */
  while (pool.nworkers < nt - 1 && lg_thread_create(worker, (void *)(intptr_t)(pool.nworkers + 1)) == LG_OK)
    pool.nworkers++;
  if (nt > pool.nworkers + 1) nt = pool.nworkers + 1;
  if (nt <= 1) {
    pthread_mutex_unlock(&pool_run);
    fn(ctx, 0, n);
    return;
  }
  pthread_mutex_lock(&pool.mu);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n;
  pool.parts = nt;
  pool.pending = pool.nworkers;
  pool.generation++;
  pthread_cond_broadcast(&pool.go);
  pthread_mutex_unlock(&pool.mu);
  double t0 = now_seconds();
  fn(ctx, 0, n / nt);
  double t1 = now_seconds();
  pthread_mutex_lock(&pool.mu);
  while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
  double part = t1 - t0, waited = now_seconds() - t1;
  if (waited > part && !probe && learned < ((int64_t)1 << 40)) /* not worth a wake-up */
    parallel_grain = learned * 2;
  else if (waited < part / 4 && learned > LG_PARALLEL_GRAIN)
    parallel_grain = learned / 2 > LG_PARALLEL_GRAIN ? learned / 2 : LG_PARALLEL_GRAIN;
  pthread_mutex_unlock(&pool_run);
}

typedef struct {
  lg_row_fn row;
  void *ctx;
  char **p;
  const int64_t *s;
  size_t *es;
  int nops;
} row_split;

static void run_row_range(void *c_, int64_t lo, int64_t hi) {
  row_split *c = c_;
  char *q[LG_MAX_OPERANDS];
  for (int k = 0; k < c->nops; k++) q[k] = c->p[k] + lo * c->s[k] * (int64_t)c->es[k];
  c->row(c->ctx, hi - lo, q, c->s);
}

void lg_iter_run(lg_iter *it, lg_row_fn row, void *ctx) {
  if (lg_shape_numel(it->shape, it->ndim) == 0) return;
  iter_coalesce(it);
  if (it->ndim == 1 && it->shape[0] >= 2 * LG_PARALLEL_GRAIN) { /* one long row: split it across threads */
    int64_t s[LG_MAX_OPERANDS];
    for (int k = 0; k < it->nops; k++) s[k] = it->stride[k][0];
    row_split c = {row, ctx, it->base, s, it->elsize, it->nops};
    lg_parallel_for(it->shape[0], run_row_range, &c);
    return;
  }
  int nd = it->ndim, last = nd - 1;
  int64_t idx[LG_MAX_DIMS] = {0};
  char *p[LG_MAX_OPERANDS];
  int64_t s[LG_MAX_OPERANDS];
  for (int k = 0; k < it->nops; k++) s[k] = it->stride[k][last];
  for (;;) {
    for (int k = 0; k < it->nops; k++) {
      int64_t off = 0;
      for (int d = 0; d < last; d++) off += idx[d] * it->stride[k][d];
      p[k] = it->base[k] + off * (int64_t)it->elsize[k];
    }
    row(ctx, it->shape[last], p, s);
    int d = last - 1;
    while (d >= 0 && ++idx[d] == it->shape[d]) idx[d--] = 0;
    if (d < 0) break;
  }
}

/* ---- tensor lifecycle ---- */

/* Tensor objects are recycled through a free list (linked through ->storage). */

static lg_tensor *tensor_alloc(void) {
  thread_caches_register();
  lg_tensor *t = tensor_pool;
  if (t) {
    tensor_pool = (lg_tensor *)t->storage;
    tensor_pool_n--;
    memset(t, 0, sizeof *t);
  } else if (!(t = calloc(1, sizeof *t))) {
    return NULL;
  }
  t->refcount = 1;
  return t;
}

/* Up to 65536 pooled: Lua frees tensors in bursts, all of one collection's garbage at once (tens
** of thousands in a loop of small ops), and a pool that overflows sends the rest of the burst and
** as many allocations after it through malloc (a 1-element add: 3031 instructions at this cap,
** about 1,000 more at 8192). Pooled objects were all live at once before, so the pool holds no
** more than the program's peak; lg_empty_cache gives it back. */
static void tensor_free(lg_tensor *t) {
  if (tensor_pool_n >= 65536) {
    free(t);
    return;
  }
  t->storage = (lg_storage *)tensor_pool;
  tensor_pool = t;
  tensor_pool_n++;
}

lg_status lg_new(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out) {
  if (ndim > LG_MAX_DIMS) return lg_error(LG_ESHAPE, "tensor: %d dimensions (at most %d)", ndim, LG_MAX_DIMS);
  int64_t n = lg_shape_numel(shape, ndim);
  if (n < 0)
    return lg_error(LG_ESHAPE, "tensor: invalid shape %s (negative size or too many elements)",
                    SHAPEV(shape, ndim));
  if ((uint64_t)n > ((uint64_t)1 << 62) / dtype_sizes[dt])
    return lg_error(LG_ENOMEM, "tensor: shape %s is too large", SHAPEV(shape, ndim));
  lg_tensor *t = tensor_alloc();
  if (!t) return lg_error(LG_ENOMEM, "tensor: out of memory");
  t->storage = storage_new((size_t)n * dtype_sizes[dt]);
  if (!t->storage) {
    tensor_free(t);
    return lg_error(LG_ENOMEM, "tensor: out of memory allocating %s %s (%.1f MB)", lg_dtype_name(dt),
                    SHAPEV(shape, ndim), (double)n * (double)dtype_sizes[dt] / 1e6);
  }
  t->ndim = ndim;
  t->dtype = dt;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  lg_contiguous_strides(shape, ndim, t->stride);
  *out = t;
  return LG_OK;
}

lg_status lg_tensor_empty(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out) {
  return lg_new(shape, ndim, dt, out);
}

lg_status lg_tensor_zeros(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out) {
  LG_TRY(lg_new(shape, ndim, dt, out));
  memset((*out)->storage->data, 0, (*out)->storage->nbytes);
  return LG_OK;
}

static int fits_dtype(lg_dtype dt, double v) {
  return dt != LG_INT64 || (v >= -9223372036854775808.0 && v < 9223372036854775808.0);
}

lg_status lg_tensor_full(const int64_t *shape, int ndim, lg_dtype dt, double v, lg_tensor **out) {
  if (!fits_dtype(dt, v))
    return lg_error(LG_EVALUE, "tensor: value %g does not fit %s", v, lg_dtype_name(dt));
  LG_TRY(lg_new(shape, ndim, dt, out));
  return lg_fill_(*out, v);
}

lg_status lg_tensor_from_data(const void *data, const int64_t *shape, int ndim, lg_dtype dt,
                              lg_tensor **out) {
  LG_TRY(lg_new(shape, ndim, dt, out));
  if ((*out)->storage->nbytes) memcpy((*out)->storage->data, data, (*out)->storage->nbytes);
  return LG_OK;
}

/* ---- 16-bit floats, as published weights store them (safetensors F16 and BF16) ----
** bfloat16 is the top half of a float32: shifted left 16 bits it is that float32.
** IEEE half: sign s, exponent e (5 bits, bias 15), mantissa m (10 bits):
**   e = 0        (-1)^s * m * 2^-24              zero and the subnormals
**   0 < e < 31   (-1)^s * (1 + m/1024) * 2^(e-15)  rebiased to float32's 127: e + 112
**   e = 31       inf (m = 0), nan (m != 0; the payload is kept in float32's top mantissa bits)
** Every half and every bfloat16 is exactly a float32 (and a float64): no rounding happens. */
static float half_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u, bits;
  if (e == 0) {
    float v = (float)m * 0x1p-24f; /* m < 2^10: exact */
    return s ? -v : v;
  }
  bits = s | (e == 31 ? 0x7f800000u : (e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

lg_status lg_tensor_from_16bit(const void *data, int bfloat, const int64_t *shape, int ndim, lg_dtype dt,
                               lg_tensor **out) {
  if (dt != LG_FLOAT32 && dt != LG_FLOAT64)
    return lg_error(LG_EDTYPE, "tensor: 16-bit floats convert to float32 or float64, not %s",
                    lg_dtype_name(dt));
  LG_TRY(lg_new(shape, ndim, dt, out));
  const unsigned char *p = data; /* little-endian, maybe unaligned */
  int64_t n = lg_numel(*out);
  void *d = (*out)->storage->data;
  for (int64_t i = 0; i < n; i++) {
    uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    float f = bfloat ? bf16_to_f32(h) : half_to_f32(h);
    if (dt == LG_FLOAT32)
      ((float *)d)[i] = f;
    else
      ((double *)d)[i] = f;
  }
  return LG_OK;
}

lg_tensor *lg_tensor_retain(lg_tensor *t) {
  if (t) t->refcount++;
  return t;
}

void lg_tensor_release(lg_tensor *t) {
  if (!t || --t->refcount > 0) return;
  if (t->grad_fn) {
    if (t->grad_fn->out == t) t->grad_fn->out = NULL;
    lg_node_release(t->grad_fn);
  }
  lg_hooks_free(t->hooks);
  if (t->weak) { /* edges that still point here see a dead leaf (aliases only share the handle) */
    if (t->weak->t == t) t->weak->t = NULL;
    lg_weak_release(t->weak);
  }
  lg_tensor_release(t->grad);
  lg_tensor_release(t->tangent);
  lg_tensor_release(t->base);
  storage_release(t->storage);
  tensor_free(t);
}

/* In-place writes: refused on tensors that require grad while grad mode is on (use no_grad);
** otherwise they bump the storage's version, which the tape checks. */
static lg_status inplace_check(const char *op, lg_tensor *t) {
  if (t->requires_grad && lg_grad_enabled())
    return lg_error(LG_EGRAD,
                    "%s: cannot modify a tensor that requires grad in place (%s %s); "
                    "do it inside lg.no_grad or on a detached tensor",
                    op, t->grad_fn ? "a result of" : "a leaf",
                    t->grad_fn ? lg_ops[t->grad_fn->op].name : SHAPE(t));
  t->storage->version++;
  return LG_OK;
}

lg_status lg_inplace_check(const char *op, lg_tensor *t) { return inplace_check(op, t); }

void lg_release_all(lg_tensor **ts, int n) {
  for (int i = 0; i < n; i++) lg_tensor_release(ts[i]);
}

/* Flat row-major index -> element address. */
static char *flat_addr(const lg_tensor *t, int64_t i) {
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t n = t->shape[d];
    off += (i % n) * t->stride[d];
    i /= n;
  }
  return (char *)lg_data(t) + off * (int64_t)dtype_sizes[t->dtype];
}

double lg_get_flat(const lg_tensor *t, int64_t i) { return lg_load(flat_addr(t, i), t->dtype); }
int64_t lg_get_flat_i64(const lg_tensor *t, int64_t i) {
  const char *p = flat_addr(t, i);
  return t->dtype == LG_INT64 ? *(const int64_t *)p : (int64_t)lg_load(p, t->dtype);
}
void lg_set_flat(lg_tensor *t, int64_t i, double v) { lg_store(flat_addr(t, i), t->dtype, v); }

/* ---- creation ---- */

lg_status lg_arange(double start, double stop, double step, lg_dtype dt, lg_tensor **out) {
  if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop))
    return lg_error(LG_EVALUE,
                    "arange: step must be nonzero and the bounds finite (start %g, stop %g, step %g)", start,
                    stop, step);
  if ((stop - start) / step < 0)
    return lg_error(LG_EVALUE, "arange: step %g does not go from %g towards %g", step, start, stop);
  double len = ceil((stop - start) / step);
  if (len > 1e12) return lg_error(LG_EVALUE, "arange: %g elements is too many", len);
  if (dt == LG_INT64 && !(lg_fits_i64(start) && lg_fits_i64(stop)))
    return lg_error(LG_EVALUE, "arange: bounds %g and %g do not fit int64", start, stop);
  int64_t n = (int64_t)len;
  LG_TRY(lg_new(&n, 1, dt, out));
  for (int64_t i = 0; i < n; i++) lg_set_flat(*out, i, start + (double)i * step);
  return LG_OK;
}

lg_status lg_linspace(double a, double b, int64_t n, lg_dtype dt, lg_tensor **out) {
  if (n < 0)
    return lg_error(LG_EVALUE, "linspace: number of steps must be non-negative, got %lld", (long long)n);
  if (dt == LG_INT64 && !(lg_fits_i64(a) && lg_fits_i64(b)))
    return lg_error(LG_EVALUE, "linspace: ends %g and %g do not fit int64", a, b);
  LG_TRY(lg_new(&n, 1, dt, out));
  double step = n > 1 ? (b - a) / (double)(n - 1) : 0;
  /* PyTorch fills the first half from a and the second half from b, for symmetric rounding; one
  ** step is the start */
  for (int64_t i = 0; i < n; i++)
    lg_set_flat(*out, i, n == 1 ? a : i < n / 2 ? a + step * (double)i : b - step * (double)(n - 1 - i));
  return LG_OK;
}

lg_status lg_eye(int64_t n, int64_t m, lg_dtype dt, lg_tensor **out) {
  int64_t shape[2] = {n, m};
  LG_TRY(lg_tensor_zeros(shape, 2, dt, out));
  for (int64_t i = 0; i < n && i < m; i++) lg_set_flat(*out, i * m + i, 1);
  return LG_OK;
}

/* ---- views ---- */

/* Every view passes here: whatever an op computed, a view whose shape overflows, or that reaches
** outside its storage, is refused (an error, never a read or write out of bounds). */
static lg_status view_new(lg_tensor *t, const int64_t *shape, const int64_t *stride, int ndim, int64_t offset,
                          lg_tensor **out) {
  if (ndim < 0 || ndim > LG_MAX_DIMS)
    return lg_error(LG_ESHAPE, "view: %d dimensions (at most %d)", ndim, LG_MAX_DIMS);
  int64_t n = lg_shape_numel(shape, ndim), lo = offset, hi = offset, span;
  if (n < 0) return lg_error(LG_ESHAPE, "view: shape %s has too many elements", SHAPEV(shape, ndim));
  for (int d = 0; d < ndim && n > 0; d++) {
    if (lg_mul_ovf(shape[d] - 1, stride[d], &span) ||
        lg_add_ovf(stride[d] < 0 ? lo : hi, span, stride[d] < 0 ? &lo : &hi))
      return lg_error(LG_EINDEX, "view: shape %s with strides %s overflows", SHAPEV(shape, ndim),
                      SHAPEV(stride, ndim));
  }
  if (n > 0 && (lo < 0 || hi >= (int64_t)(t->storage->nbytes / lg_dtype_size(t->dtype))))
    return lg_error(LG_EINDEX,
                    "view: shape %s with strides %s at offset %lld lies outside the storage of %lld elements",
                    SHAPEV(shape, ndim), SHAPEV(stride, ndim), (long long)offset,
                    (long long)(t->storage->nbytes / lg_dtype_size(t->dtype)));
  lg_tensor *v = tensor_alloc();
  if (!v) return lg_error(LG_ENOMEM, "view: out of memory");
  v->storage = t->storage;
  v->storage->refcount++;
  v->dtype = t->dtype;
  v->ndim = ndim;
  v->offset = offset;
  if (ndim) {
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
  }
  *out = v;
  return LG_OK;
}

/* A view remembers its base (the tensor that is no view), for in-place writes (lg_assign_). */
lg_status lg_view_of(lg_tensor *t, const int64_t *shape, const int64_t *stride, int ndim, int64_t offset,
                     lg_tensor **out) {
  LG_TRY(view_new(t, shape, stride, ndim, offset, out));
  lg_tensor *base = t->base ? t->base : t;
  (*out)->base = lg_tensor_retain(base);
  (*out)->base_gen = base->hist_gen;
  (*out)->base_tgen = base->tan_gen;
  return LG_OK;
}

/* An alias (what the tape saves) has no base: a saved output holding its own tensor would make a
** cycle (tensor -> node -> saved alias -> tensor). */
lg_status lg_alias(lg_tensor *t, lg_tensor **out) {
  return view_new(t, t->shape, t->stride, t->ndim, t->offset, out);
}

/* Resolve one -1 entry in a requested shape against numel. */
static lg_status infer_shape(const char *op, const lg_tensor *t, const int64_t *req, int ndim,
                             int64_t *shape) {
  if (ndim > LG_MAX_DIMS) return lg_error(LG_ESHAPE, "%s: %d dimensions (at most %d)", op, ndim, LG_MAX_DIMS);
  int64_t numel = lg_numel(t), known = 1;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    shape[i] = req[i];
    if (req[i] == -1) {
      if (infer >= 0)
        return lg_error(LG_ESHAPE, "%s: only one dimension can be -1 in %s", op, SHAPEV(req, ndim));
      infer = i;
    } else if (req[i] < 0) {
      return lg_error(LG_ESHAPE, "%s: invalid size %lld in shape %s", op, (long long)req[i],
                      SHAPEV(req, ndim));
    } else {
      if (req[i] && known > INT64_MAX / req[i])
        return lg_error(LG_ESHAPE, "%s: shape %s is too large", op, SHAPEV(req, ndim));
      known *= req[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      return lg_error(LG_ESHAPE, "%s: shape %s does not fit %lld elements of %s", op, SHAPEV(req, ndim),
                      (long long)numel, SHAPE(t));
    shape[infer] = numel / known;
  } else if (known != numel) {
    return lg_error(LG_ESHAPE, "%s: shape %s does not fit %lld elements of %s", op, SHAPEV(req, ndim),
                    (long long)numel, SHAPE(t));
  }
  return LG_OK;
}

/* Strides for viewing t as shape without copying, or 0 if impossible (PyTorch's
** computeStride: walk chunks of dims that are contiguous among themselves). */
static int view_strides(const lg_tensor *t, const int64_t *shape, int ndim, int64_t *stride) {
  if (lg_numel(t) == 0 || lg_is_contiguous(t)) {
    lg_contiguous_strides(shape, ndim, stride);
    return 1;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int td = t->ndim - 1; td >= 0; td--) {
    tensor_numel *= t->shape[td];
    if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return 0;
      if (td > 0) {
        chunk_base_stride = t->stride[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

lg_status lg_view(lg_tensor *t, const int64_t *req, int ndim, lg_tensor **out) {
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  LG_TRY(infer_shape("view", t, req, ndim, shape));
  if (!view_strides(t, shape, ndim, stride))
    return lg_error(LG_ESHAPE,
                    "view: cannot view a %s tensor with strides %s as %s without a copy (use reshape)",
                    SHAPE(t), SHAPEV(t->stride, t->ndim), SHAPEV(shape, ndim));
  return lg_view_of(t, shape, stride, ndim, t->offset, out);
}

lg_status lg_reshape(lg_tensor *t, const int64_t *req, int ndim, lg_tensor **out) {
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  LG_TRY(infer_shape("reshape", t, req, ndim, shape));
  if (view_strides(t, shape, ndim, stride)) return lg_view_of(t, shape, stride, ndim, t->offset, out);
  lg_tensor *c;
  LG_TRY(lg_copy_as(t, t->dtype, &c));
  lg_status st = lg_view(c, shape, ndim, out);
  lg_tensor_release(c);
  return st;
}

/* dim must index one of t's dimensions */
static lg_status check_dim(const char *op, const lg_tensor *t, int dim) {
  if (dim < 0 || dim >= t->ndim)
    return lg_error(LG_EINDEX, "%s: dimension %d out of range for %s", op, dim + 1, SHAPE(t));
  return LG_OK;
}

lg_status lg_transpose(lg_tensor *t, int d1, int d2, lg_tensor **out) {
  if (t->ndim > 0) {
    LG_TRY(check_dim("transpose", t, d1));
    LG_TRY(check_dim("transpose", t, d2));
  }
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  if (t->ndim > 0) {
    int64_t x = shape[d1];
    shape[d1] = shape[d2];
    shape[d2] = x;
    x = stride[d1];
    stride[d1] = stride[d2];
    stride[d2] = x;
  }
  return lg_view_of(t, shape, stride, t->ndim, t->offset, out);
}

lg_status lg_permute(lg_tensor *t, const int *perm, int n, lg_tensor **out) {
  if (n != t->ndim)
    return lg_error(LG_ESHAPE, "permute: %d dimensions given for a %d-d tensor %s", n, t->ndim, SHAPE(t));
  int seen[LG_MAX_DIMS] = {0};
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  for (int i = 0; i < n; i++) {
    if (perm[i] < 0 || perm[i] >= n || seen[perm[i]])
      return lg_error(LG_EINDEX, "permute: dimensions must be a permutation of 1..%d (bad or repeated %d)", n,
                      perm[i] + 1);
    seen[perm[i]] = 1;
    shape[i] = t->shape[perm[i]];
    stride[i] = t->stride[perm[i]];
  }
  return lg_view_of(t, shape, stride, n, t->offset, out);
}

lg_status lg_narrow(lg_tensor *t, int dim, int64_t start, int64_t len, lg_tensor **out) {
  LG_TRY(check_dim("narrow", t, dim));
  if (len < 0) return lg_error(LG_EVALUE, "narrow: length %lld must be non-negative", (long long)len);
  if (start < 0 || start > t->shape[dim] || len > t->shape[dim] - start)
    return lg_error(LG_EINDEX, "narrow: start %lld + length %lld exceeds size %lld of dimension %d",
                    (long long)start + 1, (long long)len, (long long)t->shape[dim], dim + 1);
  int64_t shape[LG_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[dim] = len;
  return lg_view_of(t, shape, t->stride, t->ndim, t->offset + start * t->stride[dim], out);
}

lg_status lg_select(lg_tensor *t, int dim, int64_t index, lg_tensor **out) {
  LG_TRY(check_dim("select", t, dim));
  if (index < 0 || index >= t->shape[dim])
    return lg_error(LG_EINDEX, "select: index %lld out of range for dimension %d of size %lld",
                    (long long)index + 1, dim + 1, (long long)t->shape[dim]);
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t->ndim; i++)
    if (i != dim) {
      shape[n] = t->shape[i];
      stride[n] = t->stride[i];
      n++;
    }
  return lg_view_of(t, shape, stride, n, t->offset + index * t->stride[dim], out);
}

lg_status lg_unsqueeze(lg_tensor *t, int dim, lg_tensor **out) {
  if (dim < 0 || dim > t->ndim)
    return lg_error(LG_EINDEX, "unsqueeze: dimension %d out of range for %s", dim + 1, SHAPE(t));
  if (t->ndim >= LG_MAX_DIMS)
    return lg_error(LG_ESHAPE, "unsqueeze: tensor already has %d dimensions", t->ndim);
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i <= t->ndim; i++) {
    if (i == dim) {
      shape[n] = 1;
      stride[n] = i < t->ndim ? t->shape[i] * t->stride[i] : 1;
      n++;
    }
    if (i < t->ndim) {
      shape[n] = t->shape[i];
      stride[n] = t->stride[i];
      n++;
    }
  }
  return lg_view_of(t, shape, stride, n, t->offset, out);
}

lg_status lg_squeeze(lg_tensor *t, int dim, lg_tensor **out) {
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t->ndim; i++)
    if (!(t->shape[i] == 1 && (dim < 0 || dim == i))) {
      shape[n] = t->shape[i];
      stride[n] = t->stride[i];
      n++;
    }
  return lg_view_of(t, shape, stride, n, t->offset, out);
}

lg_status lg_expand(lg_tensor *t, const int64_t *req, int ndim, lg_tensor **out) {
  if (ndim < t->ndim)
    return lg_error(LG_ESHAPE, "expand: shape %s has fewer dimensions than the tensor %s", SHAPEV(req, ndim),
                    SHAPE(t));
  if (ndim > LG_MAX_DIMS) return lg_error(LG_ESHAPE, "expand: %d dimensions (at most %d)", ndim, LG_MAX_DIMS);
  int64_t shape[LG_MAX_DIMS], stride[LG_MAX_DIMS];
  int off = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    int64_t have = i < off ? 1 : t->shape[i - off];
    int64_t want = req[i] == -1 && i >= off ? have : req[i];
    if (want < 0)
      return lg_error(LG_ESHAPE, "expand: invalid size %lld at dimension %d in %s", (long long)req[i], i + 1,
                      SHAPEV(req, ndim));
    if (have != want && have != 1)
      return lg_error(LG_ESHAPE, "expand: cannot expand %s to %s (size %lld ~= %lld at dimension %d)",
                      SHAPE(t), SHAPEV(req, ndim), (long long)have, (long long)want, i + 1);
    shape[i] = want;
    stride[i] = i < off ? 0 : (have == want ? t->stride[i - off] : 0);
  }
  if (lg_shape_numel(shape, ndim) < 0)
    return lg_error(LG_ESHAPE, "expand: shape %s has too many elements", SHAPEV(shape, ndim));
  return lg_view_of(t, shape, stride, ndim, t->offset, out);
}

/* ---- copies ---- */

typedef struct {
  lg_dtype dst, src;
} copy_ctx;

#define COPY_ROW(name, TD, TS)                                                                               \
  static void name(int64_t n, char *restrict d, int64_t sd, const char *restrict s, int64_t ss) {            \
    TD *o = (TD *)d;                                                                                         \
    const TS *x = (const TS *)s;                                                                             \
    if (sd == 1 && ss == 1)                                                                                  \
      for (int64_t i = 0; i < n; i++) o[i] = (TD)x[i];                                                       \
    else                                                                                                     \
      for (int64_t i = 0; i < n; i++) o[i * sd] = (TD)x[i * ss];                                             \
  }
COPY_ROW(copy_f32_f32, float, float)
COPY_ROW(copy_f32_f64, float, double)
COPY_ROW(copy_f32_i64, float, int64_t)
COPY_ROW(copy_f64_f32, double, float)
COPY_ROW(copy_f64_f64, double, double)
COPY_ROW(copy_f64_i64, double, int64_t)
COPY_ROW(copy_i64_i64, int64_t, int64_t)

/* float -> int64 truncates toward zero; NaN, Inf and out-of-range values become INT64_MIN
** (as x86 does) without undefined behaviour. */
static void copy_i64_float(int64_t n, char *d, int64_t sd, const char *s, int64_t ss, int src_is_f32) {
  int64_t *o = (int64_t *)d;
  for (int64_t i = 0; i < n; i++) {
    double v = src_is_f32 ? ((const float *)s)[i * ss] : ((const double *)s)[i * ss];
    o[i * sd] = (v >= -9223372036854775808.0 && v < 9223372036854775808.0) ? (int64_t)v : INT64_MIN;
  }
}

static void copy_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const copy_ctx *c = ctx;
  switch (c->dst * LG_NDTYPES + c->src) {
  case LG_FLOAT32 *LG_NDTYPES + LG_FLOAT32:
    copy_f32_f32(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT32 *LG_NDTYPES + LG_FLOAT64:
    copy_f32_f64(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT32 *LG_NDTYPES + LG_INT64:
    copy_f32_i64(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT64 *LG_NDTYPES + LG_FLOAT32:
    copy_f64_f32(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT64 *LG_NDTYPES + LG_FLOAT64:
    copy_f64_f64(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT64 *LG_NDTYPES + LG_INT64:
    copy_f64_i64(n, p[0], s[0], p[1], s[1]);
    break;
  case LG_INT64 *LG_NDTYPES + LG_FLOAT32:
    copy_i64_float(n, p[0], s[0], p[1], s[1], 1);
    break;
  case LG_INT64 *LG_NDTYPES + LG_FLOAT64:
    copy_i64_float(n, p[0], s[0], p[1], s[1], 0);
    break;
  default:
    copy_i64_i64(n, p[0], s[0], p[1], s[1]);
    break;
  }
}

/* Does writing dst read memory that src reads from a different place? (conservative) */
static int storage_overlap(const lg_tensor *a, const lg_tensor *b) { return a->storage == b->storage; }

lg_status lg_copy_(lg_tensor *dst, lg_tensor *src) {
  LG_TRY(inplace_check("copy_", dst));
  return lg_copy_values(dst, src);
}

lg_status lg_copy_values(lg_tensor *dst, lg_tensor *src) {
  int64_t bshape[LG_MAX_DIMS];
  int bn;
  LG_TRY(lg_broadcast_shapes("copy_", dst->shape, dst->ndim, src->shape, src->ndim, bshape, &bn));
  if (bn != dst->ndim || lg_shape_numel(bshape, bn) != lg_numel(dst))
    return lg_error(LG_ESHAPE, "copy_: source %s does not broadcast to destination %s", SHAPE(src),
                    SHAPE(dst));
  lg_tensor *tmp = NULL;
  if (storage_overlap(dst, src) &&
      !(dst->offset == src->offset && dst->ndim == src->ndim &&
        !memcmp(dst->stride, src->stride, sizeof(int64_t) * (size_t)dst->ndim))) {
    LG_TRY(lg_copy_as(src, src->dtype, &tmp)); /* the source aliases the destination: copy it first */
    src = tmp;
  }
  int64_t sstride[LG_MAX_DIMS];
  lg_broadcast_strides(src, dst->shape, dst->ndim, sstride);
  lg_iter it;
  lg_iter_init(&it, dst->shape, dst->ndim);
  lg_iter_add(&it, dst, NULL);
  lg_iter_add(&it, src, sstride);
  copy_ctx c = {dst->dtype, src->dtype};
  lg_iter_run(&it, copy_row, &c);
  lg_tensor_release(tmp);
  return LG_OK;
}

lg_status lg_copy_as(lg_tensor *t, lg_dtype dt, lg_tensor **out) {
  LG_TRY(lg_new(t->shape, t->ndim, dt, out));
  lg_iter it;
  lg_iter_init(&it, t->shape, t->ndim);
  lg_iter_add(&it, *out, NULL);
  lg_iter_add(&it, t, NULL);
  copy_ctx c = {dt, t->dtype};
  lg_iter_run(&it, copy_row, &c);
  return LG_OK;
}

lg_status lg_contiguous(lg_tensor *t, lg_tensor **out) {
  if (lg_is_contiguous(t)) {
    *out = lg_tensor_retain(t);
    return LG_OK;
  }
  return lg_copy_as(t, t->dtype, out);
}

lg_status lg_clone(lg_tensor *t, lg_tensor **out) { return lg_copy_as(t, t->dtype, out); }

/* t takes src's storage, geometry and dtype (PyTorch's set_ / param.data = ...): every holder
** of t sees the change. A gradient of the old dtype or shape is dropped. */
lg_status lg_set_(lg_tensor *t, lg_tensor *src) {
  LG_TRY(inplace_check("set_", t));
  if (t->base) { /* t views src now, not its old base */
    lg_tensor_release(t->base);
    t->base = NULL;
  }
  t->hist_gen++, t->tan_gen++; /* views of t's old storage are views of t no more (lg_view_refresh) */
  src->storage->refcount++;
  storage_release(t->storage);
  t->storage = src->storage;
  t->offset = src->offset;
  t->ndim = src->ndim;
  memcpy(t->shape, src->shape, sizeof t->shape);
  memcpy(t->stride, src->stride, sizeof t->stride);
  if (t->grad && (t->grad->dtype != src->dtype || t->grad->ndim != src->ndim ||
                  memcmp(t->grad->shape, src->shape, sizeof(int64_t) * (size_t)src->ndim))) {
    lg_tensor_release(t->grad);
    t->grad = NULL;
  }
  t->dtype = src->dtype;
  return LG_OK;
}

lg_status lg_to_dtype(lg_tensor *t, lg_dtype dt, lg_tensor **out) {
  if (t->dtype == dt) {
    *out = lg_tensor_retain(t);
    return LG_OK;
  }
  return lg_copy_as(t, dt, out);
}

typedef struct {
  double v;
  lg_dtype dt;
} fill_ctx;

static void fill_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const fill_ctx *c = ctx;
  switch (c->dt) {
  case LG_FLOAT32: {
    float v = (float)c->v, *o = (float *)p[0];
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = v;
    break;
  }
  case LG_FLOAT64: {
    double *o = (double *)p[0];
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = c->v;
    break;
  }
  default: {
    int64_t v = (int64_t)c->v, *o = (int64_t *)p[0];
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = v;
    break;
  }
  }
}

lg_status lg_fill_(lg_tensor *t, double v) {
  LG_TRY(inplace_check("fill_", t));
  if (!fits_dtype(t->dtype, v)) return lg_error(LG_EVALUE, "fill_: value %g does not fit int64", v);
  lg_iter it;
  lg_iter_init(&it, t->shape, t->ndim);
  lg_iter_add(&it, t, NULL);
  fill_ctx c = {v, t->dtype};
  lg_iter_run(&it, fill_row, &c);
  return LG_OK;
}

lg_status lg_scalar_like(double v, lg_dtype like, lg_tensor **out) {
  lg_dtype dt = like;
  if (like == LG_INT64 && (v != floor(v) || !(fabs(v) < 9.2e18))) dt = lg_default_dtype();
  LG_TRY(lg_new(NULL, 0, dt, out));
  lg_store((*out)->storage->data, dt, v);
  return LG_OK;
}
