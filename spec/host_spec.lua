-- luagrad as a good citizen of the process it runs in, and of the disk: checkpoints that survive
-- crashes and power cuts, a killed run that resumes exactly, memory limits that give an answer
-- instead of a hang, and coroutines that do not carry a mode out of their scope. (Threads, several
-- lua_States, fork and signals are checked from C: tests/c/test_lua_threads.c.)
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local q = util.shell_quote

local LUAGRAD = util.LUAGRAD

local function script_file(dir, name, text)
  local p = dir .. "/" .. name
  util.write_file(p, text)
  return p
end

describe("checkpoints on disk", function()
  local dir
  before_each(function() dir = util.tmpdir() end)
  after_each(function() util.remove_dir(dir) end)

  it("are fsync'd before the rename, and the directory after it", function()
    if not util.run("command -v strace") or util.run("command -v strace") == "" then
      pending("strace is not installed (tools/setup.sh installs it)")
      return
    end
    local p = dir .. "/m.safetensors"
    local log = dir .. "/trace"
    util.run(string.format("strace -f -e trace=openat,fsync,rename,renameat,renameat2 -o %s %s -e %s 2>&1", q(log),
      q(LUAGRAD), q(string.format("require('luagrad').save(%q, require('luagrad').ones(1000))", p))))
    local trace = util.read_file(log)
    local temp_fsync = trace:find("fsync%(%d+%)%s*= 0")
    local rename = trace:find("rename[%w]*%(.-lgtmp.-m%.safetensors\"")
    assert.is_not_nil(temp_fsync, "no fsync of the temporary:\n" .. trace)
    assert.is_not_nil(rename, "no rename of the temporary:\n" .. trace)
    assert.is_true(temp_fsync < rename, "the temporary is renamed before it is fsync'd")
    assert.is_not_nil(trace:find("fsync%(%d+%)%s*= 0", rename), "the directory is not fsync'd after the rename")
  end)

  it("keep the file's mode", function()
    local p = dir .. "/m.safetensors"
    lg.save(p, lg.ones(3))
    os.execute("chmod 600 " .. q(p))
    lg.save(p, lg.zeros(3))
    assert.are.equal("600", util.run("stat -c %a " .. q(p)))
    assert.are.same({ 0, 0, 0 }, lg.load(p):tolist())
  end)

  it("are written through a symlink to its target; the link stays a link", function()
    os.execute("mkdir " .. q(dir .. "/real"))
    local target, link = dir .. "/real/m.safetensors", dir .. "/m.safetensors"
    lg.save(target, lg.ones(2))
    os.execute("ln -s real/m.safetensors " .. q(link))
    lg.save(link, lg.full({ 2 }, 7.0))
    assert.are.equal("real/m.safetensors", util.run("readlink " .. q(link)))
    assert.are.same({ 7, 7 }, lg.load(target):tolist())
    assert.are.same({ "m.safetensors" }, util.listdir(dir .. "/real"))
  end)

  it("leave no temporary behind a kill -9: the next save or load removes a dead process's", function()
    local p = dir .. "/big.safetensors"
    lg.save(p, lg.ones(10))
    -- a process that no longer runs: its pid in a leftover temporary
    local dead = util.run("sh -c 'echo $$'")
    local stale = p .. ".lgtmp." .. dead .. ".1"
    util.write_file(stale, "half a checkpoint")
    local live = p .. ".lgtmp.1.1" -- pid 1 runs: another process's save in progress is left alone
    util.write_file(live, "someone else's")
    assert.is_not_nil(lg.load(p))
    assert.is_false(util.file_exists(stale))
    assert.is_true(util.file_exists(live))
    os.remove(live)
    -- a real kill -9 in the middle of large saves
    local code = string.format("local lg = require 'luagrad'; local t = lg.randn(4000000); "
      .. "for i = 1, 1000 do lg.save(%q, {t = t, i = lg.tensor(i)}) end", p)
    for _, ms in ipairs({ 30, 90, 170 }) do
      util.run(string.format("%s -e %s & pid=$!; sleep %g; kill -9 $pid; wait $pid 2>/dev/null", q(LUAGRAD), q(code),
        ms / 1000))
      local left = util.listdir(dir)
      local loaded = lg.load(p) -- the file is whole: the old one or a new one
      assert.is_not_nil(loaded)
      lg.save(p, lg.ones(1)) -- and the next save removes what the killed one left
      assert.are.same({ "big.safetensors" }, util.listdir(dir), "after a kill at " .. ms .. " ms: " .. table.concat(left, " "))
    end
  end)
end)

