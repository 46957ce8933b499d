/*
** lua_distributed.c: luagrad.mpi, the MPI part of lg.distributed, a separate C module
** (build/lib/luagrad/mpi.so) built only when CMake finds MPI. `require "luagrad"` never loads
** it: lua/luagrad/distributed.lua requires it on lg.distributed.init().
**
** It knows nothing of tensors: every collective works on a contiguous buffer given as
** (address, element count, dtype name), which the Lua side takes from a contiguous tensor with
** core._buffer(t) and keeps alive meanwhile (a nonblocking request also holds a value given to
** it until it is waited for). Ranks are 0-based here and 1-based in Lua.
**
** Lifetime: MPI_Init_thread on init(); at process exit (on_exit, which sees the exit status)
** MPI_Finalize when the status is 0, and MPI_Abort otherwise: a rank that exits with an error
** (a stock lua5.4 whose script raised, os.exit(false)) must not wait in MPI_Finalize for ranks
** that wait for it in their next collective. Closing the Lua state does not finalize (the exit
** status is not known yet). abort(msg) prints msg and ends the whole job with MPI_Abort; init()
** stores it in the registry under "luagrad.abort_job", where the luagrad CLI finds it when a
** script ends with an error.
*/
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <mpi.h>

#define REQUEST_MT "luagrad.mpi.Request"

static int we_initialized = 0; /* MPI_Init was ours, so MPI_Finalize is ours too */

static void finalize_once(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  if (!init) return;
  MPI_Finalized(&fin);
  if (!fin && we_initialized) MPI_Finalize();
}

static int is_live(void);

/* at exit: finalize after a clean exit, end the whole job after a failed one */
static void at_exit(int status, void *arg) {
  (void)arg;
  if (status != 0 && we_initialized && is_live()) MPI_Abort(MPI_COMM_WORLD, status);
  finalize_once();
}

static int is_live(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  if (init) MPI_Finalized(&fin);
  return init && !fin;
}

static void check_live(lua_State *L, const char *fn) {
  if (!is_live())
    luaL_error(L, "%s: lg.distributed.init() has not been called (or the job has finalized)", fn);
}

/* An MPI error code as a Lua error naming the function. */
static int check_mpi(lua_State *L, int rc, const char *fn) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return luaL_error(L, "%s: MPI error: %s", fn, msg);
}

static MPI_Datatype check_dtype(lua_State *L, int idx, const char *fn) {
  const char *s = luaL_checkstring(L, idx);
  if (!strcmp(s, "float32")) return MPI_FLOAT;
  if (!strcmp(s, "float64")) return MPI_DOUBLE;
  if (!strcmp(s, "int64")) return MPI_INT64_T;
  return (luaL_error(L, "%s: dtype must be float32, float64 or int64, got %s", fn, s), MPI_DATATYPE_NULL);
}

static MPI_Op check_op(lua_State *L, int idx, const char *fn) {
  const char *s = luaL_checkstring(L, idx);
  if (!strcmp(s, "sum")) return MPI_SUM;
  if (!strcmp(s, "max")) return MPI_MAX;
  if (!strcmp(s, "min")) return MPI_MIN;
  if (!strcmp(s, "prod")) return MPI_PROD;
  return (luaL_error(L, "%s: op must be sum, max, min or prod, got %s", fn, s), MPI_OP_NULL);
}

static void *check_ptr(lua_State *L, int idx, const char *fn) {
  if (!lua_islightuserdata(L, idx)) luaL_error(L, "%s: argument #%d must be a buffer address", fn, idx);
  return lua_touserdata(L, idx);
}

static int check_count(lua_State *L, int idx, const char *fn) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0 || n > INT32_MAX)
    luaL_error(L, "%s: %lld elements is more than one MPI call moves", fn, (long long)n);
  return (int)n;
}

static int check_root(lua_State *L, int idx, const char *fn) {
  int size;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  lua_Integer r = luaL_checkinteger(L, idx);
  if (r < 0 || r >= size) luaL_error(L, "%s: rank %lld out of range 1..%d", fn, (long long)r + 1, size);
  return (int)r;
}

/* ---- life ---- */

static int m_abort(lua_State *L);

