-- The API fuzzer: every public function and method reachable from require "luagrad" is called
-- with hostile arguments (spec/helpers/fuzz.lua lists the pools and how they are chosen). The
-- only acceptable outcomes of a call are a normal return or a Lua error whose value is a string.
-- The calls run in child processes (spec/helpers/run_fuzz.lua, in a temporary directory that
-- receives whatever the calls write), a batch per test, so that these are seen and reported:
--
--   crash        the child died (a signal, or an exit without finishing)
--   sanitizer    AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer reported
--   timeout      the batch did not finish within its time (a hang)
--   bad-error    an error value that is not a string
--
-- Each finding names the call and prints it as a script to paste into a file and run. After a
-- crash the batch goes on from the next call. Findings that match a known open bug (KNOWN
-- below) are pending, with the bug as the reason. Whether error messages name their function is
-- collected for every call and printed as a table at the end; it never fails this spec.
--
-- Deterministic: LUAGRAD_FUZZ_SEED, LUAGRAD_FUZZ_CALLS (calls per function; the default keeps
-- the spec near a minute per build) and LUAGRAD_FUZZ_BATCH (calls per child) choose the calls.
-- A longer run: LUAGRAD_FUZZ_CALLS=2000 build/luagrad /usr/bin/busted spec/fuzz_spec.lua; with
-- LUAGRAD_FUZZ_REPORT=file the table of error messages is also written to that file.
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local fuzz = require "helpers.fuzz"

local SEED = math.tointeger(tonumber(os.getenv("LUAGRAD_FUZZ_SEED") or "") or 20261127) or 20261127
local PER_FN = math.tointeger(tonumber(os.getenv("LUAGRAD_FUZZ_CALLS") or "") or 140) or 140
local BATCH = math.tointeger(tonumber(os.getenv("LUAGRAD_FUZZ_BATCH") or "") or 6000) or 6000
local TIMEOUT = 90 -- seconds a child may take for a batch (loops in Lua code are stopped after 6 s by the child)

-- Known open bugs: a finding that matches is pending with this reason, to keep the suite green
-- while a bug that was reported waits for its fix.
-- test(finding) sees kind, name (the function), report (the sanitizer's or the child's output).
local KNOWN = {
  -- (empty: the bugs this fuzzer found, and the ones known when it was written, are fixed; the
  -- calls that found them are now ordinary calls that must pass)
}

local function known(f)
  for _, k in ipairs(KNOWN) do
    if k.test(f) then return k.reason end
  end
  return nil
end

local SANITIZER = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer",
  "AddressSanitizer:DEADLYSIGNAL" }
