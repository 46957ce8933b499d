/*
** lua_nn.c: the fused layers for lua/luagrad/nn: batch_norm, layer_norm, cross_entropy.
** The nn modules (written in Lua) check their own arguments and call these.
*/
#include "lua_binding.h"

#include <string.h>

/* core._batch_norm(x, weight|nil, bias|nil, eps) -> y, batch mean, batch variance (biased) */
static int m_batch_norm(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lg_tensor *w = lua_isnil(L, 2) ? NULL : lgL_checktensor(L, 2);
  lg_tensor *b = lua_isnil(L, 3) ? NULL : lgL_checktensor(L, 3);
  if (!w != !b) return lgL_error(L, "batch_norm: give both weight and bias, or neither");
  lg_args a = {.in = {x, w, b}, .nin = w ? 3 : 1, .dim = -1, .s = {lgL_optnumber(L, 4, NULL, 1e-5)}};
  lg_tensor **y = lgL_newslot(L), **mean = lgL_newslot(L), **var = lgL_newslot(L);
  lg_tensor *o[3];
  lgL_checkop(L, lg_apply(LG_OP_BATCH_NORM, &a, o), "batch_norm");
  *y = o[0], *mean = o[1], *var = o[2];
  return 3;
}

/* core._bn_update_stats(running_mean|nil, running_var|nil, mean, var, momentum, M) -> true, or
** false (nothing written) when a running tensor is not a contiguous match of its statistic: the
** caller then updates it with ordinary ops. */
static int m_bn_update_stats(lua_State *L) {
  lg_tensor *rm = lua_isnil(L, 1) ? NULL : lgL_checktensor(L, 1);
  lg_tensor *rv = lua_isnil(L, 2) ? NULL : lgL_checktensor(L, 2);
  lg_tensor *mean = lgL_checktensor(L, 3), *var = lgL_checktensor(L, 4);
  lua_pushboolean(L, lg_batch_norm_update_stats(rm, rv, mean, var, lgL_checknumber(L, 5, NULL),
                                                lgL_checkinteger(L, 6, NULL)) == LG_OK);
  return 1;
}

/* core._layer_norm(x, normalized_shape, weight|nil, bias|nil, eps) -> y: normalizes over the
** trailing dimensions of that shape */
static int m_layer_norm(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lg_tensor *w = lua_isnil(L, 3) ? NULL : lgL_checktensor(L, 3);
  lg_tensor *b = lua_isnil(L, 4) ? NULL : lgL_checktensor(L, 4);
  if (!w != !b) return lgL_error(L, "layer_norm: give both weight and bias, or neither");
  lg_args a = {.in = {x, w, b}, .nin = w ? 3 : 1, .dim = -1, .s = {lgL_optnumber(L, 5, NULL, 1e-5)}};
  lgL_checktype(L, 2, LUA_TTABLE, NULL);
  lgL_checkshape(L, 2, "layer_norm", a.shape, &a.nshape);
  lg_tensor **y = lgL_newslot(L);
  lg_tensor *o[3];
  lgL_checkop(L, lg_apply(LG_OP_LAYER_NORM, &a, o), "layer_norm");
  *y = o[0];
  lg_tensor_release(o[1]);
  lg_tensor_release(o[2]);
  return 1;
}

/* core._cross_entropy(logits, labels, label_smoothing, reduction) -> loss
** reduction: "mean" | "sum" | "none"; labels: 1-based int64 */
static int m_cross_entropy(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1), *t = lgL_checktensor(L, 2);
  double e = lgL_optnumber(L, 3, NULL, 0);
  const char *red = lua_isnoneornil(L, 4) ? "mean" : lgL_checkstring(L, 4, "reduction");
  int mode = strcmp(red, "none") == 0 ? 0 : strcmp(red, "mean") == 0 ? 1 : strcmp(red, "sum") == 0 ? 2 : -1;
  if (mode < 0)
    return lgL_error(L, "cross_entropy: reduction must be \"mean\", \"sum\" or \"none\", got \"%s\"", red);
  lg_args a = {.in = {x, t}, .nin = 2, .dim = -1, .s = {e}, .mode = mode};
  lg_tensor **loss = lgL_newslot(L);
  lg_tensor *o[2];
  lgL_checkop(L, lg_apply(LG_OP_CROSS_ENTROPY, &a, o), "cross_entropy");
  *loss = o[0];
  lg_tensor_release(o[1]);
  return 1;
}

