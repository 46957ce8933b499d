-- lg.progress: progress bars driven by a fake file (a table with :write) and a fake clock
-- injected through opts, so every line is checked exactly: plain lines (count, percentage,
-- elapsed, ETA, rate, metrics), terminal redraws with "\r" and ESC[K throttled by the interval,
-- unknown totals, wrapped loops (counts, iterators, callable tables, lists, break), and errors.
local progress = require "luagrad.progress"
local core = require "luagrad.core"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"

-- A file that records each write, and a clock the test moves by hand.
local function fake()
  local env = { writes = {}, t = 100 }
  env.file = { write = function(_, s) env.writes[#env.writes + 1] = s end }
  env.clock = function() return env.t end
  function env.text() return table.concat(env.writes) end
  function env.lines()
    local out = {}
    for l in env.text():gmatch("([^\n]*)\n") do out[#out + 1] = l end
    return out
  end
  return env
end

local function opts(env, extra)
  local o = { file = env.file, clock = env.clock }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The error fn raises, without the "file:line: " position in front.
local function message_of(fn) return (util.error_of(fn):gsub("^[^:]*:%d+: ", "")) end

describe("progress", function()
  describe("plain lines", function()
    it("prints one exact line per 10% and the final line from close", function()
      local env = fake()
      local bar = progress(10, opts(env, { desc = "epoch 1", mode = "plain" }))
      assert.are.equal("", env.text()) -- nothing before the first step
      for _ = 1, 10 do
        env.t = env.t + 0.5
        bar:update(1, { loss = 0.31, acc = 0.88 })
      end
      bar:close()
      local lines = env.lines()
      assert.are.equal(10, #lines)
      assert.are.equal("epoch 1:  10% 1/10 [00:00<00:04, 2.0 it/s] loss=0.3100 acc=0.8800", lines[1])
      assert.are.equal("epoch 1:  20% 2/10 [00:01<00:04, 2.0 it/s] loss=0.3100 acc=0.8800", lines[2])
      assert.are.equal("epoch 1:  50% 5/10 [00:02<00:02, 2.0 it/s] loss=0.3100 acc=0.8800", lines[5])
      assert.are.equal("epoch 1:  90% 9/10 [00:04<00:00, 2.0 it/s] loss=0.3100 acc=0.8800", lines[9])
      assert.are.equal("epoch 1: 100% 10/10 [00:05<00:00, 2.0 it/s] loss=0.3100 acc=0.8800", lines[10])
      assert.is_nil(env.text():find("[\r\27]"))
      assert.are.equal("\n", env.text():sub(-1))
    end)

    it("prints at most every 10% however many steps there are", function()
      local env = fake()
      local bar = progress(1000, opts(env, { mode = "plain" }))
      for i = 1, 1000 do
        env.t = env.t + 0.01
        bar:update(1, { loss = 1 / i })
      end
      bar:close()
      local lines = env.lines()
      assert.are.equal(10, #lines)
      for i, l in ipairs(lines) do
        local head = ("%3d%% %d/1000 "):format(10 * i, 100 * i)
        assert.are.equal(head, l:sub(1, #head))
      end
      assert.are.equal("100% 1000/1000 [00:10<00:00, 100.0 it/s] loss=0.0010", lines[10])
    end)

    it("with plain_interval prints on time instead", function()
      local env = fake()
      local bar = progress(100, opts(env, { mode = "plain", plain_interval = 5 }))
      for _ = 1, 12 do
        env.t = env.t + 1
        bar:update(1)
      end
      bar:close()
      assert.are.same({
        "  5% 5/100 [00:05<01:35, 1.0 it/s]",
        " 10% 10/100 [00:10<01:30, 1.0 it/s]",
        " 12% 12/100 [00:12<01:28, 1.0 it/s]",
      }, env.lines())
    end)

    it("shows seconds per step when a step takes longer than a second, and hours when long", function()
      local env = fake()
      local bar = progress(4, opts(env, { mode = "plain", desc = "slow" }))
      env.t = env.t + 3725
      bar:update(1)
      assert.are.equal("slow:  25% 1/4 [1:02:05<3:06:15, 3725.00 s/it]", env.lines()[1])
    end)

    it("works without a total: a count, elapsed and rate, no percentage or ETA", function()
      local env = fake()
      local bar = progress(nil, opts(env, { mode = "plain", desc = "stream" }))
      for _ = 1, 30 do
        env.t = env.t + 0.5
        bar:update(2, { loss = 0.5 })
      end
      bar:close()
      -- one line per 10 s (the default when the total is unknown), then the final one
      assert.are.same({
        "stream: 40 it [00:10, 4.0 it/s] loss=0.5000",
        "stream: 60 it [00:15, 4.0 it/s] loss=0.5000",
      }, env.lines())
    end)
  end)

  describe("terminal mode", function()
    it("redraws in place with \\r and ESC[K, the bar filled in proportion", function()
      local env = fake()
      local bar = progress(30, opts(env, { mode = "tty", width = 10, desc = "train" }))
      assert.are.same({ "\rtrain:   0% [----------] 0/30 [00:00<?, ? it/s]\27[K" }, env.writes)
      env.t = env.t + 5
      bar:update(15, { loss = 2.5 })
      assert.are.equal("\rtrain:  50% [#####-----] 15/30 [00:05<00:05, 3.0 it/s] loss=2.5000\27[K", env.writes[2])
      env.t = env.t + 5
      bar:update(15)
      bar:close()
      assert.are.equal("\rtrain: 100% [##########] 30/30 [00:10<00:00, 3.0 it/s] loss=2.5000\27[K\n",
        env.writes[#env.writes])
      for _, w in ipairs(env.writes) do assert.are.equal("\r", w:sub(1, 1)) end
      assert.is_nil(env.text():sub(1, -2):find("\n"))
    end)

    it("throttles redraws to one per interval", function()
      local env = fake()
      local bar = progress(1000, opts(env, { mode = "tty", interval = 0.25 }))
      for _ = 1, 1000 do
        env.t = env.t + 0.01 -- 10 s in all
        bar:update()
      end
      -- the initial draw, then one every 0.25 s: 40 more (give or take rounding of the sums)
      local draws = #env.writes
      assert.truthy(draws >= 39 and draws <= 42, "draws: " .. draws)
      bar:close()
      assert.are.equal(draws + 1, #env.writes)
      assert.truthy(env.writes[#env.writes]:find("100%% %[#+%] 1000/1000"))
    end)

    it("draws no bar or percentage without a total", function()
      local env = fake()
      local bar = progress(nil, opts(env, { mode = "tty" }))
      env.t = env.t + 2
      bar:update(7)
      bar:close()
      assert.are.same({
        "\r0 it [00:00, ? it/s]\27[K",
        "\r7 it [00:02, 3.5 it/s]\27[K",
        "\r7 it [00:02, 3.5 it/s]\27[K\n",
      }, env.writes)
    end)

    it("writes nothing in mode \"off\"", function()
      local env = fake()
      local bar = progress(3, opts(env, { mode = "off" }))
      bar:update(3)
      bar:close()
      assert.are.same({}, env.writes)
      assert.are.equal(3, bar.n)
    end)
  end)

  describe("metrics", function()
    it("orders listed names first, then losses, then the rest alphabetically", function()
      local env = fake()
      local bar = progress(2, opts(env, { mode = "plain", metrics = { "lr" } }))
      bar:update(1, { acc = 0.5, val_loss = 0.25, lr = 0.125, epoch = 3, loss = 1, note = "warm" })
      bar:close()
      assert.truthy(env.lines()[2]:find(
        "lr=0.1250 loss=1 val_loss=0.2500 acc=0.5000 epoch=3 note=warm", 1, true), env.lines()[2])
    end)

    it("formats tiny and huge numbers in scientific notation and reads one-element tensors", function()
      local env = fake()
      local bar = progress(1, opts(env, { mode = "plain" }))
      bar:update(1, { a_lr = 1e-5, b_big = 2.5e7, c_zero = 0.0, d_t = core.tensor({ 0.75 }), e_nan = 0 / 0 })
      bar:close()
      local line = env.lines()[1]
      assert.truthy(line:find("a_lr=1.000e-05 b_big=2.500e+07 c_zero=0.0000 d_t=0.7500 e_nan=", 1, true), line)
    end)

    it("keeps the latest values; set_metrics and close(metrics) update them", function()
      local env = fake()
      local bar = progress(2, opts(env, { mode = "plain" }))
      bar:update(1, { loss = 3 })
      bar:set_metrics({ loss = 2.0 })
      bar:update(1)
      bar:close({ acc = 0.9 })
      assert.are.equal("100% 2/2 [00:00<00:00, ? it/s] loss=2.0000 acc=0.9000", env.lines()[2])
    end)
  end)

  describe("wrap", function()
    it("counts 1..n and prints the final line when the loop ends", function()
      local env = fake()
      local seen = {}
      for i in progress.wrap(5, opts(env, { mode = "plain" })) do
        env.t = env.t + 1
        seen[#seen + 1] = i
      end
      assert.are.same({ 1, 2, 3, 4, 5 }, seen)
      local lines = env.lines()
      assert.are.equal(5, #lines)
      assert.are.equal(" 20% 1/5 [00:01<00:04, 1.0 it/s]", lines[1])
      assert.are.equal("100% 5/5 [00:05<00:00, 1.0 it/s]", lines[5])
    end)

    it("wraps a callable table (a DataLoader) and passes every value through", function()
      local env = fake()
      local batches = { { "x1", "y1" }, { "x2", "y2" }, { "x3", "y3" } }
      local loader = setmetatable({ i = 0 }, {
        __call = function(self)
          self.i = self.i + 1
          local b = batches[self.i]
          if b then return b[1], b[2] end
        end,
        __len = function() return #batches end,
      })
      local got = {}
      for x, y in progress.wrap(loader, opts(env, { mode = "plain", desc = "eval" })) do
        got[#got + 1] = x .. y
      end
      assert.are.same({ "x1y1", "x2y2", "x3y3" }, got)
      assert.are.equal("eval: 100% 3/3 [00:00<00:00, ? it/s]", env.lines()[#env.lines()])
    end)

    it("wraps a function iterator (total from opts.total, or unknown) and a plain list", function()
      local env = fake()
      local k = 0
      local function gen()
        k = k + 1
        if k <= 4 then return k * 10 end
      end
      local got = {}
      for v in progress.wrap(gen, opts(env, { mode = "plain", total = 4 })) do got[#got + 1] = v end
      assert.are.same({ 10, 20, 30, 40 }, got)
      assert.are.equal("100% 4/4 [00:00<00:00, ? it/s]", env.lines()[#env.lines()])

      local env2 = fake()
      k = 0
      for _ in progress.wrap(gen, opts(env2, { mode = "plain" })) do end
      assert.are.same({ "4 it [00:00, ? it/s]" }, env2.lines())

      local env3 = fake()
      local pairs_seen = {}
      for i, v in progress.wrap({ "a", "b" }, opts(env3, { mode = "plain" })) do pairs_seen[#pairs_seen + 1] = i .. v end
      assert.are.same({ "1a", "2b" }, pairs_seen)
      assert.are.equal("100% 2/2 [00:00<00:00, ? it/s]", env3.lines()[#env3.lines()])
    end)

    it("closes the bar when the loop is left with break, at the count reached", function()
      local env = fake()
      for i in progress.wrap(10, opts(env, { mode = "tty", width = 10 })) do
        env.t = env.t + 1
        if i == 4 then break end
      end
      assert.are.equal("\r 30% [###-------] 3/10 [00:04<00:09, 1.33 s/it]\27[K\n", env.writes[#env.writes])
    end)

    it("lets a loop set metrics through bar:iter", function()
      local env = fake()
      local bar = progress(3, opts(env, { mode = "plain" }))
      for i in bar:iter(3) do bar:set_metrics({ loss = i / 4 }) end
      assert.are.equal("100% 3/3 [00:00<00:00, ? it/s] loss=0.7500", env.lines()[#env.lines()])
      assert.is_true(bar.closed)
    end)

    it("closes a <close> variable at the end of its scope", function()
      local env = fake()
      do
        local bar <close> = progress(2, opts(env, { mode = "plain" }))
        bar:update(2)
      end
      assert.are.same({ "100% 2/2 [00:00<00:00, ? it/s]" }, env.lines())
    end)
  end)

  describe("bad arguments", function()
    local env = fake()
    local cases = {
      { "a negative total", function() progress(-5) end, "progress: total must be a non-negative number or nil, got -5" },
      { "a string total", function() progress("10") end, "progress: total must be a non-negative number or nil, got string" },
      { "opts not a table", function() progress(3, 1) end, "progress: opts must be a table, got number" },
      { "a file without write", function() progress(3, { file = {} }) end,
        "progress: opts.file must be a file or an object with a write method, got table" },
      { "a fractional width", function() progress(3, opts(env, { width = 2.5 })) end,
        "progress: opts.width must be an integer from 0 to 1000, got 2.5" },
      { "a negative interval", function() progress(3, opts(env, { interval = -1 })) end,
        "progress: opts.interval must be a non-negative number of seconds, got -1" },
      { "an unknown mode", function() progress(3, opts(env, { mode = "fancy" })) end,
        "progress: opts.mode must be \"tty\", \"plain\" or \"off\", got fancy" },
      { "a clock that is not a function", function() progress(3, { file = env.file, clock = 5 }) end,
        "progress: opts.clock must be a function, got number" },
      { "a negative update", function() progress(3, opts(env, { mode = "off" })):update(-1) end,
        "progress: update expects a non-negative number of finished steps, got -1" },
      { "a string update", function() progress(3, opts(env, { mode = "off" })):update("1") end,
        "progress: update expects a non-negative number of finished steps, got string" },
      { "metrics not a table", function() progress(3, opts(env, { mode = "off" })):update(1, 0.5) end,
        "progress: update: metrics must be a table such as {loss = 0.31}, got number" },
      { "an update after close", function()
          local b = progress(3, opts(env, { mode = "off" }))
          b:close()
          b:update(1)
        end, "progress: update after close" },
      { "wrapping a boolean", function() progress.wrap(true) end,
        "progress: wrap: expected a count, a function, a callable table or a list, got boolean" },
      { "wrapping a negative count", function() progress.wrap(-2) end, "progress: wrap: count must be non-negative, got -2" },
    }
    for _, c in ipairs(cases) do
      it("rejects " .. c[1], function() assert.are.equal(c[3], message_of(c[2])) end)
    end

    it("reports errors at the caller's line", function()
      local ok, err = pcall(function() progress(-1) end)
      assert.is_false(ok)
      assert.truthy(err:match("^[^:]*progress_spec%.lua:%d+: progress: total"), err)
    end)
  end)

  describe("choosing the mode", function()
    -- A child luagrad with stdout redirected to a file: never a terminal.
    local function run(env_prefix)
      local out = os.tmpname()
      local code = [[local p = require "luagrad.progress"
        local b = p(4, {interval = 0})
        for _ = 1, 4 do b:update(1) end
        b:close()]]
      local cmd = ("%s %s -e %s > %s 2>&1"):format(env_prefix, util.shell_quote(util.LUAGRAD), util.shell_quote(code),
        util.shell_quote(out))
      assert.is_true(os.execute(cmd) == true, cmd)
      local s = util.read_file(out)
      os.remove(out)
      return s
    end

    it("prints plain lines to a file, and whatever LUAGRAD_PROGRESS asks for", function()
      local plain = run("LUAGRAD_PROGRESS=")
      assert.is_nil(plain:find("[\r\27]"))
      assert.are.equal(4, select(2, plain:gsub("\n", "")))
      assert.truthy(plain:find("100%% 4/4 %["))
      assert.are.equal(plain:gsub("%d+%.%d it/s", "R"):gsub("%? it/s", "R"),
        run("LUAGRAD_PROGRESS=plain"):gsub("%d+%.%d it/s", "R"):gsub("%? it/s", "R"))
      local tty = run("LUAGRAD_PROGRESS=tty")
      assert.truthy(tty:find("^\r  0%% %[%-+%] 0/4"))
      assert.truthy(tty:find("\r100%% %[#+%] 4/4 .*\27%[K\n$"))
      assert.are.equal("", run("LUAGRAD_PROGRESS=off"))
      assert.is_false(progress._is_terminal({ write = function() end }))
    end)
  end)
end)
