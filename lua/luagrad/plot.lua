-- lg.plot: line charts written as SVG 1.1, with no external tools.
--
--   local svg = lg.plot.line({
--     { name = "SGD",  y = sgd_losses },              -- x defaults to 1..n
--     { name = "Adam", x = steps, y = adam_losses },  -- y may be a 1-d tensor
--   }, { title = "Training loss", xlabel = "step", ylabel = "loss", logy = true,
--        path = "loss.svg" })
--
-- Options: title, xlabel, ylabel, logy (false), width (720), height (440), path (written
-- atomically: a temporary file in the same directory, then os.rename), xlim / ylim ({lo, hi},
-- fixing an axis range; lines are clipped to the plot area).
--
-- Points whose x or y is NaN or infinite are skipped and break the line; with logy, y <= 0 is
-- skipped the same way and the SVG carries a comment saying how many points were dropped.
-- Axis limits are widened to whole tick steps: linear ticks are 1, 2 or 5 times a power of ten,
-- log-scale ticks are the powers of ten (with minor ticks at 2..9 times each power).
local core = require "luagrad.core"
local errors = require "luagrad.errors"

local format, floor, ceil = string.format, math.floor, math.ceil
local function log10(x) return math.log(x, 10) end -- Lua computes base 10 with C's log10
local huge = math.huge

local plot = {}