/* core._scaled_dot_product_attention(q, k, v, attn_mask|nil, scale, is_causal) -> output: the
** fused op (nn/functional.lua checks the options and computes the default scale) */
static int m_attention(lua_State *L) {
  lg_tensor *q = lgL_checktensor(L, 1), *k = lgL_checktensor(L, 2), *v = lgL_checktensor(L, 3);
  lg_tensor *m = lua_isnoneornil(L, 4) ? NULL : lgL_checktensor(L, 4);
  lg_args a = {.in = {q, k, v, m},
               .nin = m ? 4 : 3,
               .dim = -1,
               .s = {lgL_checknumber(L, 5, "scale")},
               .mode = lua_toboolean(L, 6) ? 1 : 0};
  lg_tensor **y = lgL_newslot(L);
  lg_tensor *o[2];
  lgL_checkop(L, lg_apply(LG_OP_SCALED_DOT_PRODUCT_ATTENTION, &a, o), "scaled_dot_product_attention");
  *y = o[0];
  lg_tensor_release(o[1]);
  return 1;
}

/* ---- raw bytes, for the safetensors reader and writer (lua/luagrad/serialize.lua) ---- */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; byte swapping is not implemented for this machine"
#endif

/* t:_to_bytes() -> the tensor's elements, row-major, as a string (little-endian) */
static int t_to_bytes(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *c = NULL;
  lgL_check(L, lg_contiguous(t, &c));
  lua_pushlstring(L, (const char *)lg_data(c), (size_t)lg_numel(c) * lg_dtype_size(c->dtype));
  lg_tensor_release(c);
  return 1;
}

/* core._from_bytes(s, offset, nbytes, dtype, shape) -> a tensor copied from s[offset+1 .. offset+nbytes] */
static int m_from_bytes(lua_State *L) {
  size_t len;
  const char *s = lgL_checklstring(L, 1, NULL, &len);
  lua_Integer off = lgL_checkinteger(L, 2, NULL), nbytes = lgL_checkinteger(L, 3, NULL);
  lg_dtype dt = lgL_checkdtype(L, 4, LG_FLOAT32);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  lgL_checktype(L, 5, LUA_TTABLE, NULL);
  lgL_checkshape(L, 5, "load", shape, &nd);
  int64_t n = lg_shape_numel(shape, nd);
  if (n < 0) return lgL_error(L, "load: invalid shape %s", LG_SHAPEV(shape, nd));
  if (off < 0 || nbytes < 0 || (size_t)off > len || (size_t)nbytes > len - (size_t)off)
    return lgL_error(L, "load: data range [%lld, %lld) lies outside the %zu bytes read", (long long)off,
                     (long long)(off + nbytes), len);
  if ((uint64_t)n > (uint64_t)nbytes / lg_dtype_size(dt) ||
      (uint64_t)n * lg_dtype_size(dt) != (uint64_t)nbytes)
    return lgL_error(L, "load: %lld bytes do not hold a %s tensor of shape %s", (long long)nbytes,
                     lg_dtype_name(dt), LG_SHAPEV(shape, nd));
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_from_data(s + off, shape, nd, dt, slot));
  return 1;
}

/* core._from_16bit(s, offset, nbytes, kind, dtype, shape) -> a float32 or float64 tensor from the
** F16 or BF16 (kind) elements at s[offset+1 .. offset+nbytes], converted exactly */
static int m_from_16bit(lua_State *L) {
  size_t len;
  const char *s = lgL_checklstring(L, 1, NULL, &len);
  lua_Integer off = lgL_checkinteger(L, 2, NULL), nbytes = lgL_checkinteger(L, 3, NULL);
  const char *kind = lgL_checkstring(L, 4, "kind");
  if (strcmp(kind, "F16") != 0 && strcmp(kind, "BF16") != 0)
    return lgL_argerror(L, 4, "kind", "\"F16\" or \"BF16\"");
  lg_dtype dt = lgL_checkdtype(L, 5, LG_FLOAT32);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  lgL_checktype(L, 6, LUA_TTABLE, NULL);
  lgL_checkshape(L, 6, "load", shape, &nd);
  int64_t n = lg_shape_numel(shape, nd);
  if (n < 0) return lgL_error(L, "load: invalid shape %s", LG_SHAPEV(shape, nd));
  if (off < 0 || nbytes < 0 || (size_t)off > len || (size_t)nbytes > len - (size_t)off)
    return lgL_error(L, "load: data range [%lld, %lld) lies outside the %zu bytes read", (long long)off,
                     (long long)(off + nbytes), len);
  if ((uint64_t)n > (uint64_t)nbytes / 2 || (uint64_t)n * 2 != (uint64_t)nbytes)
    return lgL_error(L, "load: %lld bytes do not hold a %s tensor of shape %s", (long long)nbytes, kind,
                     LG_SHAPEV(shape, nd));
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_from_16bit(s + off, kind[0] == 'B', shape, nd, dt, slot));
  return 1;
}

