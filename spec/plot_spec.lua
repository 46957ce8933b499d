-- lg.plot.line: SVG line charts. Every chart is parsed by a small XML well-formedness checker
-- written here (balanced tags, quoted attributes, known entities, one root), and the checks
-- read the parsed tree: tick labels, pixel coordinates, polylines, legend, escaping, errors and
-- the atomic write.
local plot = require "luagrad.plot"
local core = require "luagrad.core"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local read_file, listdir, error_of = util.read_file, util.listdir, util.error_of

-- ---- a minimal XML parser that rejects what is not well-formed -------------------------------

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }

local function decode(s, where)
  assert(not s:find("<", 1, true), where .. ": raw '<' in text or attribute")
  return (s:gsub("&([^;]*);?", function(name)
    if ENTITIES[name] then return ENTITIES[name] end
    local code = name:match("^#(%d+)$")
    if code then return utf8.char(tonumber(code)) end
    error(where .. ": bad entity &" .. name)
  end))
end

local NAME = "[%a_:][%w_:%.%-]*"

-- Returns the root element {name, attrs, children, text} or raises naming the problem.
local function parse_xml(s)
  local pos, stack, root = 1, {}, nil
  local function text_node(t)
    if t:match("^%s*$") then return end
    assert(#stack > 0, "text outside the root element")
    local top = stack[#stack]
    top.text = (top.text or "") .. decode(t, "text")
  end
  while pos <= #s do
    local lt = s:find("<", pos, true)
    if not lt then
      text_node(s:sub(pos))
      break
    end
    text_node(s:sub(pos, lt - 1))
    if s:sub(lt, lt + 3) == "<!--" then
      local e = assert(s:find("-->", lt + 4, true), "unterminated comment")
      assert(not s:sub(lt + 4, e - 1):find("--", 1, true), "'--' inside a comment")
      pos = e + 3
    elseif s:sub(lt, lt + 1) == "<?" then
      assert(lt == 1 or s:sub(1, lt - 1):match("^%s*$"), "XML declaration not at the start")
      pos = assert(s:find("?>", lt, true), "unterminated declaration") + 2
    elseif s:sub(lt, lt + 1) == "</" then
      local name, e = s:match("^</(" .. NAME .. ")%s*>()", lt)
      assert(name, "bad closing tag at " .. lt)
      local open = table.remove(stack)
      assert(open, "closing </" .. name .. "> with nothing open")
      assert(open.name == name, "closing </" .. name .. "> does not match <" .. open.name .. ">")
      pos = e
    else
      local name, p = s:match("^<(" .. NAME .. ")()", lt)
      assert(name, "bad tag at " .. lt .. ": " .. s:sub(lt, lt + 20))
      local el = { name = name, attrs = {}, children = {} }
      while true do
        local ws, after = s:match("^(%s*)()", p)
        p = after
        if s:sub(p, p + 1) == "/>" then p = p + 2; el.empty = true; break end
        if s:sub(p, p) == ">" then p = p + 1; break end
        assert(#ws > 0, "attributes of <" .. name .. "> not separated by space")
        local an, q, e = s:match("^(" .. NAME .. ')%s*=%s*(["\'])()', p)
        assert(an, "unquoted or malformed attribute in <" .. name .. "> at " .. s:sub(p, p + 20))
        local close = assert(s:find(q, e, true), "unterminated attribute value")
        assert(el.attrs[an] == nil, "duplicate attribute " .. an)
        el.attrs[an] = decode(s:sub(e, close - 1), "attribute " .. an)
        p = close + 1
      end
      if #stack > 0 then
        local parent = stack[#stack]
        parent.children[#parent.children + 1] = el
      else
        assert(root == nil, "a second root element <" .. name .. ">")
        root = el
      end
      if not el.empty then stack[#stack + 1] = el end
      pos = p
    end
  end
  if #stack > 0 then error("unclosed <" .. stack[#stack].name .. ">") end
  assert(root, "no root element")
  return root
end

-- All elements named `name` (and matching `class` when given), in document order.
local function find_all(el, name, class, out)
  out = out or {}
  if el.name == name and (class == nil or el.attrs.class == class) then out[#out + 1] = el end
  for _, c in ipairs(el.children) do find_all(c, name, class, out) end
  return out
end

local function texts(root, class)
  local t = {}
  for _, el in ipairs(find_all(root, "text", class)) do t[#t + 1] = el.text end
  return t
end

local function points(polyline)
  local pts = {}
  for x, y in polyline.attrs.points:gmatch("([%-%d%.]+),([%-%d%.]+)") do
    pts[#pts + 1] = { tonumber(x), tonumber(y) }
  end
  return pts
end

local function range(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end

-- ---------------------------------------------------------------------------------------------

describe("plot.line", function()
  describe("the XML checker itself", function()
    it("accepts a well-formed document and rejects broken ones", function()
      local root = parse_xml('<?xml version="1.0"?><a x="1"><b y=\'2\'/>t &amp; u<!-- c --></a>')
      assert.are.equal("a", root.name)
      assert.are.equal("2", root.children[1].attrs.y)
      assert.are.equal("t & u", root.text)
      assert.has_error(function() parse_xml("<a><b></a></b>") end)
      assert.has_error(function() parse_xml("<a x=1></a>") end)
      assert.has_error(function() parse_xml("<a>x < y</a>") end)
      assert.has_error(function() parse_xml("<a>&nbsp;</a>") end)
      assert.has_error(function() parse_xml("<a></a><b></b>") end)
      assert.has_error(function() parse_xml("<a><b></a>") end)
      assert.has_error(function() parse_xml("<a><!-- x -- y --></a>") end)
    end)
  end)

  describe("document", function()
    local svg = plot.line({
      { name = "SGD", y = range(20, function(i) return 1 / i end) },
      { name = "Momentum", y = range(20, function(i) return 0.8 / i end) },
      { name = "Adam", x = range(20, function(i) return i end), y = range(20, function(i) return 0.5 / i end) },
    }, { title = "Loss", xlabel = "step", ylabel = "loss" })
    local root = parse_xml(svg)

    it("is one <svg> root of SVG 1.1 with a viewBox and the default size", function()
      assert.are.equal("svg", root.name)
      assert.are.equal("http://www.w3.org/2000/svg", root.attrs.xmlns)
      assert.are.equal("1.1", root.attrs.version)
      assert.are.equal("0 0 720 440", root.attrs.viewBox)
      assert.are.equal("720", root.attrs.width)
      assert.are.equal("440", root.attrs.height)
      assert.truthy(svg:match("^<%?xml version=\"1.0\""))
    end)

    it("draws one polyline per series, in distinct colours, each with a legend entry", function()
      local polylines = find_all(root, "polyline")
      assert.are.equal(3, #polylines)
      local groups = find_all(root, "g", "series")
      assert.are.equal(3, #groups)
      for i, g in ipairs(groups) do
        assert.are.equal(plot.colors[i], g.attrs.stroke)
        assert.are.equal(20, #points(find_all(g, "polyline")[1]))
      end
      local legend = find_all(root, "g", "legend")[1]
      assert.are.same({ "SGD", "Momentum", "Adam" }, texts(legend))
      local samples = find_all(legend, "line")
      for i = 1, 3 do assert.are.equal(plot.colors[i], samples[i].attrs.stroke) end
    end)

    it("has the title and axis labels, the y label rotated", function()
      assert.are.same({ "Loss" }, texts(root, "title"))
      assert.are.same({ "step" }, texts(root, "xlabel"))
      assert.are.same({ "loss" }, texts(root, "ylabel"))
      local yl = find_all(root, "text", "ylabel")[1]
      assert.truthy(yl.attrs.transform:match("^rotate%(%-90 "))
    end)

    it("clips the lines to the plot area", function()
      local clip = find_all(root, "clipPath")[1]
      assert.are.equal("plot-area", clip.attrs.id)
      local crect, axes = find_all(clip, "rect")[1], find_all(root, "rect", "axes")[1]
      for _, k in ipairs { "x", "y", "width", "height" } do assert.are.equal(axes.attrs[k], crect.attrs[k]) end
      local holder
      for _, g in ipairs(find_all(root, "g")) do
        if g.attrs["clip-path"] then holder = g end
      end
      assert.are.equal("url(#plot-area)", holder.attrs["clip-path"])
      assert.are.equal(3, #find_all(holder, "polyline"))
    end)
  end)

  describe("ticks", function()
    it("labels y from 0 to 1 as 0, 0.2, ..., 1 and x 1..10 by twos", function()
      local root = parse_xml(plot.line({ { name = "a", y = range(10, function(i) return (i - 1) / 9 end) } }))
      assert.are.same({ "0", "0.2", "0.4", "0.6", "0.8", "1" }, texts(root, "ytick"))
      assert.are.same({ "0", "2", "4", "6", "8", "10" }, texts(root, "xtick"))
    end)

    it("prints decimal steps exactly (0.15, not 0.15000000000000002)", function()
      local root = parse_xml(plot.line({ { name = "a", x = { 0.1, 0.2, 0.3 }, y = { 0.1, 0.2, 0.3 } } }))
      assert.are.same({ "0.1", "0.15", "0.2", "0.25", "0.3" }, texts(root, "ytick"))
      for _, l in ipairs(texts(root, "xtick")) do assert.truthy(#l <= 5, l) end
      assert.are.same({ "0.1", "0.15", "0.2", "0.25", "0.3" }, texts(root, "xtick"))
    end)

    it("picks 1, 2 or 5 times a power of ten and widens the limits to whole steps", function()
      local cases = {
        { -1, 1, 5, -1, 1, { "-1", "-0.5", "0", "0.5", "1" } },
        { 3, 97, 5, 0, 100, { "0", "20", "40", "60", "80", "100" } },
        { 0.31, 0.93, 6, 0.2, 1, { "0.2", "0.4", "0.6", "0.8", "1" } },
        { 0.31, 0.93, 7, 0.3, 1, { "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1" } },
        { 0, 2e6, 4, 0, 2e6, { "0", "5e5", "1e6", "1.5e6", "2e6" } },
        { 1e-5, 5e-5, 4, 1e-5, 5e-5, { "1e-5", "2e-5", "3e-5", "4e-5", "5e-5" } },
        { 2, 2, 5, 1, 3, { "1", "1.5", "2", "2.5", "3" } },
        { 0, 0, 5, -1, 1, { "-1", "-0.5", "0", "0.5", "1" } },
      }
      for _, c in ipairs(cases) do
        local lo, hi, ticks = plot._linear_axis(c[1], c[2], c[3])
        local labels = {}
        for i, t in ipairs(ticks) do labels[i] = t.label end
        assert.are.same(c[6], labels, ("range %g..%g"):format(c[1], c[2]))
        assert.are.near(c[4], lo, 1e-12)
        assert.are.near(c[5], hi, 1e-12)
      end
    end)

    it("uses whole-number steps for an integer x axis", function()
      local root = parse_xml(plot.line({ { name = "a", x = { 1, 2, 3 }, y = { 3, 1, 2 } } }))
      assert.are.same({ "1", "2", "3" }, texts(root, "xtick"))
    end)

    it("puts log-y ticks on powers of ten with minor ticks between", function()
      local y = { 0.003, 0.05, 1, 7, 20 }
      local root = parse_xml(plot.line({ { name = "a", y = y } }, { logy = true }))
      local labels = texts(root, "ytick")
      assert.are.same({ "0.001", "0.01", "0.1", "1", "10", "100" }, labels)
      for _, l in ipairs(labels) do
        local e = math.log(tonumber(l), 10)
        assert.are.near(math.floor(e + 0.5), e, 1e-9)
      end
      -- 2..9 x 10^k for the five decades 0.001..100
      assert.are.equal(40, #find_all(root, "line", "yminor"))
      -- decades are evenly spaced in pixels
      local ys = {}
      for i, el in ipairs(find_all(root, "text", "ytick")) do ys[i] = tonumber(el.attrs.y) end
      for i = 2, #ys - 1 do assert.are.near(ys[2] - ys[1], ys[i + 1] - ys[i], 0.02) end
    end)

    it("writes far decades as 1eK and thins them when there are many", function()
      local lo, hi, ticks, minor = plot._log_axis(1e-12, 1e8)
      assert.are.equal(1e-12, lo)
      assert.are.equal(1e8, hi)
      local labels = {}
      for i, t in ipairs(ticks) do labels[i] = t.label end
      assert.are.same({ "1e-12", "1e-9", "1e-6", "0.001", "1", "1000", "1e6" }, labels)
      assert.are.equal(0, #minor)
    end)
  end)

  describe("coordinates", function()
    it("maps data to pixels inside the axes rectangle", function()
      local svg = plot.line({ { name = "a", x = { 0, 5, 10 }, y = { 0, 0.5, 1 } } }, { width = 600, height = 300 })
      local root = parse_xml(svg)
      assert.are.equal("0 0 600 300", root.attrs.viewBox)
      local axes = find_all(root, "rect", "axes")[1].attrs
      local x0, y0, w, h = tonumber(axes.x), tonumber(axes.y), tonumber(axes.width), tonumber(axes.height)
      -- no title, no axis labels: 20 px above, 36 below; widest y label "0.2" -> 40 px left
      assert.are.equal(40, x0)
      assert.are.equal(20, y0)
      assert.are.equal(300 - 20 - 36, h)
      assert.are.same({ "0", "2", "4", "6", "8", "10" }, texts(root, "xtick"))
      local pts = points(find_all(root, "polyline")[1])
      assert.are.same({ { x0, y0 + h }, { x0 + w / 2, y0 + h / 2 }, { x0 + w, y0 } }, pts)
      -- tick marks sit on the values: x tick "4" at 40% of the width
      local xt = find_all(root, "text", "xtick")
      assert.are.near(x0 + 0.4 * w, tonumber(xt[3].attrs.x), 0.005)
    end)

    it("maps log-y by decades", function()
      local root = parse_xml(plot.line({ { name = "a", x = { 0, 1, 2 }, y = { 1, 10, 100 } } }, { logy = true }))
      local axes = find_all(root, "rect", "axes")[1].attrs
      local y0, h = tonumber(axes.y), tonumber(axes.height)
      local pts = points(find_all(root, "polyline")[1])
      assert.are.near(y0 + h, pts[1][2], 0.005)
      assert.are.near(y0 + h / 2, pts[2][2], 0.005)
      assert.are.near(y0, pts[3][2], 0.005)
    end)

    it("honours xlim and ylim, keeping lines clipped", function()
      local root = parse_xml(plot.line({ { name = "a", x = { 0, 10 }, y = { 0, 10 } } },
        { xlim = { 0, 5 }, ylim = { 0, 5 } }))
      assert.are.same({ "0", "1", "2", "3", "4", "5" }, texts(root, "ytick"))
      local axes = find_all(root, "rect", "axes")[1].attrs
      local pts = points(find_all(root, "polyline")[1])
      -- the second point lies outside the area (the clip path hides it)
      assert.are.near(tonumber(axes.x) + 2 * tonumber(axes.width), pts[2][1], 0.01)
      assert.are.near(tonumber(axes.y) - tonumber(axes.height), pts[2][2], 0.01)
    end)
  end)

  describe("gaps and odd values", function()
    it("breaks the line at NaN and infinite points and marks a lone point with a dot", function()
      local svg = plot.line({
        { name = "a", y = { 1, 2, 0 / 0, 3, 4, math.huge, 5, -math.huge, 6, 7 } },
      })
      local root = parse_xml(svg)
      -- runs {1, 2} {3, 4} {5} {6, 7}
      local lines = find_all(root, "polyline")
      assert.are.equal(3, #lines)
      for i = 1, 3 do assert.are.equal(2, #points(lines[i])) end
      assert.are.equal(1, #find_all(find_all(root, "g", "series")[1], "circle"))
      assert.truthy(svg:find("<!-- series 1 (a): skipped 3 NaN or infinite points -->", 1, true))
    end)

    it("skips non-positive values on a log axis and says so in a comment", function()
      local svg = plot.line({ { name = "x--y", y = { 1, 0, -2, 10, 100 } } }, { logy = true })
      local root = parse_xml(svg)
      assert.truthy(svg:find("<!-- series 1 (x- -y): skipped 2 non-positive y values (log-scale y) -->", 1, true))
      local lines = find_all(root, "polyline")
      assert.are.equal(1, #lines)
      assert.are.equal(2, #points(lines[1]))
      assert.are.same({ "1", "10", "100" }, texts(root, "ytick"))
    end)

    it("draws empty axes when no point is finite", function()
      local svg = plot.line({ { name = "diverged", y = { 0 / 0, 0 / 0 } } })
      local root = parse_xml(svg)
      assert.are.equal(0, #find_all(root, "polyline"))
      assert.truthy(svg:find("<!-- no finite points to draw -->", 1, true))
      assert.are.same({ "0", "0.2", "0.4", "0.6", "0.8", "1" }, texts(root, "ytick"))
    end)

    it("accepts y as a 1-d tensor and an indexable object", function()
      local y = { 0.5, 0.25, 0.125, 0.0625 }
      local from_table = plot.line({ { name = "t", y = y } })
      local from_tensor = plot.line({ { name = "t", y = core.tensor(y, { dtype = "float64" }) } })
      local proxy = setmetatable({}, { __len = function() return #y end, __index = function(_, i) return y[i] end })
      local from_proxy = plot.line({ { name = "t", y = proxy } })
      assert.are.equal(from_table, from_tensor)
      assert.are.equal(from_table, from_proxy)
    end)

    it("gives series beyond ten a dash pattern so every style differs", function()
      local series = {}
      for i = 1, 12 do series[i] = { name = "s" .. i, y = { i, i + 1 } } end
      local root = parse_xml(plot.line(series))
      local seen = {}
      for i, g in ipairs(find_all(root, "g", "series")) do
        local key = g.attrs.stroke .. "/" .. tostring(g.attrs["stroke-dasharray"])
        assert.is_nil(seen[key], "series " .. i .. " repeats " .. key)
        seen[key] = true
        if i <= 10 then assert.is_nil(g.attrs["stroke-dasharray"]) else assert.truthy(g.attrs["stroke-dasharray"]) end
      end
      assert.are.equal(12, #find_all(root, "polyline"))
    end)
  end)

  describe("escaping", function()
    it("escapes & < > \" in the title, labels and series names", function()
      local nasty = 'a & b < c > "d" \'e\''
      local svg = plot.line({ { name = nasty, y = { 1, 2 } } }, { title = nasty, xlabel = "<x>", ylabel = "y&" })
      assert.truthy(svg:find('a &amp; b &lt; c &gt; &quot;d&quot; &#39;e&#39;', 1, true))
      assert.is_nil(svg:find("<x>", 1, true))
      local root = parse_xml(svg)
      assert.are.same({ nasty }, texts(root, "title"))
      assert.are.same({ "<x>" }, texts(root, "xlabel"))
      assert.are.same({ "y&" }, texts(root, "ylabel"))
      assert.are.same({ nasty }, texts(find_all(root, "g", "legend")[1]))
    end)
  end)

  describe("legend", function()
    it("cuts names longer than 30 characters with an ellipsis and keeps the box inside the chart", function()
      local long = string.rep("abcdefghij", 5)
      local root = parse_xml(plot.line({ { name = long, y = { 1, 2 } }, { name = "short", y = { 2, 1 } } }))
      local legend = find_all(root, "g", "legend")[1]
      assert.are.same({ string.rep("abcdefghij", 3):sub(1, 29) .. "\u{2026}", "short" }, texts(legend))
      local box = find_all(legend, "rect")[1].attrs
      assert.truthy(tonumber(box.x) + tonumber(box.width) <= 720, box.x .. "+" .. box.width)
      assert.are.equal(2 * 20 + 8, tonumber(box.height))
    end)
  end)

  describe("bad input", function()
    local y10 = range(10, function(i) return i end)
    local cases = {
      { "empty series list", {}, nil, "plot.line: no series to plot (series is empty)" },
      { "series not a list", "loss", nil, "plot.line: series must be a list of tables, got string" },
      { "x and y lengths differ",
        { { name = "SGD", y = y10 }, { name = "Adam", x = y10, y = range(9, function(i) return i end) } }, nil,
        "plot.line: series 2 ('Adam') has 10 x values and 9 y values" },
      { "a string among y", { { name = "a", y = { 1, "2", 3 } } }, nil,
        "plot.line: series 1 ('a'): y[2] is string, not a number" },
      { "a nil x value", { { y = { 1, 2 }, x = { 1, n = 2 } } }, nil,
        "plot.line: series 1 ('series 1') has 1 x values and 2 y values" },
      { "no y", { { name = "a", x = { 1 } } }, nil, "plot.line: series 1 ('a') has no y values (y = nil)" },
      { "empty y", { { name = "a", y = {} } }, nil, "plot.line: series 1 ('a') has no points (y is empty)" },
      { "y a number", { { name = "a", y = 3 } }, nil,
        "plot.line: series 1 ('a') y must be a list of numbers or a 1-d tensor, got number" },
      { "2-d tensor", { { name = "a", y = core.zeros({ 2, 2 }) } }, nil,
        "plot.line: series 1 ('a') y must be 1-d, got a tensor of 2 dimensions" },
      { "series entry not a table", { { y = { 1 } }, 5 }, nil,
        "plot.line: series 2 must be a table {name=, x=, y=}, got number" },
      { "opts not a table", { { y = { 1 } } }, "big", "plot.line: opts must be a table, got string" },
      { "width too small", { { y = { 1 } } }, { width = 10 }, "plot.line: opts.width must be a number >= 200, got 10" },
      { "logy not boolean", { { y = { 1 } } }, { logy = "yes" }, "plot.line: opts.logy must be a boolean, got string" },
      { "bad ylim", { { y = { 1 } } }, { ylim = { 1, 0 } }, "plot.line: opts.ylim must be {lo, hi} with finite numbers lo < hi" },
      { "log ylim at 0", { { y = { 1 } } }, { logy = true, ylim = { 0, 1 } },
        "plot.line: opts.ylim must be positive with logy (got lo = 0)" },
    }
    for _, c in ipairs(cases) do
      it("rejects " .. c[1], function()
        local err = error_of(function() plot.line(c[2], c[3]) end)
        -- the message points at the caller's line, then says what was wrong
        assert.truthy(err:match("^[^:]*plot_spec%.lua:%d+: "), err)
        assert.are.equal(c[4], (err:gsub("^[^:]*:%d+: ", "")))
      end)
    end
  end)

  describe("writing a file", function()
    local dir
    before_each(function()
      dir = util.tmpdir()
    end)
    after_each(function() util.remove_dir(dir) end)

    it("writes the returned text atomically and leaves no temporary file", function()
      local path = dir .. "/loss.svg"
      util.write_file(path, "old")
      local svg = plot.line({ { name = "a", y = { 3, 2, 1 } } }, { path = path, title = "loss" })
      assert.are.equal(svg, read_file(path))
      assert.are.same({ "loss.svg" }, listdir(dir))
      parse_xml(read_file(path))
    end)

    it("raises naming the path when the directory does not exist, leaving nothing behind", function()
      local path = dir .. "/missing/loss.svg"
      local err = error_of(plot.line, { { name = "a", y = { 1, 2 } } }, { path = path })
      assert.truthy(err:find("plot.line: cannot write '" .. path .. "'", 1, true), err)
      assert.are.same({}, listdir(dir))
    end)
  end)
end)
