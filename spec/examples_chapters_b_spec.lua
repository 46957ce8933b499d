-- The reference text's chapters 6-10 as examples: schedules, batchnorm, optimizer_comparison,
-- vanishing_gradients and forward_vs_reverse. Each runs as a child process in quick mode; the
-- spec checks its exit status, that its last line states the claim, that its plot is an SVG,
-- and one or two numbers from its printed table against the claim, independently of the
-- example's own check (timings only with loose bounds).
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").

package.path = "spec/?.lua;" .. package.path
local ex = require "helpers.examples"
local util = require "helpers.util"

local tmpdir

-- The common contract (exit 0, a last line "claim holds: ...", each SVG written); returns
-- stdout's lines.
local function check_contract(name, svgs)
  return (ex.check(tmpdir, name, svgs))
end

-- The first line matching a Lua pattern, with its captures.
local function find_line(lines, pattern)
  for _, line in ipairs(lines) do
    local caps = { line:match(pattern) }
    if #caps > 0 then return table.unpack(caps) end
  end
  error("no line matches " .. pattern)
end

-- The whitespace-separated fields of the first line starting (after spaces) with `label`,
-- searching from the first line that contains `after` (a plain string) when it is given.
local function row(lines, label, after)
  local start = 1
  if after then
    start = nil
    for i, line in ipairs(lines) do
      if line:find(after, 1, true) then start = i; break end
    end
    assert(start, "no line contains " .. after)
  end
  for i = start, #lines do
    local line = lines[i]
    local s = line:match("^%s*(.*)$")
    if s:sub(1, #label) == label and s:sub(#label + 1, #label + 1):match("^%s$") then
      local fields = {}
      for f in s:sub(#label + 1):gmatch("%S+") do fields[#fields + 1] = f end
      return fields
    end
  end
  error("no row labelled " .. label)
end

local function is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

describe("the chapter examples (schedules to forward vs reverse), in quick mode", function()
  setup(function() tmpdir = ex.prepare() end)

  teardown(function() util.remove_dir(tmpdir) end)

  it("schedules.lua: library schedules equal their closed forms; inverse time sums behave as the text says", function()
    local lines = check_contract("schedules", { "schedules.svg", "schedules_text.svg" })
    -- StepLR(step_size 20, gamma 0.5) from 0.1: lr(T-1 = 99) = 0.1 * 0.5^4
    local step = row(lines, "StepLR")
    assert.is_true(math.abs(tonumber(step[1]) - 0.1) < 1e-9)
    assert.is_true(math.abs(tonumber(step[3]) - 0.1 * 0.5 ^ 4) < 1e-5)
    -- every library schedule's error column is tiny
    for _, name in ipairs({ "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
      "OneCycleLR", "LinearLR", "PolynomialLR", "LambdaLR", "ReduceLROnPlateau" }) do
      assert.is_true(tonumber(row(lines, name)[4]) < 1e-12, name)
    end
    -- inverse time eta0 = 0.1, alpha = 0.04: the last decade adds ~ (eta0/alpha) ln 10 to sum eta,
    -- and sum eta^2 stays below eta0^2 (1 + 1/alpha)
    local last = row(lines, "100000")
    local per_decade = 0.1 / 0.04 * math.log(10)
    assert.is_true(math.abs(tonumber(last[2]) / per_decade - 1) < 0.02, "per decade " .. last[2])
    assert.is_true(tonumber(last[4]) < 0.1 ^ 2 * (1 + 1 / 0.04))
    assert.is_true(tonumber(last[5]) < 1e-3) -- the last decade adds almost nothing to sum eta^2
  end)

  it("batchnorm.lua: the formula matches the tape; BatchNorm trains where the plain net stalls", function()
    local lines = check_contract("batchnorm", { "batchnorm.svg" })
    for _, g in ipairs({ "dx", "dgamma", "dbeta" }) do
      assert.is_true(tonumber(row(lines, g)[2]) < 1e-10, g)
    end
    local plain, bn = row(lines, "plain"), row(lines, "BatchNorm")
    local chance = math.log(4)
    -- the last epoch's training loss (the eval at the end swings at lr = 1; see the example)
    local plain_loss, bn_loss = tonumber(plain[1]), tonumber(bn[1])
    assert.is_true(not is_finite(plain_loss) or math.abs(plain_loss - chance) < 0.05 * chance,
      "plain net loss " .. plain[1])
    assert.is_true(bn_loss < 0.5 * chance, "BatchNorm net loss " .. bn[1])
    local p3, b3 = find_line(lines, "last 3 epochs: plain ([%d.]+), BatchNorm ([%d.]+)")
    assert.is_true(tonumber(b3) < 0.5 * tonumber(p3), string.format("last 3 epochs: %s vs %s", b3, p3))
    assert.are.equal(0.25, tonumber(plain[3]), "the plain net predicts one class")
  end)

  it("optimizer_comparison.lua: Adam and momentum end below plain SGD from the same start", function()
    local lines = check_contract("optimizer_comparison", { "optimizer_comparison.svg" })
    local final = {}
    for _, name in ipairs({ "SGD", "SGD+Momentum", "Nesterov", "Adam", "AdamW" }) do
      final[name] = tonumber(row(lines, name)[1])
      assert.is_true(is_finite(final[name]) and final[name] > 0, name)
    end
    assert.is_true(final.Adam < final.SGD, string.format("Adam %g vs SGD %g", final.Adam, final.SGD))
    assert.is_true(final["SGD+Momentum"] < final.SGD)
    -- every run started from the same initial loss, above every final one
    local initial = tonumber(find_line(lines, "initial loss ([%d.]+) for every run"))
    for name, v in pairs(final) do assert.is_true(v < initial, name) end
  end)

  it("vanishing_gradients.lua: sigmoid gradients vanish, the fixes do not; clipping tames an explosion", function()
    local lines = check_contract("vanishing_gradients", { "vanishing_gradients.svg", "vanishing_gradients_clip.svg" })
    -- columns: sigmoid, sigmoid+Xavier, ReLU, ReLU+He, tanh+Xavier, sigm+residual, sigm+BatchNorm
    local ratio = row(lines, "W1/W10")
    assert.is_true(tonumber(ratio[1]) < 0.25 ^ 9, "sigmoid ratio " .. ratio[1])
    for i = 4, 7 do
      local r = tonumber(ratio[i])
      assert.is_true(r > 0.1 and r < 10, "fix " .. i .. " ratio " .. ratio[i])
    end
    -- the exploding net: step 1 has a huge gradient, the raw loss is not finite by step 3,
    -- the clipped loss is finite and falls
    local section = "2. exploding"
    local s1, s3, s100 = row(lines, "1", section), row(lines, "3", section), row(lines, "100", section)
    assert.is_true(tonumber(s1[3]) > 1e4, "initial gradient norm " .. s1[3])
    assert.is_false(is_finite(tonumber(s3[1]) or 0 / 0), "raw loss at step 3: " .. s3[1])
    local c1, c100 = tonumber(s1[2]), tonumber(s100[2])
    assert.is_true(is_finite(c100) and c100 < c1, string.format("clipped loss %g -> %g", c1, c100))
  end)

  it("forward_vs_reverse.lua: pass counts, the cheaper mode, O(P^2) against O(P), backward vs forward", function()
    local lines = check_contract("forward_vs_reverse", { "forward_vs_reverse.svg", "forward_vs_reverse_jacobian.svg" })
    -- (a) rows "n m calls_fwd calls_rev t_fwd t_rev faster diff": passes are n + 1 and m + 1
    local checked = 0
    for _, line in ipairs(lines) do
      local n, m, cf, cr, faster = line:match("^%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+[%d.]+%s+[%d.]+%s+(%a+)")
      if n then
        n, m, cf, cr = tonumber(n), tonumber(m), tonumber(cf), tonumber(cr)
        assert.are.equal(n + 1, cf)
        assert.are.equal(m + 1, cr)
        if n * 8 <= m then assert.are.equal("forward", faster) end -- 32x fewer passes: loose
        if m * 8 <= n then assert.are.equal("reverse", faster) end
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 4, "found " .. checked .. " Jacobian rows")
    -- (b) rows "h P passes t_fd t_fd_wall t_bp ratio err": 2P passes; the fd/bp ratio grows with P
    local ratios = {}
    for _, line in ipairs(lines) do
      local h, P, passes, ratio =
        line:match("^%s+(%d+)%s+(%d+)%s+(%d+)%s+[%d.]+%s+[%d.]+%s+[%d.]+%s+([%d.]+)%s+[%d.]+e")
      if h then
        assert.are.equal(2 * tonumber(P), tonumber(passes))
        ratios[#ratios + 1] = { P = tonumber(P), r = tonumber(ratio) }
      end
    end
    assert.is_true(#ratios >= 3, "found " .. #ratios .. " finite-difference rows")
    local first, last = ratios[1], ratios[#ratios]
    -- fd / bp is O(P): over a 16x range of P it must grow by far more than 2x (loose)
    assert.is_true(last.r / first.r > 2, string.format("fd/bp grew from %g to %g", first.r, last.r))
    -- (c) backward / forward within a wide band
    local bw = tonumber(find_line(lines, "backward / forward = ([%d.]+)"))
    assert.is_true(bw > 0.2 and bw < 10, "backward / forward = " .. bw)
  end)
end)
