-- spec/helpers/util.lua: the small helpers many specs need, kept in one copy: quoting for the
-- shell, whole-file reads and writes, directory listings, temporary directories, running a
-- command, where the luagrad executable is, and checking that a call raises.
--
-- The specs run from the repository root (tools/test.sh starts busted there); LUAGRAD_BUILD
-- names the build directory (default "build"), relative to the root or absolute.
local assert = require "luassert"

local util = {}

-- ---- the shell -------------------------------------------------------------------------------

-- s (a string, or anything tostring takes) as one single-quoted shell word.
function util.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its stdout with trailing whitespace removed, and the exit
-- status as io.popen's close gives it (true or nil, "exit" or "signal", the code).
function util.run(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("a")
  local ok, _, code = p:close()
  return (s:gsub("%s+$", "")), ok, code
end

-- ---- files -----------------------------------------------------------------------------------

-- The whole file, bytes as they are; raises (naming the path) when it cannot be opened.
function util.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Replaces the file's contents with text.
function util.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function util.file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- The names in directory d (dot files included, . and .. not), sorted.
function util.listdir(d)
  local p = assert(io.popen("ls -A " .. util.shell_quote(d)))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

-- A fresh, empty temporary directory; remove it with util.remove_dir.
function util.tmpdir()
  local d, ok = util.run("mktemp -d")
  assert.is_true(ok and #d > 0, "mktemp -d failed")
  return d
end

-- Removes a directory tree, read-only parts included; nil is ignored.
function util.remove_dir(d)
  if d then os.execute("chmod -R u+w " .. util.shell_quote(d) .. " 2>/dev/null; rm -rf " .. util.shell_quote(d)) end
end

-- ---- the luagrad executable ------------------------------------------------------------------

util.ROOT = util.run("pwd") -- the repository root: the directory the specs run from
util.BUILD = os.getenv("LUAGRAD_BUILD") or "build"
if util.BUILD:sub(1, 1) ~= "/" then util.BUILD = util.ROOT .. "/" .. util.BUILD end
util.LUAGRAD = util.BUILD .. "/luagrad"

-- A stock lua5.4 command that finds the module in the build directory. LUAGRAD_LUA (set by
-- tools/test.sh, e.g. with the ASan runtime preloaded) replaces plain "lua5.4".
function util.stock_lua()
  local b = util.BUILD
  return "env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='" .. b .. "/lib/?.so;" .. b ..
    "/?.so;;' " .. (os.getenv("LUAGRAD_LUA") or "lua5.4")
end

-- ---- errors ----------------------------------------------------------------------------------

-- Calls fn(...); returns the error it raised as a string, or fails the test if it did not raise.
function util.error_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error, got none")
  return tostring(e)
end

-- The same without the "file:line: " the error names (the text alone, for exact comparisons).
function util.message_of(fn, ...)
  return (util.error_of(fn, ...):gsub("^[^:\n]*:%d+: ", ""))
end

-- Calls f(...); fails unless it raises an error whose message matches the Lua pattern, which
-- it returns.
function util.raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  err = tostring(err)
  assert.is_truthy(err:find(pattern), string.format("error %q does not match %q", err, pattern))
  return err
end

return util
