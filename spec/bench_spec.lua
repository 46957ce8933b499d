-- bench/workloads.lua in a short run (every workload at 1 and 2 threads, a few steps): the
-- performance table's numbers are produced, each workload's loss falls, and a 1-thread run uses
-- one core. Timings themselves are measured in bench/, never asserted here.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local json = require "luagrad.json"

describe("bench/workloads.lua, short run", function()
  local rows, peak

  setup(function()
    local p = assert(io.popen(string.format("%s bench/workloads.lua --steps-scale 0.05 --threads 1,2 2>&1",
      util.shell_quote(util.LUAGRAD))))
    local out = p:read("a")
    local ok = p:close()
    assert(ok, "bench/workloads.lua failed:\n" .. out)
    rows = {}
    for line in out:gmatch("[^\n]+") do
      local r = json.decode(line)
      if r.sgemm_gflops then peak = r.sgemm_gflops else rows[r.name] = r end
    end
  end)

  it("measures the sgemm peak and all four workloads at 1 and 2 threads, with a GEMM floor", function()
    assert.is_true(peak > 0, "sgemm peak")
    for _, name in ipairs({ "W1", "W2", "W3", "W4" }) do
      local r = rows[name]
      assert.is_not_nil(r, name)
      assert.is_true(r.ms1 > 0 and r.ms2 > 0 and r.floor > 0, name .. ": timings present")
    end
  end)

  it("checks that every workload's loss is finite and falls", function()
    for _, name in ipairs({ "W1", "W2", "W3", "W4" }) do
      local r = rows[name]
      assert.is_true(r.ok, string.format("%s: loss %g -> %g", name, r.first, r.final))
      assert.is_true(r.final < r.first and r.final == r.final, name)
    end
  end)

  it("runs the 1-thread steps on one core (CPU seconds per wall second)", function()
    for _, name in ipairs({ "W1", "W2", "W3", "W4" }) do
      assert.is_true(rows[name].cores1 < 1.3, string.format("%s used %.2f cores at 1 thread", name, rows[name].cores1))
    end
  end)
end)
