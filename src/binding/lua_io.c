/*
** lua_io.c: file helpers: reading gzipped files through zlib, turning unsigned bytes into
** tensors (IDX image and label files), writing checkpoints durably and atomically (lg.save), and
** inflating zip members (lg.load_npz), asking whether a stream is a terminal (lg.progress), and listing a
*folder (lg.datasets.fortunes).
*/
#include "lua_binding.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* core._read_file(path, max_bytes) -> contents, or nil, message. Gzipped files (by their magic
** bytes) are decompressed; anything past max_bytes is an error, so a hostile file cannot make us
** allocate without bound. */
static int m_read_file(lua_State *L) {
  const char *path = lgL_checkstring(L, 1, NULL);
  lua_Integer max = lgL_optinteger(L, 2, NULL, (lua_Integer)1 << 31);
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

/* core._inflate(s, offset, csize, limit) -> data, ended | nil, message: inflates the raw deflate
** stream (no zlib or gzip wrapper, as zip members hold it) at s[offset+1 .. offset+csize], stopping
** after limit bytes of output; ended says the stream finished within them. The caller derives limit
** from what the output must hold (an .npy header's shape), so a zip bomb cannot make us allocate
** more than the tensor it claims to be. */
static int m_inflate(lua_State *L) {
  size_t len;
  const char *s = lgL_checklstring(L, 1, NULL, &len);
  lua_Integer off = lgL_checkinteger(L, 2, NULL), csize = lgL_checkinteger(L, 3, NULL);
  lua_Integer limit = lgL_checkinteger(L, 4, NULL);
  if (off < 0 || csize < 0 || limit < 0 || (size_t)off > len || (size_t)csize > len - (size_t)off ||
      (uint64_t)csize > UINT_MAX)
    return lgL_error(L, "_inflate: range [%lld, %lld) outside the %zu bytes given", (long long)off,
                     (long long)(off + csize), len);
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return lgL_error(L, "_inflate: out of memory");
  z.next_in = (Bytef *)(s + off);
  z.avail_in = (uInt)csize;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer total = 0;
  int rc = Z_OK;
  while (total < limit) {
    size_t chunk = limit - total < (1 << 16) ? (size_t)(limit - total) : (size_t)1 << 16;
    z.next_out = (Bytef *)luaL_prepbuffsize(&b, chunk);
    z.avail_out = (uInt)chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    size_t got = chunk - z.avail_out;
    luaL_addsize(&b, got);
    total += (lua_Integer)got;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break; /* the input ends mid-stream */
    if (rc != Z_OK) break;
  }
  int ended = rc == Z_STREAM_END;
  if (!ended && total < limit) { /* stopped early, not by the limit: corrupt or truncated */
    const char *why = rc == Z_DATA_ERROR && z.msg ? z.msg : "the compressed data end early";
    inflateEnd(&z);
    luaL_pushresult(&b);
    lua_pushnil(L);
    lua_pushfstring(L, "corrupt deflate data (%s)", why);
    return 2;
  }
  if (!ended) { /* at the limit: a finished stream may still be one inflate call away */
    unsigned char probe;
    z.next_out = &probe;
    z.avail_out = 1;
    rc = inflate(&z, Z_NO_FLUSH);
    ended = rc == Z_STREAM_END && z.avail_out == 1;
  }
  inflateEnd(&z);
  luaL_pushresult(&b);
  lua_pushboolean(L, ended);
  return 2;
}

/* core._crc32(s, offset, n) -> the CRC-32 of s[offset+1 .. offset+n], as zip files store it */
static int m_crc32(lua_State *L) {
  size_t len;
  const char *s = lgL_checklstring(L, 1, NULL, &len);
  lua_Integer off = lgL_optinteger(L, 2, NULL, 0), n = lgL_optinteger(L, 3, NULL, (lua_Integer)len);
  if (off < 0 || n < 0 || (size_t)off > len || (size_t)n > len - (size_t)off)
    return lgL_error(L, "_crc32: range [%lld, %lld) outside the %zu bytes given", (long long)off,
                     (long long)(off + n), len);
  uLong c = crc32(0L, Z_NULL, 0);
  const Bytef *p = (const Bytef *)(s + off);
  for (size_t left = (size_t)n; left > 0;) {
    uInt step = left > (1u << 30) ? (1u << 30) : (uInt)left;
    c = crc32(c, p, step);
    p += step, left -= step;
  }
  lua_pushinteger(L, (lua_Integer)c);
  return 1;
}

/* core._bytes_to_tensor(s, offset, shape, dtype, scale, shift) -> tensor whose elements are the
** unsigned bytes s[offset+1 ...] times scale plus shift (images in [0, 1], labels + 1). */
static int m_bytes_to_tensor(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)lgL_checklstring(L, 1, NULL, &len);
  lua_Integer off = lgL_checkinteger(L, 2, NULL);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  lgL_checktype(L, 3, LUA_TTABLE, NULL);
  lgL_checkshape(L, 3, "bytes_to_tensor", shape, &nd);
  lg_dtype dt = lgL_checkdtype(L, 4, LG_FLOAT32);
  double scale = lgL_optnumber(L, 5, NULL, 1), shift = lgL_optnumber(L, 6, NULL, 0);
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

/* ---- durable, atomic writes (lg.save) ----
** The data go to a temporary in the target's directory, named "<name>.lgtmp.<pid>.<n>", which is
** fsync'd and renamed over the target; then the directory is fsync'd, so a crash or a power cut
** leaves either the old file or the new one, never a torn one. The target is the file a symlink
** points to (the link stays a link), and keeps its permission bits. A temporary whose process has
** died (kill -9 mid-save) is removed by the next save or load of that name. */

/* The file that path names, through symlinks (a dangling link names its target to be); the result
** is malloc'd, or NULL with errno set. */
static char *resolve_target(const char *path) {
  char *cur = strdup(path);
  for (int hops = 0; cur && hops < 40; hops++) {
    struct stat st;
    if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
    char link[4096];
    ssize_t n = readlink(cur, link, sizeof link - 1);
    if (n < 0) break;
    link[n] = 0;
    char *next;
    if (link[0] == '/') {
      next = strdup(link);
    } else { /* relative to the link's directory */
      const char *slash = strrchr(cur, '/');
      size_t dlen = slash ? (size_t)(slash - cur + 1) : 0;
      next = malloc(dlen + (size_t)n + 1);
      if (next) memcpy(next, cur, dlen), memcpy(next + dlen, link, (size_t)n + 1);
    }
    free(cur);
    cur = next;
  }
  free(cur);
  if (errno == 0) errno = ELOOP;
  return NULL;
}

/* dir part ("." when none) and base name of path, into dir (n bytes); returns the base name */
static const char *split_path(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, n, ".");
    return path;
  }
  snprintf(dir, n, "%.*s", (int)(slash == path ? 1 : slash - path), path);
  return slash + 1;
}

