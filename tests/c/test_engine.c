/*
** test_engine.c: the engine used from C through luagrad.h alone, without Lua.
** Prints one line per failed check and ends with "C tests: N passed, N failed".
*/
#include "luagrad.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

static void test_create_and_arith(void) {
  double xs[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  lg_tensor *x, *y, *z;
  CHECK(lg_tensor_from_data(xs, shape, 2, LG_FLOAT64, &x) == LG_OK, "from_data");
  CHECK(lg_numel(x) == 6 && x->ndim == 2 && lg_is_contiguous(x), "numel/ndim/contiguous");
  CHECK(lg_binary_scalar(LG_OP_MUL, x, 2.0, 0, &y) == LG_OK, "mul scalar");
  CHECK(lg_binary(LG_OP_ADD, x, y, &z) == LG_OK, "add");
  for (int i = 0; i < 6; i++) CHECK(lg_get_flat(z, i) == 3 * xs[i], "add value %d: %g", i, lg_get_flat(z, i));
  lg_tensor *s;
  CHECK(lg_reduce(LG_OP_SUM, z, -1, 0, &s) == LG_OK && lg_get_flat(s, 0) == 63, "sum all = 63");
  lg_tensor_release(s);
  CHECK(lg_reduce(LG_OP_SUM, z, 1, 0, &s) == LG_OK && s->ndim == 1 && s->shape[0] == 2, "sum dim 1 shape");
  CHECK(lg_get_flat(s, 0) == 18 && lg_get_flat(s, 1) == 45, "sum dim 1 values");
  lg_tensor_release(s);
  lg_tensor_release(x);
  lg_tensor_release(y);
  lg_tensor_release(z);
}

static void test_views_and_matmul(void) {
  int64_t shape[2] = {3, 4};
  lg_tensor *a, *at, *p, *e;
  CHECK(lg_arange(0, 12, 1, LG_FLOAT32, &a) == LG_OK, "arange");
  lg_tensor *a2;
  CHECK(lg_view(a, shape, 2, &a2) == LG_OK, "view 3x4");
  CHECK(lg_transpose(a2, 0, 1, &at) == LG_OK && !lg_is_contiguous(at), "transpose is a strided view");
  CHECK(at->storage == a->storage, "views share storage");
  CHECK(lg_matmul(a2, at, &p) == LG_OK && p->shape[0] == 3 && p->shape[1] == 3, "matmul shape");
  /* row i . row j of arange(12) as 3x4 */
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      double ref = 0;
      for (int k = 0; k < 4; k++) ref += (4.0 * i + k) * (4.0 * j + k);
      CHECK(close_to(lg_get_flat(p, i * 3 + j), ref, 1e-6), "matmul [%d,%d] %g vs %g", i, j,
            lg_get_flat(p, i * 3 + j), ref);
    }
  CHECK(lg_matmul(a2, a2, &e) == LG_ESHAPE, "matmul shape error");
  CHECK(strstr(lg_errmsg(), "matmul: shapes {3,4} and {3,4} do not fit (4 ~= 3)") != NULL, "message: %s",
        lg_errmsg());
  lg_tensor *n;
  CHECK(lg_narrow(a, 0, 4, 10, &n) == LG_EINDEX, "narrow out of range");
  CHECK(strstr(lg_errmsg(), "narrow: start 5 + length 10 exceeds size 12 of dimension 1") != NULL,
        "message: %s", lg_errmsg());
  lg_tensor_release(a);
  lg_tensor_release(a2);
  lg_tensor_release(at);
  lg_tensor_release(p);
}

static void test_random(void) {
  int64_t n = 1000;
  lg_tensor *a, *b;
  lg_tensor_empty(&n, 1, LG_FLOAT64, &a);
  lg_tensor_empty(&n, 1, LG_FLOAT64, &b);
  lg_manual_seed(42);
  lg_normal_(a, 0, 1);
  lg_manual_seed(42);
  lg_normal_(b, 0, 1);
  CHECK(memcmp(lg_data(a), lg_data(b), 8 * (size_t)n) == 0, "same seed, same numbers");
  double m = 0;
  for (int64_t i = 0; i < n; i++) m += lg_get_flat(a, i);
  CHECK(fabs(m / (double)n) < 0.1, "normal mean near 0: %g", m / (double)n);
  lg_tensor_release(a);
  lg_tensor_release(b);
}

static void test_memory_accounting(void) {
  size_t before = lg_bytes_in_use();
  int64_t shape[1] = {1000};
  lg_tensor *t, *v;
  lg_tensor_zeros(shape, 1, LG_FLOAT64, &t);
  CHECK(lg_bytes_in_use() == before + 8000, "8000 bytes in use");
  lg_narrow(t, 0, 10, 5, &v);
  lg_tensor_release(t);
  CHECK(lg_bytes_in_use() == before + 8000, "a view keeps its storage");
  lg_tensor_release(v);
  CHECK(lg_bytes_in_use() == before, "storage freed with the last view");
}

