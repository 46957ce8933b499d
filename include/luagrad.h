/*
** luagrad.h: the public header of the luagrad engine.
**
** The engine is plain C: n-d strided tensors over reference-counted storage, one op table
** (ops.c) that every operation goes through, and OpenBLAS for matrix products. It never
** touches a lua_State; the Lua binding (lua_*.c) is a separate layer over this header, and a C
** program can use the engine without Lua at all (see tests/c/test_engine.c).
**
** Conventions of this header:
** - Every call that can fail returns an lg_status; on failure lg_errmsg() holds a message that
**   names the operation and the shapes or values at fault ("narrow: start 4 + length 3 exceeds
**   size 5 of dimension 1"). Dimensions and indices in messages are 1-based, as users see them.
** - Dimensions passed to the engine are 0-based and already normalised (no negatives); the
**   binding converts from Lua's 1-based, possibly negative, dimensions.
** - Index *values* held in int64 tensors (argmax's result, index_select's and gather's indices,
**   max's second result) are 1-based, as Lua users see them; dimensions, starts and indices passed
**   as C arguments are 0-based.
** - Tensors are reference counted: lg_tensor_retain/lg_tensor_release. Every function that
**   returns a tensor through an out-parameter hands the caller one reference.
*/
#ifndef LUAGRAD_H
#define LUAGRAD_H

#include <stddef.h>
#include <stdint.h>

#define LG_VERSION "0.1.0"
#define LG_MAX_DIMS 16

typedef enum lg_dtype { LG_FLOAT32, LG_FLOAT64, LG_INT64, LG_NDTYPES } lg_dtype;

typedef enum lg_status {
  LG_OK = 0,
  LG_ENOMEM, /* allocation failed or a size overflowed */
  LG_ESHAPE, /* shapes do not fit */
  LG_EDTYPE, /* dtype not supported by the operation */
  LG_EINDEX, /* index or dimension out of range */
  LG_EVALUE, /* bad argument value */
  LG_EGRAD,  /* autograd misuse */
  LG_EIO     /* file input/output */
} lg_status;

/* Reference-counted flat buffer (malloc alignment), from the caching allocator in tensor.c. */
typedef struct lg_storage {
  void *data;
  size_t nbytes;
  size_t capacity; /* the buffer's size class */
  int refcount;
  int64_t version; /* bumped by every in-place write; the tape checks it (views share it) */
} lg_storage;

struct lg_node;
struct lg_hook;

/* A strided view of a storage. shape and stride are in elements; offset too. */
typedef struct lg_tensor {
  lg_storage *storage;
  int64_t offset;
  int64_t shape[LG_MAX_DIMS];
  int64_t stride[LG_MAX_DIMS];
  int ndim;
  lg_dtype dtype;
  int refcount;
  /* autograd (see tape.c) */
  int requires_grad;         /* a leaf that wants .grad, or any output of a recorded op */
  int retains_grad;          /* a non-leaf that keeps its .grad (retain_grad) */
  struct lg_tensor *grad;    /* accumulated gradient, or NULL */
  struct lg_node *grad_fn;   /* the op that made this tensor, or NULL for a leaf */
  struct lg_tensor *tangent; /* forward mode: the tangent paired with this primal, or NULL */
  struct lg_hook *hooks;     /* gradient hooks, called in registration order */
  struct lg_weak *weak;      /* how the tape's edges refer to this leaf (NULL until needed) */
  /* in-place writes (lg_assign_): a view knows the tensor whose storage it views, so a write
  ** through the view becomes part of that tensor's history, and a view whose base was written
  ** since takes its history from the base again */
  struct lg_tensor *base; /* a view: the tensor it views (itself no view), held; else NULL */
  int64_t base_gen;       /* a view: base->hist_gen when the view's history was taken */
  int64_t hist_gen;       /* bumped each time an in-place write gives this tensor a new history */
  int64_t base_tgen;      /* the same two for forward mode's tangents */
  int64_t tan_gen;
} lg_tensor;

