-- lg.distributed and nn.DistributedDataParallel: jobs of 2 processes started with mpirun, each
-- running a script of spec/distributed/ (the luagrad executable in LUAGRAD_BUILD). Pending, with
-- the reason, when mpirun or the MPI module (build/lib/luagrad/mpi.so) is absent.
--
-- mpirun runs as root only with --allow-run-as-root, and starts more processes than the machine
-- has free cores only with --oversubscribe: the specs pass both (harmless otherwise).
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local q = util.shell_quote

local have_mpirun = select(2, util.run("command -v mpirun >/dev/null 2>&1")) == true
local have_module = util.file_exists(util.BUILD .. "/lib/luagrad/mpi.so")

-- Runs `luagrad script args` on np ranks (mpirun's own flags in flags); returns stdout, stderr,
-- the exit code and the seconds.
local function mpirun(np, script, args, flags)
  local dir = util.tmpdir()
  local t0 = os.time()
  -- Open MPI leaks on purpose; LeakSanitizer (the ASan build) would fail every rank at exit
  local cmd = string.format("cd %s && env ASAN_OPTIONS=\"${ASAN_OPTIONS:-}:detect_leaks=0\" timeout 120 " ..
    "mpirun --allow-run-as-root --oversubscribe %s -np %d %s %s %s >%s/out 2>%s/err </dev/null",
    q(util.ROOT), flags or "", np, q(util.LUAGRAD), q(script), args or "", dir, dir)
  local _, _, code = os.execute(cmd)
  local out, err = util.read_file(dir .. "/out"), util.read_file(dir .. "/err")
  util.remove_dir(dir)
  return out, err, code, os.time() - t0
end

describe("lg.distributed", function()
  it("is not loaded by require \"luagrad\": a stock lua5.4 maps no MPI library", function()
    local out, ok = util.run(util.stock_lua() .. [[ -e 'local lg = require "luagrad"
      local maps = io.open("/proc/self/maps"):read("a")
      print(package.loaded["luagrad.mpi"] == nil, maps:find("libmpi", 1, true) == nil,
        lg.distributed.rank(), lg.distributed.world_size(), lg.distributed.is_initialized())' 2>&1]])
    assert.is_true(ok, out)
    assert.are.equal("true\ttrue\t1\t1\tfalse", out)
  end)

  it("says how to get it when luagrad was built without MPI", function()
    local dir = util.tmpdir()
    os.execute("mkdir -p " .. q(dir .. "/luagrad") .. " && cp " .. q(util.BUILD .. "/lib/luagrad/core.so") .. " " ..
      q(dir .. "/luagrad/"))
    local lua = os.getenv("LUAGRAD_LUA") or "lua5.4"
    local out = util.run("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=" .. q(dir .. "/?.so") .. " " .. lua ..
      [[ -e 'local lg = require "luagrad"; print(pcall(lg.distributed.init))' 2>&1]])
    util.remove_dir(dir)
    assert.is_truthy(out:find("false\t", 1, true), out)
    assert.is_truthy(out:find("init: distributed training is unavailable: this luagrad was built without MPI", 1, true), out)
    assert.is_truthy(out:find("apt-get install openmpi-bin libopenmpi-dev", 1, true), out)
  end)

  describe("DistributedSampler", function()
    local lg = require "luagrad"
    local function shards(n, R, opts)
      local out = {}
      for r = 1, R do
        local o = { num_replicas = R, rank = r }
        for k, v in pairs(opts or {}) do if k ~= "epoch" then o[k] = v end end
        local s = lg.data.DistributedSampler(n, o)
        if opts and opts.epoch then s:set_epoch(opts.epoch) end
        local idx = s:indices()
        assert.are.equal(#s, idx:numel())
        out[r] = {}
        for i = 1, idx:numel() do out[r][i] = idx[i] end
      end
      return out
    end

    it("gives disjoint shards that cover the dataset, padded as PyTorch pads (or cut with drop_last)", function()
      for _, c in ipairs({ { 10, 2 }, { 10, 3 }, { 7, 4 }, { 2, 3 }, { 12, 4 } }) do
        local n, R = c[1], c[2]
        for _, drop in ipairs({ false, true }) do
          local sh = shards(n, R, { drop_last = drop, epoch = 5 })
          local per = drop and n // R or (n + R - 1) // R
          local count, seen = 0, {}
          for r = 1, R do
            assert.are.equal(per, #sh[r])
            for _, i in ipairs(sh[r]) do
              assert.is_true(i >= 1 and i <= n)
              seen[i] = (seen[i] or 0) + 1
              count = count + 1
            end
          end
          local distinct = 0
          for _ in pairs(seen) do distinct = distinct + 1 end
          assert.are.equal(per * R, count)
          -- every sample once; padding repeats only as many as needed; drop_last drops n % R
          assert.are.equal(drop and per * R or n, distinct, ("n=%d R=%d drop=%s"):format(n, R, tostring(drop)))
        end
      end
    end)

    it("draws the same order on every rank for an epoch, a new one per set_epoch, leaving luagrad's generator", function()
      lg.manual_seed(3)
      local before = lg.get_rng_state()
      local a, b = shards(20, 2, { epoch = 1 }), shards(20, 2, { epoch = 1 })
      assert.are.same(a, b)
      local c = shards(20, 2, { epoch = 2 })
      assert.are_not.same(a, c)
      assert.are.same(shards(20, 2, { epoch = 1, seed = 9 }), shards(20, 2, { epoch = 1, seed = 9 }))
      assert.are_not.same(a, shards(20, 2, { epoch = 1, seed = 9 }))
      assert.are.same({ before[1], before[2] }, { lg.get_rng_state()[1], lg.get_rng_state()[2] })
      assert.are.same({ { 1, 3, 5 }, { 2, 4, 1 } }, shards(5, 2, { shuffle = false }))
    end)

    it("feeds a DataLoader: each rank's batches hold its shard", function()
      local ds = lg.data.TensorDataset(lg.arange(1, 11):reshape(10, 1))
      local s = lg.data.DistributedSampler(ds, { num_replicas = 2, rank = 2, shuffle = false })
      local loader = lg.data.DataLoader(ds, { batch_size = 2, sampler = s })
      local got = {}
      for x in loader do for i = 1, x:size(1) do got[#got + 1] = x[i][1] end end
      assert.are.equal(3, #loader)
      assert.are.same({ 2, 4, 6, 8, 10 }, got)
      assert.has_error(function() lg.data.DataLoader(ds, { sampler = s, shuffle = true }) end)
    end)
  end)

  if not have_mpirun or not have_module then
    pending("mpirun jobs: " .. (not have_mpirun and "mpirun is not installed (apt-get install openmpi-bin)"
      or "luagrad.mpi was not built (apt-get install libopenmpi-dev, then tools/setup.sh)"))
    return
  end

  it("without mpirun is a world of one", function()
    -- (Open MPI leaks on purpose: no LeakSanitizer in the ASan build, as for the mpirun jobs)
    local out, ok = util.run("env ASAN_OPTIONS=\"${ASAN_OPTIONS:-}:detect_leaks=0\" " .. q(util.LUAGRAD) ..
      [[ -e 'local lg = require "luagrad"
      local d = lg.distributed
      local r, n = d.init()
      local t = lg.tensor({1.5, -2})
      d.all_reduce(t, {op = "mean"}); d.broadcast(t); d.barrier()
      print(r, n, d.rank(), d.world_size(), d.is_initialized(), t[1], t[2])' 2>&1]])
    assert.is_true(ok, out)
    assert.are.equal("1\t1\t1\t1\ttrue\t1.5\t-2", out)
  end)

  it("collectives on 2 ranks equal a slow reference for every op and dtype, contiguous or strided; " ..
     "mismatched shapes are an error on every rank", function()
    local out, err, code = mpirun(2, "spec/distributed/collectives.lua")
    assert.are.equal(0, code, out .. err)
    local checks, failures = out:match("checks (%d+) failures (%d+)")
    assert.is_truthy(checks, out .. err)
    assert.is_true(tonumber(checks) >= 120, out)
    assert.are.equal("0", failures, out)
  end)

  it("DistributedDataParallel in float64: 5 steps on 2 ranks x batch B equal 1 rank x batch 2B to 1e-12", function()
    local out, err, code = mpirun(2, "spec/distributed/ddp_equivalence.lua")
    assert.are.equal(0, code, out .. err)
    local rel = tonumber(out:match("max_rel (%S+)"))
    assert.is_truthy(rel, out .. err)
    assert.is_true(rel <= 1e-12, out)
    local bytes, buckets = out:match("bytes_per_step (%d+) wait_seconds %S+ buckets (%d+)")
    assert.are.equal(2, tonumber(buckets), out) -- bucket_mb = 0.001: several all-reduces, not one per parameter
    assert.are.equal((6 * 16 + 16 + 16 * 3 + 3 + 6 * 3 + 3) * 8, tonumber(bytes), out)
  end)

  for _, case in ipairs {
    { "accumulate", "", "gradient accumulation under no_sync" },
    { "zero_false", "", "zero_grad(false): .grad exists before backward and is overwritten in place" },
    { "", "-x LUAGRAD_MPI_THREAD=0", "without the communication thread (MPI_Iallreduce)" },
  } do
    it("DistributedDataParallel in float64 equals one process to 1e-12: " .. case[3], function()
      local out, err, code = mpirun(2, "spec/distributed/ddp_equivalence.lua", case[1], case[2])
      assert.are.equal(0, code, out .. err)
      local rel = tonumber(out:match("max_rel (%S+)"))
      assert.is_truthy(rel, out .. err)
      assert.is_true(rel <= 1e-12, out)
    end)
  end

  it("DistributedDataParallel: a parameter unused on one rank (nil gradient) neither hangs nor skews the average", function()
    local out, err, code, secs = mpirun(2, "spec/distributed/ddp_equivalence.lua", "unused")
    assert.are.equal(0, code, out .. err)
    local rel = tonumber(out:match("max_rel (%S+)"))
    assert.is_truthy(rel, out .. err)
    assert.is_true(rel <= 1e-12, out)
    assert.is_true(secs < 60, "took " .. secs .. " s")
  end)

  it("examples/fashion_mnist.lua --distributed --quick on 2 ranks learns as one process does; rank 1 saves a " ..
     "state dict without prefix", function()
    local dir = util.tmpdir()
    local out, err, code = mpirun(2, "examples/fashion_mnist.lua", "--distributed --quick --out " .. q(dir .. "/fm"))
    local saved = util.file_exists(dir .. "/fm.safetensors")
    local keys = util.run(q(util.LUAGRAD) .. " -e " .. q("local lg = require 'luagrad'; local sd = lg.load('" .. dir ..
      "/fm.safetensors'); local k = {}; for n in pairs(sd) do k[#k + 1] = n end; table.sort(k); print(k[1], #k)"))
    util.remove_dir(dir)
    assert.are.equal(0, code, out .. err)
    assert.is_true(saved, out)
    local acc = tonumber(out:match("test accuracy: ([%d.]+)%%"))
    assert.is_truthy(acc, out .. err)
    assert.is_true(acc > 80, out) -- one process on the same slice: 84.8%
    assert.is_truthy(out:find("distributed: 2 ranks; per step", 1, true), out)
    assert.are.equal("0.bias\t16", keys) -- the bare model's keys: no "module." prefix
  end)

  it("in a stock lua5.4 too, an error on rank 2 ends the job (MPI_Abort at a failed exit, not MPI_Finalize)",
    function()
    local dir = util.tmpdir()
    local t0 = os.time()
    local cmd = string.format("cd %s && env ASAN_OPTIONS=\"${ASAN_OPTIONS:-}:detect_leaks=0\" " ..
      "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s timeout 120 mpirun --allow-run-as-root --oversubscribe " ..
      "-np 2 %s spec/distributed/failure.lua >%s/out 2>&1 </dev/null", q(util.ROOT), q(util.BUILD .. "/lib/?.so;;"),
      os.getenv("LUAGRAD_LUA") or "lua5.4", dir)
    local _, _, code = os.execute(cmd)
    local out = util.read_file(dir .. "/out")
    util.remove_dir(dir)
    assert.are_not.equal(0, code, out)
    assert.is_truthy(out:find("rank two fails on purpose", 1, true), out)
    assert.is_falsy(out:find("after the barrier", 1, true), out)
    assert.is_true(os.time() - t0 <= 15, "took " .. (os.time() - t0) .. " s")
  end)

  it("an error on rank 2 ends the whole job within seconds, non-zero, with rank 2's message", function()
    local out, err, code, secs = mpirun(2, "spec/distributed/failure.lua")
    assert.are_not.equal(0, code, out .. err)
    assert.is_truthy(err:find("rank two fails on purpose", 1, true), err)
    assert.is_truthy(err:find("rank 2 of the job failed", 1, true), err)
    assert.is_falsy(out:find("after the barrier", 1, true), out)
    assert.is_true(secs <= 15, "took " .. secs .. " s")
  end)
end)