describe("a run killed with kill -9 and resumed from its checkpoint", function()
  -- Trains with dropout and a shuffled loader for 40 steps, checkpointing every 5 (model,
  -- optimizer, generator, loader position, step); resumes from the checkpoint when there is one.
  -- Prints every parameter bit at the end. SLOW makes each step wait, so a kill lands mid-run.
  local TRAIN = [[
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional
local ckpt, slow = arg[1], tonumber(arg[2]) or 0
lg.manual_seed(11)
local model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
local opt = lg.optim.AdamW(model:parameters(), { lr = 0.01 })
local x, y = lg.randn(48, 8), lg.randint(1, 4, { 48 })
local loader = lg.data.DataLoader(lg.data.TensorDataset(x, y), { batch_size = 8, shuffle = true })
local step = 0
local saved = lg.load(ckpt)
if saved then
  model:load_state_dict(saved.model)
  opt:load_state_dict(saved.optim)
  lg.set_rng_state(saved.rng)
  loader:load_state_dict(saved.loader)
  step = saved.step
end
while step < 40 do
  for xb, yb in loader do
    opt:zero_grad()
    F.cross_entropy(model(xb), yb):backward()
    opt:step()
    step = step + 1
    local t = lg.clock()
    while lg.clock() - t < slow do end
    if step % 5 == 0 then
      lg.save(ckpt, { model = model:state_dict(), optim = opt:state_dict(), rng = lg.get_rng_state(),
                      loader = loader:state_dict(), step = step })
    end
    if step == 40 then break end
  end
end
local bits = {}
for _, p in ipairs(model:parameters()) do
  for _, v in ipairs(p:detach():contiguous():view(-1):tolist()) do bits[#bits + 1] = string.format("%a", v) end
end
print(table.concat(bits, ","))
]]

  it("ends bit-identical to the uninterrupted run", function()
    local dir = util.tmpdir()
    local script = script_file(dir, "train.lua", TRAIN)
    local whole = util.run(string.format("%s %s %s", q(LUAGRAD), q(script), q(dir .. "/whole.ckpt")))
    assert.is_true(#whole > 100, whole)
    for i, ms in ipairs({ 60, 140, 230 }) do
      local ckpt = dir .. "/run" .. i .. ".ckpt"
      util.run(string.format("%s %s %s 0.01 >/dev/null & pid=$!; sleep %g; kill -9 $pid; wait $pid 2>/dev/null",
        q(LUAGRAD), q(script), q(ckpt), ms / 1000))
      local resumed = util.run(string.format("%s %s %s", q(LUAGRAD), q(script), q(ckpt)))
      assert.are.equal(whole, resumed, "killed after " .. ms .. " ms")
    end
    util.remove_dir(dir)
  end)
end)

describe("an address-space limit (ulimit -v)", function()
  it("gives a result or a clear error, never a hang, at every limit", function()
    if require("luagrad.core")._sanitized then
      pending("a sanitizer reserves terabytes of address space: ulimit -v cannot apply to this build")
      return
    end
    local code = "local lg = require 'luagrad'; lg.set_num_threads(2); "
      .. "local a = lg.randn(600, 600, {dtype = 'float64'}); local c = a:matmul(a); "
      .. "local m = lg.nn.Linear(300, 300); local x = lg.randn(200, 300); "
      .. "for i = 1, 3 do m(x):sum():backward() end; print('done')"
    for _, mib in ipairs({ 40, 96, 160, 256, 400 }) do
      local out, _, status = util.run(string.format("ulimit -v %d; timeout 60 %s -e %s 2>&1", mib * 1024, q(LUAGRAD),
        q(code)))
      assert.are_not.equal(124, status, mib .. " MiB: a hang (killed after 60 s)")
      assert.is_true(out:find("done", 1, true) ~= nil or out:find("out of memory", 1, true) ~= nil,
        mib .. " MiB: neither a result nor a clear error: " .. out)
    end
  end)
end)

describe("coroutines", function()
  it("a yield inside no_grad or enable_grad does not carry the mode out", function()
    local co = coroutine.wrap(function()
      lg.no_grad(function()
        coroutine.yield(lg.is_grad_enabled())
        coroutine.yield(lg.is_grad_enabled())
      end)
      return "done"
    end)
    assert.is_false(co()) -- inside, off
    assert.is_true(lg.is_grad_enabled()) -- outside, while it is suspended: on
    assert.is_false(co()) -- resumed: off again
    assert.is_true(lg.is_grad_enabled())
    assert.are.equal("done", co())
    local co2 = coroutine.wrap(function()
      lg.enable_grad(function() coroutine.yield(lg.is_grad_enabled()) end)
    end)
    lg.no_grad(function()
      assert.is_true(co2())
      assert.is_false(lg.is_grad_enabled())
    end)
  end)

  it("a yield inside jvp leaves forward mode off outside", function()
    local x = lg.tensor({ 1.0 })
    local co = coroutine.wrap(function()
      return lg.autograd.jvp(function(a)
        coroutine.yield()
        return a * 3
      end, x, lg.tensor({ 1.0 }))
    end)
    co()
    local _, t = lg.autograd.jvp(function(a) return a * 2 end, x, lg.ones(1))
    assert.are.same({ 2 }, t:tolist()) -- not disturbed by the suspended jvp
    local _, t3 = co()
    assert.are.same({ 3 }, t3:tolist())
    local y = x * 2 -- outside any jvp: no tangent
    assert.is_nil(y:_tangent())
  end)
end)
