/*
** test_op_table.c: walks every row of the engine's op table (lg_ops[] in src/engine/ops.c).
**
** The rows are written with designated initializers, so their order in the source does not
** matter; what can still go wrong is a row under the wrong designator or a row left out. This
** test reads the lg_opcode enum from include/luagrad.h and checks, for every opcode:
**   - the row exists and its name is the enum's name in lower case (LG_OP_LOG1P -> "log1p");
**   - names are unique; arity, outputs and the forward function are set;
**   - a differentiable row has both rules (backward and forward mode), a row marked
**     LG_F_NO_GRAD has neither; a shared derivative or fused backward comes with its rules;
**   - rows the binding exposes have what their calling form needs (kernels, parameters).
** Ends with "C tests: N passed, N failed".
*/
#include "luagrad.h"
#include "check.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The identifiers of `typedef enum lg_opcode { ... }` in the header, in order, without LG_OP_. */
static int read_opcodes(const char *path, char names[][64], int max) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  static char text[1 << 20];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = 0;
  char *p = strstr(text, "typedef enum lg_opcode {");
  char *end = p ? strstr(p, "} lg_opcode;") : NULL;
  if (!p || !end) return -1;
  int n = 0;
  while ((p = strstr(p, "LG_OP_")) && p < end) {
    p += 6;
    int k = 0;
    while ((isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_') && k < 63)
      names[n][k++] = *p++;
    names[n][k] = 0;
    /* skip mentions inside comments: an enumerator is followed by ',' (or '=' / space then ',') */
    char *q = p;
    while (*q == ' ') q++;
    if (*q == ',' && n < max) n++;
  }
  return n;
}

int main(void) {
  static char names[512][64];
  int n = read_opcodes(LG_SOURCE_DIR "/include/luagrad.h", names, 512);
  CHECK(n == LG_NUM_OPS, "the header's lg_opcode has %d entries before LG_NUM_OPS, the table %d rows", n,
        (int)LG_NUM_OPS);
  if (n != LG_NUM_OPS) n = n < LG_NUM_OPS ? n : LG_NUM_OPS;

  for (int i = 0; i < n; i++) {
    const lg_op *op = &lg_ops[i];
    char want[64];
    size_t k = 0;
    for (; names[i][k]; k++) want[k] = (char)tolower((unsigned char)names[i][k]);
    want[k] = 0;
    if (!op->name) {
      CHECK(0, "LG_OP_%s: no row in lg_ops[] (add [LG_OP_%s] = ... in src/engine/ops.c)", names[i], names[i]);
      continue;
    }
    CHECK(strcmp(op->name, want) == 0, "LG_OP_%s: the row under this designator is \"%s\", expected \"%s\"",
          names[i], op->name, want);
    int dup = -1;
    for (int j = 0; j < i; j++)
      if (lg_ops[j].name && !strcmp(lg_ops[j].name, op->name)) dup = j;
    CHECK(dup < 0, "%s: name used by two rows (%d and %d)", op->name, dup, i);
    CHECK(op->forward != NULL, "%s: no forward function", op->name);
    CHECK(op->arity == -1 || (op->arity >= 1 && op->arity <= LG_MAX_INPUTS), "%s: arity %d", op->name,
          op->arity);
    CHECK(op->nout >= 1 && op->nout <= 3, "%s: %d outputs", op->name, op->nout);

    int no_grad = (op->flags & LG_F_NO_GRAD) != 0;
    if (no_grad) {
      CHECK(!op->backward && !op->jvp && !op->deriv, "%s: marked LG_F_NO_GRAD but has rules", op->name);
    } else {
      CHECK(op->backward != NULL, "%s: differentiable (no LG_F_NO_GRAD) but no backward rule", op->name);
      CHECK(op->jvp != NULL, "%s: differentiable (no LG_F_NO_GRAD) but no forward-mode rule", op->name);
    }
    CHECK(!op->fused_bw[0] == !op->fused_bw[1], "%s: a fused backward needs both float kernels", op->name);
    CHECK(!op->fused_bw[0] || op->deriv, "%s: a fused backward without the derivative it shortcuts",
          op->name);
    CHECK(!op->deriv || op->arity == 1, "%s: a shared derivative on a %d-input op", op->name, op->arity);
    if (op->fused_bw[0])
      CHECK(op->flags & (LG_F_SAVE_IN | LG_F_SAVE_OUT), "%s: a fused backward but nothing saved", op->name);

    switch (op->call) {
    case LG_CALL_UNARY:
    case LG_CALL_ACTIVATION:
    case LG_CALL_BINARY:
      CHECK(op->kernel[LG_FLOAT32] && op->kernel[LG_FLOAT64],
            "%s: an elementwise row needs float32 and float64 kernels", op->name);
      CHECK(op->arity == (op->call == LG_CALL_BINARY ? 2 : 1), "%s: calling form and arity %d differ",
            op->name, op->arity);
      break;
    case LG_CALL_REDUCE:
    case LG_CALL_DIM:
      CHECK(op->arity == 1, "%s: a reduction takes one tensor, arity %d", op->name, op->arity);
      break;
    case LG_CALL_NONE:
      break;
    default:
      CHECK(0, "%s: unknown calling form %d", op->name, (int)op->call);
    }
    if (op->call == LG_CALL_ACTIVATION)
      CHECK(!op->params.mode_key || (op->params.modes[0] && op->params.modes[1]),
            "%s: a mode option needs two modes", op->name);
    else
      CHECK(!op->params.name[0] && !op->params.mode_key, "%s: parameters on a row that is not an activation",
            op->name);
    CHECK(!(op->flags & LG_F_INPLACE) || op->call == LG_CALL_BINARY, "%s: LG_F_INPLACE needs the binary form",
          op->name);
  }
  return CHECK_SUMMARY();
}
