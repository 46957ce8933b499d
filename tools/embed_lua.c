/*
** embed_lua.c: the build-time generator that embeds lua/ into the binary.
**
**   lg_embed_lua <luadir> <out.c> <files...>
**
** Each file must lie under <luadir> and end in ".lua". The output is a C file holding each
** file compiled to Lua bytecode (lua_dump, with its debug information: errors still name the file
** and line) as an unsigned char array, and a table lg_lua_sources[] of {module name, chunk name,
** bytes, length}, ended by a row of NULLs, that src/binding/lua_preload.c registers in
** package.preload. Bytecode, because compiling the library's source at every start took most of
** `require "luagrad"` (35 files: 9.9 ms to compile, 1.9 ms to load as bytecode). A file that
** does not compile fails the build here. Module names follow Lua's searchers in reverse:
**
**   luagrad/init.lua       -> "luagrad"            chunk "@lua/luagrad/init.lua"
**   luagrad/nn/init.lua    -> "luagrad.nn"         chunk "@lua/luagrad/nn/init.lua"
**   luagrad/nn/linear.lua  -> "luagrad.nn.linear"  chunk "@lua/luagrad/nn/linear.lua"
**
** The table is sorted by module name, so the output does not depend on the order of the
** arguments. Errors go to stderr with a non-zero exit. The output is written to a temporary
** file beside <out.c> and renamed into place only when complete, so a failed run never leaves
** a half-written file for the next build to compile.
*/
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One embedded file. */
typedef struct source {
  char *module;  /* "luagrad.nn.linear" */
  char *relpath; /* "luagrad/nn/linear.lua" */
  unsigned char *bytes;
  size_t len;
} source;

static const char *progname = "lg_embed_lua";
static char *tmpname = NULL; /* the temporary output, removed on failure */

static void fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", progname);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (tmpname != NULL) remove(tmpname);
  exit(EXIT_FAILURE);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n > 0 ? n : 1);
  if (p == NULL) fail("out of memory");
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Reads a whole file; binary-safe. */
static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  size_t cap = 4096, n = 0;
  unsigned char *buf;
  if (f == NULL) fail("cannot open '%s': %s", path, strerror(errno));
  buf = xmalloc(cap);
  for (;;) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    cap *= 2;
    buf = realloc(buf, cap);
    if (buf == NULL) fail("out of memory reading '%s'", path);
  }
  if (ferror(f)) fail("cannot read '%s': %s", path, strerror(errno));
  fclose(f);
  *len = n;
  return buf;
}

/* The path of file relative to dir ("luagrad/nn/linear.lua"), or NULL if it is not under dir. */
static const char *relative_path(const char *dir, const char *file) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--; /* "lua/" is "lua" */
  if (strncmp(file, dir, n) != 0 || file[n] != '/') return NULL;
  file += n;
  while (*file == '/') file++;
  return *file ? file : NULL;
}

/* "luagrad/nn/init.lua" -> "luagrad.nn"; fails on names Lua's searchers could not map back. */
static char *module_name(const char *rel) {
  size_t n = strlen(rel);
  char *mod;
  size_t i;
  if (n <= 4 || strcmp(rel + n - 4, ".lua") != 0) fail("'%s' does not end in .lua", rel);
  n -= 4;
  if (n >= 5 && strncmp(rel + n - 5, "/init", 5) == 0)
    n -= 5; /* a package's init.lua */
  else if (n == 4 && strncmp(rel, "init", 4) == 0)
    fail("'%s': init.lua at the top names no module", rel);
  mod = xstrndup(rel, n);
  for (i = 0; i < n; i++) {
    if (mod[i] == '.') fail("'%s': a '.' inside a path component would make an ambiguous module name", rel);
    if (mod[i] == '/') {
      if (i == 0 || mod[i - 1] == '.' || mod[i + 1] == '/' || mod[i + 1] == '\0')
        fail("'%s': empty path component", rel);
      mod[i] = '.';
    }
  }
  return mod;
}

typedef struct dump_buf {
  unsigned char *p;
  size_t n, cap;
} dump_buf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  dump_buf *b = ud;
  (void)L;
  if (b->n + sz > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + sz) cap *= 2;
    unsigned char *q = realloc(b->p, cap);
    if (q == NULL) return 1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, sz);
  b->n += sz;
  return 0;
}