/* A weak reference to a leaf: the tape's edges hold these rather than the leaf itself, so a
** leaf's .grad that carries a graph (create_graph) does not keep the leaf alive through it.
** t becomes NULL when the leaf dies; a gradient for a dead leaf has nowhere to go and is dropped. */
typedef struct lg_weak {
  lg_tensor *t;
  int refcount;
} lg_weak;

/* ---- errors, dtypes, runtime ---- */
const char *lg_errmsg(void);
lg_status lg_error(lg_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *lg_dtype_name(lg_dtype dt);
int lg_dtype_from_name(const char *name, lg_dtype *dt); /* 1 if known */
size_t lg_dtype_size(lg_dtype dt);
int lg_dtype_is_float(lg_dtype dt);
lg_dtype lg_promote(lg_dtype a, lg_dtype b);
lg_dtype lg_default_dtype(void);
void lg_set_default_dtype(lg_dtype dt);

/* ---- contexts: the settings one user of the engine works with ----
** Grad mode, forward-mode level, anomaly detection, the default dtype and the random generator
** belong to a context. Each thread has one of its own, used when no other is set; the Lua binding
** gives each lua_State its own and makes it current whenever Lua calls into luagrad, so settings
** never leak between states, nor between threads. Everything else is safe to use from several
** threads at once, each with its own tensors (a tensor is used by one thread at a time). */
typedef struct lg_context lg_context;
lg_context *lg_context_new(void); /* default settings, a generator seeded as lg_manual_seed's default */
void lg_context_free(lg_context *c);
/* Makes c the calling thread's current context (NULL: the thread's own); returns the previous one
** (NULL for the thread's own). */
lg_context *lg_context_use(lg_context *c);
void lg_set_num_threads(int n);
int lg_get_num_threads(void);
/* Bytes of tensor storage currently allocated, and allocated in all (for GC pacing). */
size_t lg_bytes_in_use(void);
size_t lg_bytes_allocated_total(void);
size_t lg_bytes_cached(void); /* freed buffers the allocator keeps for reuse */
void lg_empty_cache(void);    /* returns them to the system */
/* Formats a shape as "{2,3}" into buf (returns buf). */
char *lg_shape_str(const int64_t *shape, int ndim, char *buf, size_t n);
/* The same into a buffer of its own that lives to the end of the enclosing block, for messages:
** lg_error(LG_ESHAPE, "op: shapes %s and %s", LG_SHAPE(a), LG_SHAPE(b)). */
typedef struct lg_shapebuf {
  char s[LG_MAX_DIMS * 21 + 3];
} lg_shapebuf;
#define LG_SHAPE(t) (lg_shape_str((t)->shape, (t)->ndim, (lg_shapebuf){{0}}.s, sizeof(lg_shapebuf)))
#define LG_SHAPEV(shape, n) (lg_shape_str((shape), (n), (lg_shapebuf){{0}}.s, sizeof(lg_shapebuf)))
/* numel of a shape, or -1 if a size is negative or the product overflows int64. */
int64_t lg_shape_numel(const int64_t *shape, int ndim);

/* The BLAS in use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..., kernels Haswell (chosen by luagrad for
** this CPU)", or why it could not be loaded; written into buf (n bytes), which is returned. */
const char *lg_blas_info(char *buf, size_t n);

/* ---- tensor lifecycle ---- */
lg_status lg_tensor_empty(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out);
lg_status lg_tensor_zeros(const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out);
lg_status lg_tensor_full(const int64_t *shape, int ndim, lg_dtype dt, double v, lg_tensor **out);
lg_status lg_tensor_from_data(const void *data, const int64_t *shape, int ndim, lg_dtype dt, lg_tensor **out);
/* A float32 or float64 tensor from n little-endian IEEE halves (bfloat = 0) or bfloat16s
** (bfloat = 1), converted exactly: inf, nan, -0 and the subnormals kept. */
lg_status lg_tensor_from_16bit(const void *data, int bfloat, const int64_t *shape, int ndim, lg_dtype dt,
                               lg_tensor **out);
lg_tensor *lg_tensor_retain(lg_tensor *t);
void lg_tensor_release(lg_tensor *t);
int64_t lg_numel(const lg_tensor *t);
int lg_is_contiguous(const lg_tensor *t);
void *lg_data(const lg_tensor *t); /* address of the first element */
/* Element access by a flat row-major index into the logical shape (slow, for tests/printing). */
double lg_get_flat(const lg_tensor *t, int64_t i);
int64_t lg_get_flat_i64(const lg_tensor *t, int64_t i);
void lg_set_flat(lg_tensor *t, int64_t i, double v);
/* Whether v converts to int64 by truncation (finite and in range). */
static inline int lg_fits_i64(double v) { return v >= -9223372036854775808.0 && v < 9223372036854775808.0; }
/* One element at address p (from lg_data and the strides) as a double, and back (to int64 by
** truncation; NaN, infinities and values out of range become INT64_MIN, as x86 converts them,
** without undefined behaviour: callers that take values from users check lg_fits_i64 first). */
static inline double lg_load(const void *p, lg_dtype dt) {
  switch (dt) {
  case LG_FLOAT32:
    return *(const float *)p;
  case LG_FLOAT64:
    return *(const double *)p;
  default:
    return (double)*(const int64_t *)p;
  }
}
static inline void lg_store(void *p, lg_dtype dt, double v) {
  switch (dt) {
  case LG_FLOAT32:
    *(float *)p = (float)v;
    break;
  case LG_FLOAT64:
    *(double *)p = v;
    break;
  default:
    *(int64_t *)p = lg_fits_i64(v) ? (int64_t)v : INT64_MIN;
    break;
  }
}
/* Releases n tensors (NULL entries skipped). */
void lg_release_all(lg_tensor **ts, int n);

/* ---- creation ---- */
lg_status lg_arange(double start, double stop, double step, lg_dtype dt, lg_tensor **out);
lg_status lg_linspace(double a, double b, int64_t n, lg_dtype dt, lg_tensor **out);
lg_status lg_eye(int64_t n, int64_t m, lg_dtype dt, lg_tensor **out);

/* ---- random numbers (random.c): Philox4x32-10, counter based ---- */
void lg_manual_seed(uint64_t seed);
uint64_t lg_initial_seed(void);
/* The generator's whole state (seed and counter offset), to save and restore it exactly. */
void lg_get_rng_state(uint64_t *seed, uint64_t *offset);
void lg_set_rng_state(uint64_t seed, uint64_t offset);
lg_status lg_uniform_(lg_tensor *t, double a, double b);
lg_status lg_normal_(lg_tensor *t, double mean, double std);
lg_status lg_randint_(lg_tensor *t, int64_t low, int64_t high); /* [low, high) */
lg_status lg_randperm(int64_t n, lg_tensor **out);              /* 1..n shuffled, int64 */
lg_status lg_bernoulli_(lg_tensor *t, double p);
/* n draws of category indices (1-based, int64) from each row of probs (1-d: (C) -> (n); 2-d:
** (R, C) -> (R, n)), weights proportional to probs (not normalised; each row needs a positive
** sum, no negative, infinite or NaN entry); without replacement a category is drawn at most
** once, so n must not exceed the row's nonzero entries. */
lg_status lg_multinomial(lg_tensor *probs, int64_t n, int replacement, lg_tensor **out);

/* ---- views (share storage; never copy) ---- */
lg_status lg_view(lg_tensor *t, const int64_t *shape, int ndim, lg_tensor **out);
lg_status lg_reshape(lg_tensor *t, const int64_t *shape, int ndim, lg_tensor **out);
lg_status lg_transpose(lg_tensor *t, int d1, int d2, lg_tensor **out);
lg_status lg_permute(lg_tensor *t, const int *perm, int n, lg_tensor **out);
lg_status lg_narrow(lg_tensor *t, int dim, int64_t start, int64_t len, lg_tensor **out);
lg_status lg_select(lg_tensor *t, int dim, int64_t index, lg_tensor **out);
lg_status lg_unsqueeze(lg_tensor *t, int dim, lg_tensor **out);
lg_status lg_squeeze(lg_tensor *t, int dim, lg_tensor **out); /* dim < 0: all size-1 dims */
lg_status lg_expand(lg_tensor *t, const int64_t *shape, int ndim, lg_tensor **out);
lg_status lg_alias(lg_tensor *t, lg_tensor **out); /* same view, new tensor object, no history */

/* ---- copies ---- */
lg_status lg_contiguous(lg_tensor *t, lg_tensor **out); /* returns t itself (retained) if already */
lg_status lg_clone(lg_tensor *t, lg_tensor **out);
lg_status lg_to_dtype(lg_tensor *t, lg_dtype dt, lg_tensor **out); /* t itself if same dtype */
lg_status lg_copy_as(lg_tensor *t, lg_dtype dt, lg_tensor **out);  /* always a new contiguous tensor */
lg_status lg_copy_(lg_tensor *dst, lg_tensor *src);                /* broadcasts src */
lg_status lg_fill_(lg_tensor *t, double v);
lg_status lg_set_(lg_tensor *t, lg_tensor *src); /* t becomes a view of src's storage */

/* ---- the op table (ops.c) ----
** Every computing operation is one row of lg_ops[], indexed by lg_opcode and written with a
** designated initializer ([LG_OP_EXP] = ...), so the order of the rows does not matter.
** lg_apply runs the row's forward function (and, with autograd, records the op on the tape).
** tests/c/test_op_table.c checks every row against this enum: its name is the enum's name in
** lower case, and a row that is differentiable has both rules. */
typedef enum lg_opcode {
  /* unary elementwise */
  LG_OP_NEG,
  LG_OP_EXP,
  LG_OP_LOG,
  LG_OP_SQRT,
  LG_OP_RSQRT,
  LG_OP_ABS,
  LG_OP_SIN,
  LG_OP_COS,
  LG_OP_TANH,
  LG_OP_SIGMOID,
  LG_OP_RELU,
  LG_OP_SIGN,
  LG_OP_FLOOR,
  LG_OP_CEIL,
  LG_OP_ROUND,
  LG_OP_LOG1P,
  LG_OP_EXPM1,
  LG_OP_RECIPROCAL,
  LG_OP_SQUARE,
  LG_OP_ERF,
  LG_OP_TAN,
  LG_OP_ATAN,
  LG_OP_SINH,
  LG_OP_COSH,
  LG_OP_LOG2,
  LG_OP_LOG10,
  LG_OP_TRUNC,
  /* activations with parameters (args.s, args.mode) */
  LG_OP_GELU,
  LG_OP_LEAKY_RELU,
  LG_OP_ELU,
  LG_OP_SOFTPLUS,
  LG_OP_SILU,
  /* binary elementwise, broadcasting */
  LG_OP_ADD,
  LG_OP_SUB,
  LG_OP_MUL,
  LG_OP_DIV,
  LG_OP_POW,
  LG_OP_MAXIMUM,
  LG_OP_MINIMUM,
  LG_OP_FLOOR_DIVIDE,
  LG_OP_REMAINDER,
  LG_OP_ATAN2,
  LG_OP_EQ,
  LG_OP_NE,
  LG_OP_LT,
  LG_OP_LE,
  LG_OP_GT,
  LG_OP_GE,
  /* others */
  LG_OP_WHERE,
  LG_OP_CLAMP,
  LG_OP_SUM,
  LG_OP_MEAN,
  LG_OP_VAR,
  LG_OP_STD,
  LG_OP_PROD,
  LG_OP_NORM,
  LG_OP_LOGSUMEXP,
  LG_OP_MAX,
  LG_OP_MIN,
  LG_OP_ARGMAX,
  LG_OP_ARGMIN,
  LG_OP_SOFTMAX,
  LG_OP_LOG_SOFTMAX,
  LG_OP_MATMUL,
  LG_OP_INDEX_SELECT,
  LG_OP_GATHER,
  LG_OP_CAT,
  LG_OP_INDEX_ADD,
  LG_OP_SCATTER_ADD,
  /* views and copies */
  LG_OP_RESHAPE,
  LG_OP_EXPAND,
  LG_OP_PERMUTE,
  LG_OP_NARROW,
  LG_OP_SELECT,
  LG_OP_PAD,
  LG_OP_AS_STRIDED,
  LG_OP_STRIDED_SCATTER,
  LG_OP_CLONE,
  LG_OP_CAST,
  /* fused layers: batch_norm and layer_norm (norm.c), cross_entropy (loss.c) */
  LG_OP_BATCH_NORM,
  LG_OP_LAYER_NORM,
  LG_OP_CROSS_ENTROPY,
  LG_OP_LINEAR, /* x W^T + b as one GEMM (matmul.c) */
  /* convolution and its adjoints (conv.c) */
  LG_OP_CONV2D,
  LG_OP_CONV2D_GRAD_INPUT,
  LG_OP_CONV2D_GRAD_WEIGHT,
  /* pooling (pool.c) */
  LG_OP_MAX_POOL2D,
  LG_OP_AVG_POOL2D,
  LG_OP_AVG_POOL2D_BACKWARD,
  /* sequence ops (seq.c) */
  LG_OP_EMBEDDING,   /* in: weight, indices; start: the padding row (0-based) or -1 */
  LG_OP_MASKED_FILL, /* in: x, mask; s[0]: the value */
  LG_OP_TRIL,        /* start: the diagonal */
  LG_OP_TRIU,
  LG_OP_SORT,   /* values, indices; mode: descending */
  LG_OP_TOPK,   /* values, indices; len: k; mode: largest */
  LG_OP_CUMSUM, /* mode: from the end */
  /* attention (attention.c) */
  LG_OP_SCALED_DOT_PRODUCT_ATTENTION,
  LG_NUM_OPS
} lg_opcode;

#define LG_MAX_INPUTS 4 /* scaled_dot_product_attention: q, k, v and a mask */

/* Arguments of one op application. Which fields an op reads is stated in its table row. */
typedef struct lg_args {
  lg_tensor *in[LG_MAX_INPUTS]; /* tensor inputs (cat takes its list through `list`) */
  int nin;
  lg_tensor **list; /* cat: the tensors to join */
  int nlist;
  double s[2];  /* scalars: clamp lo/hi, norm p, var correction, activation parameters */
  int has_s[2]; /* clamp: whether lo / hi are given */
  int dim;      /* reduction/gather dimension, 0-based; -1 = over everything */
  int keepdim;
  int64_t shape[LG_MAX_DIMS]; /* reshape/expand: the target shape; permute: the order */
  int nshape;
  int64_t start, len;          /* narrow: start and length; select: start is the index */
  int mode;                    /* gelu: 1 = tanh approximation */
  int64_t stride[LG_MAX_DIMS]; /* as_strided, strided_scatter: the window's strides (shape, start too) */
} lg_args;

struct lg_op;
struct lg_scratch;
typedef lg_status (*lg_forward_fn)(const struct lg_op *op, const lg_args *a, lg_tensor **out);
/* Reverse mode: given the output's gradient g, put each input's gradient in gin[i] (NULL means
** zero or not needed; n->needs[i] says which are wanted). The tape sums broadcast gradients back
** to each input's shape, so a rule may return a gradient of the output's shape. */
typedef lg_status (*lg_backward_fn)(struct lg_node *n, lg_tensor *g, lg_tensor **gin);
/* Forward mode: given input tangents tin[i] (NULL = zero), compute the output tangent. */
typedef lg_status (*lg_jvp_fn)(const struct lg_op *op, const lg_args *a, lg_tensor *out,
                               lg_tensor *const *tin, lg_tensor **tout);
/* Unary elementwise ops give their derivative once: f'(x) from the input x and the output y
** (written with recorded ops on the scratch list of compose.h); one backward rule (g f'(x)) and
** one forward-mode rule (t f'(x)) serve them all. */
typedef lg_tensor *(*lg_deriv_fn)(struct lg_scratch *s, lg_tensor *x, lg_tensor *y, const lg_args *a);
typedef void (*lg_kernel)(void); /* a per-dtype kernel; each op family casts it to its type */

/* How the Lua binding exposes a row (as a tensor method and an lg.* function of the op's name):
** the binding registers one closure per row of these kinds, with the opcode as its upvalue. */
typedef enum lg_call {
  LG_CALL_NONE = 0,   /* internal, or bound by hand (its arguments need more than these forms) */
  LG_CALL_UNARY,      /* t:name()                                                           */
  LG_CALL_ACTIVATION, /* t:name(p1, p2) or t:name({param = v, mode_key = "mode"}): params below */
  LG_CALL_BINARY,     /* t:name(u), lg.name(a, b): tensors or numbers, broadcasting           */
  LG_CALL_REDUCE,     /* t:name(), t:name(dim, keepdim), t:name({dim =, keepdim =})           */
  LG_CALL_DIM         /* t:name(dim) or t:name({dim =}): along one dimension (softmax)        */
} lg_call;

/* The named parameters of an activation (LG_CALL_ACTIVATION): up to two numbers (args.s[0],
** args.s[1]) with defaults, and an optional string option choosing args.mode (its index). */
typedef struct lg_params {
  const char *name[2];
  double def[2];
  const char *mode_key; /* e.g. "approximate" */
  const char *modes[3]; /* e.g. {"none", "tanh"}: mode 0, 1 */
} lg_params;

typedef struct lg_op {
  const char *name;
  int arity;                    /* number of tensor inputs (-1: a list) */
  int nout;                     /* outputs (max/min give values and indices) */
  lg_forward_fn forward;        /* checks arguments, allocates the output, runs the kernel */
  lg_kernel kernel[LG_NDTYPES]; /* by input dtype; NULL for int64 means "computed in floats" */
  int flags;                    /* LG_F_* below */
  lg_backward_fn backward;      /* NULL: not differentiable (the row says LG_F_NO_GRAD) */
  lg_jvp_fn jvp;                /* NULL: no forward mode */
  lg_deriv_fn deriv;            /* unary elementwise: f'(x); backward and jvp are then the shared rules */
  lg_kernel fused_bw[2];        /* optional: g * f' in one pass (float32, float64), when not recording */
  lg_call call;                 /* how the binding exposes it */
  lg_params params;             /* LG_CALL_ACTIVATION: its parameters */
} lg_op;

#define LG_F_INDEX_OUT 1   /* the (first) output is an int64 index tensor */
#define LG_F_INT_DIVIDES 2 /* integer kernel divides: a zero divisor is an error */
#define LG_F_FLOAT_OUT 4   /* int64 input gives a float output (mean, var, ...) */
#define LG_F_SAVE_IN 8     /* backward reads the inputs: keep them (and check their versions) */
#define LG_F_SAVE_OUT 16   /* backward reads the output: keep it */
#define LG_F_VIEW 32       /* the output is a view of input 0 (shares its storage) */
#define LG_F_SAVE_AUX 64   /* backward reads the extra outputs (batch statistics): keep them */
#define LG_F_NO_GRAD 128   /* not differentiable (comparisons, argmax): no rules, by intent */
#define LG_F_INPLACE 256   /* the binding also registers name_ (in place: t = t op u) */

/* ---- the tape (tape.c) ----
** Define-by-run: lg_apply records a node for every op whose inputs require grad while grad mode
** is on. A node keeps the op's arguments, the tensors its backward rule reads, and one edge per
** input: the input's own node, or the input itself if it is a leaf that requires grad. */
typedef struct lg_edge {
  struct lg_node *fn; /* the input's grad_fn (a reference), or NULL */
  lg_weak *leaf;      /* or the input, if it is a leaf that requires grad (a weak reference) */
  int ndim;           /* the input's shape and dtype: gradients are summed back to them */
  int64_t shape[LG_MAX_DIMS];
  lg_dtype dtype;
} lg_edge;

typedef struct lg_node {
  lg_opcode op;
  int refcount;
  int nin;        /* number of inputs, so of edges */
  lg_edge *edges; /* nin edges: inline_edges, or malloc'd for long cat lists */
  lg_edge inline_edges[LG_MAX_INPUTS];
  int needs[LG_MAX_INPUTS]; /* which inputs need a gradient (for lists: all) */
  lg_args args;             /* arguments; in[] holds the saved inputs when LG_F_SAVE_IN */
  lg_tensor *saved_out;     /* the output without its grad_fn, when LG_F_SAVE_OUT */
  lg_tensor *saved_aux[2];  /* outputs 2 and 3 (e.g. batch mean and variance), when LG_F_SAVE_AUX */
  int64_t versions[LG_MAX_INPUTS + 1];           /* storage versions of the saved tensors when recorded */
  const lg_storage *storages[LG_MAX_INPUTS + 1]; /* and their storages (set_ may swap one) */
  lg_tensor *out;        /* the output while it lives (not a reference): hooks, retain_grad */
  struct lg_hook *hooks; /* hooks registered on the output: they live as long as the graph does */
  int released;          /* saved tensors were freed by a backward without retain_graph */
  /* backward pass scratch */
  lg_tensor *grad; /* accumulated gradient of the output */
  int deps, mark;
  struct lg_node *next; /* free list / work list */
} lg_node;

/* A gradient hook: called with the gradient of the tensor it is registered on; it may set
** *replace to a new gradient (one reference). A leaf's hooks live on the tensor and a result's
** on its grad_fn node (so they run even when nothing but the graph holds the result); free(ud)
** runs when the tensor or the node dies. */
typedef struct lg_hook {
  lg_status (*fn)(void *ud, lg_tensor *grad, lg_tensor **replace);
  void (*free)(void *ud);
  void *ud;
  struct lg_hook *next;
} lg_hook;

int lg_grad_enabled(void);
void lg_set_grad_enabled(int on);
void lg_set_anomaly(int on);
int lg_anomaly_enabled(void);
/* Forward mode: while the level is above zero, ops propagate tangents. */
void lg_fw_level_push(void);
void lg_fw_level_pop(void);
int lg_fw_level(void);

/* Reverse pass from roots with their gradients (NULL = ones for a one-element root).
** inputs == NULL: accumulate into the leaves' .grad (backward()).
** inputs given: return the gradient of each input in results[i] (NULL if unused) and leave
** every .grad alone (autograd.grad()). */
typedef struct lg_backward_opts {
  int retain_graph, create_graph;
} lg_backward_opts;
lg_status lg_backward(lg_tensor **roots, lg_tensor **grads, int nroots, lg_tensor **inputs, int ninputs,
                      lg_backward_opts opts, lg_tensor **results);
lg_status lg_tensor_add_hook(lg_tensor *t, const lg_hook *h);
/* In place: t takes r's values (r has t's shape; cast to t's dtype) and, while grad mode is on
** and either requires grad, r's history: t becomes a result of r's op, and if t is a view, its
** base records the write as r scattered into it (its other views follow). op names the in-place
** method in errors (a leaf that requires grad, or a view of one, cannot be written). */
lg_status lg_assign_(lg_tensor *t, lg_tensor *r, const char *op);
/* Call before writing into t in place: an error (naming op) if t requires grad while grad mode
** is on; otherwise bumps its storage's version, so the tape sees that tensors it saved changed. */
lg_status lg_inplace_check(const char *op, lg_tensor *t);
/* The saved output of a node, as the backward rule should read it (with create_graph it is
** reconnected to the node, so the gradient's own graph flows through it). */
lg_tensor *lg_node_saved_out(lg_node *n);

extern const lg_op lg_ops[LG_NUM_OPS];

/* Runs op on args; out must have room for lg_ops[op].nout tensors. */
lg_status lg_apply(lg_opcode op, const lg_args *a, lg_tensor **out);

/* Shorthands over lg_apply. */
lg_status lg_unary(lg_opcode op, lg_tensor *x, lg_tensor **out);
lg_status lg_binary(lg_opcode op, lg_tensor *a, lg_tensor *b, lg_tensor **out);
lg_status lg_binary_scalar(lg_opcode op, lg_tensor *a, double s, int scalar_first, lg_tensor **out);
lg_status lg_reduce(lg_opcode op, lg_tensor *x, int dim, int keepdim, lg_tensor **out);
lg_status lg_matmul(lg_tensor *a, lg_tensor *b, lg_tensor **out);

/* A 0-d tensor holding v: of dtype `like` unless v is not whole and `like` is int64. */
lg_status lg_scalar_like(double v, lg_dtype like, lg_tensor **out);

/* ---- optimizer updates (optim.c): one fused pass over a parameter, its gradient and state ---- */
typedef struct lg_sgd_opts {
  double lr, momentum, dampening, weight_decay;
  int nesterov, maximize;
} lg_sgd_opts;
typedef struct lg_adam_opts {
  double lr, beta1, beta2, eps, weight_decay;
  int maximize, decoupled; /* decoupled: AdamW */
} lg_adam_opts;
typedef struct lg_rmsprop_opts {
  double lr, alpha, eps, weight_decay, momentum;
  int maximize;
} lg_rmsprop_opts;
typedef struct lg_adagrad_opts {
  double lr, lr_decay, weight_decay, eps;
  int maximize;
} lg_adagrad_opts;

/* buf: momentum buffer or NULL (no momentum); first: buf holds nothing yet */
lg_status lg_sgd_step(lg_tensor *p, lg_tensor *g, lg_tensor *buf, int first, const lg_sgd_opts *o);
/* vmax: NULL unless amsgrad; step counts from 1 */
lg_status lg_adam_step(lg_tensor *p, lg_tensor *g, lg_tensor *m, lg_tensor *v, lg_tensor *vmax, int64_t step,
                       const lg_adam_opts *o);
/* ga: NULL unless centered; buf: NULL unless momentum > 0 */
lg_status lg_rmsprop_step(lg_tensor *p, lg_tensor *g, lg_tensor *sq, lg_tensor *ga, lg_tensor *buf,
                          const lg_rmsprop_opts *o);
lg_status lg_adagrad_step(lg_tensor *p, lg_tensor *g, lg_tensor *sum, int64_t step, const lg_adagrad_opts *o);

/* Adamax, NAdam, RAdam, Adadelta (PyTorch 1.13's update rules, optim.c) */
typedef struct lg_adamax_opts {
  double lr, beta1, beta2, eps, weight_decay;
  int maximize;
} lg_adamax_opts;
typedef struct lg_nadam_opts {
  double lr, beta1, beta2, eps, weight_decay, momentum_decay;
} lg_nadam_opts;
typedef struct lg_radam_opts {
  double lr, beta1, beta2, eps, weight_decay;
} lg_radam_opts;
typedef struct lg_adadelta_opts {
  double lr, rho, eps, weight_decay;
  int maximize;
} lg_adadelta_opts;

/* exp_inf: the exponentially weighted infinity norm; step counts from 1 */
lg_status lg_adamax_step(lg_tensor *p, lg_tensor *g, lg_tensor *m, lg_tensor *u, int64_t step,
                         const lg_adamax_opts *o);
/* *mu_product: the product of the momentum coefficients of the earlier steps (1 before the first),
** multiplied by this step's on success */
lg_status lg_nadam_step(lg_tensor *p, lg_tensor *g, lg_tensor *m, lg_tensor *v, int64_t step,
                        double *mu_product, const lg_nadam_opts *o);
lg_status lg_radam_step(lg_tensor *p, lg_tensor *g, lg_tensor *m, lg_tensor *v, int64_t step,
                        const lg_radam_opts *o);
lg_status lg_adadelta_step(lg_tensor *p, lg_tensor *g, lg_tensor *square_avg, lg_tensor *acc_delta,
                           const lg_adadelta_opts *o);

/* BatchNorm's running statistics, in place and off the tape (norm.c), from the batch mean and
** biased variance of M values per channel: running_mean = (1 - f) running_mean + f mean,
** running_var = (1 - f) running_var + f var M / (M - 1). Either running tensor may be NULL.
** LG_EVALUE (nothing written) unless each is a contiguous tensor of its statistic's dtype and size. */
lg_status lg_batch_norm_update_stats(lg_tensor *running_mean, lg_tensor *running_var, lg_tensor *mean,
                                     lg_tensor *var, double f, int64_t M);

#endif
