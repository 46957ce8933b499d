/*
** random.c: random numbers from Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
** as 1, 2, 3", SC 2011), a counter-based generator.
**
** The generator's state is a 64-bit key (the seed) and a 64-bit counter offset. Element i of a
** draw is a pure function of (seed, offset + i): one Philox block of four 32-bit words. After a
** draw of n elements the offset advances by n. So a seed fixes every tensor bit for bit on every
** machine, whatever the number of threads, and elements may be computed in any order.
**
**   uniform [a, b):  u = 53 (float64) or 24 (float32) high bits of words 0-1, scaled
**   normal:          Box-Muller, u1 in (0, 1] from words 0-1, u2 from words 2-3,
**                    z = sqrt(-2 log u1) cos(2 pi u2)
**   randint [lo,hi): lo + (words 0-1 as uint64) mod (hi - lo)
*/
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* The generator is the current context's (seed, offset). */
void lg_manual_seed(uint64_t s) {
  lg_ctx()->seed = s;
  lg_ctx()->offset = 0;
}

uint64_t lg_initial_seed(void) { return lg_ctx()->seed; }

void lg_get_rng_state(uint64_t *seed, uint64_t *offset) {
  *seed = lg_ctx()->seed;
  *offset = lg_ctx()->offset;
}

void lg_set_rng_state(uint64_t seed, uint64_t offset) {
  lg_ctx()->seed = seed;
  lg_ctx()->offset = offset;
}