local function sanitizer_report(err)
  for _, pat in ipairs(SANITIZER) do
    local at = err:find(pat, 1, true)
    if at then
      -- the report's first line, and the frames inside luagrad
      local lines = {}
      for line in err:sub(math.max(1, at - 200)):gmatch("[^\n]+") do
        if #lines == 0 and line:find(pat, 1, true) then lines[1] = line
        elseif #lines > 0 and #lines < 8 and (line:find("/src/", 1, true) or line:find("SUMMARY", 1, true)) then
          lines[#lines + 1] = line
        end
      end
      return table.concat(lines, "\n")
    end
  end
  return nil
end

local ROOT = util.ROOT
local SCRIPT = ROOT .. "/spec/helpers/run_fuzz.lua"

-- Runs calls first..last in a child; returns the parsed output and how it ended.
local function run_child(dir, first, last, timeout)
  local out, err = dir .. "/out.txt", dir .. "/err.txt"
  os.remove(out)
  local cmd = string.format("cd %s && timeout -s KILL %d %s %s %s %d %d %d %d %s >/dev/null 2>%s </dev/null",
    util.shell_quote(dir), timeout, util.shell_quote(util.LUAGRAD), util.shell_quote(SCRIPT), util.shell_quote(ROOT),
    SEED, PER_FN, first, last, util.shell_quote(out), util.shell_quote(err))
  local ok, how, code = os.execute(cmd)
  local res = { total = nil, results = {}, started = {}, finished = false, ok = ok, how = how, code = code }
  local f = io.open(out, "rb")
  if f then
    for line in f:lines() do
      local tag = line:sub(1, 1)
      if tag == "T" then
        res.total = tonumber(line:sub(3))
      elseif tag == "C" then
        local i, name, repro = line:match("^C (%d+) (%S+) (.*)$")
        res.started[#res.started + 1] = { i = tonumber(i), name = name, reproducer = (repro or ""):gsub("\2", "\n") }
      elseif tag == "R" then
        local i, outcome, named, ms, msg = line:match("^R (%d+) (%S+) (%d) (%S+) (.*)$")
        if i then
          local m = load("return " .. msg)
          res.results[#res.results + 1] = { i = tonumber(i), outcome = outcome, named = named == "1", ms = tonumber(ms),
            msg = m and m() or msg, name = res.started[#res.started].name, reproducer = res.started[#res.started].reproducer }
        end
      elseif tag == "E" then
        res.finished = true
      end
    end
    f:close()
  end
  res.stderr = util.file_exists(err) and util.read_file(err) or ""
  return res
end

local function timed_out(res) return res.how == "exit" and (res.code == 124 or res.code == 137) end

local function describe_end(res)
  if timed_out(res) then return "killed after the time limit (a hang)" end
  if res.how == "signal" then return "killed by signal " .. tostring(res.code) end
  return "exited with status " .. tostring(res.code)
end

-- totals over the whole run, for the summary
local totals = { calls = 0, ok = 0, error = 0, setup = 0, named = {}, errors = {}, example = {}, slow = {} }

-- Runs calls lo..hi, going on after each crash; returns the findings.
local function run_batch(lo, hi)
  local dir = util.tmpdir()
  local findings = {}
  local pos = lo
  local rounds = 0
  while pos <= hi and rounds < 200 do
    rounds = rounds + 1
    local res = run_child(dir, pos, hi, TIMEOUT)
    for _, r in ipairs(res.results) do
      totals.calls = totals.calls + 1
      if r.outcome == "ok" then totals.ok = totals.ok + 1
      elseif r.outcome == "setup" then totals.setup = totals.setup + 1
      elseif r.outcome == "error" and r.msg:find("fuzz: ", 1, true) then
        -- the fuzzer's own callbacks and metatables raised: their message, not the function's
        totals.error = totals.error + 1
      elseif r.outcome == "error" then
        totals.error = totals.error + 1
        totals.errors[r.name] = (totals.errors[r.name] or 0) + 1
        if r.named then totals.named[r.name] = (totals.named[r.name] or 0) + 1
        elseif not totals.example[r.name] then totals.example[r.name] = r.msg end
      elseif r.outcome == "bad-error" or r.outcome == "hang" then
        findings[#findings + 1] = { kind = r.outcome == "hang" and "timeout" or "bad-error", name = r.name, report = r.msg,
          reproducer = r.reproducer, index = r.i }
      end
      if r.ms and r.ms > 2000 then
        totals.slow[#totals.slow + 1] = string.format("%s (call %d) %.1f s: %s", r.name, r.i, r.ms / 1000,
          (r.reproducer:match("print%(pcall%((.*)%)%)") or ""))
      end
    end
    local report = sanitizer_report(res.stderr)
    local last = res.started[#res.started]
    local lastr = res.results[#res.results]
    if res.finished and res.ok and not report then
      break
    elseif res.finished then
      -- the calls all returned, but the exit reported (a leak): bisect for one call that does
      -- it alone, else report the range
      local a, b = pos, hi
      for _ = 1, 16 do
        if a == b then break end
        local mid = (a + b) // 2
        local left = run_child(dir, a, mid, TIMEOUT)
        if not left.ok or sanitizer_report(left.stderr) then b = mid
        else
          local right = run_child(dir, mid + 1, b, TIMEOUT)
          if not right.ok or sanitizer_report(right.stderr) then a = mid + 1 else break end
        end
      end
      local f = { kind = report and "sanitizer" or "crash", report = (report or "") .. "\n" .. describe_end(res) }
      if a == b then
        local one = run_child(dir, a, a, TIMEOUT)
        f.name, f.index = one.started[1] and one.started[1].name or "?", a
        f.reproducer = (one.started[1] and one.started[1].reproducer or "") .. "-- (reported at exit)\n"
        f.report = (sanitizer_report(one.stderr) or "") .. "\n" .. describe_end(one)
      else
        f.name = string.format("(at exit, after calls %d..%d; no single call reproduces it)", a, b)
        f.reproducer = string.format("-- cd to an empty directory, then run calls %d..%d of the plan:\n" ..
          "-- build/luagrad <repo>/spec/helpers/run_fuzz.lua <repo> %d %d %d %d out.txt\n", a, b, SEED, PER_FN, a, b)
      end
      findings[#findings + 1] = f
      break
    elseif not last or (lastr and lastr.i == last.i) then
      -- died before starting a call (or between calls): nothing to blame
      findings[#findings + 1] = { kind = "crash", name = "(the child itself)", report = describe_end(res) .. "\n" ..
        res.stderr:sub(1, 2000), reproducer = "" }
      break
    else
      -- call `last` started and never returned
      local kind = timed_out(res) and "timeout" or (report and "sanitizer" or "crash")
      local f = { kind = kind, name = last.name, report = (report or res.stderr:sub(-1500)) .. "\n" .. describe_end(res),
        reproducer = last.reproducer, index = last.i }
      -- does it happen alone, in a fresh process?
      if last.i ~= pos then
        local alone = run_child(dir, last.i, last.i, kind == "timeout" and 30 or TIMEOUT)
        f.alone = not alone.finished or sanitizer_report(alone.stderr) ~= nil
        if not f.alone then
          f.reproducer = f.reproducer .. string.format("-- (does not reproduce alone: it followed calls %d..%d of the " ..
            "plan, seed %d, %d calls per function)\n", pos, last.i - 1, SEED, PER_FN)
        end
      end
      findings[#findings + 1] = f
      pos = last.i + 1
    end
  end
  util.remove_dir(dir)
  return findings
end

-- the plan's size, from a child (the plan is the child's to make)
local function plan_size()
  local dir = util.tmpdir()
  local res = run_child(dir, 1, 0, 60)
  util.remove_dir(dir)
  return res.total, res
end

describe("API fuzzer (seed " .. SEED .. ", " .. PER_FN .. " calls per function)", function()
  local lg = require "luagrad"

  it("enumerates every public function, method and constructor", function()
    local entries = fuzz.enumerate(lg)
    local names = {}
    for _, e in ipairs(entries) do names[e.name] = e.kind end
    for _, want in ipairs({ "lg.zeros", "Tensor:narrow", "Tensor:backward", "lg.autograd.jvp", "lg.nn.functional.softmax",
      "lg.nn.Linear", "lg.nn.Linear:forward", "lg.nn.Module:parameters", "lg.optim.Optimizer:step", "lg.optim.SGD",
      "lg.optim.lr_scheduler.OneCycleLR:get_lr", "lg.data.DataLoader", "lg.save", "lg.load", "lg.plot.line",
      "lg.progress", "lg.progress.Bar:update", "lg.cli.options", "HookHandle:remove", "Claim:check",
      "lg.datasets.fashion_mnist" }) do
      assert.is_not_nil(names[want], want .. " is not enumerated")
    end
    assert.is_true(#entries > 300, "only " .. #entries .. " callables found")
    -- a method inherited by many classes is one entry, called on instances of all of them
    for _, e in ipairs(entries) do
      if e.name == "lg.nn.Module:parameters" then assert.is_true(#e.recvs > 10) end
    end
  end)

  it("lists the functions that touch the world and how it keeps them in its sandbox", function()
    local names = {}
    for name in pairs(fuzz.SKIP) do names[#names + 1] = name end
    table.sort(names)
    local entries = {}
    for _, e in ipairs(fuzz.enumerate(lg)) do entries[e.name] = true end
    for _, name in ipairs(names) do
      assert.is_string(fuzz.SKIP[name].reason, name)
      assert.is_true(entries[name], name .. " is listed but not enumerated")
      print(string.format("fuzz: %s: %s", name, fuzz.SKIP[name].reason))
    end
  end)

  local total, first_res = plan_size()
  it("plans its calls in a child process", function()
    assert.is_not_nil(total, "the child did not report its plan: " .. tostring(first_res and first_res.stderr))
    assert.is_true(total > 1000)
  end)

  for lo = 1, total or 0, BATCH do
    local hi = math.min(total, lo + BATCH - 1)
    it(string.format("calls %d..%d of %d return or raise a string error, never crash, hang or trip a sanitizer", lo, hi,
      total), function()
      local findings = run_batch(lo, hi)
      local new, old = {}, {}
      for _, f in ipairs(findings) do
        local reason = known(f)
        if reason then
          local first_line = (f.report or ""):match("[^\n]*"):gsub("^.-(runtime error:)", "%1"):gsub("^.-(ERROR:)", "%1")
          old[#old + 1] = string.format("%s (call %s, %s: %s): %s", f.name, tostring(f.index), f.kind, first_line:sub(1, 120),
            reason)
        else
          new[#new + 1] = string.format("%s in %s%s:\n%s\nreproducer:\n%s", f.kind, f.name,
            f.index and (" (call " .. f.index .. ")") or "", f.report, f.reproducer)
        end
      end
      if #new > 0 then
        error(string.format("%d finding(s) in calls %d..%d (seed %d, %d calls per function):\n\n%s", #new, lo, hi, SEED,
          PER_FN, table.concat(new, "\n\n")), 0)
      end
      if #old > 0 then pending(table.concat(old, "; ")) end
    end)
  end

  it("prints the functions whose error messages do not name them (for the record; never fails)", function()
    local rows = {}
    for name, n in pairs(totals.errors) do
      local named = totals.named[name] or 0
      if named < n then rows[#rows + 1] = { name = name, unnamed = n - named, total = n } end
    end
    table.sort(rows, function(a, b) return a.name < b.name end)
    local lines = { string.format("fuzz: %d calls: %d returned, %d raised string errors, %d could not build their " ..
      "arguments; %d functions raised errors that do not name them:", totals.calls, totals.ok, totals.error, totals.setup,
      #rows) }
    lines[#lines + 1] = string.format("  %-52s %9s  %s", "function", "unnamed", "example")
    for _, r in ipairs(rows) do
      local ex = (totals.example[r.name] or ""):gsub("^[^:\n]*:%d+: ", ""):sub(1, 90)
      lines[#lines + 1] = string.format("  %-52s %4d/%-4d  %s", r.name, r.unnamed, r.total, ex)
    end
    if #totals.slow > 0 then lines[#lines + 1] = "fuzz: slow calls (over 2 s):\n  " .. table.concat(totals.slow, "\n  ") end
    print(table.concat(lines, "\n"))
    -- LUAGRAD_FUZZ_REPORT=path also writes the table there, with every message not naming its function
    local path = os.getenv("LUAGRAD_FUZZ_REPORT")
    if path then util.write_file(path, table.concat(lines, "\n") .. "\n") end
  end)
end)
