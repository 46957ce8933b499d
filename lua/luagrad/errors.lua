-- luagrad.errors: the one way the Lua library raises an error about its caller's code. The
-- message gets the position of the user's line, however deep inside the library the check runs
-- (validation often happens a few calls down from the function the user called) and however the
-- user's call is wrapped: like luaL_argerror, raise reads the position off the call stack, and
-- no call site counts levels.
--
--   errors.raise(msg)           error(msg) at the user's line
--   errors.raisef(fmt, ...)     errors.raise(string.format(fmt, ...))
--
--   errors.check(fname, what, v, kind)   raises "fname: what must be <kind>, got <type>" unless v is one
--   errors.options(fname, opts, allowed) nil or a table of known options; an unknown key raises
--   errors.call_as(fname, fn, ...)       fn(...), its error raised again naming fname
--
-- Every public function names itself (and the argument) in its errors: "<function>: ..." or
-- "<Class>:<method>: ..." (spec/argument_errors_spec.lua walks them all with wrong arguments).
--
-- error(msg, 0), the message alone, remains where no line is to blame: lg.cli's command-line
-- errors (meant for whoever runs the script), the JSON codec's (which lg.save and lg.load wrap
-- in messages of their own), lg.save's and lg.load's (which name the file or the key path), and
-- an error caught with pcall and passed on unchanged.
local M = {}

-- The folder this file was loaded from, as its chunk name spells it: "@lua/luagrad/" from the
-- executable's embedded copy (and a source tree), "@/usr/local/share/lua/5.4/luagrad/" from an
-- installed tree, "@/home/u/.luarocks/share/lua/5.4/luagrad/" from a luarocks tree, or wherever
-- package.path found it. nil if the name does not end in luagrad/errors.lua.
local root = debug.getinfo(1, "S").source:match("^(@.*luagrad[/\\])errors%.lua$")

---in_library(source): whether a chunk name (debug.getinfo's `source`) is one of luagrad's Lua
---files: under the folder this file came from, or, for a module loaded from another copy, under
---a source tree's lua/luagrad/ or an installed or luarocks tree's lua/5.4/luagrad/. Chunks loaded
---from strings (names not starting with "@", such as the REPL's "=stdin") are the user's.
---@param source string a chunk name, as debug.getinfo gives it
---@return boolean
function M.in_library(source)
  if source:sub(1, 1) ~= "@" then return false end
  return (root ~= nil and source:sub(1, #root) == root)
    or source:find("[@/\\]lua[/\\]luagrad[/\\]") ~= nil
    or source:find("[/\\]lua[/\\]5%.4[/\\]luagrad[/\\]") ~= nil
end
local in_library = M.in_library

---raise(msg): error(msg) at the first stack frame outside luagrad's Lua files and C functions
---(pcall, the C core): the line of user code that called into the library, directly or through
---pcall. The message stands alone when there is none (the library called from a C host). A tail
---call, `return layer(x)`, leaves no frame behind: the line blamed is then the one that called
---the function making the tail call.
---@param msg string
function M.raise(msg)
  local level = 2 -- the caller of raise; debug.getinfo and error count levels alike from here
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then
      level = 0
      break
    end
    if info.what ~= "C" and not in_library(info.source) then break end
    level = level + 1
  end
  error(msg, level)
end

---raisef(fmt, ...): raise(string.format(fmt, ...))
---@param fmt string
---@param ... any
function M.raisef(fmt, ...)
  return M.raise(string.format(fmt, ...))
end

---call_as(fname, fn, ...): fn(...)'s results; an error fn raises is raised again as fname's, the
---name it starts with (the function that raised it, "ones: ...") replaced by fname. For a public
---function built on another: nn.BatchNorm1d making its parameters with lg.ones fails with
---"BatchNorm1d: shape {...} is too large", not "ones: ...". An error value that is not a string
---passes unchanged. (A protected call: for constructors and setup, not for every step.)
---@param fname string
---@param fn function
---@param ... any
---@return any ...
function M.call_as(fname, fn, ...)
  local res = table.pack(pcall(fn, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  local msg = res[2]
  if type(msg) ~= "string" then error(msg, 0) end
  msg = msg:gsub("^[^\n]-:%d+: ", "", 1):gsub("^[%w_.]+: ", "", 1)
  M.raise(fname .. ": " .. msg)
end

-- ---- argument checks: one way for every public function ----------------------------------------

local core -- luagrad.core, loaded on first use (errors.lua is loaded before it is ready)

-- What a kind accepts: a Lua type, or "integer", "tensor", "callable" (a function or a table or
-- userdata with __call).
local function is_kind(v, kind)
  if kind == "integer" then return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and v == v) end
  if kind == "tensor" then
    core = core or require "luagrad.core"
    return core.is_tensor(v)
  end
  if kind == "callable" then
    if type(v) == "function" then return true end
    local mt = getmetatable(v)
    return type(mt) == "table" and mt.__call ~= nil
  end
  return type(v) == kind
end

local function describe(v)
  if math.type(v) == "float" then return "number " .. tostring(v) end
  core = core or require "luagrad.core"
  if type(v) == "userdata" and core.is_tensor(v) then return "a tensor" end
  return type(v)
end
---describe(v): a value as messages show what they got: its type, "number 1.5" for a fractional
---number, "a tensor" for a tensor.
---@param v any
---@return string
M.describe = describe

---check(fname, what, v, kind): raises "fname: what must be <kind>, got <v's type>" unless v is of
---that kind ("number", "integer", "string", "boolean", "function", "table", "tensor", "callable",
---or several joined by "|"); a kind ending in "?" also accepts nil. Returns v.
---@param fname string the public function's name, the message's start
---@param what string the argument, as the message names it ("argument #1", "closure", "opts.lr")
---@param v any
---@param kind string
---@return any v
function M.check(fname, what, v, kind)
  local optional = kind:sub(-1) == "?"
  if optional then
    if v == nil then return v end
    kind = kind:sub(1, -2)
  end
  local names = {}
  for k in kind:gmatch("[^|]+") do
    if is_kind(v, k) then return v end
    names[#names + 1] = (k == "integer" and "an " or k == "callable" and "" or "a ") .. (k == "callable" and "a function" or k)
  end
  M.raisef("%s: %s must be %s, got %s", fname, what, table.concat(names, " or "), describe(v))
end

---options(fname, opts, allowed): opts must be nil or a table whose keys are among the allowed
---names (a list); a misspelled key is an error naming the valid ones. Returns opts, or {} for nil.
---@param fname string
---@param opts table|nil
---@param allowed string[]
---@return table
function M.options(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.raisef("%s: options must be a table, got %s", fname, describe(opts)) end
  for k in pairs(opts) do
    local ok = false
    for _, a in ipairs(allowed) do
      if a == k then
        ok = true
        break
      end
    end
    if not ok then
      M.raisef("%s: unknown option '%s' (accepted: %s)", fname, tostring(k), table.concat(allowed, ", "))
    end
  end
  return opts
end

return M