/* core._linear(x, W, b|nil) -> x W^T + b */
static int m_linear(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1), *w = lgL_checktensor(L, 2);
  lg_tensor *b = lua_isnoneornil(L, 3) ? NULL : lgL_checktensor(L, 3);
  lg_args a = {.in = {x, w, b}, .nin = b ? 3 : 2, .dim = -1};
  lg_tensor **y = lgL_newslot(L);
  lgL_checkop(L, lg_apply(LG_OP_LINEAR, &a, y), "linear");
  return 1;
}

/* core._embedding(indices, weight, padding_idx (1-based) | nil) -> weight's rows at indices */
static int m_embedding(lua_State *L) {
  lg_tensor *idx = lgL_checktensor(L, 1), *w = lgL_checktensor(L, 2);
  int64_t pad = lua_isnoneornil(L, 3) ? -1 : (int64_t)lgL_checkinteger(L, 3, "padding_idx") - 1;
  lg_args a = {.in = {w, idx}, .nin = 2, .dim = -1, .start = pad};
  lg_tensor **y = lgL_newslot(L);
  lgL_checkop(L, lg_apply(LG_OP_EMBEDDING, &a, y), "embedding");
  return 1;
}

/* core._pad(x, pads, value) -> x padded with value: pads = {before_last, after_last,
** before_second_last, after_second_last, ...} as PyTorch's F.pad; a negative amount crops. One
** pad op per padded dimension (narrow for the crops), so the gradient flows back through each. */
static int m_pad(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lgL_checktype(L, 2, LUA_TTABLE, NULL);
  double value = lgL_optnumber(L, 3, NULL, 0);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  if (n % 2 != 0)
    return lgL_error(L, "pad: the padding table has %lld entries; it needs pairs (before, after)",
                     (long long)n);
  if (n / 2 > x->ndim)
    return lgL_error(L, "pad: %lld pairs of padding for a %d-d tensor %s", (long long)(n / 2), x->ndim,
                     LG_SHAPE(x));
  lgL_pushnew(L, lg_tensor_retain(x)); /* the current result, replaced as dimensions are padded */
  int padded = 0;
  for (lua_Integer k = 0; k < n / 2; k++) {
    int dim = x->ndim - 1 - (int)k;
    int64_t amount[2];
    for (int j = 0; j < 2; j++) {
      lua_geti(L, 2, 2 * k + j + 1);
      int ok;
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok)
        return lgL_error(L, "pad: entry %lld must be an integer, got %s", (long long)(2 * k + j + 1),
                         luaL_typename(L, -1));
      lua_pop(L, 1);
      amount[j] = v;
    }
    lg_tensor *cur = lgL_checktensor(L, -1), *next = NULL;
    int64_t size = cur->shape[dim];
    int64_t crop0 = amount[0] < 0 ? -amount[0] : 0, crop1 = amount[1] < 0 ? -amount[1] : 0;
    if (crop0 > size || crop1 > size - crop0)
      return lgL_error(L, "pad: cropping %lld and %lld from dimension %d of size %lld leaves nothing",
                       (long long)crop0, (long long)crop1, dim + 1, (long long)size);
    if (crop0 || crop1) {
      lg_args a = {.in = {cur}, .nin = 1, .dim = dim, .start = crop0, .len = size - crop0 - crop1};
      lgL_checkop(L, lg_apply(LG_OP_NARROW, &a, &next), "pad");
      lua_pop(L, 1);
      lgL_pushnew(L, next);
      cur = next;
    }
    int64_t before = amount[0] > 0 ? amount[0] : 0, after = amount[1] > 0 ? amount[1] : 0;
    if (before || after) {
      if (after > INT64_MAX / 4 - before - cur->shape[dim])
        return lgL_error(L, "pad: padding %lld and %lld is too large", (long long)before, (long long)after);
      lg_args a = {.in = {cur}, .nin = 1, .dim = dim, .start = before, .nshape = cur->ndim, .s = {value}};
      memcpy(a.shape, cur->shape, sizeof(int64_t) * (size_t)cur->ndim);
      a.shape[dim] += before + after;
      lgL_checkop(L, lg_apply(LG_OP_PAD, &a, &next), "pad");
      lua_pop(L, 1);
      lgL_pushnew(L, next);
      padded = 1;
    }
  }
  if (!padded) { /* only crops (or nothing): a new tensor all the same, as PyTorch, never a view */
    lg_args a = {.in = {lgL_checktensor(L, -1)}, .nin = 1};
    lg_tensor *copy = NULL;
    lgL_checkop(L, lg_apply(LG_OP_CLONE, &a, &copy), "pad");
    lgL_pushnew(L, copy);
  }
  return 1;
}

