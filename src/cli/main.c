/*
** main.c: the luagrad executable, a Lua 5.4 interpreter with luagrad preloaded.
**
**   luagrad [options] [script [args]]
**
** Modelled on Lua's own lua.c, option for option: -e stat, -i, -l mod (or -l g=mod), -v, -E,
** -W, "--" ends the options and "-" runs stdin; and -h/--help and --version, which print and
** exit. Code given with -e sees the global lg = require "luagrad", as the REPL does. The arg
** table is lua.c's: arg[0] is the script, arg[-1].. the interpreter and its options, arg[1..]
** the script's arguments. With no script the REPL (repl.c) runs when stdin is a terminal,
** otherwise stdin runs as a script. Errors print "luagrad: message" and a traceback to stderr
** and the exit status is 1.
**
** The state is made with luaL_newstate and luaL_openlibs, then lg_preload(L) so that
** `require "luagrad"` finds the embedded library without LUA_PATH. It is always closed before
** returning from main (the tests run under LeakSanitizer).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lg_lua.h"

/* What main.c and repl.c share. */
#include "cli.h"

static lua_State *globalL = NULL;              /* for the signal handler (and reachable for LSan on exit) */
static const char *const progname = "luagrad"; /* errors read "luagrad: msg" */

/* ---- errors ---- */

#define USAGE "usage: luagrad [options] [script [args]]\n"
#define OPTIONS                                                                                              \
  "  -e stat       execute string 'stat' (with the global lg = require \"luagrad\")\n"                       \
  "  -i            enter the REPL after executing 'script'\n"                                                \
  "  -l mod        require library 'mod' into global 'mod'\n"                                                \
  "  -l g=mod      require library 'mod' into global 'g'\n"                                                  \
  "  -v            show version information\n"                                                               \
  "  -E            ignore environment variables LUA_INIT, LUA_PATH and LUA_CPATH\n"                          \
  "  -W            turn warnings on\n"                                                                       \
  "  -h, --help    show this help and exit\n"                                                                \
  "  --version     show the version and exit\n"                                                              \
  "  --            stop handling options\n"                                                                  \
  "  -             stop handling options and execute stdin\n"

/* A bad option: the message and the options, on stderr. */
static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fputs(USAGE "Available options are:\n" OPTIONS, stderr);
  fflush(stderr);
}

/* -h, --help: what luagrad is, its options, the REPL, and every environment variable luagrad
** reads (spec/cli_spec.lua checks the list against the getenv calls in src/ and lua/). */
static void print_help(void) {
  fputs(USAGE "A Lua 5.4 interpreter with luagrad built in: require \"luagrad\" needs no LUA_PATH.\n"
              "With no script (and no -e or -v) it starts the REPL when stdin is a terminal, and\n"
              "runs stdin as a script otherwise. Arguments after the script are its arg[1..].\n"
              "\n"
              "Options:\n" OPTIONS "\n"
              "The REPL:\n"
              "  - lg = require \"luagrad\" is loaded; an expression's value prints without '='\n"
              "    or 'return' (several separated by tabs, tensors as tostring shows them)\n"
              "  - line editing and a persistent history (GNU readline)\n"
              "  - Tab completes globals and keywords, fields (lg.nn.Li) and methods (t:su),\n"
              "    a module's methods, children and parameters (model:par, model.fc1.wei), and\n"
              "    file names inside a string (lg.load(\"runs/<Tab>)\n"
              "  - help(x) or ?x prints x's entry of the reference (help(lg.optim.AdamW),\n"
              "    ?lg.nn.Linear, ?t:sum, ?model); help() or ? alone lists these features\n"
              "  - _ is the last result; a trailing ';' runs without printing\n"
              "  - %time <statement or expression> prints the wall time it took\n"
              "  - an incomplete statement continues on a '>>' line\n"
              "  - an error prints its message and traceback, and the session goes on\n"
              "  - Ctrl-C interrupts running code or drops the line being typed; Ctrl-D exits\n"
              "\n"
              "Environment:\n"
              "  LUA_INIT_5_4, LUA_INIT   Lua code, or @file, run before the options (not with -E)\n"
              "  LUA_PATH_5_4, LUA_PATH, LUA_CPATH_5_4, LUA_CPATH\n"
              "                           where require looks for other modules (not with -E)\n"
              "  LUAGRAD_HISTORY          the REPL's history file (default $HOME/.luagrad_history)\n"
              "  HOME                     where that default lives\n"
              "  LUAGRAD_PROGRESS         tty, plain or off: how lg.progress bars draw\n"
              "  COLUMNS                  a progress bar's line is cut to this width\n"
              "  TERM                     dumb or unset: no redrawn bars (when no terminal test\n"
              "                           is available)\n"
              "  OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE, OPENBLAS_THREAD_TIMEOUT\n"
              "                           passed to OpenBLAS as given; unset, luagrad chooses\n"
              "  LUAGRAD_MPI_THREAD       0: lg.distributed's all-reduces without their thread\n",
        stdout);
  fflush(stdout);
}

