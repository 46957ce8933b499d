-- The REPL driven as a person drives it: luagrad runs in a detached tmux session on a private
-- tmux server (its socket in the test's temporary directory), keys are typed with send-keys
-- and the screen is read back with capture-pane.
-- Every wait polls the screen with a timeout. HOME and LUAGRAD_HISTORY point into a fresh
-- temporary directory, so no test reads or writes the user's history.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").

package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local shell_quote, file_exists = util.shell_quote, util.file_exists

local ROOT, BUILD, LUAGRAD = util.ROOT, util.BUILD, util.LUAGRAD
local TIMEOUT = 10 -- seconds for anything to appear on the screen

local function sleep(seconds)
  os.execute("sleep " .. seconds)
end

-- A terminal running one program. term:type(text) types literally, term:key(name) presses
-- a key by tmux's name (Enter, Tab, Up, C-c, C-d).
local Terminal = {}
Terminal.__index = Terminal

local serial = 0

-- The tmux server is private to the terminal: its socket lies in `dir` (the test's temporary
-- HOME, removed afterwards), so nothing touches the user's own tmux sessions.
local function open_terminal(dir, env, program)
  serial = serial + 1
  local self = setmetatable({}, Terminal)
  self.socket = string.format("%s/tmux%d", dir, serial)
  self.name = string.format("lgspec%d", serial)
  self.tmux = "tmux -S " .. shell_quote(self.socket) .. " -f /dev/null"
  local vars = {}
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. shell_quote(v) end
  table.sort(vars)
  -- after the program ends the pane stays, showing its exit status
  local command = string.format("env %s %s; echo \"[exit $?]\"; sleep 600",
                                table.concat(vars, " "), program)
  local ok = os.execute(string.format("%s new-session -d -s %s -x 100 -y 40 -c %s %s",
                                      self.tmux, self.name, shell_quote(ROOT),
                                      shell_quote(command)))
  assert(ok, "tmux new-session failed")
  return self
end

function Terminal:close()
  os.execute(self.tmux .. " kill-server 2>/dev/null")
  os.remove(self.socket)
end

function Terminal:type(text)
  -- tmux reads a ';' ending an argument as the end of its command: "\;" is a literal one
  assert(os.execute(string.format("%s send-keys -t %s -l %s", self.tmux, self.name,
                                  shell_quote((text:gsub(";$", "\\;"))))))
end

function Terminal:key(name)
  assert(os.execute(string.format("%s send-keys -t %s %s", self.tmux, self.name, name)))
end

-- The screen (and what scrolled off it) as a list of lines without trailing blanks.
function Terminal:lines()
  local text = util.run(string.format("%s capture-pane -p -J -S -500 -t %s", self.tmux, self.name))
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line:gsub("%s+$", "") end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  return lines
end

-- Polls the screen until pred(lines) is true; fails with the screen shown on timeout.
function Terminal:wait(pred, what)
  local deadline = os.time() + TIMEOUT
  local lines
  repeat
    lines = self:lines()
    if pred(lines) then return lines end
    sleep(0.05)
  until os.time() > deadline
  error(string.format("timed out waiting for %s; the screen was:\n%s", what,
                      table.concat(lines, "\n")), 2)
end

-- Waits until the last line of the screen is exactly `line`.
function Terminal:wait_last(line)
  return self:wait(function(lines) return lines[#lines] == line end,
                   string.format("the last line to be %q", line))
end

-- Waits for an empty prompt on the last line.
function Terminal:wait_prompt()
  return self:wait_last(">")
end

-- Types a line and presses Enter.
function Terminal:enter(text)
  self:type(text)
  self:key("Enter")
end

-- The lines after the last line equal to `line`, up to (not including) the final prompt.
local function output_after(lines, line)
  local at
  for i = #lines, 1, -1 do
    if lines[i] == line then at = i; break end
  end
  assert(at, "no line " .. line)
  local out = {}
  for i = at + 1, #lines do out[#out + 1] = lines[i] end
  if out[#out] == ">" then out[#out] = nil end
  return out
end

local BANNER = '^luagrad %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)  lg = require "luagrad" is loaded; help%(%) for help$'

describe("the luagrad REPL", function()
  local term, home

  local function start(extra_env)
    local env = {HOME = home, LUAGRAD_HISTORY = home .. "/history", INPUTRC = "/dev/null",
                 LUA_INIT = "", LUA_INIT_5_4 = ""}
    for k, v in pairs(extra_env or {}) do env[k] = v end
    term = open_terminal(home, env, shell_quote(LUAGRAD))
    return term:wait_prompt()
  end

  -- Types a line at the prompt and returns what it printed once the next prompt is shown.
  local function eval(line)
    term:enter(line)
    local lines = term:wait(function(l)
      local after = false
      for i = #l, 1, -1 do
        if l[i] == "> " .. line then after = i < #l and l[#l] == ">"; break end
      end
      return after
    end, "the result of " .. line)
    return output_after(lines, "> " .. line)
  end

  setup(function()
    assert(file_exists(LUAGRAD), LUAGRAD .. " is missing: build it first (LUAGRAD_BUILD="
                                 .. BUILD .. ")")
    assert(os.execute("tmux -V >/dev/null 2>&1"), "tmux is not installed")
  end)

  before_each(function()
    home = util.tmpdir()
  end)

  after_each(function()
    if term then term:close() end
    term = nil
    util.remove_dir(home)
  end)

  it("prints a banner and sets the global lg", function()
    local lines = start()
    assert.truthy(lines[1]:match(BANNER), "banner: " .. lines[1])
    assert.are.same({'"table"'}, eval("type(lg)"))
    assert.are.same({"true"}, eval('lg == require "luagrad"'))
  end)

  it("prints the value of an expression without return", function()
    start()
    assert.are.same({"3"}, eval("1 + 2"))
    assert.are.same({"2.5"}, eval("5 / 2"))
    assert.are.same({'"hello"'}, eval('"hel" .. "lo"'))
    assert.are.same({}, eval("x = 10")) -- a statement prints nothing
    assert.are.same({"20"}, eval("x * 2"))
    assert.are.same({"nil"}, eval("nil"))
    assert.are.same({"6.5"}, eval("lg.tensor({1.5, 2, 3}):sum():item()"))
  end)

  it("shows tensors by their __tostring", function()
    local expected = util.run(shell_quote(LUAGRAD)
      .. [[ -e 'io.write(tostring(require("luagrad").ones(2, 3)))']])
    local want = {}
    for line in (expected .. "\n"):gmatch("(.-)\n") do want[#want + 1] = line:gsub("%s+$", "") end
    while want[#want] == "" do want[#want] = nil end
    assert.is_true(#want >= 1)
    start()
    assert.are.same(want, eval("lg.ones(2, 3)"))
  end)

  it("continues an incomplete chunk on a >> line", function()
    start()
    term:enter("1 +")
    term:wait_last(">>")
    term:enter("2")
    local lines = term:wait_prompt()
    assert.are.same({">> 2", "3"}, output_after(lines, "> 1 +"))

    term:enter("s = 0")
    term:wait_prompt()
    term:enter("for i = 1, 4 do")
    term:wait_last(">>")
    term:enter("s = s + i")
    term:wait_last(">>")
    term:enter("end return s")
    lines = term:wait_prompt()
    assert.are.same({">> s = s + i", ">> end return s", "10"},
                    output_after(lines, "> for i = 1, 4 do"))
  end)

  it("reports an error with a traceback and goes on", function()
    start()
    local out = eval('error("boom")')
    assert.are.equal("stdin:1: boom", out[1])
    assert.are.equal("stack traceback:", out[2])
    assert.are.equal("[C]: in function 'error'", out[3]:match("^%s*(.-)$"))
    assert.are.same({"42"}, eval("40 + 2"))
    out = eval("nosuch.field")
    assert.truthy(out[1]:find("attempt to index a nil value (global 'nosuch')", 1, true), out[1])
    out = eval("x = = 1") -- as lua.c, a syntax error is reported for the line as a statement
    assert.are.equal("stdin:1: unexpected symbol near '='", out[1])
    assert.are.same({"7"}, eval("7"))
  end)

  it("completes globals, table fields and tensor methods with Tab", function()
    start()
    term:type("lg.ze")
    term:key("Tab")
    term:wait_last("> lg.zeros")
    term:enter("(2, 3):numel()")
    local lines = term:wait_prompt()
    assert.are.same({"6"}, output_after(lines, "> lg.zeros(2, 3):numel()"))

    eval("config = {optim = {learning_rate = 0.5, momentum = 0.9}}")
    term:type("config.optim.lea")
    term:key("Tab")
    term:wait_last("> config.optim.learning_rate")
    term:key("Enter")
    lines = term:wait_prompt()
    assert.are.same({"0.5"}, output_after(lines, "> config.optim.learning_rate"))

    eval("t = lg.ones(4)")
    term:type("t:nume")
    term:key("Tab")
    term:wait_last("> t:numel(")
    term:enter(")")
    lines = term:wait_prompt()
    assert.are.same({"4"}, output_after(lines, "> t:numel()"))

    term:type("t.sh") -- fields that the tensor's __index answers in C
    term:key("Tab")
    term:wait_last("> t.shape")
    term:key("Enter")
    lines = term:wait_prompt()
    assert.are.same({"{4}"}, output_after(lines, "> t.shape"))

    term:type("string.up")
    term:key("Tab")
    term:wait_last("> string.upper")
    term:enter('("abc")')
    lines = term:wait_prompt()
    assert.are.same({'"ABC"'}, output_after(lines, '> string.upper("abc")'))
  end)

  it("keeps history across sessions", function()
    start()
    assert.are.same({}, eval("answer = 6 * 7"))
    term:key("C-d")
    term:wait_last("[exit 0]")
    term:close()

    local saved = util.read_file(home .. "/history")
    assert.truthy(saved:find("answer = 6 * 7", 1, true), saved)

    start()
    term:key("Up")
    term:wait_last("> answer = 6 * 7")
    term:key("Enter")
    term:wait_prompt()
    assert.are.same({"42"}, eval("answer"))
  end)

  it("falls back to ~/.luagrad_history", function()
    start({LUAGRAD_HISTORY = ""})
    eval("remembered = 1")
    term:key("C-d")
    term:wait_last("[exit 0]")
    local saved = util.read_file(home .. "/.luagrad_history")
    assert.truthy(saved:find("remembered = 1", 1, true), saved)
  end)

  it("pretty-prints tables", function()
    start()
    assert.are.same({'{1, 2, 3, sub = {a = "x"}, x = 4}'}, eval('{1, 2, 3, x = 4, sub = {a = "x"}}'))
    assert.are.same({'{3, 1, [10] = true, b = "two", ["not an id"] = 0}'},
                    eval('{3, 1, b = "two", [10] = true, ["not an id"] = 0}'))
    assert.are.same({"{}"}, eval("{}"))
    assert.are.same({"{{{{...}}}}"}, eval("{{{{{1}}}}}"))
    eval("c = {name = 'c'}; c.self = c")
    assert.are.same({'{name = "c", self = <cycle>}'}, eval("c"))
    assert.are.same({'"tab\\there"'}, eval('"tab\\there"'))
  end)

  it("interrupts a running chunk with Ctrl-C, and drops the line at the prompt", function()
    start()
    term:enter("while true do end")
    sleep(0.3)
    term:key("C-c")
    local lines = term:wait_prompt()
    local out = output_after(lines, "> while true do end")
    assert.truthy(out[1]:find("interrupted!", 1, true), out[1])
    assert.are.same({"5"}, eval("2 + 3"))

    term:type("this line is dropped")
    term:wait_last("> this line is dropped")
    term:key("C-c")
    term:wait_prompt()
    assert.are.same({"8"}, eval("4 * 2"))
  end)

  -- The entry of `name` as docs/reference/<page> has it: what help prints for it (the signature
  -- and where it is, a blank line, the text up to the next heading, without trailing blanks).
  local function entry_lines(page, name)
    local path = "docs/reference/" .. page
    local text = assert(util.read_file(path), "cannot read " .. path)
    local lines = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    for i, line in ipairs(lines) do
      local sig = line:match("^###%s+`([^`]+)`")
      if sig and (sig == name or sig:sub(1, #name + 1) == name .. "(") then
        local out = {sig .. "    [" .. path .. ":" .. i .. "]", ""}
        local j = i + 1
        while lines[j] and not lines[j]:match("^#") do
          out[#out + 1] = lines[j]:gsub("%s+$", "")
          j = j + 1
        end
        while out[#out] == "" do out[#out] = nil end
        while out[3] == "" do table.remove(out, 3) end
        return out
      end
    end
    error("no entry " .. name .. " in " .. path)
  end

  -- The first n lines of a list.
  local function head(list, n)
    local out = {}
    for i = 1, math.min(n, #list) do out[i] = list[i] end
    return out
  end

  it("prints a reference entry with help(x) and ?x", function()
    start()
    local want = entry_lines("optim.md", "lg.optim.AdamW")
    assert.are.same(want, head(eval("help(lg.optim.AdamW)"), #want))
    want = entry_lines("nn.md", "lg.nn.Linear")
    local out = eval("?lg.nn.Linear")
    assert.are.same(want, head(out, #want))
    assert.are.same({"", "Entries under lg.nn.Linear (?lg.nn.Linear.<name> shows one):",
                     "  forward  reset_parameters  extra_repr"}, {table.unpack(out, #want + 1)})
    -- a method through a value, a field of a tensor, a method an instance inherits, an instance
    eval("t = lg.ones(2)")
    want = entry_lines("tensor.md", "Tensor:sum")
    assert.are.same(want, head(eval("?t:sum"), #want))
    assert.are.same(entry_lines("tensor.md", "Tensor.shape"), eval("?t.shape"))
    eval("model = lg.nn.Sequential(lg.nn.Linear(2, 3))")
    assert.are.same(entry_lines("nn.md", "lg.nn.Module:parameters"), eval("?model:parameters"))
    out = eval("help(model)")
    want = entry_lines("nn.md", "lg.nn.Sequential")
    assert.are.same(want[1], out[1])
    assert.are.same("(an instance of lg.nn.Sequential)", out[2])
    -- a last name alone, with arguments typed after it; a function value
    want = entry_lines("lg.md", "lg.zeros")
    assert.are.same(want, head(eval("?zeros(2, 3)"), #want))
    assert.are.same(want, head(eval("help(lg.zeros)"), #want))
    -- several entries share a last name; none has it; not luagrad's
    out = eval("?step")
    assert.are.same("help: 5 entries are named 'step'; ask for one of them:", out[1])
    assert.truthy(out[2]:find("lg.optim.Optimizer:step", 1, true), out[2])
    assert.are.same({"help: no reference entry for 'nosuch' (docs/reference.md lists them)"}, eval("?nosuch"))
    assert.are.same({"help: no reference entry for this function (not a public value of luagrad?)"},
                    eval("help(print)"))
    -- help() and ? alone list what the REPL offers
    out = eval("?")
    assert.are.same("luagrad's REPL:", out[1])
    assert.are.same(out, eval("help()"))
  end)

  it("says so when the program has no reference pages", function()
    start()
    eval('package.preload["luagrad.reference_pages"] = nil')
    local out = eval("help(lg.zeros)")
    assert.are.same(1, #out)
    assert.truthy(out[1]:match("^help: no reference pages in this program%."), out[1])
    assert.are.same({"3"}, eval("1 + 2")) -- and the session goes on
  end)

  it("carries the reference into an installed tree; a stock lua5.4 says it has none", function()
    local prefix = home .. "/prefix"
    local log = util.run(string.format("cmake --install %s --prefix %s 2>&1", shell_quote(BUILD),
                                       shell_quote(prefix)))
    assert(file_exists(prefix .. "/bin/luagrad"), log)
    local env = {HOME = home, LUAGRAD_HISTORY = home .. "/history", INPUTRC = "/dev/null",
                 LUA_INIT = "", LUA_INIT_5_4 = ""}
    term = open_terminal(home, env, shell_quote(prefix .. "/bin/luagrad"))
    term:wait_prompt()
    local want = entry_lines("optim.md", "lg.optim.AdamW")
    assert.are.same(want, head(eval("help(lg.optim.AdamW)"), #want))

    local out = util.run(util.stock_lua() .. [[ -e 'require("luagrad.help")(require("luagrad").zeros)' 2>&1]])
    assert.truthy(out:match("^help: no reference pages in this program%."), out)
  end)

  it("keeps the last result in _ and prints nothing after a trailing ';'", function()
    start()
    assert.are.same({"3"}, eval("1 + 2"))
    assert.are.same({"30"}, eval("_ * 10"))
    assert.are.same({}, eval("lg.ones(3);"))
    assert.are.same({"3"}, eval("_:numel()"))
    assert.are.same({}, eval("y = 5;")) -- a statement has no result: _ stays
    assert.are.same({"3"}, eval("_"))
    assert.are.same({}, eval("1, 2;"))
    assert.are.same({"1"}, eval("_")) -- the first of several
  end)

  it("times a chunk with %time", function()
    start()
    local out = eval("%time s = 0 for i = 1, 1e5 do s = s + i end")
    assert.are.equal(1, #out)
    assert.truthy(out[1]:match("^wall time: %d+%.%d+ [mu]?s$"), out[1])
    assert.are.same({"5000050000"}, eval("s // 1"))
    out = eval("%time 6 * 7")
    assert.truthy(out[1]:match("^wall time: "), out[1])
    assert.are.same({"42"}, {out[2]})
    assert.are.same({"usage: %time <statement or expression>"}, eval("%time"))
    assert.are.same({"unknown REPL command '%foo' (the commands are %time and ?name)"}, eval("%foo"))
  end)

  it("completes methods, children and parameters of module instances", function()
    start()
    eval("model = lg.nn.Module()")
    eval("model.fc1 = lg.nn.Linear(2, 3)")
    term:type("model:par")
    term:key("Tab")
    term:wait_last("> model:parameters(")
    term:enter(")[1]:numel()")
    local lines = term:wait_prompt()
    assert.are.same({"6"}, output_after(lines, "> model:parameters()[1]:numel()"))

    term:type("model.fc")
    term:key("Tab")
    term:wait_last("> model.fc1")
    term:type(".wei")
    term:key("Tab")
    term:wait_last("> model.fc1.weight")
    term:enter(":numel()")
    lines = term:wait_prompt()
    assert.are.same({"6"}, output_after(lines, "> model.fc1.weight:numel()"))

    term:type("model.fc1:res") -- a method the class defines
    term:key("Tab")
    term:wait_last("> model.fc1:reset_parameters(")
    term:key("C-c")
    term:wait_prompt()
  end)

  it("completes file names inside a string", function()
    util.write_file(home .. "/sample_data.csv", "a,b\n")
    assert(os.execute("mkdir " .. shell_quote(home .. "/subdir")))
    start()
    local typed = 'f = io.open("' .. home .. "/sample_d"
    term:type(typed)
    term:key("Tab")
    term:wait_last("> " .. 'f = io.open("' .. home .. '/sample_data.csv"') -- and the closing quote
    term:enter(")")
    term:wait_prompt()
    assert.are.same({[["a,b\n"]]}, eval('f:read("a")'))

    term:type('"' .. home .. "/subd")
    term:key("Tab")
    term:wait_last('> "' .. home .. '/subdir/')
    term:key("C-c")
    term:wait_prompt()
  end)

  it("exits with status 0 on Ctrl-D", function()
    start()
    term:key("C-d")
    term:wait_last("[exit 0]")
  end)
end)

-- luagrad.help in this process (the spec runs under build/luagrad, which carries the reference
-- pages): every entry is found by its name, and every function and class of lg by its value.
describe("luagrad.help", function()
  local help = require "luagrad.help"

  setup(function()
    assert(package.preload["luagrad.reference_pages"],
           "no luagrad.reference_pages: run this spec under build/luagrad, which carries the reference")
  end)

  it("finds every entry of docs/reference/ by its name", function()
    local missing, n = {}, 0
    for _, page in ipairs(util.listdir("docs/reference")) do
      if page:match("%.md$") then
        local text = assert(util.read_file("docs/reference/" .. page))
        local in_code = false
        for line in (text .. "\n"):gmatch("(.-)\n") do
          if line:match("^%s*```") then in_code = not in_code end
          local sig = not in_code and line:match("^###%s+`([^`]+)`")
          if sig then
            n = n + 1
            local name = sig:match("^[%a_][%w_.:]*")
            local shown = help.text(name)
            if not (shown and shown:sub(1, #sig + 4) == sig .. "    ") then missing[#missing + 1] = name end
          end
        end
      end
    end
    assert.is_true(n > 300, "only " .. n .. " entries found")
    assert.are.same({}, missing)
  end)

  it("finds an entry for every function and class reachable from lg", function()
    local lg = require "luagrad"
    local missing, seen, n = {}, {}, 0
    local function walk(t, path, depth)
      if seen[t] or depth > 6 then return end
      seen[t] = true
      for k, v in pairs(t) do
        if type(k) == "string" and k:match("^%a") then
          local p = path .. "." .. k
          if type(v) == "function" or (type(v) == "table" and rawget(v, "__index") ~= nil) then
            n = n + 1
            if not help.text(v) then missing[#missing + 1] = p end
          end
          if type(v) == "table" then walk(v, p, depth + 1) end
        end
      end
    end
    walk(lg, "lg", 1)
    table.sort(missing)
    assert.is_true(n > 300, "only " .. n .. " values found")
    assert.are.same({}, missing)
  end)
end)