/* Removes "<base>.lgtmp.<pid>.<n>" files in dir whose process no longer runs. */
static void remove_stale_temps(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  if (!d) return;
  size_t blen = strlen(base);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".lgtmp.", 7) != 0) continue;
    long pid = strtol(e->d_name + blen + 7, NULL, 10);
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
      char full[4096];
      snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
      unlink(full);
    }
  }
  closedir(d);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* core._save_atomic(path, header, {tensors...}) -> true, or nil, message: writes header and each
** tensor's elements (row-major, little-endian) to path, durably and atomically. */
static int m_save_atomic(lua_State *L) {
  const char *path = lgL_checkstring(L, 1, NULL);
  size_t hlen;
  const char *header = lgL_checklstring(L, 2, NULL, &hlen);
  lgL_checktype(L, 3, LUA_TTABLE, NULL);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  for (lua_Integer i = 1; i <= n; i++) { /* every tensor checked before anything is written */
    lua_rawgeti(L, 3, i);
    lgL_checktensor(L, -1);
    lua_pop(L, 1);
  }
  static _Atomic unsigned counter;
  char *target = resolve_target(path), dir[4096], tmp[4200];
  if (!target) return lgL_error(L, "save: cannot follow '%s': %s", path, strerror(errno));
  const char *base = split_path(target, dir, sizeof dir);
  remove_stale_temps(dir, base);
  snprintf(tmp, sizeof tmp, "%s/%s.lgtmp.%ld.%u", dir, base, (long)getpid(), ++counter);
  struct stat st;
  int keep_mode = stat(target, &st) == 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, keep_mode ? (st.st_mode & 07777) : 0666);
  const char *failed = NULL;
  int err = 0;
  if (fd < 0) failed = "cannot write", err = errno;
  if (!failed && keep_mode && fchmod(fd, st.st_mode & 07777) != 0)
    failed = "cannot set the mode of", err = errno;
  if (!failed && write_all(fd, header, hlen) != 0) failed = "writing", err = errno;
  for (lua_Integer i = 1; i <= n && !failed; i++) {
    lua_rawgeti(L, 3, i);
    lg_tensor *t = lg_lua_totensor(L, -1), *c = NULL;
    lua_pop(L, 1);
    if (lg_contiguous(t, &c) != LG_OK) {
      failed = "out of memory writing", err = ENOMEM;
      break;
    }
    if (write_all(fd, lg_data(c), (size_t)lg_numel(c) * lg_dtype_size(c->dtype)) != 0)
      failed = "writing", err = errno;
    lg_tensor_release(c);
  }
  if (!failed && fsync(fd) != 0) failed = "flushing", err = errno;
  if (fd >= 0 && close(fd) != 0 && !failed) failed = "closing", err = errno;
  if (!failed && rename(tmp, target) != 0) failed = "cannot replace", err = errno;
  if (failed) {
    if (fd >= 0) unlink(tmp);
    lua_pushnil(L);
    lua_pushfstring(L, "save: %s '%s': %s", failed, path, strerror(err));
    free(target);
    return 2;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the rename itself reaches the disk */
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  free(target);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._clean_temps(path): removes the stale temporaries a killed save of path left */
static int m_clean_temps(lua_State *L) {
  char *target = resolve_target(lgL_checkstring(L, 1, NULL)), dir[4096];
  if (target) remove_stale_temps(dir, split_path(target, dir, sizeof dir));
  free(target);
  return 0;
}

/* core._list_dir(path) -> {names...} sorted bytewise, {name = kind}, or nil, message. kind is
** "file" (a regular file), "link" (a symbolic link, not followed), "dir" or "other"; "." and ".."
** are left out. lg.datasets.fortunes reads the regular files of a folder in this order. */
static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int m_list_dir(lua_State *L) {
  const char *path = lgL_checkstring(L, 1, NULL);
  DIR *d = opendir(path);
  if (!d) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_newtable(L); /* names, in readdir's order first */
  lua_newtable(L); /* kinds */
  struct dirent *e;
  lua_Integer n = 0;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char full[4096];
    struct stat st;
    snprintf(full, sizeof full, "%s/%s", path, e->d_name);
    const char *kind = "other";
    if (lstat(full, &st) == 0)
      kind = S_ISREG(st.st_mode)   ? "file"
             : S_ISLNK(st.st_mode) ? "link"
             : S_ISDIR(st.st_mode) ? "dir"
                                   : "other";
    lua_pushstring(L, e->d_name);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++n);
    lua_pushstring(L, kind);
    lua_rawset(L, -3);
  }
  closedir(d);
  /* sort the names bytewise: the order must not depend on the file system */
  const char **names = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *names, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -3, i);
    names[i - 1] = lua_tostring(L, -1); /* anchored in the names table */
    lua_pop(L, 1);
  }
  qsort(names, (size_t)n, sizeof *names, cmp_names);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushstring(L, names[i - 1]);
    lua_rawseti(L, -2, i);
  }
  lua_replace(L, -4); /* the sorted list takes the unsorted one's place */
  lua_pop(L, 1);      /* the scratch array */
  return 2;
}

