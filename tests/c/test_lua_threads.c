/*
** test_lua_threads.c: luagrad in a multi-threaded host, several lua_States at once.
**
**   test_lua_threads [threads [rounds [threads]]]  (defaults 8 threads, 3 rounds; a third argument
**                                                   "threads" runs the threads test alone)
**
** Each round starts `threads` OS threads at once, each with its own lua_State that loads luagrad
** (lg_preload) and trains the same small model (Linear-ReLU-Dropout-Linear-ReLU-Linear, products large enough
*for OpenBLAS, AdamW, cross-entropy,
** 20 steps, seeded, with a shuffled data order). Every thread must end with parameters bit for bit
** equal to a run of the same script alone on the main thread. Also checked:
**   - two lua_States on one thread keep their own settings (grad mode, default dtype, seed), also
**     when their calls interleave;
**   - settings set in a state do not outlive it (a new state starts with the defaults);
**   - a forked child uses luagrad after the parent's worker threads exist;
**   - luagrad's and OpenBLAS's threads block the asynchronous signals: the host's handler runs on
**     the host's thread.
** Ends with "C tests: N passed, N failed". The suite runs it in the release, sanitizer (ASan+UBSan)
** and ThreadSanitizer builds.
*/
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lg_lua.h"
#include "check.h"

static volatile pid_t handled_on;
static void on_usr1(int sig) {
  (void)sig;
  handled_on = (pid_t)syscall(SYS_gettid);
}

/* Trains and returns a checksum of every parameter bit (each parameter's elements as %a). */
static const char *const train_script =
    "local lg = require 'luagrad'\n"
    "lg.manual_seed(7)\n"
    "for i = 1, 20000 do local t = lg.ones(i % 13 + 1) * 2 + 1 end -- the allocator and the pools, hard\n"
    "local nn, F = lg.nn, lg.nn.functional\n"
    "local model = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 256), "
    "nn.ReLU(),\n"
    "                           nn.Linear(256, 4))\n"
    "local opt = lg.optim.AdamW(model:parameters(), {lr = 1e-2})\n"
    "local x, y = lg.randn(64, 16), lg.randint(1, 5, {64})\n"
    "local loader = lg.data.DataLoader(lg.data.TensorDataset(x, y), {batch_size = 16, shuffle = true})\n"
    "for epoch = 1, 5 do\n"
    "  for xb, yb in loader do\n"
    "    opt:zero_grad()\n"
    "    F.cross_entropy(model(xb), yb):backward()\n"
    "    opt:step()\n"
    "  end\n"
    "end\n"
    "local parts = {}\n"
    "for _, p in ipairs(model:parameters()) do\n"
    "  for _, v in ipairs(p:detach():contiguous():view(-1):tolist()) do parts[#parts + 1] = "
    "string.format('%a', v) end\n"
    "end\n"
    "return table.concat(parts, ',')\n";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lg_preload(L);
  return L;
}

/* Runs code in L; returns its string result (malloc'd) or NULL, printing the error. */
static char *run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    printf("lua error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  const char *s = lua_tostring(L, -1);
  char *r = s ? strdup(s) : strdup("(not a string)");
  lua_pop(L, 1);
  return r;
}

typedef struct {
  pthread_barrier_t *start;
  char *result;
} job;

static void *train_thread(void *arg) {
  job *j = arg;
  lua_State *L = new_state();
  pthread_barrier_wait(j->start); /* all threads train at once */
  j->result = run(L, train_script);
  lua_close(L);
  return NULL;
}

static void test_threads(int nthreads, int rounds) {
  lua_State *L = new_state();
  char *want = run(L, train_script);
  lua_close(L);
  CHECK(want != NULL, "the single-threaded run failed");
  if (!want) return;
  for (int r = 0; r < rounds; r++) {
    pthread_t th[64];
    job jobs[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
      jobs[i] = (job){&start, NULL};
      pthread_create(&th[i], NULL, train_thread, &jobs[i]);
    }
    int same = 0;
    for (int i = 0; i < nthreads; i++) {
      pthread_join(th[i], NULL);
      same += jobs[i].result && strcmp(jobs[i].result, want) == 0;
      free(jobs[i].result);
    }
    pthread_barrier_destroy(&start);
    CHECK(same == nthreads, "round %d: %d of %d threads ended with the single-threaded run's parameters",
          r + 1, same, nthreads);
  }
  free(want);
}

static void expect(lua_State *L, const char *code, const char *want, const char *what) {
  char *got = run(L, code);
  CHECK(got && strcmp(got, want) == 0, "%s: got %s, expected %s", what, got ? got : "(error)", want);
  free(got);
}