static void philox(uint64_t counter, uint64_t key, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

static inline uint64_t word64(const uint32_t w[4], int i) { return (uint64_t)w[i] << 32 | w[i + 1]; }
static inline double unit53(uint64_t u) { return (double)(u >> 11) * 0x1.0p-53; } /* [0, 1) */
static inline float unit24(uint32_t u) { return (float)(u >> 8) * 0x1.0p-24f; }   /* [0, 1) */

typedef enum { DRAW_UNIFORM, DRAW_NORMAL, DRAW_RANDINT, DRAW_BERNOULLI } draw_kind;

/* A draw's parameters: p1, p2 for the float draws; randint's low and the width of its range as
** integers (a double cannot hold every int64 bound). */
typedef struct {
  double p1, p2;
  int64_t low;
  uint64_t range;
} draw_params;

/* Fills n contiguous elements of dtype dt starting at counter base. */
static void draw(draw_kind kind, void *data, int64_t n, lg_dtype dt, uint64_t seed, uint64_t base,
                 draw_params d) {
  double p1 = d.p1, p2 = d.p2;
  for (int64_t i = 0; i < n; i++) {
    uint32_t w[4];
    philox(base + (uint64_t)i, seed, w);
    double v;
    switch (kind) {
    case DRAW_UNIFORM:
      if (dt == LG_FLOAT32) {
        float u = unit24(w[0]);
        ((float *)data)[i] = (float)p1 + ((float)p2 - (float)p1) * u;
        continue;
      }
      v = p1 + (p2 - p1) * unit53(word64(w, 0));
      break;
    case DRAW_NORMAL: {
      double u1 = 1.0 - unit53(word64(w, 0)), u2 = unit53(word64(w, 2));
      v = p1 + p2 * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
      break;
    }
    case DRAW_RANDINT: {
      int64_t r = (int64_t)((uint64_t)d.low + word64(w, 0) % d.range); /* wraps, never overflows */
      if (dt == LG_INT64) {
        ((int64_t *)data)[i] = r;
        continue;
      }
      v = (double)r;
      break;
    }
    default:
      v = unit53(word64(w, 0)) < p1 ? 1.0 : 0.0;
      break;
    }
    lg_store((char *)data + i * (int64_t)lg_dtype_size(dt), dt, v);
  }
}

/* Draws into t in row-major order of its logical shape, through a contiguous buffer if t is a
** strided view, and advances the offset. */
static lg_status fill_random(lg_tensor *t, draw_kind kind, draw_params d) {
  LG_TRY(lg_inplace_check(kind == DRAW_NORMAL ? "normal_" : kind == DRAW_UNIFORM ? "uniform_" : "random", t));
  int64_t n = lg_numel(t);
  lg_context *ctx = lg_ctx();
  uint64_t base = ctx->offset, seed = ctx->seed;
  ctx->offset += (uint64_t)n;
  if (lg_is_contiguous(t)) {
    draw(kind, lg_data(t), n, t->dtype, seed, base, d);
    return LG_OK;
  }
  lg_tensor *tmp;
  LG_TRY(lg_new(t->shape, t->ndim, t->dtype, &tmp));
  draw(kind, lg_data(tmp), n, t->dtype, seed, base, d);
  lg_status st = lg_copy_(t, tmp);
  lg_tensor_release(tmp);
  return st;
}

lg_status lg_uniform_(lg_tensor *t, double a, double b) {
  if (!lg_dtype_is_float(t->dtype))
    return lg_error(LG_EDTYPE, "uniform_: needs a float tensor, got %s", lg_dtype_name(t->dtype));
  if (!(a <= b) || !isfinite(a) || !isfinite(b))
    return lg_error(LG_EVALUE, "uniform_: needs finite a <= b, got a = %g, b = %g", a, b);
  return fill_random(t, DRAW_UNIFORM, (draw_params){.p1 = a, .p2 = b});
}

lg_status lg_normal_(lg_tensor *t, double mean, double std) {
  if (!lg_dtype_is_float(t->dtype))
    return lg_error(LG_EDTYPE, "normal_: needs a float tensor, got %s", lg_dtype_name(t->dtype));
  if (!(std >= 0)) return lg_error(LG_EVALUE, "normal_: std must be non-negative, got %g", std);
  return fill_random(t, DRAW_NORMAL, (draw_params){.p1 = mean, .p2 = std});
}

lg_status lg_randint_(lg_tensor *t, int64_t low, int64_t high) {
  if (high <= low)
    return lg_error(LG_EVALUE, "randint: high %lld must be greater than low %lld", (long long)high,
                    (long long)low);
  return fill_random(t, DRAW_RANDINT, (draw_params){.low = low, .range = (uint64_t)high - (uint64_t)low});
}

lg_status lg_bernoulli_(lg_tensor *t, double p) {
  if (!(p >= 0 && p <= 1)) return lg_error(LG_EVALUE, "bernoulli_: p must be in [0, 1], got %g", p);
  return fill_random(t, DRAW_BERNOULLI, (draw_params){.p1 = p});
}

/* A random permutation of 1..n (Fisher-Yates; draw i picks among the first n - i slots). */
lg_status lg_randperm(int64_t n, lg_tensor **out) {
  if (n < 0) return lg_error(LG_EVALUE, "randperm: n must be non-negative, got %lld", (long long)n);
  LG_TRY(lg_new(&n, 1, LG_INT64, out));
  int64_t *p = lg_data(*out);
  for (int64_t i = 0; i < n; i++) p[i] = i + 1;
  lg_context *ctx = lg_ctx();
  uint64_t base = ctx->offset, seed = ctx->seed;
  ctx->offset += (uint64_t)n;
  for (int64_t i = n - 1; i > 0; i--) {
    uint32_t w[4];
    philox(base + (uint64_t)i, seed, w);
    int64_t j = (int64_t)(word64(w, 0) % (uint64_t)(i + 1));
    int64_t x = p[i];
    p[i] = p[j];
    p[j] = x;
  }
  return LG_OK;
}

/* multinomial: draw j of row r uses counter offset + r n + j. With replacement each draw is
** u in [0, total) and the first category whose running sum exceeds u; without, the same over
** the weights left, the chosen one's weight then set to 0 (the running sums are recomputed in
** the order the total was summed, so the last positive category is always reached). */
static void multinomial_row(const double *p, int64_t C, int64_t n, int replacement, uint64_t seed,
                            uint64_t base, double *w, int64_t *out) {
  memcpy(w, p, sizeof(double) * (size_t)C);
  for (int64_t j = 0; j < n; j++) {
    uint32_t b[4];
    philox(base + (uint64_t)j, seed, b);
    double total = 0;
    for (int64_t c = 0; c < C; c++) total += w[c];
    double u = unit53(word64(b, 0)) * total, acc = 0;
    int64_t pick = -1;
    for (int64_t c = 0; c < C && pick < 0; c++) {
      acc += w[c];
      if (acc > u) pick = c;
    }
    if (pick < 0) /* u rounded up to the total: the last positive category */
      for (int64_t c = C - 1; c >= 0 && pick < 0; c--)
        if (w[c] > 0) pick = c;
    out[j] = pick + 1;
    if (!replacement) w[pick] = 0;
  }
}

lg_status lg_multinomial(lg_tensor *probs, int64_t n, int replacement, lg_tensor **out) {
  if (!lg_dtype_is_float(probs->dtype))
    return lg_error(LG_EDTYPE, "multinomial: probabilities must be float32 or float64, got %s",
                    lg_dtype_name(probs->dtype));
  if (probs->ndim < 1 || probs->ndim > 2)
    return lg_error(LG_ESHAPE, "multinomial: probabilities must be 1-d or 2-d, got %s", LG_SHAPE(probs));
  if (n < 0)
    return lg_error(LG_EVALUE, "multinomial: the number of samples must be non-negative, got %lld",
                    (long long)n);
  int64_t R = probs->ndim == 2 ? probs->shape[0] : 1, C = probs->shape[probs->ndim - 1];
  if (C == 0 && R > 0)
    return lg_error(LG_ESHAPE, "multinomial: no categories to draw from (probabilities %s)", LG_SHAPE(probs));
  if (!replacement && n > C)
    return lg_error(LG_EVALUE,
                    "multinomial: cannot draw %lld samples from %lld categories without replacement",
                    (long long)n, (long long)C);
  lg_tensor *pc = NULL;
  LG_TRY(lg_copy_as(probs, LG_FLOAT64, &pc));
  const double *p = lg_data(pc);
  for (int64_t r = 0; r < R; r++) {
    double total = 0;
    int64_t pos = 0;
    for (int64_t c = 0; c < C; c++) {
      double v = p[r * C + c];
      if (!(v >= 0) || isinf(v)) {
        char vs[32];
        snprintf(vs, sizeof vs, isnan(v) ? "NaN" : "%g", v);
        lg_tensor_release(pc);
        return lg_error(
            LG_EVALUE,
            "multinomial: probability %s at row %lld, category %lld (of %s) must be finite and non-negative",
            vs, (long long)r + 1, (long long)c + 1, LG_SHAPE(probs));
      }
      total += v;
      pos += v > 0;
    }
    if (!(total > 0)) {
      lg_tensor_release(pc);
      return lg_error(LG_EVALUE, "multinomial: row %lld of %s sums to 0", (long long)r + 1, LG_SHAPE(probs));
    }
    if (!replacement && n > pos) {
      lg_tensor_release(pc);
      return lg_error(LG_EVALUE,
                      "multinomial: row %lld of %s has %lld nonzero categories, too few for %lld samples "
                      "without replacement",
                      (long long)r + 1, LG_SHAPE(probs), (long long)pos, (long long)n);
    }
  }
  int64_t shape[2] = {R, n};
  *out = NULL;
  lg_status st = probs->ndim == 2 ? lg_new(shape, 2, LG_INT64, out) : lg_new(&n, 1, LG_INT64, out);
  double *w = NULL;
  if (st == LG_OK && C > 0 && !(w = malloc(sizeof(double) * (size_t)C)))
    st = lg_error(LG_ENOMEM, "multinomial: out of memory");
  if (st == LG_OK) {
    lg_context *ctx = lg_ctx();
    uint64_t base = ctx->offset, seed = ctx->seed;
    ctx->offset += (uint64_t)(R * n);
    int64_t *o = lg_data(*out);
    for (int64_t r = 0; r < R && n > 0; r++)
      multinomial_row(p + r * C, C, n, replacement, seed, base + (uint64_t)(r * n), w, o + r * n);
  } else if (*out) {
    lg_tensor_release(*out);
    *out = NULL;
  }
  free(w);
  lg_tensor_release(pc);
  return st;
}
