-- Storage lifetime: views keep storage alive, <close> frees at once, and the collector feels
-- tensor memory so a long allocation loop stays bounded without collectgarbage().
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"

local MB = 262144 -- float32 elements in 1 MiB

local function full_gc()
  collectgarbage()
  collectgarbage()
end

describe("memory", function()
  it("memory_in_use counts tensor bytes", function()
    full_gc()
    local before = lg.memory_in_use()
    assert.are.equal("number", type(before))
    local held = { lg.zeros(MB) }
    local during = lg.memory_in_use()
    assert.is_true(during - before >= 4 * MB, "grew by " .. (during - before))
    held[2] = lg.zeros(1000, { dtype = "float64" })
    assert.is_true(lg.memory_in_use() - during >= 8000)
    assert.are.equal(MB, held[1]:numel())
    held[1], held[2] = nil, nil
    full_gc()
    assert.is_true(lg.memory_in_use() <= before, "after collecting: " .. lg.memory_in_use() ..
      " bytes, before: " .. before)
  end)

  it("a view keeps its storage alive after the base is dropped and collected", function()
    local v
    do
      local base = lg.arange(1000):to("float64")
      v = base:narrow(1, 11, 5)
    end
    full_gc()
    local junk = {}
    for i = 1, 20 do junk[i] = lg.full({ 1000 }, -1, { dtype = "float64" }) end
    assert.are.equal(-1, junk[20][1000])
    assert.are.same({ 10, 11, 12, 13, 14 }, v:tolist())
    v[1] = 7
    assert.are.equal(7, v[1])
    local r = lg.tensor({ { 1, 2 }, { 3, 4 } })[2]
    full_gc()
    assert.are.same({ 3, 4 }, r:tolist())
  end)

  it("local t <close> frees at once, without a collection", function()
    full_gc()
    collectgarbage("stop")
    local before = lg.memory_in_use()
    local inside
    do
      local t <close> = lg.zeros(MB)
      t[1] = 1
      inside = lg.memory_in_use()
    end
    local after = lg.memory_in_use()
    collectgarbage("restart")
    assert.is_true(inside - before >= 4 * MB, "allocation grew memory by " .. (inside - before))
    assert.is_true(inside - after >= 4 * MB, "<close> freed only " .. (inside - after) .. " bytes")
  end)

  it("<close> on a view releases the view, not the storage its base still uses", function()
    local base = lg.arange(10):to("float32")
    full_gc()
    collectgarbage("stop")
    local before = lg.memory_in_use()
    do
      local v <close> = base:narrow(1, 3, 4)
      assert.are.same({ 2, 3, 4, 5 }, v:tolist())
    end
    local after = lg.memory_in_use()
    collectgarbage("restart")
    assert.are.equal(before, after)
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, base:tolist())
  end)

  it("a base closed while a view is alive leaves the view readable", function()
    local v
    do
      local base <close> = lg.arange(6):to("float64")
      v = base:view(2, 3)
    end
    full_gc()
    assert.are.same({ { 0, 1, 2 }, { 3, 4, 5 } }, v:tolist())
  end)

  it("using a closed tensor raises an error instead of crashing", function()
    local escaped
    do
      local t <close> = lg.ones(4)
      escaped = t
    end
    local ok = pcall(function() return escaped:sum() end)
    assert.is_false(ok)
    assert.is_false((pcall(function() return escaped + 1 end)))
    assert.is_false((pcall(function() return escaped[1] end)))
    full_gc() -- __gc after __close must be harmless
    assert.are.equal(4, lg.ones(4):sum():item())
  end)

  -- The loop runs in a fresh process so VmHWM is its own peak. It stops early (and so fails)
  -- once resident memory passes 1 GB, to spare the machine when the bound is badly broken.
  local function hwm_child(cmd, label)
    local code = table.concat({
      "local lg = require 'luagrad'",
      "local function status(key)",
      "  for line in io.lines('/proc/self/status') do",
      "    local v = line:match('^' .. key .. ':%s*(%d+)') if v then return tonumber(v) end",
      "  end",
      "end",
      "local n = 0",
      "for i = 1, 20000 do",
      "  local t = lg.ones(262144)",
      "  n = i",
      "  if i % 250 == 0 then assert(t[262144] == 1); if status('VmRSS') > 1024 * 1024 then break end end",
      "end",
      "print(n, status('VmHWM'))",
    }, "\n")
    local out, ok = util.run("timeout 600 " .. cmd .. " -e " .. util.shell_quote(code) .. " 2>&1")
    assert.is_true(ok == true, label .. " child failed: " .. out)
    local n, kb = out:match("(%d+)%s+(%d+)%s*$")
    n, kb = tonumber(n), tonumber(kb)
    assert.is_not_nil(kb, label .. " child printed: " .. out)
    print(string.format("\n[memory] %s: %d x 1 MB tensors, peak resident (VmHWM) %d kB = %.1f MB",
      label, n, kb, kb / 1024))
    assert.are.equal(20000, n, label .. ": stopped after " .. n .. " tensors, resident over 1 GB")
    assert.is_true(kb < 300 * 1024, label .. ": VmHWM " .. kb .. " kB is not under 300 MB")
  end

  it("the allocator's cache follows the shapes in use: another size's buffers give way", function()
    -- in a child, so that the cache's limit (the larger of 128 MiB and the peak in use) is known:
    -- 100 buffers of 1 MiB are cached, then 100 of 1.5 MiB are used and freed (peak 150 MiB);
    -- they must all be cached (the 1 MiB ones go back), so using them again takes all 150 MiB
    -- from the cache. Without eviction only 33 fit, and 100 MiB of 1 MiB buffers stay.
    local out, ok = util.run(util.LUAGRAD .. [[ -e '
      local function use(n, mib)
        local t = {}
        for i = 1, n do t[i] = lg.zeros(math.floor(mib * 262144)) end
        return t
      end
      local a = use(100, 1); a = nil; collectgarbage(); collectgarbage()
      local c1 = lg.memory_cached()
      local b = use(100, 1.5); b = nil; collectgarbage(); collectgarbage()
      local c2 = lg.memory_cached()
      local again = use(100, 1.5)
      local c3 = lg.memory_cached()
      print(c1 // 1048576, c2 // 1048576, (c2 - c3) // 1048576, #again)' 2>&1]])
    assert.is_true(ok, out)
    local c1, c2, taken = out:match("^(%d+)\t(%d+)\t(%d+)\t100")
    assert.is_not_nil(c1, out)
    assert.are.equal(100, tonumber(c1), out)
    assert.are.equal(150, tonumber(c2), out)
    assert.are.equal(150, tonumber(taken), "MiB taken from the cache by the second use: " .. out)
  end)

  it("20,000 tensors of 1 MB stay under 300 MB resident in the luagrad executable", function()
    hwm_child(util.LUAGRAD, "luagrad")
  end)

  it("20,000 tensors of 1 MB stay under 300 MB resident in a stock lua5.4", function()
    hwm_child(util.stock_lua(), "lua5.4")
  end)
end)
