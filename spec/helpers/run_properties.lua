-- Runs the property checks of spec/properties_spec.lua as a script, for long runs:
--
--   build/luagrad spec/helpers/run_properties.lua [programs] [seed] [first]
--   LUAGRAD_PROPERTY_PROGRAMS=20000 LUAGRAD_PROPERTY_SEED=7 build/luagrad spec/helpers/run_properties.lua
--
-- Run from the repository root. Prints a line per failing program, then the counts: programs,
-- statements, checks run per kind, failures per kind (new and known), and the wall time. With
-- LUAGRAD_PROPERTY_OUT=dir, writes each new failure's reproducer to dir/seed-S-program-K-kind.lua.
-- Exits with status 1 when a failure is not a known bug.
package.path = "spec/?.lua;" .. package.path
local lg = require "luagrad"
local program = require "helpers.program"

local args = arg or {}
local N = tonumber(args[1]) or tonumber(os.getenv("LUAGRAD_PROPERTY_PROGRAMS") or "") or 300
local SEED = math.tointeger(tonumber(args[2]) or tonumber(os.getenv("LUAGRAD_PROPERTY_SEED") or "") or 1) or 1
local FIRST = math.tointeger(tonumber(args[3]) or 1) or 1
local OUT = os.getenv("LUAGRAD_PROPERTY_OUT")
local VERBOSE = os.getenv("LUAGRAD_PROPERTY_VERBOSE")

local t0 = lg.clock()
local counts = { programs = 0, statements = 0, ran = {}, new = {}, known = {}, tags = {} }
local groups = {} -- distinct failures: kind .. tag -> first reproducer
local bad = 0
for k = FIRST, FIRST + N - 1 do
  local ok, findings, ran, p = xpcall(program.run_one, debug.traceback, SEED, k)
  counts.programs = counts.programs + 1
  if not ok then
    bad = bad + 1
    print(string.format("program %d: the harness itself raised: %s", k, tostring(findings)))
  else
    counts.statements = counts.statements + #p.stmts
    for _, t in ipairs(p.tags) do counts.tags[t] = (counts.tags[t] or 0) + 1 end
    for kind in pairs(ran) do counts.ran[kind] = (counts.ran[kind] or 0) + 1 end
    for _, f in ipairs(findings) do
      local bucket = f.known and counts.known or counts.new
      bucket[f.kind] = (bucket[f.kind] or 0) + 1
      local key = f.kind .. " | " .. (f.known or "") .. " | " .. (f.tag or "")
      if not f.known then bad = bad + 1 end
      print(string.format("program %d: %s%s: %s", k, f.kind, f.known and (" (" .. f.known .. ")") or "",
        (f.msg:gsub("\n.*", ""))))
      if not groups[key] then
        groups[key] = { count = 0, first = k, f = f }
        if VERBOSE then print(f.reproducer) end
      end
      groups[key].count = groups[key].count + 1
      if OUT and not f.known then
        local path = string.format("%s/seed-%d-program-%d-%s.lua", OUT, SEED, k, f.kind)
        local fh = io.open(path, "w")
        if fh then fh:write(f.reproducer); fh:close() end
      end
    end
  end
  if k % 100 == 0 then collectgarbage() end
end
local elapsed = lg.clock() - t0

local function line(title, t)
  local keys = {}
  for key in pairs(t) do keys[#keys + 1] = key end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do parts[#parts + 1] = key .. "=" .. t[key] end
  print(string.format("%-22s %s", title, table.concat(parts, " ")))
end
print(string.format("seed %d, programs %d..%d", SEED, FIRST, FIRST + N - 1))
print(string.format("%-22s %d (%d statements)", "programs", counts.programs, counts.statements))
line("checks run", counts.ran)
line("failures (new)", counts.new)
line("failures (known)", counts.known)
if VERBOSE then line("ops generated", counts.tags) end
print("distinct failures:")
local keys = {}
for key in pairs(groups) do keys[#keys + 1] = key end
table.sort(keys)
for _, key in ipairs(keys) do
  print(string.format("  %5d x  %s  (first: program %d)", groups[key].count, key, groups[key].first))
end
print(string.format("wall time %.1f s", elapsed))
os.exit(bad == 0 and 0 or 1)
