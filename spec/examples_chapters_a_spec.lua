-- The chapter examples for chapters 1-5 of the reference text (examples/chain_rule.lua,
-- backprop_from_scratch.lua, sgd_variance.lua, momentum.lua, adam.lua), each run in quick mode
-- as a child process. Each must exit 0, end with "claim holds: ...", write its plot, and print
-- a table whose numbers are checked here again, independently of the example's own check.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").

package.path = "spec/?.lua;" .. package.path
local ex = require "helpers.examples"
local util = require "helpers.util"

local tmpdir

-- The common contract (exit 0, last line "claim holds: ...", the SVG written); returns stdout and
-- its lines.
local function check_run(name, svg)
  local lines, out = ex.check(tmpdir, name, { svg })
  return out, lines
end

-- The table after the first line matching header: the run of lines starting with a number
-- (lines before the first such row, such as column headings, are skipped).
local function table_after(lines, header)
  local rows, inside = {}, false
  for _, line in ipairs(lines) do
    if inside then
      local numeric = tonumber(line:match("^%s*(%S+)"))
      if numeric then
        rows[#rows + 1] = line
      elseif #rows > 0 then
        break
      end
    elseif line:find(header) then
      inside = true
    end
  end
  return rows
end

local function numbers(line)
  local t = {}
  for w in line:gmatch("%S+") do t[#t + 1] = tonumber(w) end
  return t
end

local function close(a, b, rel)
  return math.abs(a - b) <= rel * math.max(math.abs(a), math.abs(b))
end

describe("the chapter examples 1-5 (quick mode)", function()
  setup(function() tmpdir = ex.prepare() end)

  teardown(function() util.remove_dir(tmpdir) end)

  it("chain_rule.lua: the hand chain rule equals the tape", function()
    local out = check_run("chain_rule", "chain_rule.svg")
    -- df/dx at (0.7, 1.3) from its formula y cos(xy) + exp(x)/y, against the tape's value printed
    local p1, p2, sum, tape = out:match("df/dx = (%S+) %(x%->a%->b%->f%) %+ (%S+) %(x%->c%->d%->f%) = (%S+)%s+tape (%S+)")
    assert.truthy(tape, "no df/dx line")
    local x, y = 0.7, 1.3
    assert.is_true(math.abs(tonumber(tape) - (y * math.cos(x * y) + math.exp(x) / y)) < 1e-13)
    assert.is_true(math.abs(tonumber(p1) + tonumber(p2) - tonumber(tape)) < 1e-13)
    assert.is_true(math.abs(tonumber(sum) - tonumber(tape)) < 1e-13)
    local dy = out:match("df/dy = %S+ %(y%->a%->b%->f%) %+ %S+ %(y%->d%->f%)%s+= %S+%s+tape (%S+)")
    assert.is_true(math.abs(tonumber(dy) - (x * math.cos(x * y) - math.exp(x) / y ^ 2)) < 1e-13)
    -- the Jacobian comparisons all at rounding level
    local n = 0
    for d in out:gmatch("J_f J_g vs jacobian%(f o g%), %a+ mode%s+(%S+)") do
      n = n + 1
      assert.is_true(tonumber(d) <= 1e-12)
    end
    assert.are.equal(2, n)
  end)

  it("backprop_from_scratch.lua: the delta recursion equals backward() per layer", function()
    local _, lines = check_run("backprop_from_scratch", "backprop_from_scratch.svg")
    local seen = 0
    for _, header in ipairs({ "^MSE with 1/2", "^softmax cross%-entropy" }) do
      local rows = table_after(lines, header)
      -- the first row after the loss line is the column header
      local layers = 0
      for _, row in ipairs(rows) do
        local l, dW, db = row:match("^(%d)%s+%d+x%d+%s+%S+%s+%S+%s+(%S+)%s+(%S+)$")
        if l then
          layers = layers + 1
          assert.is_true(tonumber(dW) <= 1e-12 and tonumber(db) <= 1e-12, row)
        end
      end
      assert.are.equal(3, layers, "layer rows after " .. header)
      seen = seen + layers
    end
    assert.are.equal(6, seen)
  end)

  it("sgd_variance.lua: the mini-batch variance is sigma^2/B within 25%", function()
    local out, lines = check_run("sgd_variance", "sgd_variance.svg")
    local sigma2 = tonumber(out:match("sigma%^2 = %(1/n%) sum ||g_i %- g||%^2 = (%S+)"))
    assert.truthy(sigma2)
    local rows = table_after(lines, "^B%s+measured")
    local bs = {}
    for _, row in ipairs(rows) do
      local v = numbers(row)
      local B, measured, predicted = v[1], v[2], v[3]
      bs[#bs + 1] = B
      assert.is_true(close(predicted * B, sigma2, 1e-4), row) -- the prediction is sigma^2 / B
      assert.is_true(math.abs(measured / predicted - 1) <= 0.25, row)
      assert.is_true(math.abs(v[7]) <= 4, row) -- unbiased: the mean within 4 standard errors
    end
    assert.are.same({ 1, 4, 16, 64, 256 }, bs)
  end)

  it("momentum.lua: 1/(1-beta) amplification and sqrt(kappa) against kappa growth", function()
    local _, lines = check_run("momentum", "momentum.svg")
    local amp = table_after(lines, "^beta%s+1/%(1%-beta%)")
    assert.are.equal(4, #amp)
    for _, row in ipairs(amp) do
      local v = numbers(row)
      local beta, final = v[1], v[7]
      assert.is_true(close(final, 1 / (1 - beta), 1e-3), row)
    end
    local rows = table_after(lines, "^kappa%s+beta%s+GD")
    assert.is_true(#rows >= 3)
    local first, last = numbers(rows[1]), numbers(rows[#rows])
    -- columns: kappa, beta, GD, heavy ball, Nesterov, heavy ball (Polyak), ...
    local growth = last[1] / first[1]
    local gd = last[3] / first[3]
    assert.is_true(gd > growth ^ 0.8 and gd < growth ^ 1.2, "GD grows like kappa")
    for col = 4, 5 do
      local m = last[col] / first[col]
      assert.is_true(m > growth ^ 0.3 and m < growth ^ 0.7, "momentum grows like sqrt(kappa)")
      assert.is_true(last[col] * 5 <= last[3], "momentum needs far fewer steps than GD")
    end
  end)

  it("adam.lua: bias correction and decoupled weight decay", function()
    local out, lines = check_run("adam", "adam.svg")
    assert.truthy(util.file_exists(tmpdir .. "/adam_weight_decay.svg"))
    -- hand Adam against lg.optim: the params column
    for _, name in ipairs({ "Adam ", "Adam, weight_decay 0.1 %(L2%)", "AdamW, weight_decay 0.1" }) do
      local d = out:match("\n" .. name .. "%s+%S+%s+%S+%s+(%S+)")
      assert.truthy(d, name)
      assert.is_true(tonumber(d) <= 1e-12, name)
    end
    -- the constant-gradient table: raw m_t = 1 - 0.9^t, m_hat = 1, uncorrected step (1-b1^t)/sqrt(1-b2^t)
    local rows = table_after(lines, "^t%s+raw m_t")
    assert.is_true(#rows >= 10)
    for _, row in ipairs(rows) do
      local v = numbers(row)
      local t = v[1]
      assert.is_true(math.abs(v[2] - (1 - 0.9 ^ t)) < 1e-6, row)
      assert.is_true(math.abs(v[4] - 1) < 1e-7, row)
      assert.is_true(math.abs(v[7] - 1) < 1e-6, row)
      assert.is_true(close(v[8], (1 - 0.9 ^ t) / math.sqrt(1 - 0.999 ^ t), 1e-5), row)
    end
    -- weight decay: AdamW's column all (1 - 1e-3)^1000, Adam+L2's spread out
    local wrows = table_after(lines, "^coordinate%s+grad scale")
    assert.are.equal(6, #wrows)
    local factor = (1 - 1e-3) ^ 1000
    local lo, hi = math.huge, 0
    for _, row in ipairs(wrows) do
      local v = numbers(row)
      assert.is_true(close(v[3], factor, 0.02), row)
      lo, hi = math.min(lo, math.abs(v[4])), math.max(hi, math.abs(v[4]))
    end
    assert.is_true(hi / lo >= 3 and hi > 0.9)
  end)
end)
