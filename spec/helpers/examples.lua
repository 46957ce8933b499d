-- spec/helpers/examples.lua: running an example script as a child process in quick mode, and
-- the contract every chapter example keeps (exit 0, last line "claim holds: ...", its SVGs).
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").
local assert = require "luassert"
local util = require "helpers.util"

local M = {}

-- For a spec's setup: checks that the luagrad executable is built and returns a fresh
-- temporary directory (remove it with util.remove_dir in teardown).
function M.prepare()
  assert(util.file_exists(util.LUAGRAD),
    util.LUAGRAD .. " is missing: build it first (LUAGRAD_BUILD names the build directory)")
  return util.tmpdir()
end

-- Runs examples/NAME.lua --quick --out dir from the repository root; returns stdout's lines,
-- stdout, stderr and the exit status.
function M.run(dir, name)
  local q = util.shell_quote
  local outpath, errpath = dir .. "/" .. name .. ".stdout", dir .. "/" .. name .. ".stderr"
  local cmd = string.format("cd %s && env -u LUA_INIT -u LUA_INIT_5_4 %s %s --quick --out %s >%s 2>%s </dev/null",
    q(util.ROOT), q(util.LUAGRAD), q("examples/" .. name .. ".lua"), q(dir), q(outpath), q(errpath))
  local _, _, code = os.execute(cmd)
  local out = util.file_exists(outpath) and util.read_file(outpath) or ""
  local err = util.file_exists(errpath) and util.read_file(errpath) or ""
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
    local path = dir .. "/" .. svg
    assert.is_truthy(util.file_exists(path), name .. " did not write " .. svg)
    local text = util.read_file(path)
    assert.is_truthy(text:find("^<svg") or text:find("^<%?xml"), svg .. " is not an SVG: " .. text:sub(1, 40))
    assert.is_truthy(text:find("</svg>%s*$"), svg .. " is not a complete SVG")
    assert.is_truthy(text:find("<polyline", 1, true) or text:find("<path", 1, true), svg .. " holds no line")
  end
  return lines, out
end

return M