/* ---- convolution and pooling: the Lua library (nn/functional.lua) checks the options and passes
** pairs as tables {h, w} ---- */

/* a table {h, w} of integers at idx into v[0], v[1] */
static void pair_arg(lua_State *L, int idx, const char *op, const char *what, int64_t *v) {
  lgL_checktype(L, idx, LUA_TTABLE, what);
  for (int i = 0; i < 2; i++) {
    lua_geti(L, idx, i + 1);
    int ok;
    lua_Integer x = lua_tointegerx(L, -1, &ok);
    if (!ok) lgL_error(L, "%s: %s must be an integer or a pair of integers", op, what);
    v[i] = x;
    lua_pop(L, 1);
  }
}

/* core._conv2d(x, w, b|nil, stride, padding, dilation, groups) */
static int m_conv2d(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1), *w = lgL_checktensor(L, 2);
  lg_tensor *b = lua_isnoneornil(L, 3) ? NULL : lgL_checktensor(L, 3);
  lg_args a = {.in = {x, w, b}, .nin = b ? 3 : 2, .dim = -1, .nshape = 8};
  pair_arg(L, 4, "conv2d", "stride", &a.shape[0]);
  pair_arg(L, 5, "conv2d", "padding", &a.shape[2]);
  pair_arg(L, 6, "conv2d", "dilation", &a.shape[4]);
  lua_Integer groups = lgL_checkinteger(L, 7, "groups");
  if (groups < 1 || groups > INT32_MAX)
    return lgL_error(L, "conv2d: groups must be a positive integer, got %lld", (long long)groups);
  a.mode = (int)groups;
  lg_tensor **y = lgL_newslot(L);
  lgL_checkop(L, lg_apply(LG_OP_CONV2D, &a, y), "conv2d");
  return 1;
}

/* core._conv2d_adjoint("input", g, w, stride, padding, dilation, groups, {H, W}) and
** core._conv2d_adjoint("weight", x, g, stride, padding, dilation, groups, {kh, kw}): the ops
** conv2d's backward applies, called directly (the specs check their own derivatives). */
static int m_conv2d_adjoint(lua_State *L) {
  const char *which = lgL_checkstring(L, 1, "which");
  if (strcmp(which, "input") != 0 && strcmp(which, "weight") != 0)
    return lgL_error(L, "_conv2d_adjoint: which must be \"input\" or \"weight\", got \"%s\"", which);
  int w = which[0] == 'w';
  lg_tensor *a0 = lgL_checktensor(L, 2), *a1 = lgL_checktensor(L, 3);
  lg_args a = {.in = {a0, a1}, .nin = 2, .dim = -1, .nshape = 8};
  const char *op = w ? "conv2d_grad_weight" : "conv2d_grad_input";
  pair_arg(L, 4, op, "stride", &a.shape[0]);
  pair_arg(L, 5, op, "padding", &a.shape[2]);
  pair_arg(L, 6, op, "dilation", &a.shape[4]);
  lua_Integer groups = lgL_checkinteger(L, 7, "groups");
  if (groups < 1 || groups > INT32_MAX)
    return lgL_error(L, "%s: groups must be a positive integer, got %lld", op, (long long)groups);
  a.mode = (int)groups;
  pair_arg(L, 8, op, w ? "kernel size" : "input size", &a.shape[6]);
  lg_tensor **y = lgL_newslot(L);
  lgL_checkop(L, lg_apply(w ? LG_OP_CONV2D_GRAD_WEIGHT : LG_OP_CONV2D_GRAD_INPUT, &a, y), op);
  return 1;
}

