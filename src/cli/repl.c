/*
** repl.c: the interactive read-eval-print loop of the luagrad executable.
**
** The loop is lua.c's doREPL with more help for a person at a terminal:
**   - GNU readline line editing, with history kept in $LUAGRAD_HISTORY or ~/.luagrad_history
**     (errors reading or writing it are ignored: history is a convenience);
**   - tab completion of globals and keywords, of fields of tables (`lg.nn.Li` -> `lg.nn.Linear`)
**     and of methods after ':' (`t:su` -> `t:sum(`), looking through a metatable's __index
**     table, and for tensors through require("luagrad.core").Tensor; for an instance whose
**     metatable's __index is a function (an nn module), the metatable is its class and the
**     class's own __index chain is followed (`model:par` -> `model:parameters(`), and
**     require("luagrad.repl").members lists what that function answers (`model.fc1.wei` ->
**     `model.fc1.weight`); inside an unclosed string, file names (`lg.load("ru` -> "runs/");
**     names starting with '_' are offered only when the typed part starts with '_';
**   - an expression is printed without typing `return`: a line is tried as "return <line>"
**     first, then as a statement; a chunk that is incomplete either way (its syntax error ends
**     in "<eof>", lua.c's test) continues on a ">> " line, so `1 +` then `2` prints 3;
**   - results are shown by require("luagrad.repl").show (strings quoted, tables with sorted
**     keys, tensors by their __tostring), several separated by tabs; the global `_` is set to
**     the first result, and a chunk ending in ';' prints nothing (`_` is still set);
**   - `help(x)` (the global help = require "luagrad.help", unless a script took the name) and
**     `?x` print x's entry of the reference, which the executable carries compiled in
**     (reference_pages.h; lg_cli_preload_reference registers it as "luagrad.reference_pages");
**   - `%time <chunk>` runs the chunk and prints the wall time it took;
**   - errors print the message and a traceback, and the loop goes on;
**   - Ctrl-C while a chunk runs interrupts it (main.c's hook, as lua.c), and at the prompt
**     drops the line being typed (readline's callback interface, so the prompt never has to
**     longjmp out of readline).
** When stdin is not a terminal (`luagrad -i script.lua < input`) lines are read with fgets and
** prompts are printed as lua.c does, with no terminal control sequences.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lg_lua.h"

/* What main.c and repl.c share. */
#include "cli.h"
/* The reference pages, generated at build time. */
#include "reference_pages.h"

#define PROMPT1 "> "
#define PROMPT2 ">> "
#define HISTORY_MAX 1000
#define MAXINPUT 4096 /* longest line read without readline */
#define EOFMARK "<eof>"
#define TENSOR_TYPE "luagrad.Tensor"

static lua_State *replL = NULL;   /* the state the completer looks into */
static int use_readline = 0;      /* stdin is a terminal */
static char *history_path = NULL; /* NULL: no history file */

/* ---- reading a line ---- */

static volatile sig_atomic_t prompt_interrupted = 0;
static char *cb_line = NULL;
static int cb_done = 0;

static void prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/* readline's callback: one complete line (NULL at end of input). */
static void on_line(char *line) {
  cb_line = line;
  cb_done = 1;
  rl_callback_handler_remove();
}

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

/* Reads one line with readline's callback interface, so that Ctrl-C (which only sets a flag)
** interrupts pselect() and the line can be dropped cleanly. *out is malloc'ed. */
static int read_tty(const char *prompt, char **out) {
  struct sigaction sa, old;
  sigset_t block, waitmask;
  int result = LINE_OK;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = prompt_sigint; /* no SA_RESTART: pselect() must return EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  /* SIGINT is blocked except inside pselect, so it cannot slip in between the check of the
  ** flag and the wait */
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGINT);
  prompt_interrupted = 0;
  cb_done = 0;
  cb_line = NULL;
  rl_callback_handler_install(prompt, on_line);
  while (!cb_done) {
    fd_set fds;
    int r;
    FD_ZERO(&fds);
    FD_SET(fileno(rl_instream), &fds);
    r = pselect(fileno(rl_instream) + 1, &fds, NULL, NULL, NULL, &waitmask);
    if (prompt_interrupted) { /* Ctrl-C: drop the line, start afresh */
      rl_point = rl_end;
      rl_redisplay(); /* the cursor to the end of the input, then ^C below it */
      fputs("^C\n", rl_outstream);
      fflush(rl_outstream);
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_cleanup_after_signal();
      rl_callback_handler_remove();
      result = LINE_INTERRUPTED;
      break;
    }
    if (r < 0) {
      if (errno == EINTR) { /* another signal: a window resize is readline's to handle */
        rl_check_signals();
        continue;
      }
      rl_callback_handler_remove();
      result = LINE_EOF;
      break;
    }
    if (r > 0) rl_callback_read_char();
  }
  sigaction(SIGINT, &old, NULL);
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  if (result == LINE_OK && cb_line == NULL) result = LINE_EOF;
  *out = result == LINE_OK ? cb_line : NULL;
  if (result != LINE_OK) free(cb_line);
  cb_line = NULL;
  return result;
}