static void test_two_states_one_thread(void) {
  lua_State *A = new_state(), *B = new_state();
  free(run(A, "lg = require 'luagrad'; lg.set_grad_enabled(false); lg.set_default_dtype('float64'); "
              "lg.manual_seed(1); return ''"));
  free(run(B, "lg = require 'luagrad'; lg.manual_seed(1); return ''"));
  expect(B, "return tostring(lg.is_grad_enabled()) .. ' ' .. lg.get_default_dtype()", "true float32",
         "state B after A turned grad mode off and chose float64");
  expect(A, "return tostring(lg.is_grad_enabled()) .. ' ' .. lg.get_default_dtype()", "false float64",
         "state A keeps its own settings");
  /* interleaved draws: each state's generator goes its own way, as if alone */
  char *a1 = run(A, "return string.format('%a', lg.rand(1):item())");
  char *b1 = run(B, "return string.format('%a', lg.rand(1, {dtype = 'float64'}):item())");
  char *a2 = run(A, "return string.format('%a', lg.rand(1):item())");
  lua_State *C = new_state();
  free(run(C, "lg = require 'luagrad'; lg.manual_seed(1); return ''"));
  char *c1 = run(C, "return string.format('%a', lg.rand(1, {dtype = 'float64'}):item())");
  char *c2 = run(C, "return string.format('%a', lg.rand(1, {dtype = 'float64'}):item())");
  CHECK(a1 && b1 && c1 && strcmp(a1, b1) == 0 && strcmp(a1, c1) == 0, "seeded alike, the first draws differ");
  CHECK(a2 && c2 && strcmp(a2, c2) == 0, "A's second draw is not the second of its own sequence");
  free(a1), free(b1), free(a2), free(c1), free(c2);
  lua_close(A);
  lua_close(B);
  lua_close(C);
  lua_State *D = new_state();
  expect(D, "lg = require 'luagrad'; return tostring(lg.is_grad_enabled()) .. ' ' .. lg.get_default_dtype()",
         "true float32", "a new state after others closed starts with the defaults");
  lua_close(D);
}

/* Work that starts luagrad's worker threads (a large elementwise op split across two threads) and
** OpenBLAS's (a large product on two threads). */
static const char *const start_workers =
    "lg = require 'luagrad'; lg.set_num_threads(2)\n"
    "local x = lg.randn(1 << 20); local s = (x:exp() * 2):sum():item()\n"
    "local a = lg.randn(512, 512, {dtype = 'float64'}); local c = a:matmul(a)\n"
    "return string.format('%a', s)";

/* After luagrad's workers exist, a forked child still uses luagrad (it used to hang in its first
** long elementwise op, waiting for workers that are not in the child). */
static __attribute__((unused)) void test_fork(void) {
  lua_State *L = new_state();
  free(run(L, start_workers));
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20); /* a hang ends the child with SIGALRM */
    char *r = run(L, "local x = lg.randn(1 << 20); return tostring((x * x):sum():item() > 0)");
    _exit(r && strcmp(r, "true") == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child did not finish its work (status %d)",
        status);
  lua_close(L);
}

/* Every thread but this one (luagrad's workers, OpenBLAS's) blocks the asynchronous signals, so a
** host's handler runs on a host's thread: read each thread's SigBlk in /proc. */
static void test_signals_blocked(void) {
  lua_State *L = new_state();
  free(run(L, start_workers));
  pid_t self = (pid_t)syscall(SYS_gettid);
  DIR *d = opendir("/proc/self/task");
  int others = 0, blocked = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    pid_t tid = (pid_t)atoi(e->d_name);
    if (tid <= 0 || tid == self) continue;
    char path[128], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    unsigned long long mask = 0;
    while (f && fgets(line, sizeof line, f))
      if (sscanf(line, "SigBlk: %llx", &mask) == 1) break;
    if (f) fclose(f);
    others++;
    unsigned long long want = (1ull << (SIGHUP - 1)) | (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1)) |
                              (1ull << (SIGUSR1 - 1)) | (1ull << (SIGALRM - 1));
    blocked += (mask & want) == want;
  }
  if (d) closedir(d);
  CHECK(others >= 2, "expected luagrad's and OpenBLAS's worker threads, found %d other threads", others);
  CHECK(blocked == others, "%d of %d worker threads block SIGHUP, SIGINT, SIGTERM, SIGUSR1 and SIGALRM",
        blocked, others);
  /* and a signal sent to the process runs its handler on this (the host's) thread */
  handled_on = 0;
  signal(SIGUSR1, on_usr1);
  for (int i = 0; i < 20; i++) kill(getpid(), SIGUSR1);
  CHECK(handled_on == self, "SIGUSR1's handler ran on thread %d, not the host's %d", (int)handled_on,
        (int)self);
  lua_close(L);
}

int main(int argc, char **argv) {
  int nthreads = argc > 1 ? atoi(argv[1]) : 8, rounds = argc > 2 ? atoi(argv[2]) : 3;
  if (nthreads < 1 || nthreads > 64) nthreads = 8;
  int only_threads = argc > 3 && strcmp(argv[3], "threads") == 0; /* for measuring: the threads test alone */
  if (only_threads) {
    test_threads(nthreads, rounds);
    return CHECK_SUMMARY();
  }
  test_two_states_one_thread();
  test_threads(nthreads, rounds);
#ifndef __SANITIZE_THREAD__ /* ThreadSanitizer cannot follow a multi-threaded process into fork */
  test_fork();
#endif
  test_signals_blocked();
  return CHECK_SUMMARY();
}