/* Replaces s's source text by its bytecode, compiled with the chunk name the loader uses. */
static void compile(lua_State *L, source *s) {
  char chunk[4096];
  dump_buf b = {NULL, 0, 0};
  snprintf(chunk, sizeof chunk, "@lua/%s", s->relpath);
  if (luaL_loadbufferx(L, (const char *)s->bytes, s->len, chunk, "t") != LUA_OK)
    fail("%s", lua_tostring(L, -1));
  if (lua_dump(L, dump_writer, &b, 0) != 0 || b.n == 0) fail("cannot dump the bytecode of '%s'", s->relpath);
  lua_pop(L, 1);
  free(s->bytes);
  s->bytes = b.p;
  s->len = b.n;
}

static int by_module(const void *a, const void *b) {
  return strcmp(((const source *)a)->module, ((const source *)b)->module);
}

/* Writes s as a C string literal (the names are plain paths, but escape anyway). */
static void put_cstring(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 32 || c >= 127)
      fprintf(out, "\\%03o", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

static void write_output(FILE *out, const char *luadir, const source *src, int n) {
  int i;
  fprintf(out, "/* Generated by lg_embed_lua from %s. Do not edit: edit the .lua files. */\n", luadir);
  fprintf(out, "#include <stddef.h>\n\n");
  fprintf(out, "/* Keep in sync with src/binding/lua_preload.c. */\n");
  fprintf(out, "#include \"lua_sources.h\"\n\n");
  for (i = 0; i < n; i++) {
    size_t k;
    fprintf(out, "/* %s */\nstatic const unsigned char src_%d[%zu] = {", src[i].relpath, i,
            src[i].len > 0 ? src[i].len : 1);
    for (k = 0; k < src[i].len; k++) fprintf(out, "%s%u,", k % 16 == 0 ? "\n  " : "", src[i].bytes[k]);
    if (src[i].len == 0) fprintf(out, "0");
    fprintf(out, "\n};\n\n");
  }
  fprintf(out, "const struct lg_lua_source lg_lua_sources[] = {\n");
  for (i = 0; i < n; i++) {
    char chunk[4096];
    snprintf(chunk, sizeof chunk, "@lua/%s", src[i].relpath);
    fprintf(out, "  {");
    put_cstring(out, src[i].module);
    fprintf(out, ", ");
    put_cstring(out, chunk);
    fprintf(out, ", src_%d, %zu},\n", i, src[i].len);
  }
  fprintf(out, "  {NULL, NULL, NULL, 0}\n};\n");
}

int main(int argc, char **argv) {
  const char *luadir, *outpath;
  source *src;
  int n = argc - 3, i;
  FILE *out;
  size_t tl;
  if (argc < 3) {
    fprintf(stderr, "usage: %s <luadir> <out.c> <files...>\n", progname);
    return EXIT_FAILURE;
  }
  luadir = argv[1];
  outpath = argv[2];
  src = xmalloc(sizeof(source) * (size_t)(n > 0 ? n : 1));
  for (i = 0; i < n; i++) {
    const char *file = argv[i + 3];
    const char *rel = relative_path(luadir, file);
    if (rel == NULL) fail("'%s' is not under '%s'", file, luadir);
    if (strlen(rel) > 4000) fail("'%s': path too long", file);
    src[i].relpath = xstrndup(rel, strlen(rel));
    src[i].module = module_name(rel);
    src[i].bytes = read_file(file, &src[i].len);
  }
  {
    lua_State *L = luaL_newstate();
    if (L == NULL) fail("cannot create a Lua state");
    for (i = 0; i < n; i++) compile(L, &src[i]);
    lua_close(L);
  }
  qsort(src, (size_t)n, sizeof(source), by_module);
  for (i = 1; i < n; i++)
    if (strcmp(src[i - 1].module, src[i].module) == 0)
      fail("'%s' and '%s' both define module '%s'", src[i - 1].relpath, src[i].relpath, src[i].module);

  tl = strlen(outpath) + 32;
  tmpname = xmalloc(tl);
  snprintf(tmpname, tl, "%s.tmp%ld", outpath, (long)getpid());
  out = fopen(tmpname, "w");
  if (out == NULL) {
    int e = errno;
    free(tmpname);
    tmpname = NULL;
    fail("cannot create '%s.tmp': %s", outpath, strerror(e));
  }
  write_output(out, luadir, src, n);
  if (ferror(out)) fail("cannot write '%s': %s", tmpname, strerror(errno));
  if (fclose(out) != 0) fail("cannot write '%s': %s", tmpname, strerror(errno));
  if (rename(tmpname, outpath) != 0)
    fail("cannot rename '%s' to '%s': %s", tmpname, outpath, strerror(errno));
  free(tmpname);
  tmpname = NULL;
  for (i = 0; i < n; i++) {
    free(src[i].module);
    free(src[i].relpath);
    free(src[i].bytes);
  }
  free(src);
  return EXIT_SUCCESS;
}
