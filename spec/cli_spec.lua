-- The luagrad executable from the command line, as lua.c's users know it: -e, -v, -l, -i, a
-- script with arguments and the arg table, "-" and "--", stdin as a script, exit statuses and
-- error reports; the embedding example (examples/embed/host.c); busted run by luagrad.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").

package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local shell_quote, read_file, write_file, file_exists = util.shell_quote, util.read_file, util.write_file, util.file_exists

local ROOT, BUILD, LUAGRAD = util.ROOT, util.BUILD, util.LUAGRAD
local EMBED_HOST = BUILD .. "/embed_host"

-- The version, written once: LG_VERSION in include/luagrad.h (CMakeLists.txt reads it from there).
local VERSION = read_file(ROOT .. "/include/luagrad.h"):match('#define LG_VERSION "([%d%.]+)"')

local tmpdir

-- Runs a shell command line with stdin from a string (or /dev/null); returns stdout, stderr
-- and the exit status. The environment is cleaned of LUA_INIT so user settings cannot leak in.
local function run(cmdline, stdin)
  local inpath, outpath, errpath = tmpdir .. "/stdin", tmpdir .. "/stdout", tmpdir .. "/stderr"
  write_file(inpath, stdin or "")
  local full = string.format("env -u LUA_INIT -u LUA_INIT_5_4 %s <%s >%s 2>%s", cmdline,
                             shell_quote(inpath), shell_quote(outpath), shell_quote(errpath))
  local _, _, code = os.execute(full)
  return read_file(outpath), read_file(errpath), code
end

-- luagrad with the given arguments (each one shell-quoted).
local function luagrad(args, stdin)
  local parts = {shell_quote(LUAGRAD)}
  for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
  return run(table.concat(parts, " "), stdin)
end