/* gemm_small.c's largest product on this CPU (0: it takes none); engine-internal, declared here */
double lg_gemm_small_limit(void);

/* float32 products against a plain loop: where gemm_small.c takes the product (a CPU with AVX2
** and FMA, at most lg_gemm_small_limit() multiply-adds, n >= 16, and m >= 48 when B is
** transposed) the sum over p is one fmaf per term in order, so the results must be equal bit for
** bit; elsewhere (OpenBLAS) close. Shapes cover full and partial 6 x 16 and 6 x 32 tiles, every
** transpose and the packing's edges. */
static void test_small_products(void) {
  const int shapes[][3] = {{64, 64, 64},  {6, 16, 1},     {7, 17, 9},     {13, 33, 24},  {50, 48, 31},
                           {48, 20, 70},  {64, 128, 128}, {3, 16, 5},     {100, 10, 20}, {2, 2, 2},
                           {49, 100, 21}, {7, 40, 9},     {64, 256, 128}, {50, 31, 64}};
  int exact_capable = 0;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  exact_capable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        lg_tensor *a0 = NULL, *b0 = NULL, *a = NULL, *b = NULL, *c = NULL;
        int64_t sa[2] = {ta ? k : m, ta ? m : k}, sb[2] = {tb ? n : k, tb ? k : n};
        lg_manual_seed(100 + (uint64_t)si);
        CHECK(lg_tensor_empty(sa, 2, LG_FLOAT32, &a0) == LG_OK && lg_normal_(a0, 0, 1) == LG_OK &&
                  lg_tensor_empty(sb, 2, LG_FLOAT32, &b0) == LG_OK && lg_normal_(b0, 0, 1) == LG_OK,
              "random operands");
        if (ta)
          CHECK(lg_transpose(a0, 0, 1, &a) == LG_OK, "transpose a");
        else
          a = lg_tensor_retain(a0);
        if (tb)
          CHECK(lg_transpose(b0, 0, 1, &b) == LG_OK, "transpose b");
        else
          b = lg_tensor_retain(b0);
        CHECK(lg_matmul(a, b, &c) == LG_OK, "matmul %dx%dx%d", m, n, k);
        int small = exact_capable && (double)m * n * k <= lg_gemm_small_limit() && n >= 16 && !(tb && m < 48);
        int bad = 0;
        for (int i = 0; i < m && c; i++)
          for (int j = 0; j < n; j++) {
            float acc = 0;
            double ref = 0;
            for (int p = 0; p < k; p++) {
              float x = (float)lg_get_flat(a, (int64_t)i * k + p),
                    y = (float)lg_get_flat(b, (int64_t)p * n + j);
              acc = fmaf(x, y, acc);
              ref += (double)x * y;
            }
            double got = lg_get_flat(c, (int64_t)i * n + j);
            if (small ? got != (double)acc : !close_to(got, ref, 1e-5 * k)) bad++;
          }
        CHECK(bad == 0, "%dx%dx%d ta=%d tb=%d: %d elements differ from the %s", m, n, k, ta, tb, bad,
              small ? "fmaf loop (exactly)" : "double loop");
        lg_tensor_release(a0), lg_tensor_release(b0), lg_tensor_release(a), lg_tensor_release(b),
            lg_tensor_release(c);
      }
}

/* Adamax, NAdam, RAdam, Adadelta through the header: the first step's closed form, float32
** following float64, and refused calls that leave the parameter and NAdam's mu_product alone. */
enum { OPT_ADAMAX, OPT_NADAM, OPT_RADAM, OPT_ADADELTA };
static lg_status more_step(int which, lg_tensor *p, lg_tensor *g, lg_tensor *a, lg_tensor *b, int64_t t,
                           double *mu) {
  lg_adamax_opts ax = {0.1, 0.9, 0.999, 1e-8, 0.01, 0};
  lg_nadam_opts na = {0.1, 0.9, 0.999, 1e-8, 0.01, 4e-3};
  lg_radam_opts ra = {0.1, 0.9, 0.999, 1e-8, 0.01};
  lg_adadelta_opts ad = {1.0, 0.9, 1e-6, 0.01, 0};
  switch (which) {
  case OPT_ADAMAX:
    return lg_adamax_step(p, g, a, b, t, &ax);
  case OPT_NADAM:
    return lg_nadam_step(p, g, a, b, t, mu, &na);
  case OPT_RADAM:
    return lg_radam_step(p, g, a, b, t, &ra);
  default:
    return lg_adadelta_step(p, g, a, b, &ad);
  }
}

