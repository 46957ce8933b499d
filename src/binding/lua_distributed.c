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
**
** Nonblocking all-reduce (what DistributedDataParallel overlaps with backward) runs on a
** communication thread of this module: iallreduce() queues the buffer and returns; the thread
** runs the queued all-reduces one after another with blocking MPI_Allreduce, so they advance
** while the caller computes. Open MPI moves its own nonblocking MPI_Iallreduce along only inside
** MPI calls, and on one machine it measured 4-9x slower than the blocking call. MPI is started
** with MPI_THREAD_SERIALIZED, and every other MPI call of this module first waits until the
** thread is idle (quiesce), so two threads never call MPI at once. An MPI that does not provide
** MPI_THREAD_SERIALIZED (or LUAGRAD_MPI_THREAD=0 in the environment) gets MPI_Iallreduce instead.
*/
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <mpi.h>

#define REQUEST_MT "luagrad.mpi.Request"

static int we_initialized = 0; /* MPI_Init was ours, so MPI_Finalize is ours too */

static void comm_shutdown(void);
static void quiesce(void);

static void finalize_once(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  if (!init) return;
  MPI_Finalized(&fin);
  if (fin || !we_initialized) return;
  comm_shutdown();
  MPI_Finalize();
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

/* Before a blocking MPI call: MPI is live and the communication thread is idle. */
static void ready_for_mpi(lua_State *L, const char *fn) {
  check_live(L, fn);
  quiesce();
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

/* One all-reduce in pieces of at most 8 MiB: Open MPI's tuned component picks a much slower
** algorithm for large messages on one machine (a 64 MiB float32 sum: 156 ms in one call, 17 ms in
** pieces). The reduction is elementwise, so the result is the same. */
static int allreduce_pieces(void *p, int n, MPI_Datatype dt, MPI_Op op) {
  int size = 1;
  MPI_Type_size(dt, &size);
  int piece = (8 << 20) / size;
  for (int off = 0; off < n; off += piece) {
    int k = n - off < piece ? n - off : piece;
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)p + (size_t)off * (size_t)size, k, dt, op, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return rc;
  }
  return MPI_SUCCESS;
}

/* ---- the communication thread ---- */

typedef struct job {
  void *p;
  int n;
  MPI_Datatype dt;
  MPI_Op op;
  int done, rc;
  struct job *next;
} job;

static pthread_mutex_t comm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t comm_wake = PTHREAD_COND_INITIALIZER; /* a job was queued, or stop */
static pthread_cond_t comm_done = PTHREAD_COND_INITIALIZER; /* a job finished */
static job *queue_head, *queue_tail;
static int comm_busy, comm_stop;
static int comm_mode; /* 0 not decided, 1 the thread may run, -1 MPI_Iallreduce instead */
static int comm_running;
static pthread_t comm_tid;

static void *comm_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&comm_mu);
  for (;;) {
    while (!queue_head && !comm_stop) pthread_cond_wait(&comm_wake, &comm_mu);
    job *j = queue_head;
    if (!j) break;
    queue_head = j->next;
    if (!queue_head) queue_tail = NULL;
    comm_busy = 1;
    pthread_mutex_unlock(&comm_mu);
    int rc = allreduce_pieces(j->p, j->n, j->dt, j->op);
    pthread_mutex_lock(&comm_mu);
    j->rc = rc;
    j->done = 1;
    comm_busy = 0;
    pthread_cond_broadcast(&comm_done);
  }
  pthread_mutex_unlock(&comm_mu);
  return NULL;
}

/* Queues j; starts the thread on first use. Returns 0 if the thread cannot run. */
static int comm_submit(job *j) {
  if (comm_mode != 1) return 0;
  pthread_mutex_lock(&comm_mu);
  if (!comm_running) {
    comm_stop = 0;
    if (pthread_create(&comm_tid, NULL, comm_main, NULL) != 0) {
      comm_mode = -1;
      pthread_mutex_unlock(&comm_mu);
      return 0;
    }
    comm_running = 1;
  }
  j->done = 0;
  j->next = NULL;
  if (queue_tail)
    queue_tail->next = j;
  else
    queue_head = j;
  queue_tail = j;
  pthread_cond_signal(&comm_wake);
  pthread_mutex_unlock(&comm_mu);
  return 1;
}

static void comm_wait(job *j) {
  pthread_mutex_lock(&comm_mu);
  while (!j->done) pthread_cond_wait(&comm_done, &comm_mu);
  pthread_mutex_unlock(&comm_mu);
}

static int comm_test(job *j) {
  pthread_mutex_lock(&comm_mu);
  int done = j->done;
  pthread_mutex_unlock(&comm_mu);
  return done;
}

/* Before any other MPI call: wait until the thread has nothing queued or running. */
static void quiesce(void) {
  pthread_mutex_lock(&comm_mu);
  while (queue_head || comm_busy) pthread_cond_wait(&comm_done, &comm_mu);
  pthread_mutex_unlock(&comm_mu);
}

