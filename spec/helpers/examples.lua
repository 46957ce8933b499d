-- spec/helpers/examples.lua: running an example script as a child process in quick mode, and
-- the contract every chapter example keeps (exit 0, last line "claim holds: ...", its SVGs).
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").
local assert = require "luassert"

local M = {}

function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local ROOT = assert(io.popen("pwd")):read("l")
local BUILD = os.getenv("LUAGRAD_BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = ROOT .. "/" .. BUILD end
M.LUAGRAD = BUILD .. "/luagrad"

-- For a spec's setup: checks that the luagrad executable is built and returns a fresh
-- temporary directory (remove it with M.remove in teardown).
function M.prepare()
  local f = io.open(M.LUAGRAD, "r")
  assert(f, M.LUAGRAD .. " is missing: build it first (LUAGRAD_BUILD names the build directory)")
  f:close()
  return M.tmpdir()
end

-- Runs examples/NAME.lua --quick --out dir from the repository root; returns stdout's lines,
-- stdout, stderr and the exit status.
function M.run(dir, name)
  local q = M.shell_quote
  local outpath, errpath = dir .. "/" .. name .. ".stdout", dir .. "/" .. name .. ".stderr"
  local cmd = string.format("cd %s && env -u LUA_INIT -u LUA_INIT_5_4 %s %s --quick --out %s >%s 2>%s </dev/null",
    q(ROOT), q(M.LUAGRAD), q("examples/" .. name .. ".lua"), q(dir), q(outpath), q(errpath))
  local _, _, code = os.execute(cmd)
  local out, err = M.read_file(outpath) or "", M.read_file(errpath) or ""
  local lines = {}
  for line in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines, out, err, code
end

-- The contract: exit 0, a last line "claim holds: ...", and each SVG written, complete and
-- holding a line. Returns stdout's lines and stdout.
function M.check(dir, name, svgs)
  local lines, out, err, code = M.run(dir, name)
  assert.are.equal(0, code, name .. " exited " .. tostring(code) .. "\nstdout:\n" .. out .. "\nstderr:\n" .. err)
  local last = lines[#lines] or ""
  assert.is_truthy(last:find("^claim holds:"), name .. "'s last line: " .. last)
  for _, svg in ipairs(svgs) do
    local text = M.read_file(dir .. "/" .. svg)
    assert.is_truthy(text, name .. " did not write " .. svg)
    assert.is_truthy(text:find("^<svg") or text:find("^<%?xml"), svg .. " is not an SVG: " .. text:sub(1, 40))
    assert.is_truthy(text:find("</svg>%s*$"), svg .. " is not a complete SVG")
    assert.is_truthy(text:find("<polyline", 1, true) or text:find("<path", 1, true), svg .. " holds no line")
  end
  return lines, out
end

-- A fresh temporary directory, and its removal.
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. M.shell_quote(d)))
  return d
end

function M.remove(dir)
  if dir then os.execute("rm -rf " .. M.shell_quote(dir)) end
end

return M