static void test_more_optimizers(void) {
  const char *names[] = {"Adamax", "NAdam", "RAdam", "Adadelta"};
  double p0[5] = {1, -2, 0.5, 0, 3}, g0[5] = {0.3, -0.1, 2, -1, 0.05};
  int64_t n = 5;
  for (int which = 0; which < 4; which++) {
    lg_tensor *p[2], *g[2], *a[2], *b[2];
    double mu[2] = {1, 1};
    lg_dtype dts[2] = {LG_FLOAT64, LG_FLOAT32};
    for (int k = 0; k < 2; k++) {
      float pf[5], gf[5];
      for (int i = 0; i < 5; i++) pf[i] = (float)p0[i], gf[i] = (float)g0[i];
      lg_tensor_from_data(k ? (void *)pf : (void *)p0, &n, 1, dts[k], &p[k]);
      lg_tensor_from_data(k ? (void *)gf : (void *)g0, &n, 1, dts[k], &g[k]);
      lg_tensor_zeros(&n, 1, dts[k], &a[k]);
      lg_tensor_zeros(&n, 1, dts[k], &b[k]);
    }
    /* refused: step 0, a missing state tensor, a state of another shape */
    int64_t three = 3;
    lg_tensor *short_state;
    lg_tensor_zeros(&three, 1, LG_FLOAT64, &short_state);
    if (which != OPT_ADADELTA)
      CHECK(more_step(which, p[0], g[0], a[0], b[0], 0, &mu[0]) == LG_EVALUE, "%s: step 0 refused",
            names[which]);
    CHECK(more_step(which, p[0], g[0], NULL, b[0], 1, &mu[0]) == LG_EVALUE, "%s: missing state refused",
          names[which]);
    CHECK(more_step(which, p[0], g[0], a[0], short_state, 1, &mu[0]) == LG_ESHAPE &&
              strstr(lg_errmsg(), names[which]),
          "%s: a state of shape {3} refused, naming the optimizer: %s", names[which], lg_errmsg());
    for (int i = 0; i < 5; i++)
      CHECK(lg_get_flat(p[0], i) == p0[i], "%s: a refused step leaves p", names[which]);
    CHECK(mu[0] == 1, "%s: a refused step leaves mu_product", names[which]);
    lg_tensor_release(short_state);
    /* step 1 in closed form (weight decay 0.01 folded into the gradient) */
    CHECK(more_step(which, p[0], g[0], a[0], b[0], 1, &mu[0]) == LG_OK, "%s: step 1", names[which]);
    for (int i = 0; i < 5; i++) {
      double gi = g0[i] + 0.01 * p0[i], want;
      if (which == OPT_ADAMAX)
        want = p0[i] - 0.1 * gi / (fabs(gi) + 1e-8);
      else if (which == OPT_RADAM)
        want = p0[i] - 0.1 * gi; /* rho_1 = 1 <= 5: unrectified */
      else if (which == OPT_ADADELTA)
        want = p0[i] - sqrt(1e-6) / sqrt(0.1 * gi * gi + 1e-6) * gi;
      else {
        double m1 = 0.9 * (1 - 0.5 * pow(0.96, 4e-3)), m2 = 0.9 * (1 - 0.5 * pow(0.96, 8e-3));
        double d = fabs(gi) + 1e-8;
        want = p0[i] - 0.1 * gi / d - 0.1 * m2 / (1 - m1 * m1 * m2) * 0.1 * gi / d;
      }
      CHECK(close_to(lg_get_flat(p[0], i), want, 1e-14), "%s step 1 [%d]: %.17g, want %.17g", names[which], i,
            lg_get_flat(p[0], i), want);
    }
    /* float32 follows float64 over 20 steps */
    CHECK(more_step(which, p[1], g[1], a[1], b[1], 1, &mu[1]) == LG_OK, "%s float32 step 1", names[which]);
    for (int64_t t = 2; t <= 20; t++) {
      more_step(which, p[0], g[0], a[0], b[0], t, &mu[0]);
      more_step(which, p[1], g[1], a[1], b[1], t, &mu[1]);
    }
    for (int i = 0; i < 5; i++)
      CHECK(close_to(lg_get_flat(p[1], i), lg_get_flat(p[0], i), 1e-5), "%s float32 [%d]: %g vs %g",
            names[which], i, lg_get_flat(p[1], i), lg_get_flat(p[0], i));
    if (which == OPT_NADAM)
      CHECK(mu[0] < 0.5 && mu[0] == mu[1], "NAdam: mu_product %g after 20 steps", mu[0]);
    for (int k = 0; k < 2; k++)
      lg_tensor_release(p[k]), lg_tensor_release(g[k]), lg_tensor_release(a[k]), lg_tensor_release(b[k]);
  }
}

int main(void) {
  test_create_and_arith();
  test_views_and_matmul();
  test_random();
  test_memory_accounting();
  test_small_products();
  test_more_optimizers();
  return CHECK_SUMMARY();
}
