-- luagrad.help: the reference's entries (docs/reference/*.md), found by name or by value, for the
-- REPL's help(x) and ?x.
--
--   local help = require "luagrad.help"
--   help(lg.optim.AdamW)     -- prints the entry of `lg.optim.AdamW(params, opts)`
--   help("Tensor:sum")       -- by name (':' and '.' are alike); help("zeros") finds lg.zeros
--   help(model)              -- an instance: the entry of its class (lg.nn.Linear)
--   help.ask("model:forward") -- the REPL's `?model:forward`: a name, or a path through globals
--   help.text(x)             -- what help(x) prints, as a string (nil and a message if none)
--
-- The pages are not searched for on disk: the luagrad executable compiles docs/reference/*.md in
-- at build time (cmake/embed_reference.cmake) and offers them as the module
-- "luagrad.reference_pages", a table {["nn.md"] = text, ...}. So the entries are those of the
-- build that runs, wherever it runs from (the build tree, an install, a rock). A Lua host without
-- that module (a stock lua5.4) gets a message saying so, not an error.
--
-- An entry is what spec/docs_spec.lua checks: a level-3 heading whose text starts with the name
-- in backticks (### `lg.zeros(size..., opts)`), and the lines up to the next heading. A value is
-- named by walking require "luagrad" as that spec does (modules, classes and their methods under
-- the class that defines them, tensor methods as Tensor:name), so every public value it requires
-- an entry for is found here.

local M = {}

local PAGES_MODULE = "luagrad.reference_pages"
local WIDTH = 100 -- the column at which lists of names wrap

local function norm(name) return (name:gsub(":", ".")) end

local function is_public(k) return type(k) == "string" and k:match("^[%a][%w_]*$") ~= nil end

-- ---- the entries --------------------------------------------------------------------------

local cache -- {list = {entry...}, by_name = {normalized name -> entry}}

-- Parses one page into the cache. An entry: {name, sig, page, line, body = {lines}}.
local function parse_page(page, text, into)
  local in_code, current, lineno = false, nil, 0
  local function finish()
    if not current then return end
    local body = current.body
    while #body > 0 and not body[#body]:match("%S") do body[#body] = nil end
    while #body > 0 and not body[1]:match("%S") do table.remove(body, 1) end
    current = nil
  end
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    lineno = lineno + 1
    if line:match("^%s*```") then in_code = not in_code end
    if not in_code and line:match("^#") then
      finish()
      local sig = line:match("^###%s+`([^`]+)`")
      local name = sig and sig:match("^[%a_][%w_]*[%w_.:]*")
      if name and not name:match("[.:]$") then
        local key = norm(name)
        if not into.by_name[key] then
          current = { name = name, sig = sig, page = page, line = lineno, body = {} }
          into.by_name[key] = current
          into.list[#into.list + 1] = current
        end
      end
    elseif current then
      current.body[#current.body + 1] = line
    end
  end
  finish()
end

-- The parsed reference, or nil and a message saying why there is none.
local function reference()
  if cache then return cache end
  local ok, pages = pcall(require, PAGES_MODULE)
  if not ok or type(pages) ~= "table" or next(pages) == nil then
    return nil, "help: no reference pages in this program. The luagrad executable has them built in "
      .. "(from docs/reference/*.md); in another Lua host, read docs/reference.md of the sources."
  end
  local names = {}
  for page in pairs(pages) do names[#names + 1] = page end
  table.sort(names)
  local parsed = { list = {}, by_name = {} }
  for _, page in ipairs(names) do parse_page(page, pages[page], parsed) end
  cache = parsed
  return cache
end

-- ---- naming values: the walk spec/docs_spec.lua makes -------------------------------------

local function parent_of(t) -- the next table on a class's __index chain
  local mt = getmetatable(t)
  if type(mt) ~= "table" then return nil end
  local idx = rawget(mt, "__index")
  return type(idx) == "table" and idx or nil
end

local function is_class(t)
  return rawget(t, "__index") ~= nil or parent_of(t) ~= nil
end

local function try_index(t, k)
  local ok, v = pcall(function() return t[k] end)
  if ok then return v end
  return nil
end

-- value -> list of names it is reachable by ("lg.nn.Linear", "lg.nn.Module:parameters", ...).
local function value_names()
  local lg = require "luagrad"
  local names, path_of = {}, {}
  local function add(v, name)
    local l = names[v]
    if not l then
      l = {}
      names[v] = l
    end
    l[#l + 1] = name
  end
  -- a module is known by its module name (lg.nn.functional, not its alias lg.nn.F)
  for modname, t in pairs(package.loaded) do
    if type(modname) == "string" and type(t) == "table" and (modname == "luagrad" or modname:match("^luagrad%.")) then
      local path, v = "lg", lg
      for part in modname:gmatch("%.([^.]+)") do
        path = path .. "." .. part
        v = type(v) == "table" and try_index(v, part) or nil
      end
      if rawequal(v, t) then path_of[t] = path end
    end
  end
  local methods = lg.Tensor
  path_of[methods] = "Tensor"
  local classes, walked = {}, {}
  local function walk(t, path)
    walked[t] = true
    add(t, path)
    if t == methods then
      for k, v in pairs(t) do
        if is_public(k) and type(v) == "function" then add(v, "Tensor:" .. k) end
      end
      return
    end
    if is_class(t) then
      classes[#classes + 1] = { t = t, path = path }
      return
    end
    local keys, cur, seen = {}, t, {}
    while cur and not seen[cur] do -- own keys and those the __index chain supplies
      seen[cur] = true
      for k in next, cur do
        if is_public(k) then keys[#keys + 1] = k end
      end
      cur = parent_of(cur)
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v, p = try_index(t, k), path .. "." .. k
      if type(v) == "table" then
        if path_of[v] == nil then path_of[v] = p end
        if path_of[v] == p and not walked[v] then walk(v, p) end
      elseif type(v) == "function" then
        add(v, p)
      end
    end
  end
  walk(lg, "lg")
  walk(methods, "Tensor")
  for _, c in ipairs(classes) do -- a method under the class on the __index chain that defines it
    local cur, seen = c.t, {}
    while cur and not seen[cur] do
      seen[cur] = true
      local owner = (cur == c.t) and c.path or path_of[cur] or c.path
      for k, v in next, cur do
        if is_public(k) and type(v) == "function" then add(v, owner .. ":" .. k) end
      end
      cur = parent_of(cur)
    end
  end
  return names
end

-- ---- finding an entry -----------------------------------------------------------------------

local function by_name(ref, name) return ref.by_name[norm(name)] end

-- The first name of the list with an entry. A class's init is what calling the class runs, so
-- the constructor's entry covers it (as in spec/docs_spec.lua).
local function first_documented(ref, list)
  for _, name in ipairs(list or {}) do
    local e = by_name(ref, name) or by_name(ref, name:match("^(.+)[.:]init$") or "")
    if e then return e end
  end
end

local function is_tensor(v)
  if type(v) ~= "userdata" then return false end
  local lg = package.loaded.luagrad
  return lg ~= nil and lg.is_tensor(v)
end

-- The entry of a value, or nil; the second result notes how it was found ("an instance of ...").
local function entry_of_value(ref, v, names)
  if is_tensor(v) then return by_name(ref, "Tensor") end
  if type(v) ~= "table" and type(v) ~= "function" then return nil end
  names = names or value_names()
  local e = first_documented(ref, names[v])
  if e or type(v) ~= "table" then return e end
  -- an instance: its class, or the nearest documented class it derives from
  local cls, seen = getmetatable(v), {}
  while type(cls) == "table" and not seen[cls] do
    seen[cls] = true
    e = first_documented(ref, names[cls])
    if e then return e, "an instance of " .. e.name end
    cls = parent_of(cls)
  end
end

-- Entries whose name is `name`, or ends in "." or ":" followed by it ("step" ->
-- lg.optim.Optimizer:step, ...).
local function entries_ending(ref, name)
  local found, key = {}, norm(name)
  for _, e in ipairs(ref.list) do
    local n = norm(e.name)
    if n == key or n:sub(-#key - 1) == "." .. key then found[#found + 1] = e end
  end
  return found
end

-- Names joined into lines of at most WIDTH columns, each starting with indent.
local function wrap(words, indent)
  local lines, line = {}, indent
  for _, w in ipairs(words) do
    if #line > #indent and #line + 2 + #w > WIDTH then
      lines[#lines + 1] = line
      line = indent
    end
    line = line .. (#line > #indent and "  " or "") .. w
  end
  if #line > #indent then lines[#lines + 1] = line end
  return table.concat(lines, "\n")
end

-- The text shown for an entry: its signature and page, the body, and for a module or class the
-- names documented directly under it.
local function format(ref, e, note)
  local out = { e.sig .. "    [docs/reference/" .. e.page .. ":" .. e.line .. "]" }
  if note then out[#out + 1] = "(" .. note .. ")" end
  out[#out + 1] = ""
  for _, line in ipairs(e.body) do out[#out + 1] = line end
  local prefix, members = norm(e.name) .. ".", {}
  for _, other in ipairs(ref.list) do
    local n = norm(other.name)
    if n:sub(1, #prefix) == prefix and not n:find(".", #prefix + 1, true) then
      members[#members + 1] = other.name:sub(#prefix + 1)
    end
  end
  if #members > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Entries under " .. e.name .. " (?" .. e.name .. ".<name> shows one):"
    out[#out + 1] = wrap(members, "  ")
  end
  return table.concat(out, "\n")
end

local function several(name, found)
  local list = {}
  for _, e in ipairs(found) do list[#list + 1] = e.name end
  return "help: " .. #found .. " entries are named '" .. name .. "'; ask for one of them:\n" .. wrap(list, "  ")
end

local GENERAL = [[
luagrad's REPL:
  help(x), ?x       the reference entry of a function, method, module, class or instance:
                    help(lg.optim.AdamW), ?lg.nn.Linear, ?t:sum, ?model:parameters, ?zeros
  _                 the value of the last expression printed
  expr;             a trailing ';' evaluates without printing (_ is still set)
  %time stat        runs stat (or an expression) and prints the wall time it took
  Tab               completes globals, fields, methods (t:su, model:par), children and
                    parameters (model.fc1.wei), and file names inside strings ("data/tr)
The reference lists every entry: docs/reference.md (help(lg) shows the lg module's).]]

-- The text for the REPL's `?text`: a name of the reference, else a path through globals
-- (model.fc1, model:forward, t:sum, t.shape) resolved to a value or to a method of its class,
-- else the entries whose last part is the text. Arguments typed after the name are ignored.
function M.text_for(text)
  text = text:gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s*%(.*$", "")
  if text == "" then return GENERAL end
  local ref, why = reference()
  if not ref then return nil, why end
  local e = by_name(ref, text)
  if e then return format(ref, e) end
  if text:match("^[%a_][%w_]*[%w_.:]*$") and not text:match("[.:][.:]") and not text:match("[.:]$") then
    local parts = {}
    for part in ("." .. text):gmatch("[.:]([%a_][%w_]*)") do
      parts[#parts + 1] = part
    end
    local v = rawget(_G, parts[1])
    for i = 2, #parts - 1 do v = (type(v) == "table" or type(v) == "userdata") and try_index(v, parts[i]) or nil end
    local key = parts[#parts]
    local names = value_names()
    if #parts > 1 and v ~= nil then
      local parent = v
      -- a field or method named on its owner: Tensor.shape, lg.nn.Module:parameters
      if is_tensor(parent) then
        e = by_name(ref, "Tensor." .. key)
      elseif type(parent) == "table" then
        local cls, seen = parent, {}
        while type(cls) == "table" and not seen[cls] and not e do
          seen[cls] = true
          if rawget(cls, key) ~= nil then
            for _, n in ipairs(names[cls] or {}) do e = e or by_name(ref, n .. "." .. key) end
          end
          cls = (cls == parent) and getmetatable(parent) or parent_of(cls)
        end
      end
      if e then return format(ref, e) end
      v = try_index(parent, key)
    elseif #parts == 1 then
      v = rawget(_G, key)
    end
    local note
    e, note = entry_of_value(ref, v, names)
    if e then return format(ref, e, note) end
  end
  local last = text:match("([%a_][%w_]*)$") or text
  local found = entries_ending(ref, last)
  if #found == 1 then return format(ref, found[1]) end
  if #found > 1 then return several(last, found) end
  return nil, "help: no reference entry for '" .. text .. "' (docs/reference.md lists them)"
end

---What help(x) prints, as a string; nil and a message when there is no entry.
---@param x any a value (function, module, class, instance, tensor) or a name
---@return string|nil
---@return string|nil
function M.text(...)
  if select("#", ...) == 0 then return GENERAL end
  local x = ...
  if type(x) == "string" then return M.text_for(x) end
  local ref, why = reference()
  if not ref then return nil, why end
  local e, note = entry_of_value(ref, x)
  if e then return format(ref, e, note) end
  if x == nil then return nil, "help: the value is nil (a misspelled name?); help() lists what the REPL offers" end
  return nil, "help: no reference entry for this " .. type(x) .. " (not a public value of luagrad?)"
end

---Prints what help.text(x) returns, or its message. Returns nothing, so the REPL prints nothing more.
function M.help(...)
  local s, why = M.text(...)
  print(s or why)
end

---The REPL's ?text.
---@param text string
function M.ask(text)
  local s, why = M.text_for(text)
  print(s or why)
end

return setmetatable(M, { __call = function(_, ...) return M.help(...) end })