/* core._isatty(fd) -> boolean */
static int m_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)lgL_checkinteger(L, 1, NULL)));
  return 1;
}

/* core._buffer(t) -> address, numel, dtype name: the memory of a contiguous tensor, for the
** MPI module (luagrad.mpi), which moves bytes and knows no tensors. The caller keeps t alive
** while the address is used; writes through it bypass autograd's version counters. */
static int m_buffer(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (!lg_is_contiguous(t)) return lgL_error(L, "_buffer: the tensor must be contiguous");
  lua_pushlightuserdata(L, lg_data(t));
  lua_pushinteger(L, (lua_Integer)lg_numel(t));
  lua_pushstring(L, lg_dtype_name(t->dtype));
  return 3;
}

static const luaL_Reg functions[] = {{"_read_file", m_read_file},
                                     {"_save_atomic", m_save_atomic},
                                     {"_clean_temps", m_clean_temps},
                                     {"_bytes_to_tensor", m_bytes_to_tensor},
                                     {"_isatty", m_isatty},
                                     {"_list_dir", m_list_dir},
                                     {"_buffer", m_buffer},
                                     {"_inflate", m_inflate},
                                     {"_crc32", m_crc32},
                                     {NULL, NULL}};

void lgL_open_io(lua_State *L) { lgL_setfuncs(L, functions); }