local function lines_of(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

describe("the luagrad command line", function()
  setup(function()
    assert(file_exists(LUAGRAD), LUAGRAD .. " is missing: build it first (LUAGRAD_BUILD="
                                 .. BUILD .. ")")
    assert(VERSION, "no LG_VERSION in include/luagrad.h")
    tmpdir = util.tmpdir()
  end)

  teardown(function()
    util.remove_dir(tmpdir)
  end)

  it("-v prints the version of luagrad and of Lua", function()
    local out, err, code = luagrad({"-v"})
    assert.are.equal(0, code)
    assert.are.equal("", err)
    local version, lua = out:match("^luagrad (%S+) %((Lua 5%.4%.%d+)%)\n$")
    assert.are.equal(VERSION, version)
    assert.truthy(lua, out)
  end)

  it("--version prints the version line and exits, running nothing after it", function()
    local out, err, code = luagrad({"--version", "-e", "print('ran')"})
    assert.are.equal(0, code)
    assert.are.equal("", err)
    local version = out:match("^luagrad (%S+) %(Lua 5%.4%.%d+%)\n$")
    assert.are.equal(VERSION, version)
  end)

  it("-h and --help print the usage, the options, the REPL's features and the environment, and exit 0", function()
    local out, err, code = luagrad({"--help"})
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.are.equal("usage: luagrad [options] [script [args]]", lines_of(out)[1])
    local short = luagrad({"-h", "-e", "print('ran')"})
    assert.are.equal(out, short)
    for _, want in ipairs({"-e stat", "-i ", "-l mod", "-l g=mod", "-v ", "-E ", "-W ", "-h, --help", "--version",
                           "Tab completes", "history", "Ctrl-C", "Ctrl-D",
                           "help(x) or ?x", "_ is the last result", "trailing ';'", "%time"}) do
      assert.truthy(out:find(want, 1, true), want .. " missing from --help:\n" .. out)
    end
    -- every environment variable luagrad reads (a getenv in src/ or lua/, and what Lua's own
    -- package library and lua.c read) is named in the Environment section
    local env = out:match("\nEnvironment:\n(.*)$")
    assert.is_string(env, out)
    local names = {LUA_INIT = true, LUA_INIT_5_4 = true, LUA_PATH = true, LUA_PATH_5_4 = true, LUA_CPATH = true,
                   LUA_CPATH_5_4 = true}
    local sources = util.run("grep -rhoE 'getenv\\(\"[A-Z_0-9]+\"' " .. shell_quote(ROOT .. "/src") .. " "
                             .. shell_quote(ROOT .. "/lua"))
    for name in sources:gmatch('getenv%("([%w_]+)"') do names[name] = true end
    assert.is_true(names.LUAGRAD_HISTORY and names.LUAGRAD_PROGRESS and true, sources)
    for name in pairs(names) do
      assert.truthy(env:find("%f[%w_]" .. name .. "%f[^%w_]"), name .. " missing from --help's environment:\n" .. env)
    end
  end)

  it("passes --help after the script to the script", function()
    local script = tmpdir .. "/help.lua"
    write_file(script, "print(...)\n")
    local out, _, code = luagrad({script, "--help", "-h"})
    assert.are.equal(0, code)
    assert.are.equal("--help\t-h\n", out)
  end)

  it("-e code sees the global lg (luagrad), as the REPL does; a taken name is left alone", function()
    local out, err, code = luagrad({"-e", "print(lg == require 'luagrad', lg.ones(2, 3):sum():item())"})
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("true\t6\n", out)
    out, err, code = luagrad({"-l", "lg=string", "-e", "print(lg.upper('x'))"})
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("X\n", out)
    -- a script alone does not get it: it says local lg = require "luagrad"
    local script = tmpdir .. "/nolg.lua"
    write_file(script, "print(lg)\n")
    out, err, code = luagrad({script})
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("nil\n", out)
  end)

  it("-e runs statements in order", function()
    local out, err, code = luagrad({"-e", "x = 20", "-e", "print(x + 1)", "-eprint(_VERSION)"})
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("21\nLua 5.4\n", out)
  end)

  it("-e can require luagrad without LUA_PATH", function()
    local out, err, code = run("env -u LUA_PATH -u LUA_CPATH " .. shell_quote(LUAGRAD) .. " -e "
      .. shell_quote('local lg = require "luagrad"; print(lg.tensor({1.5, 2, 3}):sum():item())'))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("6.5\n", out)
  end)

  it("-l requires a module into a global", function()
    local out, _, code = luagrad({"-l", "luagrad", "-l", "L=luagrad", "-e",
                                  "print(type(luagrad), L == luagrad, type(L.tensor))"})
    assert.are.equal(0, code)
    assert.are.equal("table\ttrue\tfunction\n", out)
  end)

  it("runs a script with its arguments and lua.c's arg table", function()
    local script = tmpdir .. "/args.lua"
    write_file(script, "#!/usr/bin/env luagrad\n"
      .. "print(select('#', ...), ...)\n"
      .. "for i = -3, #arg do print(i, arg[i]) end\n")
    local out, err, code = luagrad({"-e", "x = 1", script, "a", "b c"})
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.same({
      "2\ta\tb c",
      "-3\t" .. LUAGRAD,
      "-2\t-e",
      "-1\tx = 1",
      "0\t" .. script,
      "1\ta",
      "2\tb c",
    }, lines_of(out))
  end)

  it("stops options at -- and passes option-like arguments to the script", function()
    local script = tmpdir .. "/dash.lua"
    write_file(script, "print(...)\n")
    local out, _, code = luagrad({"--", script, "-v", "-e"})
    assert.are.equal(0, code)
    assert.are.equal("-v\t-e\n", out)
  end)

  it("reports a runtime error as 'luagrad: msg' with a traceback and exits 1", function()
    local script = tmpdir .. "/fail.lua"
    write_file(script, "local function f() error('boom') end\nf()\n")
    local out, err, code = luagrad({script})
    assert.are.equal("", out)
    assert.are.equal(1, code)
    local lines = lines_of(err)
    assert.are.equal("luagrad: " .. script .. ":1: boom", lines[1])
    assert.are.equal("stack traceback:", lines[2])
  end)

  it("exits 1 on a syntax error, a missing script and a bad option", function()
    local script = tmpdir .. "/syntax.lua"
    write_file(script, "x = = 1\n")
    local _, err, code = luagrad({script})
    assert.are.equal(1, code)
    assert.are.equal("luagrad: " .. script .. ":1: unexpected symbol near '='\n", err)

    _, err, code = luagrad({tmpdir .. "/missing.lua"})
    assert.are.equal(1, code)
    assert.are.equal("luagrad: cannot open " .. tmpdir .. "/missing.lua: No such file or directory\n", err)

    _, err, code = luagrad({"-x"})
    assert.are.equal(1, code)
    assert.are.equal("luagrad: unrecognized option '-x'", lines_of(err)[1])

    _, err, code = luagrad({"--helpme"})
    assert.are.equal(1, code)
    assert.are.equal("luagrad: unrecognized option '--helpme'", lines_of(err)[1])

    _, err, code = luagrad({"-e"})
    assert.are.equal(1, code)
    assert.are.equal("luagrad: '-e' needs argument", lines_of(err)[1])
  end)

  it("passes os.exit's status through", function()
    local _, _, code = luagrad({"-e", "os.exit(3)"})
    assert.are.equal(3, code)
    _, _, code = luagrad({"-e", "os.exit(false, true)"})
    assert.are.equal(1, code)
  end)

  it("runs stdin as a script when it is not a terminal", function()
    local _, out, err, code
    out, err, code = luagrad({}, "print('from stdin', 1 + 1)\n")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("from stdin\t2\n", out)

    out, err, code = luagrad({"-", "a", "b"}, "print(arg[0], ...)\n")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("-\ta\tb\n", out)

    _, err, code = luagrad({}, "error('bad input')\n")
    assert.are.equal(1, code)
    assert.are.equal("luagrad: stdin:1: bad input", lines_of(err)[1])
  end)

  it("-i enters the REPL after the script", function()
    local script = tmpdir .. "/setup.lua"
    write_file(script, "x = 41\n")
    local out, err, code = luagrad({"-i", script}, "x + 1\n{1, 'two'}\nerror('oops')\n1, nil, 'z'\n")
    assert.are.equal(0, code)
    local lines = lines_of(out)
    assert.truthy(lines[1]:match('^luagrad %S+ %(Lua 5%.4%.%d+%)  lg = require "luagrad" is loaded; help%(%) for help$'),
                  lines[1])
    assert.are.same({'> 42', '> {1, "two"}', '> > 1\tnil\t"z"', '> '}, {table.unpack(lines, 2)})
    assert.are.equal("stdin:1: oops", lines_of(err)[1])
  end)

  it("runs busted", function()
    if not file_exists("/usr/bin/busted") then pending("no /usr/bin/busted") return end
    local dir = tmpdir .. "/bspec"
    os.execute("mkdir -p " .. shell_quote(dir))
    write_file(dir .. "/ok_spec.lua", [[
describe("inside luagrad", function()
  it("has luagrad", function()
    local lg = require "luagrad"
    assert.are.equal(6, lg.zeros(2, 3):numel())
  end)
end)
]])
    write_file(dir .. "/bad_spec.lua", [[
describe("inside luagrad", function()
  it("fails", function() assert.are.equal(1, 2) end)
end)
]])
    local out, _, code = run(shell_quote(LUAGRAD) .. " /usr/bin/busted -o plainTerminal "
                             .. shell_quote(dir .. "/ok_spec.lua"))
    assert.are.equal(0, code)
    assert.truthy(out:find("1 success / 0 failures / 0 errors / 0 pending", 1, true), out)

    out, _, code = run(shell_quote(LUAGRAD) .. " /usr/bin/busted -o plainTerminal "
                       .. shell_quote(dir))
    assert.are.equal(1, code)
    assert.truthy(out:find("1 success / 1 failure / 0 errors / 0 pending", 1, true), out)
  end)

  it("embeds luagrad in a C program with lg_preload (examples/embed)", function()
    assert(file_exists(EMBED_HOST), EMBED_HOST .. " is missing")
    local out, err, code = run("env -u LUA_PATH -u LUA_CPATH " .. shell_quote(EMBED_HOST))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("sum of a @ a = 54\n", out)
  end)
end)