static int read_plain(const char *prompt, char **out) {
  char buf[MAXINPUT];
  size_t n;
  fputs(prompt, stdout);
  fflush(stdout);
  if (fgets(buf, sizeof buf, stdin) == NULL) return LINE_EOF;
  n = strlen(buf);
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  *out = malloc(n + 1);
  if (*out == NULL) return LINE_EOF;
  memcpy(*out, buf, n + 1);
  return LINE_OK;
}

/* The prompt: the global _PROMPT / _PROMPT2 if set (as lua.c), else the defaults. Pushes it. */
static const char *push_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return lua_pushstring(L, firstline ? PROMPT1 : PROMPT2);
  }
  lua_pushstring(L, lua_tostring(L, -1) ? lua_tostring(L, -1) : (firstline ? PROMPT1 : PROMPT2));
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

/* Reads a line and pushes it (without its newline). Returns LINE_OK, LINE_EOF or
** LINE_INTERRUPTED; pushes nothing unless LINE_OK. */
static int pushline(lua_State *L, int firstline) {
  char *line = NULL;
  int status;
  const char *prompt = push_prompt(L, firstline);
  fflush(stdout);
  status = use_readline ? read_tty(prompt, &line) : read_plain(prompt, &line);
  lua_pop(L, 1); /* prompt */
  if (status != LINE_OK) return status;
  if (firstline && line[0] == '=') /* "=expr", for compatibility with Lua 5.2 */
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushstring(L, line);
  free(line);
  return LINE_OK;
}

/* ---- history ---- */

static void history_open(void) {
  const char *env = getenv("LUAGRAD_HISTORY");
  const char *home = getenv("HOME");
  using_history();
  stifle_history(HISTORY_MAX);
  history_write_timestamps = 1;  /* timestamps delimit entries, so... */
  history_multiline_entries = 1; /* ...multi-line chunks come back whole */
  history_comment_char = '#';    /* (timestamps are written as "#<seconds>") */
  if (env != NULL && env[0] != '\0') {
    history_path = strdup(env);
  } else if (home != NULL && home[0] != '\0') {
    size_t n = strlen(home) + sizeof "/.luagrad_history";
    history_path = malloc(n);
    if (history_path) snprintf(history_path, n, "%s/.luagrad_history", home);
  }
  if (history_path) read_history(history_path); /* a missing file is fine */
}

static void history_add(const char *line) {
  HIST_ENTRY *last;
  if (!use_readline || line[0] == '\0') return;
  last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last != NULL && strcmp(last->line, line) == 0) return; /* no repeats */
  add_history(line);
  if (history_path && append_history(1, history_path) != 0)
    write_history(history_path); /* the file did not exist yet */
}

static void history_close(void) {
  if (history_path) history_truncate_file(history_path, HISTORY_MAX);
  clear_history();
  free(history_path);
  history_path = NULL;
}

/* ---- completion ---- */

static const char *const keywords[] = {
    "and",   "break", "do",  "else", "elseif", "end",    "false", "for",  "function", "goto",  "if", "in",
    "local", "nil",   "not", "or",   "repeat", "return", "then",  "true", "until",    "while", NULL};

