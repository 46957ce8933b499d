/*
** internal.h: helpers shared by the engine's files (not part of the public header).
*/
#ifndef LG_INTERNAL_H
#define LG_INTERNAL_H

#include "luagrad.h"

#include <signal.h>

#define LG_MAX_OPERANDS 4

/* Kernels worth wider vectors get an x86-64-v3 clone (AVX2, FMA, ...) chosen at run time (GCC's
** target_clones: the binary stays portable, x86-64 machines with AVX2 run 8 floats at a time).
** The build turns floating-point contraction off, so a clone computes exactly what the default
** code does; FMA is used only where a kernel asks for it by name. (Each comma-separated name in
** target_clones is its own clone: "avx2,arch=haswell" would make an AVX2 clone without FMA and
** an Intel-only Haswell clone.) An x86-64-v4 (AVX-512) clone as well was measured on AMD Zen 5 at
** 1 thread and did not win: W6 92-96 -> 119-121 ms, W1-W5 within noise; so there is none. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LG_NO_CLONES)
#define LG_WIDE __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LG_WIDE
#endif

/* Propagate a failing status. */
#define LG_TRY(expr)                                                                                         \
  do {                                                                                                       \
    lg_status st_ = (expr);                                                                                  \
    if (st_ != LG_OK) return st_;                                                                            \
  } while (0)

/* A context's settings (luagrad.h); lg_ctx() is the current one. */
struct lg_context {
  int grad_enabled, anomaly, fw_level;
  lg_dtype default_dtype;
  uint64_t seed, offset; /* the random generator (random.c) */
  struct lg_context *next_free;
};
extern _Thread_local lg_context *lg_ctx_cur;
extern _Thread_local lg_context lg_ctx_thread;
static inline lg_context *lg_ctx(void) { return lg_ctx_cur ? lg_ctx_cur : &lg_ctx_thread; }
#define LG_DEFAULT_SEED 67280421310721ull /* PyTorch's default seed */
/* How many contexts exist (lua_States using luagrad, C users' own): above one, the engine is
** shared, and matmul keeps OpenBLAS to one thread per product (its thread count is one global). */
int lg_contexts_alive(void);

/* Size and index arithmetic that can overflow goes through these: 1 (and *r unspecified) when the
** exact result does not fit int64. */
static inline int lg_add_ovf(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int lg_mul_ovf(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* Shape strings for messages (luagrad.h) */
#define SHAPE(t) LG_SHAPE(t)
#define SHAPEV(shape, n) LG_SHAPEV(shape, n)

/* Contiguous (row-major) strides for shape. */
void lg_contiguous_strides(const int64_t *shape, int ndim, int64_t *stride);
/* A new tensor object viewing t's storage with the given geometry (one reference). */
lg_status lg_view_of(lg_tensor *t, const int64_t *shape, const int64_t *stride, int ndim, int64_t offset,
                     lg_tensor **out);
/* Broadcast two shapes (numpy rules); on failure reports `op: shapes A and B ...`. */
lg_status lg_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                              int64_t *out, int *nout);
/* Strides of t seen as broadcast to shape (0 on broadcast dims). */
void lg_broadcast_strides(const lg_tensor *t, const int64_t *shape, int ndim, int64_t *stride);

/* ---- the strided iterator ----
** Walks nops operands of a common shape, each with its own strides (in elements), and calls
** `row` once per innermost row with element pointers and strides. Dimensions that can be merged
** for every operand are merged first, so contiguous operands give one long row. */
typedef void (*lg_row_fn)(void *ctx, int64_t n, char **ptr, const int64_t *stride);
typedef struct lg_iter {
  int nops, ndim;
  int64_t shape[LG_MAX_DIMS];
  int64_t stride[LG_MAX_OPERANDS][LG_MAX_DIMS];
  char *base[LG_MAX_OPERANDS];
  size_t elsize[LG_MAX_OPERANDS];
} lg_iter;
void lg_iter_init(lg_iter *it, const int64_t *shape, int ndim);
void lg_iter_add(lg_iter *it, lg_tensor *t, const int64_t *stride /* NULL: t's own */);
void lg_iter_run(lg_iter *it, lg_row_fn row, void *ctx);

/* dst = src (broadcast, cast), handling overlap; no autograd check, no version bump */
lg_status lg_copy_values(lg_tensor *dst, lg_tensor *src);
/* A view whose base was written in place since: take its history from the base again (tape.c) */
lg_status lg_view_refresh(lg_tensor *v);
lg_status lg_view_refresh_tangent(lg_tensor *v); /* the same for its forward-mode tangent */

/* Allocation of fresh contiguous outputs */
lg_status lg_new(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out);
/* o[i] = exp(x[i]) for n contiguous floats, as the exp op computes it (ops.c); o may be x */
void lg_exp_f32(int64_t n, float *o, const float *x);

/* matmul's forward (matmul.c) */
lg_status lg_matmul_forward(const lg_op *op, const lg_args *a, lg_tensor **out);

/* C = beta C + op(A) op(B), row-major, float32 or float64 (beta 0 or 1; ta, tb: transpose A, B):
** through OpenBLAS, or the small-product kernel (matmul.c) */
lg_status lg_gemm(lg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                  const void *B, int64_t ldb, double beta, void *C, int64_t ldc);
/* The same from the engine's workers, one thread each: lg_gemm_serial_prepare() first, on the
** thread that starts the loop; pass its result as `blas` (matmul.c). */
int lg_gemm_serial_prepare(void);
void lg_gemm_serial(int blas, lg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                    int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc);

/* convolution (conv.c) */
lg_status lg_conv2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_conv2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_conv2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout);
lg_status lg_conv2d_grad_input_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_conv2d_grad_input_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_conv2d_grad_input_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                   lg_tensor **tout);
lg_status lg_conv2d_grad_weight_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_conv2d_grad_weight_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_conv2d_grad_weight_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                    lg_tensor **tout);