/* Before MPI_Finalize: finish the queue and end the thread. */
static void comm_shutdown(void) {
  pthread_mutex_lock(&comm_mu);
  int running = comm_running;
  comm_stop = 1;
  pthread_cond_signal(&comm_wake);
  pthread_mutex_unlock(&comm_mu);
  if (running) pthread_join(comm_tid, NULL);
  comm_running = 0;
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
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return luaL_error(L, "init: MPI_Init failed (code %d)", rc);
    we_initialized = 1;
    const char *env = getenv("LUAGRAD_MPI_THREAD");
    comm_mode = provided >= MPI_THREAD_SERIALIZED && !(env && !strcmp(env, "0")) ? 1 : -1;
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
  ready_for_mpi(L, "barrier");
  check_mpi(L, MPI_Barrier(MPI_COMM_WORLD), "barrier");
  return 0;
}

static int m_wtime(lua_State *L) {
  lua_pushnumber(L, MPI_Wtime());
  return 1;
}

static int m_processor_name(lua_State *L) {
  quiesce();
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  lua_pushlstring(L, name, (size_t)len);
  return 1;
}

/* ---- collectives on buffers ---- */

/* allreduce(addr, n, dtype, op): in place. */
static int m_allreduce(lua_State *L) {
  ready_for_mpi(L, "all_reduce");
  void *p = check_ptr(L, 1, "all_reduce");
  int n = check_count(L, 2, "all_reduce");
  MPI_Datatype dt = check_dtype(L, 3, "all_reduce");
  MPI_Op op = check_op(L, 4, "all_reduce");
  check_mpi(L, allreduce_pieces(p, n, dt, op), "all_reduce");
  return 0;
}

/* allreduce_ints({...}, op) -> a new list: a small integer vector reduced (shape checks). */
static int m_allreduce_ints(lua_State *L) {
  ready_for_mpi(L, "all_reduce");
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
  ready_for_mpi(L, "broadcast");
  void *p = check_ptr(L, 1, "broadcast");
  int n = check_count(L, 2, "broadcast");
  MPI_Datatype dt = check_dtype(L, 3, "broadcast");
  int root = check_root(L, 4, "broadcast");
  check_mpi(L, MPI_Bcast(p, n, dt, root, MPI_COMM_WORLD), "broadcast");
  return 0;
}

/* reduce(addr, n, dtype, op, root): in place on the root; other ranks' buffers are unchanged. */
static int m_reduce(lua_State *L) {
  ready_for_mpi(L, "reduce");
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
  ready_for_mpi(L, "all_gather");
  void *s = check_ptr(L, 1, "all_gather"), *r = check_ptr(L, 2, "all_gather");
  int n = check_count(L, 3, "all_gather");
  MPI_Datatype dt = check_dtype(L, 4, "all_gather");
  check_mpi(L, MPI_Allgather(s, n, dt, r, n, dt, MPI_COMM_WORLD), "all_gather");
  return 0;
}

/* gather(send, recv or nil, n, dtype, root) */
static int m_gather(lua_State *L) {
  ready_for_mpi(L, "gather");
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
  ready_for_mpi(L, "scatter");
  void *s = lua_isnil(L, 1) ? NULL : check_ptr(L, 1, "scatter");
  void *r = check_ptr(L, 2, "scatter");
  int n = check_count(L, 3, "scatter");
  MPI_Datatype dt = check_dtype(L, 4, "scatter");
  int root = check_root(L, 5, "scatter");
  check_mpi(L, MPI_Scatter(s, n, dt, r, n, dt, root, MPI_COMM_WORLD), "scatter");
  return 0;
}

/* ---- nonblocking all-reduce ---- */

/* A started all-reduce: a job of the communication thread, or an MPI request without it. */
typedef struct request {
  job job;
  MPI_Request req;
  int threaded, active;
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
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, REQUEST_MT);
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, -2, 1);
  r->job = (job){.p = p, .n = n, .dt = dt, .op = op};
  if (comm_submit(&r->job)) {
    r->threaded = r->active = 1;
    return 1;
  }
  quiesce();
  check_mpi(L, MPI_Iallreduce(MPI_IN_PLACE, p, n, dt, op, MPI_COMM_WORLD, &r->req), "all_reduce");
  r->active = 1;
  return 1;
}

/* Waits for r (no Lua calls: the collector uses it too); returns the MPI code. */
static int request_finish(request *r) {
  int rc = MPI_SUCCESS;
  if (!r->active) return rc;
  if (r->threaded) {
    comm_wait(&r->job);
    rc = r->job.rc;
  } else if (is_live()) {
    rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
  }
  r->active = 0;
  return rc;
}

/* req:wait() -> seconds spent waiting here */
static int r_wait(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  double t0 = MPI_Wtime();
  if (r->active) {
    int rc = request_finish(r);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    check_mpi(L, rc, "all_reduce");
  }
  lua_pushnumber(L, MPI_Wtime() - t0);
  return 1;
}

/* req:test() -> done, without waiting */
static int r_test(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  int done = 1;
  if (r->active) {
    if (r->threaded)
      done = comm_test(&r->job);
    else
      check_mpi(L, MPI_Test(&r->req, &done, MPI_STATUS_IGNORE), "test");
    if (done) {
      int rc = request_finish(r);
      lua_pushnil(L);
      lua_setiuservalue(L, 1, 1);
      check_mpi(L, rc, "all_reduce");
    }
  }
  lua_pushboolean(L, done);
  return 1;
}

/* A request collected while active: its buffer may still be written, so wait for it. */
static int r_gc(lua_State *L) {
  request_finish(luaL_checkudata(L, 1, REQUEST_MT));
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