static int is_identifier(const char *s, size_t n) {
  size_t i;
  if (n == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
  for (i = 1; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

static int is_callable(lua_State *L, int idx) {
  int r;
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (!luaL_getmetafield(L, idx, "__call")) return 0;
  r = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return r;
}

/* Adds to the set at index `set` every identifier key of the table at `tab` that starts with
** the partial name (and is callable, when methods_only), as prefix .. key .. suffix. */
static void add_keys(lua_State *L, int tab, int set, const char *prefix, const char *partial,
                     int methods_only, const char *suffix) {
  size_t plen = strlen(partial);
  tab = lua_absindex(L, tab);
  lua_pushnil(L);
  while (lua_next(L, tab)) {
    size_t klen;
    const char *k;
    if (lua_type(L, -2) == LUA_TSTRING) {
      k = lua_tolstring(L, -2, &klen);
      if (klen >= plen && strncmp(k, partial, plen) == 0 && is_identifier(k, klen) &&
          (k[0] != '_' || partial[0] == '_') && (!methods_only || is_callable(L, -1))) {
        lua_pushfstring(L, "%s%s%s", prefix, k, suffix);
        lua_pushboolean(L, 1);
        lua_rawset(L, set);
      }
    }
    lua_pop(L, 1);
  }
}

/* Adds the names require("luagrad.repl").members(v) gives for the value at idx (an nn module's
** parameters, buffers, children and fields). Errors only mean no names. */
static void add_members(lua_State *L, int idx, int set, const char *prefix, const char *partial) {
  size_t plen = strlen(partial);
  int top = lua_gettop(L);
  lua_Integer i, n;
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luagrad.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE ||
      lua_getfield(L, -1, "members") != LUA_TFUNCTION) {
    lua_settop(L, top);
    return;
  }
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
    lua_settop(L, top);
    return;
  }
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    size_t klen;
    const char *k;
    if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
      k = lua_tolstring(L, -1, &klen);
      if (klen >= plen && strncmp(k, partial, plen) == 0 && is_identifier(k, klen)) {
        lua_pushfstring(L, "%s%s", prefix, k);
        lua_pushboolean(L, 1);
        lua_rawset(L, set);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

/* Adds the keys of the value at idx and of what its metatable's __index leads to: a table
** __index (a class, its base class...), for a tensor the methods table of the core, and for an
** instance whose metatable's __index is a function (an nn module) the metatable itself, taken
** as the class, and its chain; fields (not methods) also get add_members' names. */
static void add_value_keys(lua_State *L, int idx, int set, const char *prefix, const char *partial,
                           int methods_only, const char *suffix) {
  int depth;
  idx = lua_absindex(L, idx);
  if (!methods_only && lua_type(L, idx) == LUA_TTABLE) add_members(L, idx, set, prefix, partial);
  lua_pushvalue(L, idx);
  for (depth = 0; depth < 16; depth++) { /* the value, then each __index table */
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) add_keys(L, -1, set, prefix, partial, methods_only, suffix);
    if (!lua_getmetatable(L, -1)) break;
    if (t == LUA_TUSERDATA) {
      if (lua_getfield(L, -1, "__name") == LUA_TSTRING && strcmp(lua_tostring(L, -1), TENSOR_TYPE) == 0) {
        lua_pop(L, 2); /* name, metatable */
        lua_getglobal(L, "require");
        lua_pushliteral(L, "luagrad.core");
        lua_call(L, 1, 1); /* we run protected: a failure only means no completions */
        if (lua_getfield(L, -1, "Tensor") == LUA_TTABLE)
          add_keys(L, -1, set, prefix, partial, methods_only, suffix);
        lua_pop(L, 2);
        if (!methods_only) { /* the fields __index answers from C: t.sh<TAB> -> t.shape */
          static const char *const fields[] = {"shape",   "dtype", "grad", "requires_grad",
                                               "is_leaf", "T",     NULL};
          size_t plen = strlen(partial);
          for (const char *const *f = fields; *f; f++)
            if (strncmp(*f, partial, plen) == 0) {
              lua_pushfstring(L, "%s%s", prefix, *f);
              lua_pushboolean(L, 1);
              lua_rawset(L, set);
            }
        }
        break;
      }
      lua_pop(L, 1);
    }
    t = lua_getfield(L, -1, "__index");
    if (t == LUA_TFUNCTION) { /* cannot be listed: go on with the metatable, the class */
      lua_pop(L, 1);
      lua_remove(L, -2); /* previous value */
      continue;
    }
    if (t != LUA_TTABLE) {
      lua_pop(L, 2);
      break;
    }
    lua_remove(L, -2); /* metatable */
    lua_remove(L, -2); /* previous value */
  }
  lua_pop(L, 1);
}

/* Adds the completions of text to the set at index set (may leave values on the stack). */
static void collect_into(lua_State *L, const char *text, int set) {
  size_t len = strlen(text);
  const char *sep = NULL, *p;
  for (p = text; *p; p++)
    if (*p == '.' || *p == ':') sep = p;
  if (sep == NULL) { /* a global or a keyword */
    const char *const *kw;
    lua_pushglobaltable(L);
    add_value_keys(L, -1, set, "", text, 0, "");
    lua_pop(L, 1);
    for (kw = keywords; *kw; kw++)
      if (strncmp(*kw, text, len) == 0) {
        lua_pushstring(L, *kw);
        lua_pushboolean(L, 1);
        lua_rawset(L, set);
      }
    return;
  }
  if (sep == text) return;
  /* resolve the path before the last separator: name {'.' name} */
  {
    const char *seg = text;
    int first = 1;
    while (seg < sep) {
      const char *end = seg;
      int t;
      while (end < sep && *end != '.' && *end != ':') end++;
      if (*end == ':' && end != sep) return; /* "a:b.c" is not a path */
      if (!is_identifier(seg, (size_t)(end - seg))) return;
      lua_pushlstring(L, seg, (size_t)(end - seg));
      if (first) {
        lua_getglobal(L, lua_tostring(L, -1));
        lua_remove(L, -2);
        first = 0;
      } else {
        t = lua_type(L, -2);
        if (t != LUA_TTABLE && t != LUA_TUSERDATA && t != LUA_TSTRING) return;
        lua_gettable(L, -2); /* may call __index: we run protected */
        lua_remove(L, -2);
      }
      seg = end + 1;
    }
  }
  {
    int methods = *sep == ':';
    lua_pushlstring(L, text, (size_t)(sep - text + 1)); /* "lg.nn." or "t:" */
    add_value_keys(L, -2, set, lua_tostring(L, -1), sep + 1, methods, methods ? "(" : "");
    lua_pop(L, 1);
  }
}

/* Protected: collect(text) -> set of completions {[string] = true}. */
static int collect(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  lua_newtable(L);
  collect_into(L, text, 2);
  lua_settop(L, 2);
  return 1;
}

static char **matches = NULL; /* the current completions, for the generator */
static size_t nmatches = 0, match_next = 0;

static char *match_generator(const char *text, int state) {
  (void)text;
  if (state == 0) match_next = 0;
  if (match_next < nmatches) {
    char *m = matches[match_next];
    matches[match_next++] = NULL; /* readline frees it */
    return m;
  }
  return NULL;
}

static void free_matches(void) {
  size_t i;
  for (i = 0; i < nmatches; i++) free(matches[i]);
  free(matches);
  matches = NULL;
  nmatches = 0;
}

/* readline's word-break hook: inside an unclosed string only quotes break words, so that a file
** name is one word ("data/train.csv"; with the usual breaks, '/' and '-' would split it). NULL
** keeps rl_completer_word_break_characters. */
static char *word_breaks(void) {
  static char quotes[] = "\"'";
  char open = 0;
  int i;
  for (i = 0; i < rl_point && rl_line_buffer[i] != '\0'; i++) {
    char c = rl_line_buffer[i];
    if (open == 0 && (c == '"' || c == '\''))
      open = c;
    else if (open != 0 && c == '\\' && rl_line_buffer[i + 1] != '\0')
      i++; /* an escaped character */
    else if (c == open)
      open = 0;
  }
  return open != 0 ? quotes : NULL;
}

static char **complete(const char *text, int start, int end) {
  lua_State *L = replL;
  int top = lua_gettop(L);
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1; /* never fall back to readline's own completion */
  rl_completion_suppress_append = 1;
  if (rl_completion_quote_character != 0) /* inside a string: a file name */
    return rl_completion_matches(text, rl_filename_completion_function);
  free_matches();
  lua_pushcfunction(L, collect);
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    size_t cap = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (nmatches == cap) {
        char **m = realloc(matches, (cap = cap ? 2 * cap : 64) * sizeof *m);
        if (m == NULL) {
          lua_pop(L, 2);
          break;
        }
        matches = m;
      }
      matches[nmatches] = strdup(lua_tostring(L, -2));
      if (matches[nmatches]) nmatches++;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  if (nmatches == 0) return NULL;
  {
    char **result = rl_completion_matches(text, match_generator);
    free_matches();
    return result;
  }
}

/* ---- evaluating and printing ---- */

/* Is the status a syntax error that only lacks more input? (lua.c's test) */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t mark = sizeof(EOFMARK) - 1;
    if (lmsg >= mark && strcmp(msg + lmsg - mark, EOFMARK) == 0) return 1;
  }
  return 0;
}

