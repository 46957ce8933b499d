-- luagrad: the Lua face of the engine. Loads the C core and adds what is written in Lua.
local core = require "luagrad.core"
local lg = {}
for k, v in pairs(core) do lg[k] = v end
return lg