/* Prints "progname: msg" to stderr (no prefix when pname is NULL, as in the REPL). */
static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* When a script of a distributed job fails, the other ranks would wait in their next collective
** forever: lg.distributed.init() leaves a function in the registry under "luagrad.abort_job" that
** ends the whole job (MPI_Abort), called here once the message is printed. */
static void abort_job(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "luagrad.abort_job") == LUA_TFUNCTION) {
    lua_pushliteral(L, "error");
    lua_pcall(L, 1, 0, 0); /* does not return when the job is live */
  }
  lua_settop(L, top);
}

/* Reports a failed status: the message (with its traceback) is on top of the stack. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
    abort_job(L);
  }
  return status;
}

/* C modules built beside the executable (build/lib/luagrad/mpi.so next to build/luagrad) come
** first in package.cpath; an installed luagrad finds them in lua5.4's own directories. */
static void add_cpath_beside_exe(lua_State *L) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash) return;
  *slash = '\0';
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "cpath");
  lua_pushfstring(L, "%s/lib/?.so;%s", exe, lua_tostring(L, -1));
  lua_setfield(L, -3, "cpath");
  lua_pop(L, 2);
}

/* Message handler: adds a traceback; turns a non-string error into a string if it can. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- Ctrl-C: lua.c's technique. The signal handler only sets a hook; the hook raises the
** error at the next safe point of the interpreter. ---- */

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void laction(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT;
  signal(sig, SIG_DFL); /* a second Ctrl-C before the hook runs kills the process */
  lua_sethook(globalL, lstop, flag, 1);
}

/* Calls the function below its narg arguments with a traceback handler and Ctrl-C armed.
** Leaves the results (or the error message) on the stack. Used by repl.c as well. */
int lg_cli_docall(lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  signal(SIGINT, laction);
  status = lua_pcall(L, narg, nres, base);
  signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return status;
}

static void print_version(void) {
  printf("luagrad %s (%s)\n", LG_VERSION, LUA_RELEASE);
  fflush(stdout);
}

/* lg = require "luagrad" as a global, unless the name is taken already (by -l, a script before
** -i, or earlier code): what -e code and the REPL see. On an error its message is left on the
** stack. */
int lg_cli_global_lg(lua_State *L) {
  int status;
  if (lua_getglobal(L, "lg") != LUA_TNIL) {
    lua_pop(L, 1);
    return LUA_OK;
  }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luagrad");
  status = lg_cli_docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, "lg");
  return status;
}

/* ---- the arg table ---- */

