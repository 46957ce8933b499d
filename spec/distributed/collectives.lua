-- Run by spec/distributed_spec.lua under mpirun: every collective of lg.distributed, for every op
-- and dtype, on a contiguous tensor and a strided view, against a slow reference computed with
-- Lua numbers from every rank's inputs (each rank can rebuild them: they come from the rank).
-- Prints "checks <n> failures <m>" on rank 1, then the failures.
local lg = require "luagrad"
local dist = lg.distributed
local rank, world = dist.init()
local checks, failures = 0, {}

local function check(what, got, want)
  checks = checks + 1
  local g = got:contiguous():reshape(-1)
  for i = 1, #want do
    local gv = g[i]
    if math.abs(gv - want[i]) > 1e-6 * math.max(1, math.abs(want[i])) then
      failures[#failures + 1] = string.format("%s: element %d is %s, expected %s", what, i, tostring(gv), tostring(want[i]))
      return
    end
  end
end

-- rank r's input: 12 values (3 x 4), integers so that every dtype holds them exactly
local function values(r, dtype)
  local v = {}
  for i = 1, 12 do v[i] = ((i * 7 + r * 13) % 11) - 5 + (dtype == "int64" and 0 or 0.5 * r) end
  return v
end
local function input(r, dtype, strided)
  local t = lg.tensor(values(r, dtype), { dtype = dtype }):reshape(3, 4)
  if strided then return t:t():contiguous():t() end -- same values, column-major strides
  return t
end

local reduce = {
  sum = function(a, b) return a + b end, max = math.max, min = math.min,
}
local function reference(op, dtype)
  local acc = values(1, dtype)
  for r = 2, world do
    local v = values(r, dtype)
    for i = 1, 12 do acc[i] = (reduce[op] or reduce.sum)(acc[i], v[i]) end
  end
  if op == "mean" then
    for i = 1, 12 do acc[i] = dtype == "int64" and acc[i] // world or acc[i] / world end
  end
  return acc
end

for _, dtype in ipairs({ "float32", "float64", "int64" }) do
  for _, strided in ipairs({ false, true }) do
    local tag = dtype .. (strided and " strided" or "")
    for _, op in ipairs({ "sum", "mean", "max", "min" }) do
      local t = input(rank, dtype, strided)
      assert(t:is_contiguous() == not strided)
      dist.all_reduce(t, { op = op })
      check("all_reduce " .. op .. " " .. tag, t, reference(op, dtype))
      for dst = 1, world do
        local u = input(rank, dtype, strided)
        dist.reduce(u, { op = op, dst = dst })
        check("reduce " .. op .. " to " .. dst .. " " .. tag, u, rank == dst and reference(op, dtype) or values(rank, dtype))
      end
    end
    for src = 1, world do
      local t = input(rank, dtype, strided)
      dist.broadcast(t, { src = src })
      check("broadcast from " .. src .. " " .. tag, t, values(src, dtype))
      local s = lg.zeros({ 3, 4 }, { dtype = dtype })
      if strided then s = s:t():contiguous():t() end
      local list
      if rank == src then
        list = {}
        for r = 1, world do list[r] = input(r, dtype, strided) * 2 end
      end
      dist.scatter(s, { src = src, scatter_list = list })
      local w = values(rank, dtype)
      for i = 1, 12 do w[i] = 2 * w[i] end
      check("scatter from " .. src .. " " .. tag, s, w)
      local g = dist.gather(input(rank, dtype, strided), { dst = src })
      if rank == src then
        for r = 1, world do check("gather to " .. src .. " [" .. r .. "] " .. tag, g[r], values(r, dtype)) end
      else
        checks = checks + 1
        if g ~= nil then failures[#failures + 1] = "gather: a list on a rank that is not dst" end
      end
    end
    local list = dist.all_gather({}, input(rank, dtype, strided))
    for r = 1, world do check("all_gather [" .. r .. "] " .. tag, list[r], values(r, dtype)) end
  end
end

-- mismatched shapes: an error on every rank, and the job goes on
if world > 1 then
local ok, err = pcall(dist.all_reduce, lg.zeros(rank + 1))
checks = checks + 1
if ok or not tostring(err):find("differ across ranks", 1, true) then
  failures[#failures + 1] = "mismatched shapes: " .. tostring(err)
end
local ok2, err2 = pcall(dist.broadcast, lg.zeros(2, { dtype = rank == 1 and "float32" or "float64" }))
checks = checks + 1
if ok2 or not tostring(err2):find("differ across ranks", 1, true) then
  failures[#failures + 1] = "mismatched dtypes: " .. tostring(err2)
end
end
local t = lg.ones(2)
dist.all_reduce(t)
check("all_reduce after the errors", t, { world, world })

-- every rank's failures reach rank 1
local nf = lg.tensor({ #failures }, { dtype = "int64" })
dist.all_reduce(nf)
if rank == 1 then print(string.format("checks %d failures %d", checks, nf:item())) end
for _, f in ipairs(failures) do print("rank " .. rank .. ": " .. f) end