/* How a chunk is to be run and shown: what its first line and last character asked for. */
typedef struct chunk_mode {
  int timed; /* "%time <chunk>": print the wall time */
  int quiet; /* the chunk ends in ';': print no results */
} chunk_mode;

/* `?text`: calls require("luagrad.help").ask(text), the text being upvalue 1. */
static int ask_help(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luagrad.help");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "ask");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 1, 0);
  return 0;
}

/* A REPL command on the first line: `?text` becomes a call of ask_help; `%time ` is taken off
** the line and noted in mode. Returns 1 when the chunk is ready (the closure or an error message
** on the stack, and *status set), 0 when the (rest of the) line is Lua to compile. */
static int repl_command(lua_State *L, chunk_mode *mode, int *status) {
  const char *line = lua_tostring(L, 1), *p = line;
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '?') {
    lua_pushstring(L, p + 1);
    lua_pushcclosure(L, ask_help, 1);
    *status = LUA_OK;
    return 1;
  }
  if (*p != '%') return 0; /* a '%' never starts Lua code */
  if (strncmp(p + 1, "time", 4) == 0 && (p[5] == '\0' || p[5] == ' ' || p[5] == '\t')) {
    p += 5;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0') {
      lua_pushliteral(L, "usage: %time <statement or expression>");
      *status = LUA_ERRSYNTAX;
      return 1;
    }
    mode->timed = 1;
    lua_pushstring(L, p);
    lua_replace(L, 1);
    return 0;
  }
  lua_pushfstring(L, "unknown REPL command '%s' (the commands are %%time and ?name)", p);
  *status = LUA_ERRSYNTAX;
  return 1;
}

