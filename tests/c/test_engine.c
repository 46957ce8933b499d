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

/* float32 products against a plain loop: where gemm_small.c takes the product (a CPU with AVX2
** and FMA, at most 2^20 multiply-adds, n >= 16, and m >= 48 when B is transposed) the sum over p
** is one fmaf per term in order, so the results must be equal bit for bit; elsewhere (OpenBLAS)
** close. Shapes cover full and partial 6 x 16 tiles, every transpose and the packing's edges. */
static void test_small_products(void) {
  const int shapes[][3] = {{64, 64, 64},  {6, 16, 1},   {7, 17, 9},     {13, 33, 24},
                           {50, 48, 31},  {48, 20, 70}, {64, 128, 128}, {3, 16, 5},
                           {100, 10, 20}, {2, 2, 2},    {49, 100, 21}};
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
        int small = exact_capable && (double)m * n * k <= 1048576.0 && n >= 16 && !(tb && m < 48);
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

int main(void) {
  test_create_and_arith();
  test_views_and_matmul();
  test_random();
  test_memory_accounting();
  test_small_products();
  return CHECK_SUMMARY();
}