/* core._max_pool2d(x, kernel, stride, padding, dilation, ceil_mode) -> values, 1-based indices */
static int m_max_pool2d(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lg_args a = {.in = {x}, .nin = 1, .dim = -1, .nshape = 8, .mode = lua_toboolean(L, 6)};
  pair_arg(L, 2, "max_pool2d", "kernel_size", &a.shape[0]);
  pair_arg(L, 3, "max_pool2d", "stride", &a.shape[2]);
  pair_arg(L, 4, "max_pool2d", "padding", &a.shape[4]);
  pair_arg(L, 5, "max_pool2d", "dilation", &a.shape[6]);
  lg_tensor **y = lgL_newslot(L), **idx = lgL_newslot(L), *o[2];
  lgL_checkop(L, lg_apply(LG_OP_MAX_POOL2D, &a, o), "max_pool2d");
  *y = o[0], *idx = o[1];
  return 2;
}

/* core._avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override|nil)
** core._avg_pool2d(x, output_size, nil, nil, ..., adaptive = true) for adaptive pooling; with a
** tenth argument {H, W}, the backward op avg_pool2d's backward applies (for the specs) */
static int m_avg_pool2d(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  int adaptive = lua_toboolean(L, 8);
  lg_args a = {.in = {x},
               .nin = 1,
               .dim = -1,
               .nshape = 8,
               .mode = (lua_toboolean(L, 5) ? 1 : 0) | (lua_toboolean(L, 6) ? 2 : 0) | (adaptive ? 4 : 0),
               .s = {lgL_optnumber(L, 7, "divisor_override", 0)}};
  pair_arg(L, 2, adaptive ? "adaptive_avg_pool2d" : "avg_pool2d", adaptive ? "output_size" : "kernel_size",
           &a.shape[0]);
  if (!adaptive) {
    pair_arg(L, 3, "avg_pool2d", "stride", &a.shape[2]);
    pair_arg(L, 4, "avg_pool2d", "padding", &a.shape[4]);
  }
  int backward = !lua_isnoneornil(L, 9);
  if (backward) pair_arg(L, 9, "avg_pool2d_backward", "input size", &a.shape[6]);
  lg_tensor **y = lgL_newslot(L);
  lg_status st = lg_apply(backward ? LG_OP_AVG_POOL2D_BACKWARD : LG_OP_AVG_POOL2D, &a, y);
  /* adaptive pooling runs the avg_pool2d op: its errors ("avg_pool2d: out of memory") name the
  ** function the user called */
  if (st != LG_OK && adaptive && strncmp(lg_errmsg(), "avg_pool2d: ", 12) == 0)
    return lgL_error(L, "adaptive_avg_pool2d: %s", lg_errmsg() + 12);
  lgL_checkop(L, st, adaptive ? "adaptive_avg_pool2d" : "avg_pool2d");
  return 1;
}

static const luaL_Reg functions[] = {{"_linear", m_linear},
                                     {"_embedding", m_embedding},
                                     {"_pad", m_pad},
                                     {"_conv2d", m_conv2d},
                                     {"_conv2d_adjoint", m_conv2d_adjoint},
                                     {"_max_pool2d", m_max_pool2d},
                                     {"_avg_pool2d", m_avg_pool2d},
                                     {"_batch_norm", m_batch_norm},
                                     {"_bn_update_stats", m_bn_update_stats},
                                     {"_layer_norm", m_layer_norm},
                                     {"_cross_entropy", m_cross_entropy},
                                     {"_scaled_dot_product_attention", m_attention},
                                     {"_from_bytes", m_from_bytes},
                                     {"_from_16bit", m_from_16bit},
                                     {NULL, NULL}};

/* Adds the functions to the module table on top of the stack, and _to_bytes to the tensor
** methods (the table just below it). */
void lgL_open_nn(lua_State *L) {
  lgL_setfuncs(L, functions);
  lua_pushcfunction(L, t_to_bytes);
  lua_setfield(L, -3, "_to_bytes");
}