/* Does the chunk end in ';' (spaces aside)? */
static int ends_in_semicolon(const char *chunk) {
  size_t n = strlen(chunk);
  while (n > 0 &&
         (chunk[n - 1] == ' ' || chunk[n - 1] == '\t' || chunk[n - 1] == '\n' || chunk[n - 1] == '\r'))
    n--;
  return n > 0 && chunk[n - 1] == ';';
}

/* The chunk (stack index 1) into the history, with the "%time " it was typed with. */
static void add_chunk_to_history(lua_State *L, const chunk_mode *mode) {
  if (mode->timed) {
    history_add(lua_pushfstring(L, "%%time %s", lua_tostring(L, 1)));
    lua_pop(L, 1);
  } else {
    history_add(lua_tostring(L, 1));
  }
}

/* Reads a chunk: the line on the stack top is tried as "return <line>" and as a statement;
** while both are incomplete (or the expression is), more lines are read. Leaves the compiled
** function (LUA_OK) or the error message on the stack, and sets *mode. Returns -1 at end of
** input, -2 when Ctrl-C dropped the input. */
static int loadline(lua_State *L, chunk_mode *mode) {
  int status;
  mode->timed = mode->quiet = 0;
  lua_settop(L, 0);
  status = pushline(L, 1);
  if (status != LINE_OK) return status == LINE_EOF ? -1 : -2;
  if (repl_command(L, mode, &status)) {
    history_add(lua_tostring(L, 1));
    lua_remove(L, 1); /* the text */
    return status;
  }
  for (;;) {
    size_t len;
    const char *chunk = lua_tolstring(L, 1, &len);
    const char *ret = lua_pushfstring(L, "return %s", chunk);
    int sret = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
    int sstat, more;
    if (sret == LUA_OK) {
      lua_remove(L, -2); /* the "return" text */
      status = LUA_OK;
      break;
    }
    more = incomplete(L, sret);
    lua_pop(L, 2); /* its error and the "return" text */
    sstat = luaL_loadbuffer(L, chunk, len, "=stdin");
    if (sstat == LUA_OK || !(more || incomplete(L, sstat))) {
      status = sstat;
      break;
    }
    lua_pop(L, 1); /* incomplete: read a continuation line */
    status = pushline(L, 0);
    if (status != LINE_OK) {
      add_chunk_to_history(L, mode);
      lua_settop(L, 0);
      return status == LINE_EOF ? -1 : -2;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
  add_chunk_to_history(L, mode);
  mode->quiet = ends_in_semicolon(lua_tostring(L, 1));
  lua_remove(L, 1); /* the text */
  return status;
}

/* Pushes the display string of the value at idx, using the show function at `show`. */
static void push_shown(lua_State *L, int show, int idx) {
  lua_pushvalue(L, show);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    luaL_tolstring(L, idx, NULL); /* the pretty-printer failed: plain tostring */
  }
}

/* Prints the n results on the stack top, separated by tabs. */
static void print_results(lua_State *L, int n) {
  int base = lua_gettop(L) - n, i, show;
  if (n == 0) return;
  luaL_checkstack(L, 8, "too many results to print");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luagrad.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
  } else {
    lua_getfield(L, -1, "show");
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  show = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    if (lua_isnil(L, show))
      luaL_tolstring(L, base + i, NULL);
    else
      push_shown(L, show, base + i);
    fputs(lua_tostring(L, -1), stdout);
    fputs(i < n ? "\t" : "\n", stdout);
    lua_pop(L, 1);
  }
  fflush(stdout);
  lua_settop(L, base);
}

