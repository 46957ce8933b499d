-- The child process of the API fuzzer (spec/fuzz_spec.lua): runs calls first..last of the plan
-- for (seed, per_fn) and writes what happened to out_file, a line per event, flushed at once so
-- that a crash or a hang leaves the call it happened in as the last "C" line:
--
--   T <total calls in the plan>
--   C <i> <name> <reproducer, newlines as \2>  before call i
--   R <i> <outcome> <names itself 0/1, 4 excused; 2, 3 not judged> <ms> <message as %q>
--   E                                         after the last call
--
-- outcome: ok | error (a string error) | bad-error (an error value that is not a string) |
-- hang (still running after the watchdog's time, in Lua code) | setup (an argument could not be
-- built). Usage, from the directory the calls may write in:
--   luagrad <root>/spec/helpers/run_fuzz.lua <root> <seed> <per_fn> <first> <last> <out_file>
local root, seed, per_fn, first, last, out = ...
if not out then
  root, seed, per_fn, first, last, out = arg[1], arg[2], arg[3], arg[4], arg[5], arg[6]
end
package.path = root .. "/spec/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local lg = require "luagrad"
local fuzz = require "helpers.fuzz"

local f = assert(io.open(out, "w"))
local function emit(line)
  f:write(line, "\n")
  f:flush()
end

local calls = fuzz.plan(lg, math.tointeger(tonumber(seed)), math.tointeger(tonumber(per_fn)),
  fuzz.signatures(root .. "/docs/reference"))
emit("T " .. #calls)
first, last = math.tointeger(tonumber(first)), math.min(math.tointeger(tonumber(last)), #calls)

-- calls must not end the process or leave settings behind for the next call
local real_exit = os.exit
os.exit = function() error("fuzz: os.exit was called", 0) end -- luacheck: ignore 122
io.read = function() error("fuzz: io.read was called", 0) end -- luacheck: ignore 122
-- lg.distributed.init would start MPI in the child, and abort end it: the MPI module is a stub
package.preload["luagrad.mpi"] = function() error("fuzz: MPI is not started in the fuzzer", 0) end
local threads = lg.get_num_threads()
local function reset()
  lg.set_grad_enabled(true)
  lg.set_default_dtype("float32")
  lg.autograd.detect_anomaly(false)
  if lg.get_num_threads() ~= threads then lg.set_num_threads(threads) end
end

-- a watchdog for loops in Lua code: a call still running after WATCHDOG seconds raises (a hang
-- in C is left to the parent's time limit for the whole batch)
local WATCHDOG = 6
local t0 = lg.clock()
debug.sethook(function()
  if lg.clock() - t0 > WATCHDOG then error("fuzz: watchdog: the call ran for over " .. WATCHDOG .. " s", 0) end
end, "", 100000)

for i = first, last do
  local c = calls[i]
  emit("C " .. i .. " " .. c.name .. " " .. fuzz.reproducer(c):gsub("\n", "\2"))
  t0 = lg.clock()
  local outcome, msg = fuzz.run_call(lg, c)
  local ms = (lg.clock() - t0) * 1000
  t0 = lg.clock()
  if outcome == "error" and msg:find("fuzz: watchdog", 1, true) then outcome = "hang" end
  reset()
  -- 1 the message names the function, 0 it does not, 4 it does not but an exemption excuses it
  -- (fuzz.EXEMPT); not judged: 2 a method called on an invalid receiver, 3 an error raised inside
  -- a function the call passed (its position is that function's line, in the chunk "=arg"), which
  -- the library passes on unchanged
  local named = outcome ~= "error" and 0 or not c.recv_ok and 2 or fuzz.from_callback(msg) and 3
    or fuzz.names_itself(c.name, msg) and 1 or fuzz.excused(c.name, msg) and 4 or 0
  emit(string.format("R %d %s %d %.1f %q", i, outcome, named, ms, (msg or ""):gsub("\n", " ")))
  if i % 50 == 0 then collectgarbage() end
end
emit("E")
f:close()
real_exit(0)
