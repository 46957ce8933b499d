-- lg.progress: a progress bar for loops, with count, percentage, elapsed time, rate, ETA and
-- live metrics.
--
--   local bar = lg.progress(#loader, { desc = "epoch 1" })
--   for x, y in bar:iter(loader) do
--     ...
--     bar:update(0, { loss = loss:item(), acc = acc })   -- or bar:set_metrics{...}
--   end                                                  -- the loop's end closes the bar
--
--   for i in lg.progress.wrap(100) do ... end             -- 1..100
--   for batch in lg.progress.wrap(loader, { desc = "eval" }) do ... end
--
-- Manual use: `bar:update(n, metrics)` adds n finished steps (default 1) and merges the
-- metrics; `bar:close(metrics)` prints the final state and a newline (idempotent; also run by
-- `local bar <close> = ...` and when a wrapped loop ends or is left with break).
--
-- On a terminal the line is redrawn in place ("\r", then ESC[K to clear the rest of the line),
-- at most every `interval` seconds:
--   epoch 1:  45% [#############-----------------] 45/100 [00:03<00:04, 12.9 it/s] loss=0.3100 acc=0.8800
-- Otherwise (a file or a pipe, or LUAGRAD_PROGRESS=plain) it prints whole lines without the bar,
-- one each time another 10% is done (or, with `plain_interval`, at most every that many
-- seconds; 10 s when the total is unknown) plus the final line from close:
--   epoch 1:  50% 50/100 [00:04<00:04, 12.5 it/s] loss=0.3100 acc=0.8800
-- With total = nil the count is shown as "45 it" with no percentage, bar or ETA.
--
-- Options: desc, width (30, bar cells), file (io.stdout), interval (0.1 s), plain_interval,
-- mode ("tty" | "plain" | "off"; default: from LUAGRAD_PROGRESS, else whether file is a
-- terminal), clock (a function returning seconds; default core.clock), metrics (a list of
-- metric names giving their display order).
-- Metrics are shown as name=value, numbers with four decimals (scientific when tiny or huge),
-- integers as integers, one-element tensors through :item(). Their order: names listed in
-- opts.metrics first, then names containing "loss", then the rest alphabetically.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

local format, floor = string.format, math.floor

---@class luagrad.progress.Options
---@field desc? string|number shown before the count
---@field width? integer bar cells, 0 to 1000 (default 30)
---@field file? file*|{write: fun(self: any, s: string)} where to write (default io.stdout)
---@field interval? number seconds between terminal redraws (default 0.1)
---@field plain_interval? number seconds between plain lines, instead of one per 10% (default: 10 when total is nil)
---@field mode? "tty"|"plain"|"off" (default: LUAGRAD_PROGRESS, else whether file is a terminal)
---@field clock? fun(): number seconds (default core.clock)
---@field metrics? string[] metric names shown first, in this order

---@class luagrad.progress.WrapOptions: luagrad.progress.Options
---@field total? number the number of items, when it cannot be read from the iterable

---lg.progress(total, opts) makes a bar; lg.progress.wrap(iterable, opts) loops with one.
---@class luagrad.progress
---@overload fun(total?: number, opts?: luagrad.progress.Options): luagrad.progress.Bar
local progress = {}

---@class luagrad.progress.Bar
---@field total number|nil
---@field n number the steps finished
---@field desc string|nil
---@field metrics table<string, any> the latest value of each metric
---@field closed boolean
local Bar = {}
Bar.__index = Bar
progress.Bar = Bar

local function fail(msg, ...) errors.raise("progress: " .. format(msg, ...)) end

-- The options a bar takes, and wrap's (the same and total)
local BAR_OPTIONS = { "desc", "width", "file", "interval", "plain_interval", "mode", "clock", "metrics" }
local WRAP_OPTIONS = { "total", table.unpack(BAR_OPTIONS) }

-- ---- formatting ------------------------------------------------------------------------------

-- Whole seconds, rounded down: 75.9 -> "01:15", 3725 -> "1:02:05".
local function clock_text(s)
  if s ~= s or s == math.huge or s < 0 then return "?" end
  s = floor(s)
  local h, m, sec = s // 3600, s // 60 % 60, s % 60
  if h > 0 then return format("%d:%02d:%02d", h, m, sec) end
  return format("%02d:%02d", m, sec)
end
progress._clock_text = clock_text

local function rate_text(n, elapsed)
  if n <= 0 or elapsed <= 0 then return "? it/s" end
  local r = n / elapsed
  if r >= 1 then return format("%.1f it/s", r) end
  return format("%.2f s/it", 1 / r)
end

local function count_text(v)
  if v == floor(v) then return format("%d", v) end
  return format("%.1f", v)
end

local function metric_value(v)
  if core.is_tensor(v) and v:numel() == 1 then v = v:item() end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    local a = math.abs(v)
    if v ~= v or a == math.huge then return tostring(v) end
    if a == 0 or (a >= 1e-3 and a < 1e6) then return format("%.4f", v) end
    return format("%.3e", v)
  end
  return tostring(v)
end

function Bar:_metrics_text()
  local parts = {}
  for _, k in ipairs(self._order) do
    parts[#parts + 1] = k .. "=" .. metric_value(self.metrics[k])
  end
  return table.concat(parts, " ")
end

-- The status line; with_bar adds the [###---] bar (terminal mode).
function Bar:_line(with_bar, now)
  local elapsed = now - self.start
  local n, total = self.n, self.total
  local out = {}
  if self.desc then out[#out + 1] = self.desc .. ":" end
  if total then
    local frac = total > 0 and math.min(n / total, 1) or 1
    out[#out + 1] = format("%3d%%", floor(frac * 100 + 1e-9))
    if with_bar and self.width > 0 then
      local fill = floor(frac * self.width + 1e-9)
      out[#out + 1] = "[" .. string.rep("#", fill) .. string.rep("-", self.width - fill) .. "]"
    end
    out[#out + 1] = format("%s/%s", count_text(n), count_text(total))
    local eta
    if n >= total then eta = 0
    elseif n > 0 and elapsed > 0 then eta = (total - n) * elapsed / n end
    out[#out + 1] = format("[%s<%s, %s]", clock_text(elapsed), eta and clock_text(eta) or "?",
      rate_text(n, elapsed))
  else
    out[#out + 1] = format("%s it", count_text(n))
    out[#out + 1] = format("[%s, %s]", clock_text(elapsed), rate_text(n, elapsed))
  end
  if #self._order > 0 then out[#out + 1] = self:_metrics_text() end
  return table.concat(out, " ")
end


-- ---- output ----------------------------------------------------------------------------------

function Bar:_write(s)
  self.file:write(s)
  if self.file.flush then self.file:flush() end
end

function Bar:_draw(now, final)
  local line = self:_line(true, now)
  local cols = tonumber(os.getenv("COLUMNS") or "")
  if cols and cols > 1 and utf8.len(line) and utf8.len(line) >= cols then
    line = line:sub(1, utf8.offset(line, cols) - 1)
  end
  self:_write("\r" .. line .. "\27[K" .. (final and "\n" or ""))
  self.last_draw = now
end

function Bar:_print(now)
  self:_write(self:_line(false, now) .. "\n")
  self.last_print = now
  self.printed_n = self.n
end

-- After a change: redraw or print if it is time.
function Bar:_tick()
  if self.mode == "off" then return end
  local now = self.clock()
  if self.mode == "tty" then
    if now - self.last_draw >= self.interval then self:_draw(now) end
    return
  end
  if self.plain_interval then
    if now - self.last_print >= self.plain_interval then self:_print(now) end
  elseif self.total and self.total > 0 then
    -- one line per 10% step, the last (100%) left to close
    local step = floor(math.min(self.n / self.total, 1) * 10 + 1e-9)
    if step > self.printed_step and step < 10 then
      self.printed_step = step
      self:_print(now)
    end
  end
end

-- ---- the bar ---------------------------------------------------------------------------------

-- Whether `file` is a terminal. core._isatty(fd) when the core has it; otherwise a guess that
-- never spawns a process: a seekable stdout is a regular file (not a terminal); an unseekable
-- one is a terminal when TERM names one (a pipe under a terminal is taken for a terminal).
local function is_terminal(file)
  local fd = (file == io.stdout and 1) or (file == io.stderr and 2) or nil
  if not fd then return false end
  if core._isatty then return core._isatty(fd) == true end
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then return false end
  local ok, pos = pcall(file.seek, file, "cur")
  return not (ok and pos)
end
progress._is_terminal = is_terminal

local MODES = { tty = true, plain = true, off = true }

---progress(total, opts) and progress.new(total, opts): a new bar (total = nil when unknown).
---@param total? number
---@param opts? luagrad.progress.Options
---@return luagrad.progress.Bar
local function new(total, opts)
  if total ~= nil and (type(total) ~= "number" or total ~= total or total < 0 or total == math.huge) then
    fail("total must be a non-negative number or nil, got %s", type(total) == "number"
      and tostring(total) or type(total))
  end
  if opts ~= nil and type(opts) ~= "table" then fail("opts must be a table, got %s", type(opts)) end
  opts = errors.options("progress", opts, BAR_OPTIONS)
  local file = opts.file or io.stdout
  if (type(file) ~= "table" and type(file) ~= "userdata") or type(file.write) ~= "function" then
    fail("opts.file must be a file or an object with a write method, got %s", type(file))
  end
  local width = opts.width == nil and 30 or opts.width
  if type(width) ~= "number" or width ~= floor(width) or width < 0 or width > 1000 then
    fail("opts.width must be an integer from 0 to 1000, got %s", tostring(width))
  end
  local interval = opts.interval == nil and 0.1 or opts.interval
  if type(interval) ~= "number" or interval ~= interval or interval < 0 then
    fail("opts.interval must be a non-negative number of seconds, got %s", tostring(interval))
  end
  local plain_interval = opts.plain_interval
  if plain_interval ~= nil and (type(plain_interval) ~= "number" or plain_interval ~= plain_interval or plain_interval < 0) then
    fail("opts.plain_interval must be a non-negative number of seconds, got %s", tostring(plain_interval))
  end
  if plain_interval == nil and total == nil then plain_interval = 10 end
  local clock = opts.clock or core.clock
  if type(clock) ~= "function" then fail("opts.clock must be a function, got %s", type(clock)) end
  if opts.desc ~= nil and type(opts.desc) ~= "string" and type(opts.desc) ~= "number" then
    fail("opts.desc must be a string, got %s", type(opts.desc))
  end
  if opts.metrics ~= nil and type(opts.metrics) ~= "table" then
    fail("opts.metrics must be a list of metric names, got %s", type(opts.metrics))
  end
  local mode = opts.mode
  if mode == nil then
    local env = os.getenv("LUAGRAD_PROGRESS")
    if env and MODES[env] then mode = env
    else mode = is_terminal(file) and "tty" or "plain" end
  elseif not MODES[mode] then
    fail("opts.mode must be \"tty\", \"plain\" or \"off\", got %s", tostring(mode))
  end

  local now = clock()
  local self = setmetatable({
    total = total, n = 0, desc = opts.desc and tostring(opts.desc), width = floor(width),
    file = file, interval = interval, plain_interval = plain_interval, clock = clock, mode = mode,
    start = now, last_draw = now, last_print = now, printed_step = 0, printed_n = 0,
    metrics = {}, _order = {}, _first = {}, closed = false,
  }, Bar)
  for i, k in ipairs(opts.metrics or {}) do self._first[k] = i end
  if mode == "tty" then self:_draw(now) end
  return self
end

-- Keep self._order: names from opts.metrics first, then "loss" names, then alphabetical.
function Bar:_sort()
  local first = self._first
  local function rank(k)
    if first[k] then return 0, first[k] end
    if tostring(k):find("loss", 1, true) then return 1, 0 end
    return 2, 0
  end
  table.sort(self._order, function(a, b)
    local ra, ia = rank(a)
    local rb, ib = rank(b)
    if ra ~= rb then return ra < rb end
    if ia ~= ib then return ia < ib end
    return tostring(a) < tostring(b)
  end)
end

-- method: the public method merging them, for its errors
function Bar:_merge(metrics, method)
  if metrics == nil then return end
  if type(metrics) ~= "table" then
    fail("%s: metrics must be a table such as {loss = 0.31}, got %s", method, type(metrics))
  end
  local added = false
  for k, v in pairs(metrics) do
    if type(k) ~= "string" then fail("%s: metric names must be strings, got %s", method, type(k)) end
    if self.metrics[k] == nil then
      self._order[#self._order + 1] = k
      added = true
    end
    self.metrics[k] = v
  end
  if added then self:_sort() end
end

---Adds n finished steps (default 1) and merges the metrics ({loss = 0.31, acc = 0.88}).
---@param n? number
---@param metrics? table<string, any> numbers, one-element tensors or anything tostring shows
function Bar:update(n, metrics)
  if self.closed then fail("update after close") end
  if n == nil then n = 1 end
  if type(n) ~= "number" or n ~= n or n < 0 or n == math.huge then
    fail("update expects a non-negative number of finished steps, got %s",
      type(n) == "number" and tostring(n) or type(n))
  end
  self:_merge(metrics, "update")
  self.n = self.n + n
  self:_tick()
end

---Merges the metrics without adding a step.
---@param metrics table<string, any>
function Bar:set_metrics(metrics)
  if self.closed then fail("set_metrics after close") end
  self:_merge(metrics, "set_metrics")
end

---Print the final state (with a newline) once.
---@param metrics? table<string, any>
function Bar:close(metrics)
  if self.closed then return end
  self:_merge(metrics, "close")
  self.closed = true
  if self.mode == "off" then return end
  local now = self.clock()
  if self.mode == "tty" then self:_draw(now, true) else self:_print(now) end
end
Bar.__close = function(self) self:close() end

function Bar:__tostring() return self:_line(false, self.clock()) end

-- ---- iteration -------------------------------------------------------------------------------

-- A step function over what `for ... in` can walk: a count n (1..n), a function iterator, a
-- callable table (a DataLoader), or a plain list (yields i, v as ipairs does).
-- fname: the public function asked ("wrap" or "iter"), for its errors
local function stepper(it, fname)
  if math.type(it) == "integer" or (type(it) == "number" and it == floor(it)) then
    if it < 0 then fail("%s: count must be non-negative, got %s", fname, tostring(it)) end
    local i, n = 0, floor(it)
    return function()
      if i >= n then return nil end
      i = i + 1
      return i
    end, n
  end
  if type(it) == "function" then
    local control
    return function()
      local r = table.pack(it(nil, control))
      control = r[1]
      return table.unpack(r, 1, r.n)
    end, nil
  end
  local mt = (type(it) == "table" or type(it) == "userdata") and getmetatable(it)
  if type(mt) == "table" and mt.__call then
    local total
    if mt.__len then total = #it end
    local control
    return function()
      local r = table.pack(it(nil, control))
      control = r[1]
      return table.unpack(r, 1, r.n)
    end, total
  end
  if type(it) == "table" then
    local i, n = 0, #it
    return function()
      if i >= n then return nil end
      i = i + 1
      return i, it[i]
    end, n
  end
  fail("%s: expected a count, a function, a callable table or a list, got %s", fname, type(it))
end

---for ... in bar:iter(iterable) do ... end: one step per item, the bar closed at the loop's end
---(also on break or error, through the for loop's closing value).
---@param it integer|function|table a count n (1..n), an iterator function, a callable table (a DataLoader) or a list
---@return function iter
---@return nil
---@return nil
---@return luagrad.progress.Bar bar the for loop's closing value
function Bar:iter(it)
  local next_item = stepper(it, "iter")
  local started = false
  local function iter()
    if self.closed then return nil end
    if started then self:update(1) end
    started = true
    local r = table.pack(next_item())
    if r[1] == nil then
      self:close()
      return nil
    end
    return table.unpack(r, 1, r.n)
  end
  return iter, nil, nil, self
end

---lg.progress.wrap(iterable_or_n, opts): a bar over the iterable; opts.total overrides the
---length (needed for plain function iterators). Returns the iterator triple and the bar as the
---for loop's closing value.
---@param it integer|function|table as Bar:iter takes
---@param opts? luagrad.progress.WrapOptions
---@return function iter
---@return nil
---@return nil
---@return luagrad.progress.Bar bar the for loop's closing value
function progress.wrap(it, opts)
  if opts ~= nil and type(opts) ~= "table" then fail("wrap: opts must be a table, got %s", type(opts)) end
  local _, total = stepper(it, "wrap")
  if opts and opts.total ~= nil then total = opts.total end
  if opts then -- the bar's options and wrap's own, total
    local o = {}
    errors.options("progress.wrap", opts, WRAP_OPTIONS)
    for k, v in pairs(opts) do
      if k ~= "total" then o[k] = v end
    end
    opts = o
  end
  local bar = errors.call_as("progress: wrap", new, total, opts) -- "progress: wrap: total must be ..."
  return bar:iter(it)
end

progress.new = new

return setmetatable(progress, {
  __call = function(_, total, opts) return new(total, opts) end,
})