/* pooling (pool.c) */
lg_status lg_max_pool2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_max_pool2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_max_pool2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout);
lg_status lg_avg_pool2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_avg_pool2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_avg_pool2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout);
lg_status lg_avg_pool2d_backward_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_avg_pool2d_backward_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_avg_pool2d_backward_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                     lg_tensor **tout);

/* fused layers (matmul.c, norm.c, loss.c) */
lg_status lg_linear_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_linear_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_linear_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout);
lg_status lg_batch_norm_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_batch_norm_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_batch_norm_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout);
lg_status lg_layer_norm_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_layer_norm_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_layer_norm_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout);
lg_status lg_cross_entropy_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_cross_entropy_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_cross_entropy_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                               lg_tensor **tout);

/* sequence ops (seq.c) */
lg_status lg_embedding_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_embedding_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_embedding_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout);
lg_status lg_masked_fill_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_masked_fill_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_masked_fill_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                             lg_tensor **tout);
lg_status lg_triangle_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_triangle_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_triangle_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                          lg_tensor **tout);
lg_status lg_sort_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_sort_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_sort_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                      lg_tensor **tout);
lg_status lg_cumsum_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_cumsum_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_cumsum_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout);
/* scaled dot-product attention (attention.c) */
lg_status lg_attention_forward(const lg_op *op, const lg_args *a, lg_tensor **out);
lg_status lg_attention_backward(lg_node *n, lg_tensor *g, lg_tensor **gin);
lg_status lg_attention_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout);

/* the tape (tape.c) */
lg_status lg_tape_record(lg_opcode code, const lg_args *a, lg_tensor **out);
void lg_node_release(lg_node *n);
void lg_fw_level_set(int level);
void lg_hooks_free(lg_hook *h);
void lg_node_pool_empty(void); /* the calling thread's pooled nodes back to the system */
void lg_weak_release(lg_weak *w);
lg_status lg_check_anomaly(const char *what, const char *opname, lg_tensor *t);

void lg_blas_threads_reset(void); /* matmul.c: forget the per-call BLAS thread count */
/* A small float32 product done here (gemm_small.c): C = beta C + op(A) op(B), row-major, beta 0 or
** 1; returns 0 (nothing done) when the product is not small or the CPU lacks AVX2 and FMA. */
int lg_gemm_small_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
const char *lg_gemm_small_kernel(void); /* which kernel runs small float32 products, for lg_blas_info */
int lg_blas_avx512_kernels(void);       /* blas.c: OpenBLAS loaded and running AVX-512 kernels */
const char *lg_wide_kernel(void);       /* ops.c: which clone of the LG_WIDE loops runs, for lg_blas_info */

/* Threads the engine starts (its workers; OpenBLAS's, created while luagrad calls it) have the
** asynchronous signals blocked, so a host's handler never runs on them (tensor.c). */
lg_status lg_thread_create(void *(*fn)(void *), void *arg);
void lg_block_signals(sigset_t *old);
void lg_restore_signals(const sigset_t *old);

/* Runs fn(ctx, lo, hi) over [0, n), split across threads when n is large (tensor.c). */
void lg_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);
/* The same for n items of about `cost` elements' work each (a sample's im2col, say): threads are
** used when the whole is worth it, never more than n. */
void lg_parallel_for_cost(int64_t n, int64_t cost, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);

/* Number of threads for the engine's own loops */
extern int lg_nthreads;

#endif