-- Ten colours that stay distinguishable (matplotlib's "tab10"); series 11..20 reuse them dashed.
plot.colors = {
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
}
plot.dashes = { false, "7 4", "2 3", "9 3 2 3" }

local FONT = 12 -- px, tick labels and legend

-- ---- small helpers ---------------------------------------------------------------------------

local function escape(s)
  return (tostring(s):gsub('[&<>"\']', {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end
plot._escape = escape

-- Text inside <!-- --> may not contain "--".
local function comment_text(s)
  s = tostring(s)
  while s:find("--", 1, true) do s = s:gsub("%-%-", "- -") end
  return s
end

-- Width of a label in a sans-serif font, estimated by character class (capitals and digits are
-- wider than lowercase, punctuation and spaces narrower), so boxes and titles fit their text.
local function text_width(s)
  local w = 0
  for _, c in utf8.codes(s) do
    local ch = c < 128 and string.char(c) or ""
    if ch:match("%u") then w = w + ((ch == "M" or ch == "W") and 0.86 or 0.70)
    elseif ch:match("%l") then w = w + ((ch == "m" or ch == "w") and 0.90 or (ch:match("[ijlft]") and 0.32 or 0.60))
    elseif ch:match("%d") then w = w + 0.64
    elseif ch:match("[%s%.,:;|!']") then w = w + 0.32
    elseif ch == "" then w = w + 0.75
    else w = w + 0.70 end
  end
  return w * FONT
end

-- Legend entries longer than 30 characters are cut with an ellipsis, so the plot keeps its room.
local LEGEND_CHARS = 30
local function legend_name(name)
  if (utf8.len(name) or #name) <= LEGEND_CHARS then return name end
  local cut = utf8.len(name) and utf8.offset(name, LEGEND_CHARS) or LEGEND_CHARS
  return name:sub(1, cut - 1) .. "\u{2026}"
end

-- A coordinate with at most two decimals and no trailing zeros: 12.5, 100, -3.25.
local function num(v)
  local s = format("%.2f", v)
  s = s:gsub("0+$", ""):gsub("%.$", "")
  if s == "-0" then s = "0" end
  return s
end

local function is_finite(v) return v == v and v ~= huge and v ~= -huge end

local function fail(msg, ...) errors.raise("plot.line: " .. format(msg, ...)) end

-- ---- ticks -----------------------------------------------------------------------------------

-- The step of about `target` intervals over [lo, hi]: 1, 2 or 5 times a power of ten.
local function nice_step(lo, hi, target)
  local raw = (hi - lo) / target
  local mag = 10 ^ floor(log10(raw))
  local norm = raw / mag
  local f
  if norm <= 1 + 1e-9 then f = 1
  elseif norm <= 2 + 1e-9 then f = 2
  elseif norm <= 5 + 1e-9 then f = 5
  else f = 10 end
  return f * mag
end

-- Labels for the values k*step: as many decimals as the step needs, so 0.1 + 0.2 prints "0.3";
-- scientific notation when the numbers are very large or the step very small.
local function tick_label(v, step, maxabs)
  if math.abs(v) < step * 1e-9 then v = 0 end
  if maxabs >= 1e6 or step < 1e-4 then
    if v == 0 then return "0" end
    local sig = floor(log10(math.abs(v)) + 1e-9) - floor(log10(step) + 1e-9) + 1
    if sig < 1 then sig = 1 end
    local s = format("%." .. (sig - 1) .. "e", v)
    local mant, ex = s:match("^(.-)e(.*)$")
    mant = mant:find("%.") and mant:gsub("0+$", ""):gsub("%.$", "") or mant
    return mant .. "e" .. tostring(tonumber(ex))
  end
  local decimals = math.max(0, -floor(log10(step) + 1e-9))
  local s = format("%." .. decimals .. "f", v)
  if s:find("%.") then s = s:gsub("0+$", ""):gsub("%.$", "") end
  if tonumber(s) == 0 then s = "0" end
  return s
end

-- Linear axis: limits widened to whole steps; returns lo, hi, ticks {value, label}.
-- With `integers` (every x is a whole number: steps, epochs) the step is at least 1.
local function linear_axis(lo, hi, target, fixed, integers)
  if lo == hi then
    local d = (lo == 0 or integers) and 1 or math.abs(lo) * 0.5
    lo, hi = lo - d, hi + d
  end
  local step = nice_step(lo, hi, target)
  if integers and step < 1 then step = 1 end
  local k0, k1
  if fixed then
    k0, k1 = ceil(lo / step - 1e-9), floor(hi / step + 1e-9)
  else
    k0, k1 = floor(lo / step + 1e-9), ceil(hi / step - 1e-9)
    lo, hi = k0 * step, k1 * step
  end
  local maxabs = math.max(math.abs(k0 * step), math.abs(k1 * step))
  local ticks = {}
  for k = k0, k1 do
    local v = k * step
    ticks[#ticks + 1] = { value = v, label = tick_label(v, step, maxabs) }
  end
  return lo, hi, ticks, {}
end

local function decade_label(e)
  if e >= -4 and e <= 5 then
    return tick_label(10.0 ^ e, 10.0 ^ math.min(e, 0), 10.0 ^ e)
  end
  return "1e" .. e
end

-- Log axis: limits widened to powers of ten; major ticks at 10^k (every m-th decade when there
-- are many), minor ticks at 2..9 x 10^k when there are few decades.
local function log_axis(lo, hi, fixed)
  local e0, e1
  if fixed then
    e0, e1 = ceil(log10(lo) - 1e-9), floor(log10(hi) + 1e-9)
  else
    if lo == hi then lo, hi = lo / 10, hi * 10 end
    e0, e1 = floor(log10(lo) + 1e-9), ceil(log10(hi) - 1e-9)
    if e0 == e1 then e1 = e0 + 1 end
    lo, hi = 10.0 ^ e0, 10.0 ^ e1
  end
  local every = math.max(1, ceil((e1 - e0 + 1) / 10))
  local ticks, minor = {}, {}
  for e = e0, e1 do
    if (e - e0) % every == 0 then
      ticks[#ticks + 1] = { value = 10.0 ^ e, label = decade_label(e) }
    end
  end
  if every == 1 and (log10(hi) - log10(lo)) <= 8 then
    for e = floor(log10(lo)) , ceil(log10(hi)) do
      for m = 2, 9 do
        local v = m * 10.0 ^ e
        if v >= lo * (1 - 1e-12) and v <= hi * (1 + 1e-12) then minor[#minor + 1] = v end
      end
    end
  end
  return lo, hi, ticks, minor
end

plot._linear_axis = linear_axis
plot._log_axis = log_axis

-- ---- input -----------------------------------------------------------------------------------

-- A list of numbers from a Lua table, a 1-d tensor or anything with # and indexing.
local function as_list(v, what, label)
  if core.is_tensor(v) then
    if v:dim() ~= 1 then
      fail("%s %s must be 1-d, got a tensor of %d dimensions", label, what, v:dim())
    end
    return v:tolist()
  end
  local ok, n = pcall(function() return #v end)
  if not ok or math.type(n) ~= "integer" then
    fail("%s %s must be a list of numbers or a 1-d tensor, got %s", label, what, type(v))
  end
  if type(v) == "table" and getmetatable(v) == nil then return v end
  local t = {}
  for i = 1, n do t[i] = v[i] end
  return t
end

local function check_series(series, logy)
  if type(series) ~= "table" then fail("series must be a list of tables, got %s", type(series)) end
  if #series == 0 then fail("no series to plot (series is empty)") end
  local out = {}
  for i, s in ipairs(series) do
    if type(s) ~= "table" then fail("series %d must be a table {name=, x=, y=}, got %s", i, type(s)) end
    local name = s.name == nil and ("series " .. i) or tostring(s.name)
    local label = format("series %d ('%s')", i, name)
    if s.y == nil then fail("%s has no y values (y = nil)", label) end
    local y = as_list(s.y, "y", label)
    if #y == 0 then fail("%s has no points (y is empty)", label) end
    local x
    if s.x == nil then
      x = {}
      for k = 1, #y do x[k] = k end
    else
      x = as_list(s.x, "x", label)
      if #x ~= #y then fail("%s has %d x values and %d y values", label, #x, #y) end
    end
    for k = 1, #y do
      if type(x[k]) ~= "number" then fail("%s: x[%d] is %s, not a number", label, k, type(x[k])) end
      if type(y[k]) ~= "number" then fail("%s: y[%d] is %s, not a number", label, k, type(y[k])) end
    end
    -- Which points are drawn: finite, and positive on a log axis.
    local keep, nonfinite, nonpos = {}, 0, 0
    for k = 1, #y do
      local xv, yv = x[k], y[k]
      if not (is_finite(xv) and is_finite(yv)) then
        nonfinite = nonfinite + 1
      elseif logy and yv <= 0 then
        nonpos = nonpos + 1
      else
        keep[k] = true
      end
    end
    out[i] = { name = name, x = x, y = y, keep = keep, nonfinite = nonfinite, nonpos = nonpos }
  end
  return out
end

local function check_opts(opts)
  if opts ~= nil and type(opts) ~= "table" then fail("opts must be a table, got %s", type(opts)) end
  opts = errors.options("plot.line", opts,
    { "title", "xlabel", "ylabel", "logy", "width", "height", "path", "xlim", "ylim" })
  local o = {
    title = opts.title, xlabel = opts.xlabel, ylabel = opts.ylabel,
    logy = opts.logy or false, width = opts.width or 720, height = opts.height or 440,
    path = opts.path, xlim = opts.xlim, ylim = opts.ylim,
  }
  for _, k in ipairs { "width", "height" } do
    local v = o[k]
    if type(v) ~= "number" or not is_finite(v) or v < 200 then
      fail("opts.%s must be a number >= 200, got %s", k, tostring(v))
    end
  end
  if type(o.logy) ~= "boolean" then fail("opts.logy must be a boolean, got %s", type(o.logy)) end
  if o.path ~= nil and type(o.path) ~= "string" then
    fail("opts.path must be a string, got %s", type(o.path))
  end
  for _, k in ipairs { "xlim", "ylim" } do
    local v = o[k]
    if v ~= nil then
      if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number"
          or not (is_finite(v[1]) and is_finite(v[2])) or v[1] >= v[2] then
        fail("opts.%s must be {lo, hi} with finite numbers lo < hi", k)
      end
    end
  end
  if o.logy and o.ylim and o.ylim[1] <= 0 then
    fail("opts.ylim must be positive with logy (got lo = %s)", tostring(o.ylim[1]))
  end
  return o
end

-- ---- atomic write ----------------------------------------------------------------------------

local tmp_count = 0
local function write_atomic(path, text)
  tmp_count = tmp_count + 1
  local tmp = format("%s.tmp-%d-%d-%s", path, os.time(), tmp_count,
    tostring({}):match("0x(%x+)") or "0")
  local f, err = io.open(tmp, "wb")
  if not f then fail("cannot write '%s': %s", path, err) end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    fail("cannot write '%s': %s", path, werr or cerr)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    fail("cannot write '%s': %s", path, rerr)
  end
end

-- ---- drawing ---------------------------------------------------------------------------------

---@class luagrad.plot.Series
---@field name? string the legend's label (default "series i")
---@field x? number[]|luagrad.Tensor (default 1..n)
---@field y number[]|luagrad.Tensor a list of numbers or a 1-d tensor

---@class luagrad.plot.LineOptions
---@field title? string
---@field xlabel? string
---@field ylabel? string
---@field logy? boolean a log-scale y axis (default false)
---@field width? number pixels, at least 200 (default 720)
---@field height? number pixels, at least 200 (default 440)
---@field path? string also write the SVG there, atomically
---@field xlim? number[] {lo, hi}, fixing the x range
---@field ylim? number[] {lo, hi}, fixing the y range

---plot.line(series, opts) -> the SVG text (written to opts.path too when given).
---@param series luagrad.plot.Series[]
---@param opts? luagrad.plot.LineOptions
---@return string svg
function plot.line(series, opts)
  local o = check_opts(opts)
  local ss = check_series(series, o.logy)
  local W, H = o.width, o.height

  -- Data ranges over the points that will be drawn.
  local xmin, xmax, ymin, ymax = huge, -huge, huge, -huge
  for _, s in ipairs(ss) do
    for k in pairs(s.keep) do
      local xv, yv = s.x[k], s.y[k]
      if xv < xmin then xmin = xv end
      if xv > xmax then xmax = xv end
      if yv < ymin then ymin = yv end
      if yv > ymax then ymax = yv end
    end
  end
  local empty = xmin > xmax
  if empty then xmin, xmax, ymin, ymax = 0, 1, o.logy and 1 or 0, o.logy and 10 or 1 end
  if o.xlim then xmin, xmax = o.xlim[1], o.xlim[2] end
  if o.ylim then ymin, ymax = o.ylim[1], o.ylim[2] end

  -- Layout: title on top, legend at the right, tick labels and axis labels left and below.
  local legend_w = 0
  for _, s in ipairs(ss) do legend_w = math.max(legend_w, text_width(legend_name(s.name))) end
  legend_w = legend_w + 44
  local top = o.title and 44 or 20
  local bottom = 36 + (o.xlabel and 22 or 0)
  local right = 16 + legend_w + 12
  local ph = H - top - bottom

  local ylo, yhi, yticks, yminor
  if o.logy then
    ylo, yhi, yticks, yminor = log_axis(ymin, ymax, o.ylim ~= nil)
  else
    ylo, yhi, yticks, yminor = linear_axis(ymin, ymax, math.max(2, floor(ph / 70)), o.ylim ~= nil)
  end
  local ylab_w = 0
  for _, t in ipairs(yticks) do ylab_w = math.max(ylab_w, text_width(t.label)) end
  local left = ylab_w + 16 + (o.ylabel and 24 or 0)
  left = math.max(left, 40)
  local pw = W - left - right
  if pw < 60 or ph < 60 then fail("width %d x height %d leave no room for the plot area", W, H) end
  local integers = true
  for _, s in ipairs(ss) do
    for k in pairs(s.keep) do
      if s.x[k] ~= floor(s.x[k]) then integers = false break end
    end
  end
  local xlo, xhi, xticks = linear_axis(xmin, xmax, math.max(2, floor(pw / 80)), o.xlim ~= nil, integers)

  local function px(x) return left + (x - xlo) / (xhi - xlo) * pw end
  local py
  if o.logy then
    local l0, l1 = log10(ylo), log10(yhi)
    py = function(y) return top + ph - (log10(y) - l0) / (l1 - l0) * ph end
  else
    py = function(y) return top + ph - (y - ylo) / (yhi - ylo) * ph end
  end

  local out = {}
  local function emit(...) out[#out + 1] = format(...) end

  emit('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n')
  emit('<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%s" height="%s" viewBox="0 0 %s %s" '
    .. 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="%d">\n',
    num(W), num(H), num(W), num(H), FONT)
  emit('<!-- luagrad plot.line: %d series%s -->\n', #ss, o.logy and ", log-scale y" or "")
  if empty then emit("<!-- no finite points to draw -->\n") end
  for i, s in ipairs(ss) do
    if s.nonfinite > 0 then
      emit("<!-- series %d (%s): skipped %d NaN or infinite points -->\n",
        i, comment_text(s.name), s.nonfinite)
    end
    if s.nonpos > 0 then
      emit("<!-- series %d (%s): skipped %d non-positive y values (log-scale y) -->\n",
        i, comment_text(s.name), s.nonpos)
    end
  end
  emit('<defs><clipPath id="plot-area"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath></defs>\n',
    num(left), num(top), num(pw), num(ph))
  emit('<rect x="0" y="0" width="%s" height="%s" fill="white"/>\n', num(W), num(H))

  -- Grid and ticks.
  emit('<g class="grid" stroke="#e0e0e0" stroke-width="1">\n')
  for _, t in ipairs(yticks) do
    emit('<line x1="%s" y1="%s" x2="%s" y2="%s"/>\n', num(left), num(py(t.value)), num(left + pw), num(py(t.value)))
  end
  for _, t in ipairs(xticks) do
    emit('<line x1="%s" y1="%s" x2="%s" y2="%s"/>\n', num(px(t.value)), num(top), num(px(t.value)), num(top + ph))
  end
  emit('</g>\n')
  emit('<g class="ticks" stroke="black" stroke-width="1">\n')
  for _, t in ipairs(yticks) do
    emit('<line x1="%s" y1="%s" x2="%s" y2="%s"/>\n', num(left - 5), num(py(t.value)), num(left), num(py(t.value)))
  end
  for _, v in ipairs(yminor) do
    emit('<line class="yminor" x1="%s" y1="%s" x2="%s" y2="%s"/>\n', num(left - 3), num(py(v)), num(left), num(py(v)))
  end
  for _, t in ipairs(xticks) do
    emit('<line x1="%s" y1="%s" x2="%s" y2="%s"/>\n', num(px(t.value)), num(top + ph), num(px(t.value)), num(top + ph + 5))
  end
  emit('</g>\n')
  for _, t in ipairs(yticks) do
    emit('<text class="ytick" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>\n',
      num(left - 8), num(py(t.value)), escape(t.label))
  end
  for _, t in ipairs(xticks) do
    emit('<text class="xtick" x="%s" y="%s" text-anchor="middle">%s</text>\n',
      num(px(t.value)), num(top + ph + 8 + FONT), escape(t.label))
  end

  -- Axes: the plot area's frame.
  emit('<rect class="axes" x="%s" y="%s" width="%s" height="%s" fill="none" stroke="black" stroke-width="1"/>\n',
    num(left), num(top), num(pw), num(ph))

  -- Title and axis labels.
  if o.title then
    -- centred over the plot, but kept inside the picture when the title is wider than the plot
    local half = text_width(o.title) * 16 / FONT * 1.05 / 2
    local tx = math.max(half + 4, math.min(W - half - 4, left + pw / 2))
    emit('<text class="title" x="%s" y="%s" text-anchor="middle" font-size="16" font-weight="bold">%s</text>\n',
      num(tx), num(top / 2 + 6), escape(o.title))
  end
  if o.xlabel then
    emit('<text class="xlabel" x="%s" y="%s" text-anchor="middle" font-size="13">%s</text>\n',
      num(left + pw / 2), num(H - 10), escape(o.xlabel))
  end
  if o.ylabel then
    local cx, cy = 16, top + ph / 2
    emit('<text class="ylabel" x="%s" y="%s" text-anchor="middle" font-size="13" transform="rotate(-90 %s %s)">%s</text>\n',
      num(cx), num(cy), num(cx), num(cy), escape(o.ylabel))
  end

  -- The series: one <polyline> per unbroken run of points, a dot for a point standing alone.
  local function style(i)
    local color = plot.colors[(i - 1) % #plot.colors + 1]
    local dash = plot.dashes[floor((i - 1) / #plot.colors) % #plot.dashes + 1]
    return color, dash
  end
  emit('<g clip-path="url(#plot-area)" fill="none" stroke-width="1.75" stroke-linejoin="round" stroke-linecap="round">\n')
  for i, s in ipairs(ss) do
    local color, dash = style(i)
    emit('<g class="series" id="series-%d" stroke="%s"%s>\n', i, color,
      dash and format(' stroke-dasharray="%s"', dash) or "")
    local run = {}
    local function flush()
      if #run == 1 then
        local x, y = run[1]:match("^(.-),(.*)$")
        emit('<circle cx="%s" cy="%s" r="2" fill="%s" stroke="none"/>\n', x, y, color)
      elseif #run > 1 then
        emit('<polyline points="%s"/>\n', table.concat(run, " "))
      end
      run = {}
    end
    for k = 1, #s.y do
      if s.keep[k] then
        run[#run + 1] = num(px(s.x[k])) .. "," .. num(py(s.y[k]))
      else
        flush()
      end
    end
    flush()
    emit('</g>\n')
  end
  emit('</g>\n')

  -- Legend: a framed box at the right of the plot area, one sample line and name per series.
  local lx, ly = left + pw + 16, top
  local row = FONT + 8
  emit('<g class="legend">\n')
  emit('<rect x="%s" y="%s" width="%s" height="%s" fill="white" stroke="#999999" stroke-width="1"/>\n',
    num(lx), num(ly), num(legend_w), num(#ss * row + 8))
  for i, s in ipairs(ss) do
    local color, dash = style(i)
    local yy = ly + 4 + (i - 0.5) * row
    emit('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>\n',
      num(lx + 8), num(yy), num(lx + 32), num(yy), color, dash and format(' stroke-dasharray="%s"', dash) or "")
    emit('<text x="%s" y="%s" dominant-baseline="middle">%s</text>\n', num(lx + 38), num(yy), escape(legend_name(s.name)))
  end
  emit('</g>\n')
  emit('</svg>\n')

  local svg = table.concat(out)
  if o.path then write_atomic(o.path, svg) end
  return svg
end

return plot
