/*
** lua_io.c: file helpers for the data pipeline: reading gzipped files through zlib, turning
** unsigned bytes into tensors (IDX image and label files), and asking whether a stream is a
** terminal (lg.progress).
*/
#include "lua_binding.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* core._read_file(path, max_bytes) -> contents, or nil, message. Gzipped files (by their magic
** bytes) are decompressed; anything past max_bytes is an error, so a hostile file cannot make us
** allocate without bound. */
static int m_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, (lua_Integer)1 << 31);
  gzFile f = gzopen(path, "rb");
  if (!f) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno ? errno : ENOENT));
    return 2;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer total = 0;
  for (;;) {
    char *p = luaL_prepbuffsize(&b, 1 << 16);
    int n = gzread(f, p, 1 << 16);
    if (n < 0) {
      int zerr;
      const char *msg = gzerror(f, &zerr);
      lua_pushfstring(L, "%s: corrupt or truncated file (%s)", path, msg);
      gzclose(f);
      return lua_error(L);
    }
    if (n == 0) break;
    total += n;
    if (total > max) {
      gzclose(f);
      return lgL_error(L, "%s: larger than the %lld bytes expected", path, (long long)max);
    }
    luaL_addsize(&b, (size_t)n);
  }
  int ok = gzclose(f) == Z_OK;
  if (!ok) return lgL_error(L, "%s: corrupt or truncated gzip data", path);
  luaL_pushresult(&b);
  return 1;
}

/* core._bytes_to_tensor(s, offset, shape, dtype, scale, shift) -> tensor whose elements are the
** unsigned bytes s[offset+1 ...] times scale plus shift (images in [0, 1], labels + 1). */
static int m_bytes_to_tensor(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  lua_Integer off = luaL_checkinteger(L, 2);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  luaL_checktype(L, 3, LUA_TTABLE);
  lgL_checkshape(L, 3, "bytes_to_tensor", shape, &nd);
  lg_dtype dt = lgL_checkdtype(L, 4, LG_FLOAT32);
  double scale = luaL_optnumber(L, 5, 1), shift = luaL_optnumber(L, 6, 0);
  int64_t n = lg_shape_numel(shape, nd);
  if (n < 0 || off < 0 || (size_t)off > len || (uint64_t)n > len - (size_t)off)
    return lgL_error(L, "bytes_to_tensor: %lld bytes at offset %lld do not fit in %zu bytes", (long long)n,
                     (long long)off, len);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_empty(shape, nd, dt, slot));
  void *d = lg_data(*slot);
  const unsigned char *p = s + off;
  switch (dt) {
  case LG_FLOAT32:
    for (int64_t i = 0; i < n; i++) ((float *)d)[i] = (float)(p[i] * scale + shift);
    break;
  case LG_FLOAT64:
    for (int64_t i = 0; i < n; i++) ((double *)d)[i] = p[i] * scale + shift;
    break;
  default:
    for (int64_t i = 0; i < n; i++) ((int64_t *)d)[i] = (int64_t)(p[i] * scale + shift);
    break;
  }
  return 1;
}

/* core._isatty(fd) -> boolean */
static int m_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg functions[] = {{"_read_file", m_read_file},
                                     {"_bytes_to_tensor", m_bytes_to_tensor},
                                     {"_isatty", m_isatty},
                                     {NULL, NULL}};

void lgL_open_io(lua_State *L) { lgL_setfuncs(L, functions); }
