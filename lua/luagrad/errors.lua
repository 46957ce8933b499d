-- luagrad.errors: errors that point at the user's line, however deep inside the library they
-- are raised (validation often happens a few calls down from the function the user called).
local M = {}

local function in_library(source)
  return source:find("lua/luagrad/", 1, true) ~= nil or source:find("/5.4/luagrad/", 1, true) ~= nil
end

-- raise(msg): error(msg) at the first stack frame outside luagrad's Lua files and C functions.
function M.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then level = 1 break end
    if info.what ~= "C" and not in_library(info.source) then break end
    level = level + 1
  end
  error(msg, level)
end

-- raisef(fmt, ...): raise(string.format(fmt, ...))
function M.raisef(fmt, ...)
  return M.raise(string.format(fmt, ...))
end

return M
