-- luagrad.repl: the Lua side of the REPL (src/cli/repl.c).
--
--   show(value) -> string      how the REPL prints a value
--   members(value) -> {names}  what Tab offers after `value.` besides its table keys: an nn
--                              module's parameters, buffers, children and fields
--
--   show("hi")                         --> "hi"             (quoted, escapes as Lua reads them)
--   show({1, 2, 3, x = 4, sub = {}})   --> {1, 2, 3, sub = {}, x = 4}
--   show(tensor)                       --> tostring(tensor)  (the tensor's __tostring)
--
-- Tables list their array part 1..n first, then the other keys sorted (numbers, then strings,
-- then booleans, then the rest by tostring). Nesting deeper than MAX_DEPTH prints as {...}, a
-- table inside itself as <cycle>, and long tables stop after MAX_ITEMS entries with "...".
-- A value whose metatable has __tostring (tensors, nn modules) is shown by tostring. Access is
-- raw (rawget, next): showing a value never runs its __index or __pairs.

local MAX_DEPTH = 3    -- levels of nested tables shown
local MAX_ITEMS = 100  -- entries shown per table
local MAX_TOTAL = 2000 -- entries shown in all, so a huge nested structure stays readable

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not keywords[k]
end

local escapes = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r",
                 ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v"}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function has_tostring(v)
  local mt = debug.getmetatable(v)
  return mt ~= nil and rawget(mt, "__tostring") ~= nil
end

local function plain(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<" .. type(v) .. ">"
end

local type_rank = {number = 1, string = 2, boolean = 3}

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = type_rank[ta] or 4, type_rank[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return plain(a) < plain(b)
end

local show_value

local function show_table(t, depth, state)
  if has_tostring(t) then return plain(t) end
  if state.open[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if depth > MAX_DEPTH then return "{...}" end
  state.open[t] = true
  local parts = {}
  local function add(s)
    if #parts >= MAX_ITEMS or state.total >= MAX_TOTAL then return false end
    parts[#parts + 1] = s
    state.total = state.total + 1
    return true
  end
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local complete = true
  for i = 1, n do
    if not add(show_value(rawget(t, i), depth + 1, state)) then complete = false; break end
  end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  if complete then
    for _, k in ipairs(keys) do
      local ks = is_identifier(k) and k or "[" .. show_value(k, depth + 1, state) .. "]"
      if not add(ks .. " = " .. show_value(rawget(t, k), depth + 1, state)) then
        complete = false
        break
      end
    end
  end
  if not complete then parts[#parts + 1] = "..." end
  state.open[t] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end

function show_value(v, depth, state)
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "table" then return show_table(v, depth, state) end
  return plain(v) -- numbers, booleans, nil, tensors (__tostring), functions...
end

---How the REPL shows v (see the top of this file).
---@param v any
---@return string
local function show(v)
  return show_value(v, 1, {open = {}, total = 0})
end

---The names an nn module instance answers through its __index function (which completion
---cannot list): parameters, buffers and children by their public iterators, plain fields from
---the instance's field table. Empty for anything else.
---@param v any
---@return string[]
local function members(v)
  local names = {}
  local nn = package.loaded["luagrad.nn"]
  if not (nn and nn.is_module(v)) then return names end
  for _, iter in ipairs({"named_parameters", "named_buffers"}) do
    for name in v[iter](v, {recurse = false}) do names[#names + 1] = name end
  end
  for name in v:named_children() do names[#names + 1] = name end
  local fields = rawget(v, "_fields")
  if type(fields) == "table" then
    for k in next, fields do
      if type(k) == "string" then names[#names + 1] = k end
    end
  end
  return names
end

return {show = show, members = members}