/* arg[0] = argv[script], arg[-1..] the interpreter and options, arg[1..] the script's args.
** With no script (script == 0) arg[0] is the interpreter and the options follow. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  int i, narg = argc - (script + 1);
  lua_createtable(L, narg > 0 ? narg : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = lg_cli_docall(L, 0, 0);
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) { return dochunk(L, luaL_loadfile(L, name)); }

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod: global mod = require "mod"; -l g=mod: global g = require "mod". */
static int dolibrary(lua_State *L, const char *spec) {
  int status;
  const char *eq = strchr(spec, '=');
  const char *modname = eq ? eq + 1 : spec;
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = lg_cli_docall(L, 1, 1);
  if (status == LUA_OK) {
    if (eq)
      lua_pushlstring(L, spec, (size_t)(eq - spec));
    else
      lua_pushstring(L, spec);
    lua_insert(L, -2);
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  return report(L, status);
}

/* Pushes the script's arguments arg[1..n] and returns n. */
static int pushargs(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i); /* the table */
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = lg_cli_docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* ---- options ---- */

#define has_error 1 /* bad option */
#define has_i 2     /* -i */
#define has_v 4     /* -v */
#define has_e 8     /* -e */
#define has_E 16    /* -E */
#define has_h 32    /* -h, --help */
#define has_V 64    /* --version */

/* Scans the options; *first is set to the script's index, or 0 when there is none. */
static int collectargs(char **argv, int *first) {
  int args = 0, i;
  *first = 0;
  if (argv[0] == NULL) return 0; /* no program name, no arguments */
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args; /* the script */
    switch (argv[i][1]) {
    case '-': /* "--", "--help", "--version" */
      if (strcmp(argv[i], "--help") == 0) return has_h;
      if (strcmp(argv[i], "--version") == 0) return has_V;
      if (argv[i][2] != '\0') return has_error;
      *first = argv[i + 1] != NULL ? i + 1 : 0;
      return args;
    case 'h':
      if (argv[i][2] != '\0') return has_error;
      return has_h;
    case '\0': /* "-": the script is stdin */
      return args;
    case 'E':
      if (argv[i][2] != '\0') return has_error;
      args |= has_E;
      break;
    case 'W':
      if (argv[i][2] != '\0') return has_error;
      break;
    case 'i':
      if (argv[i][2] != '\0') return has_error;
      args |= has_i;
      break;
    case 'v':
      if (argv[i][2] != '\0') return has_error;
      args |= has_v;
      break;
    case 'e':
      args |= has_e;
      /* FALLTHROUGH */
    case 'l': /* both need an argument */
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') return has_error;
      }
      break;
    default:
      return has_error;
    }
  }
  *first = 0;
  return args;
}

/* Runs -e, -l and -W in order; returns 0 on the first failure. The first -e makes the global lg
** first. */
static int runargs(lua_State *L, char **argv, int n) {
  int i, have_lg = 0;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
    case 'e':
    case 'l': {
      const char *extra = argv[i] + 2;
      int status;
      if (*extra == '\0') extra = argv[++i];
      if (option == 'e' && !have_lg) {
        if (report(L, lg_cli_global_lg(L)) != LUA_OK) return 0;
        have_lg = 1;
      }
      status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
      if (status != LUA_OK) return 0;
      break;
    }
    case 'W':
      lua_warning(L, "@on", 0);
      break;
    }
  }
  return 1;
}

/* LUA_INIT_5_4 or LUA_INIT, as lua.c: "@file" runs a file, anything else is code. */
static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv("LUA_INIT_5_4");
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv("LUA_INIT");
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, name);
}

/* The body of main, run protected. Returns true when everything went well. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int args = collectargs(argv, &script);
  int optlim = script > 0 ? script : argc;
  luaL_checkversion(L);
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args == has_h || args == has_V) { /* print, and nothing else */
    if (args == has_h)
      print_help();
    else
      print_version();
    lua_pushboolean(L, 1);
    return 1;
  }
  if (args & has_v) print_version();
  if (args & has_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV"); /* the package library reads this */
  }
  luaL_openlibs(L);
  add_cpath_beside_exe(L);
  lg_preload(L);
  lg_cli_preload_reference(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  /* Generational, as lua.c, but with a minor collection each time the heap grows 3% (Lua's
  ** default: 20%). Every tensor is a userdata with a finalizer, and a collection frees all of its
  ** garbage at once: in smaller batches the freed tensors, storage and tape nodes are reused while
  ** still in cache. A 1-element add in a loop (bench/overhead.lua, AMD Zen 5): 0.39 -> 0.25 us,
  ** recorded 0.65 -> 0.39 us; W1, W2, W4, W6 unchanged within noise. */
  lua_gc(L, LUA_GCGEN, 3, 0);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, optlim)) return 0;
  if (script > 0 && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    lg_repl_run(L);
  } else if (script == 0 && !(args & (has_e | has_v))) {
    if (isatty(STDIN_FILENO))
      lg_repl_run(L);
    else if (dofile(L, NULL) != LUA_OK)
      return 0; /* stdin as a script */
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, result;
  lua_State *L;
  L = luaL_newstate();
  if (L == NULL) {
    l_message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  globalL = L;
  lua_gc(L, LUA_GCSTOP); /* no collections while the libraries load */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  globalL = NULL;
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