/* init() -> rank (0-based), size. A second call returns the same. */
static int m_init(lua_State *L) {
  if (!is_live()) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return luaL_error(L, "init: MPI was finalized already; it cannot start again in this process");
    int provided;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return luaL_error(L, "init: MPI_Init failed (code %d)", rc);
    we_initialized = 1;
    /* errors come back as codes (raised as Lua errors), not an abort inside MPI */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    on_exit(at_exit, NULL);
  }
  lua_pushcfunction(L, m_abort);
  lua_setfield(L, LUA_REGISTRYINDEX, "luagrad.abort_job");
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  lua_pushinteger(L, rank);
  lua_pushinteger(L, size);
  return 2;
}

static int m_is_initialized(lua_State *L) {
  lua_pushboolean(L, is_live());
  return 1;
}

static int m_finalize(lua_State *L) {
  (void)L;
  finalize_once();
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "luagrad.abort_job");
  return 0;
}

/* abort(msg [, code]): prints msg to stderr and ends every process of the job. */
static int m_abort(lua_State *L) {
  const char *msg = luaL_optstring(L, 1, NULL);
  int code = (int)luaL_optinteger(L, 2, 1);
  if (msg) {
    int rank = 0;
    if (is_live()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "luagrad: rank %d of the job failed; aborting all ranks\n", rank + 1);
    fflush(stderr);
  }
  if (is_live()) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
  exit(code ? code : 1);
}

static int m_barrier(lua_State *L) {
  check_live(L, "barrier");
  check_mpi(L, MPI_Barrier(MPI_COMM_WORLD), "barrier");
  return 0;
}

static int m_wtime(lua_State *L) {
  lua_pushnumber(L, MPI_Wtime());
  return 1;
}

static int m_processor_name(lua_State *L) {
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  lua_pushlstring(L, name, (size_t)len);
  return 1;
}

/* ---- collectives on buffers ---- */

/* allreduce(addr, n, dtype, op): in place. */
static int m_allreduce(lua_State *L) {
  check_live(L, "all_reduce");
  void *p = check_ptr(L, 1, "all_reduce");
  int n = check_count(L, 2, "all_reduce");
  MPI_Datatype dt = check_dtype(L, 3, "all_reduce");
  MPI_Op op = check_op(L, 4, "all_reduce");
  check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, p, n, dt, op, MPI_COMM_WORLD), "all_reduce");
  return 0;
}

/* allreduce_ints({...}, op) -> a new list: a small integer vector reduced (shape checks). */
static int m_allreduce_ints(lua_State *L) {
  check_live(L, "all_reduce");
  luaL_checktype(L, 1, LUA_TTABLE);
  MPI_Op op = check_op(L, 2, "all_reduce");
  int n = (int)lua_rawlen(L, 1);
  int64_t *v = lua_newuserdatauv(L, sizeof *v * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    v[i] = (int64_t)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, op, MPI_COMM_WORLD), "all_reduce");
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* bcast(addr, n, dtype, root) */
static int m_bcast(lua_State *L) {
  check_live(L, "broadcast");
  void *p = check_ptr(L, 1, "broadcast");
  int n = check_count(L, 2, "broadcast");
  MPI_Datatype dt = check_dtype(L, 3, "broadcast");
  int root = check_root(L, 4, "broadcast");
  check_mpi(L, MPI_Bcast(p, n, dt, root, MPI_COMM_WORLD), "broadcast");
  return 0;
}

/* reduce(addr, n, dtype, op, root): in place on the root; other ranks' buffers are unchanged. */
static int m_reduce(lua_State *L) {
  check_live(L, "reduce");
  void *p = check_ptr(L, 1, "reduce");
  int n = check_count(L, 2, "reduce");
  MPI_Datatype dt = check_dtype(L, 3, "reduce");
  MPI_Op op = check_op(L, 4, "reduce");
  int root = check_root(L, 5, "reduce"), rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const void *send = rank == root ? MPI_IN_PLACE : p;
  void *recv = rank == root ? p : NULL;
  check_mpi(L, MPI_Reduce(send, recv, n, dt, op, root, MPI_COMM_WORLD), "reduce");
  return 0;
}

/* allgather(send, recv, n, dtype): recv holds size * n elements, rank r's at r * n. */
static int m_allgather(lua_State *L) {
  check_live(L, "all_gather");
  void *s = check_ptr(L, 1, "all_gather"), *r = check_ptr(L, 2, "all_gather");
  int n = check_count(L, 3, "all_gather");
  MPI_Datatype dt = check_dtype(L, 4, "all_gather");
  check_mpi(L, MPI_Allgather(s, n, dt, r, n, dt, MPI_COMM_WORLD), "all_gather");
  return 0;
}