static void report_error(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL) msg = "(error object is not a string)";
  fflush(stdout);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
  lua_pop(L, 1);
}

/* lg = require "luagrad", unless the global is taken already (by a script before -i). */
static int load_lg(lua_State *L) {
  if (lg_cli_global_lg(L) != LUA_OK) {
    report_error(L);
    return 0;
  }
  return 1;
}

/* The global help = require "luagrad.help", unless the name is taken (by a script before -i). */
static void set_help(lua_State *L) {
  if (lua_getglobal(L, "help") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luagrad.help");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    report_error(L);
    return;
  }
  lua_setglobal(L, "help");
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "wall time: 12.3 ms" */
static void print_time(double seconds) {
  if (seconds < 1e-3)
    printf("wall time: %.1f us\n", seconds * 1e6);
  else if (seconds < 1.0)
    printf("wall time: %.2f ms\n", seconds * 1e3);
  else
    printf("wall time: %.3f s\n", seconds);
  fflush(stdout);
}

/* package.preload loader of "luagrad.reference_pages": {["nn.md"] = text, ...}. */
static int load_reference_pages(lua_State *L) {
  const struct lg_reference_page *page;
  lua_newtable(L);
  for (page = lg_reference_pages; page->name != NULL; page++) {
    lua_pushlstring(L, (const char *)page->bytes, page->len);
    lua_setfield(L, -2, page->name);
  }
  return 1;
}

void lg_cli_preload_reference(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, load_reference_pages);
  lua_setfield(L, -2, "luagrad.reference_pages");
  lua_pop(L, 1);
}

void lg_repl_run(lua_State *L) {
  int status;
  chunk_mode mode;
  replL = L;
  use_readline = isatty(STDIN_FILENO);
  if (use_readline) {
    rl_readline_name = "luagrad";
    rl_catch_signals = 0; /* Ctrl-C is ours, see read_tty */
    rl_attempted_completion_function = complete;
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]}";
    rl_completer_quote_characters = "\"'"; /* inside a string, Tab completes file names */
    rl_completion_word_break_hook = word_breaks;
    rl_completion_append_character = '\0';
    history_open();
  }
  printf("luagrad %s (%s)  lg = require \"luagrad\" is loaded; help() for help\n", LG_VERSION, LUA_RELEASE);
  fflush(stdout);
  if (load_lg(L)) set_help(L);
  while ((status = loadline(L, &mode)) != -1) {
    double start = 0;
    if (status == -2) continue; /* Ctrl-C at the prompt */
    if (status == LUA_OK) {
      start = wall_seconds();
      status = lg_cli_docall(L, 0, LUA_MULTRET);
      if (mode.timed) print_time(wall_seconds() - start);
    }
    if (status == LUA_OK) {
      if (lua_gettop(L) > 0) { /* _ is the first result */
        lua_pushvalue(L, 1);
        lua_setglobal(L, "_");
      }
      if (mode.quiet)
        lua_settop(L, 0);
      else
        print_results(L, lua_gettop(L));
    } else {
      report_error(L);
    }
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  if (use_readline) history_close();
  replL = NULL;
}