/* gather(send, recv or nil, n, dtype, root) */
static int m_gather(lua_State *L) {
  check_live(L, "gather");
  void *s = check_ptr(L, 1, "gather");
  void *r = lua_isnil(L, 2) ? NULL : check_ptr(L, 2, "gather");
  int n = check_count(L, 3, "gather");
  MPI_Datatype dt = check_dtype(L, 4, "gather");
  int root = check_root(L, 5, "gather");
  check_mpi(L, MPI_Gather(s, n, dt, r, n, dt, root, MPI_COMM_WORLD), "gather");
  return 0;
}

/* scatter(send or nil, recv, n, dtype, root) */
static int m_scatter(lua_State *L) {
  check_live(L, "scatter");
  void *s = lua_isnil(L, 1) ? NULL : check_ptr(L, 1, "scatter");
  void *r = check_ptr(L, 2, "scatter");
  int n = check_count(L, 3, "scatter");
  MPI_Datatype dt = check_dtype(L, 4, "scatter");
  int root = check_root(L, 5, "scatter");
  check_mpi(L, MPI_Scatter(s, n, dt, r, n, dt, root, MPI_COMM_WORLD), "scatter");
  return 0;
}

/* ---- nonblocking all-reduce ---- */

typedef struct request {
  MPI_Request req;
  double started;
  int active;
} request;

/* iallreduce(addr, n, dtype, op, keep) -> request; keep (the buffer's tensor) is held until
** the request completes. */
static int m_iallreduce(lua_State *L) {
  check_live(L, "all_reduce");
  void *p = check_ptr(L, 1, "all_reduce");
  int n = check_count(L, 2, "all_reduce");
  MPI_Datatype dt = check_dtype(L, 3, "all_reduce");
  MPI_Op op = check_op(L, 4, "all_reduce");
  lua_settop(L, 5);
  request *r = lua_newuserdatauv(L, sizeof *r, 1);
  r->active = 0;
  luaL_setmetatable(L, REQUEST_MT);
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, -2, 1);
  check_mpi(L, MPI_Iallreduce(MPI_IN_PLACE, p, n, dt, op, MPI_COMM_WORLD, &r->req), "all_reduce");
  r->active = 1;
  r->started = MPI_Wtime();
  return 1;
}

/* req:wait() -> seconds spent waiting here */
static int r_wait(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  double t0 = MPI_Wtime();
  if (r->active) {
    r->active = 0;
    check_mpi(L, MPI_Wait(&r->req, MPI_STATUS_IGNORE), "wait");
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
  }
  lua_pushnumber(L, MPI_Wtime() - t0);
  return 1;
}

/* req:test() -> done; lets MPI progress the transfer while the caller computes */
static int r_test(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  int done = 1;
  if (r->active) {
    check_mpi(L, MPI_Test(&r->req, &done, MPI_STATUS_IGNORE), "test");
    if (done) {
      r->active = 0;
      lua_pushnil(L);
      lua_setiuservalue(L, 1, 1);
    }
  }
  lua_pushboolean(L, done);
  return 1;
}

/* A request collected while active: its buffer may still be written, so wait for it. */
static int r_gc(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  if (r->active && is_live()) MPI_Wait(&r->req, MPI_STATUS_IGNORE);
  r->active = 0;
  return 0;
}

static const luaL_Reg request_methods[] = {{"wait", r_wait}, {"test", r_test}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"init", m_init},
                                     {"is_initialized", m_is_initialized},
                                     {"finalize", m_finalize},
                                     {"abort", m_abort},
                                     {"barrier", m_barrier},
                                     {"wtime", m_wtime},
                                     {"processor_name", m_processor_name},
                                     {"allreduce", m_allreduce},
                                     {"allreduce_ints", m_allreduce_ints},
                                     {"iallreduce", m_iallreduce},
                                     {"bcast", m_bcast},
                                     {"reduce", m_reduce},
                                     {"allgather", m_allgather},
                                     {"gather", m_gather},
                                     {"scatter", m_scatter},
                                     {NULL, NULL}};

int luaopen_luagrad_mpi(lua_State *L) {
  /* Open MPI's components are plugins that expect libmpi's symbols global; Lua loads C modules
  ** with RTLD_LOCAL, so make libmpi global before MPI_Init runs. */
  if (!dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
    dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
  luaL_newmetatable(L, REQUEST_MT);
  lua_pushcfunction(L, r_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, request_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  lua_pushlstring(L, version, (size_t)len);
  lua_setfield(L, -2, "library_version");
  return 1;
}
