-- The reference (docs/reference.md and the files under docs/reference/) documents every public
-- name of luagrad, and only names that exist:
--
--   * Lua: every public function, method, constant and table reachable from `require "luagrad"`
--     (walking lg and its submodules, the tensor methods behind a tensor's metatable, and each
--     class's methods through its __index chain), and the objects some functions return
--     (PROBES below);
--   * C: every function declared in include/luagrad.h and include/lg_lua.h.
--
-- An entry is a level-3 heading whose text starts with the name in backticks:
--   ### `lg.zeros(size..., opts)`      ### `Tensor:sum(dim, keepdim)`      ### `Tensor.shape`
--   ### `lg.nn.Module:parameters(opts)`                                     ### `lg_numel(t)`
-- ':' and '.' are the same to this spec (Lua cannot tell a method from a function stored in a
-- table). A method is documented under the class that defines it (the first table on the
-- class's __index chain that holds it): `lg.nn.Linear:forward(x)`, but `lg.nn.Module:to(dtype)`
-- for every layer. A class's `init` is covered by the class's own entry (calling the class runs
-- it), and a function of lg that is the very function of a tensor method (lg.exp is Tensor.exp)
-- by the method's entry. Level-3 headings that do not start with a backtick are topics (operators, indexing) and
-- name nothing.
--
-- Run from the repository root.
local lg = require "luagrad"

local REFERENCE_INDEX = "docs/reference.md"
local REFERENCE_DIR = "docs/reference"
local C_HEADERS = { "include/luagrad.h", "include/lg_lua.h" }

-- Objects that no table of the library holds, only a function returns: their methods (own
-- function fields, and their metatable's methods when no walked class is that metatable) are
-- documented under the type name given here. Add a probe when a function starts returning a
-- new kind of object.
local PROBES = {
  { "HookHandle", function() -- Tensor:register_hook's result
    local t = lg.ones(1, { requires_grad = true })
    return t:register_hook(function() end)
  end },
  { "Claim", function() return lg.cli.claim("docs") end },
  { "lg.data.DataLoader", function() return lg.data.DataLoader(lg.data.TensorDataset(lg.zeros(2, 1))) end },
  { "Fortunes", function() -- lg.datasets.fortunes's result, read from a one-file folder
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local f = assert(io.open(dir .. "/one", "wb"))
    f:write("A fortune.\n%\n")
    f:close()
    local ds = lg.datasets.fortunes({ root = dir })
    os.remove(dir .. "/one")
    os.remove(dir)
    return ds
  end },
  { "lg.data.DistributedSampler", function() return lg.data.DistributedSampler(4, { num_replicas = 2, rank = 1 }) end },
  { "lg.data.Generator", function() return lg.data.Generator(0) end },
}

-- ---- small helpers ---------------------------------------------------------------------------

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local function norm(name) return (name:gsub(":", ".")) end

local function is_public(k) return type(k) == "string" and k:sub(1, 1) ~= "_" end

-- Lines of a command's output (for listing files); empty when popen is unavailable.
local function command_lines(cmd)
  local ok, p = pcall(io.popen, cmd)
  if not ok or not p then return {} end
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- ---- the reference: its files and their entries ----------------------------------------------

-- The index, the files it links under docs/reference/, and any others lying there.
local function reference_files()
  local files, seen = { REFERENCE_INDEX }, { [REFERENCE_INDEX] = true }
  local function add(path)
    if not seen[path] then
      seen[path] = true
      files[#files + 1] = path
    end
  end
  local index = read_file(REFERENCE_INDEX)
  assert(index, "cannot read " .. REFERENCE_INDEX .. ", the reference's index")
  for rel in index:gmatch("%]%((reference/[%w_%-]+%.md)%)") do add("docs/" .. rel) end
  for _, f in ipairs(command_lines("ls -1 " .. REFERENCE_DIR .. "/*.md 2>/dev/null")) do add(f) end
  return files
end

-- The name an entry's signature starts with, or nil and why not.
local function entry_name(sig)
  local name = sig:match("^[%a_][%w_]*[%w_.:]*")
  if not name or name:match("[.:]$") or name:match("[.:][.:]") then return nil, "does not start with a name" end
  local rest = sig:sub(#name + 1)
  if rest ~= "" and not rest:match("^%(.*%)$") then
    return nil, "must be `name` or `name(arguments)`"
  end
  return name
end

-- Parses every reference file. Returns entries (normalized name -> entry), duplicates and
-- malformed headings (lists of strings), and the files' text.
local function parse_reference()
  local entries, duplicates, malformed, texts = {}, {}, {}, {}
  for _, path in ipairs(reference_files()) do
    local text = assert(read_file(path), "cannot read " .. path)
    texts[path] = text
    local in_code, current, lineno = false, nil, 0
    for line in (text .. "\n"):gmatch("(.-)\r?\n") do
      lineno = lineno + 1
      if line:match("^%s*```") then in_code = not in_code end
      if not in_code and line:match("^#") then
        current = nil
        local sig = line:match("^###%s+`([^`]+)`")
        if sig then
          local name, why = entry_name(sig)
          local where = path .. ":" .. lineno
          if not name then
            malformed[#malformed + 1] = string.format("%s: `%s` %s", where, sig, why)
          else
            local key = norm(name)
            if entries[key] then
              duplicates[#duplicates + 1] = string.format("%s (%s and %s)", name, entries[key].where, where)
            else
              entries[key] = { name = name, sig = sig, where = where, body = {} }
              current = entries[key]
            end
          end
        end
      elseif current and line:match("%S") then
        current.body[#current.body + 1] = line
      end
    end
  end
  return entries, duplicates, malformed, texts
end

local function is_c_name(name) return name:match("^lg_") or name:match("^luaopen_") or name:match("^LG_") end

-- ---- the Lua side: every public name reachable from require "luagrad" ------------------------

-- Names of the library's Lua modules ("luagrad.nn.functional"), to find submodules that a
-- module loads lazily (through its metatable) and the path each module is known by.
local function module_names()
  local set = {}
  for name in pairs(package.loaded) do
    if type(name) == "string" and name:match("^luagrad") then set[name] = true end
  end
  for name in pairs(package.preload) do
    if type(name) == "string" and name:match("^luagrad") then set[name] = true end
  end
  for _, f in ipairs(command_lines("cd lua 2>/dev/null && find luagrad -name '*.lua' 2>/dev/null")) do
    local name = f:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    set[name] = true
  end
  return set
end

local function is_class(t)
  if rawget(t, "__index") ~= nil then return true end
  local mt = getmetatable(t)
  return type(mt) == "table" and type(rawget(mt, "__index")) == "table"
end

-- The next table on a class's (or a module's) __index chain, if any.
local function parent_of(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" then return nil end
  local idx = rawget(mt, "__index")
  return type(idx) == "table" and idx or nil
end

-- The public string keys of a module table: its own, those its __index chain supplies, and
-- submodules its metatable loads on first access.
local function module_keys(t, modname, modules)
  local keys, seen_tables = {}, {}
  local cur = t
  while cur and not seen_tables[cur] do
    seen_tables[cur] = true
    for k in next, cur do
      if is_public(k) then keys[k] = true end
    end
    cur = parent_of(cur)
  end
  local mt = getmetatable(t)
  if modname and type(mt) == "table" and rawget(mt, "__index") ~= nil then
    local prefix = modname .. "."
    for name in pairs(modules) do
      if name:sub(1, #prefix) == prefix then
        local k = name:sub(#prefix + 1)
        if not k:find(".", 1, true) and is_public(k) and not keys[k] then
          local ok, v = pcall(function() return t[k] end)
          if ok and v ~= nil then keys[k] = true end
        end
      end
    end
  end
  return sorted(keys)
end

-- The table of tensor methods, found from a tensor's metatable: __index itself when it is a
-- table, else the first table among the upvalues of the __index function.
local function tensor_methods()
  local mt = getmetatable(lg.zeros(1))
  assert(type(mt) == "table", "a tensor has no metatable")
  local idx = rawget(mt, "__index")
  if type(idx) == "table" then return idx end
  if type(idx) == "function" then
    for i = 1, 255 do
      local name, v = debug.getupvalue(idx, i)
      if name == nil then break end
      if type(v) == "table" then return v end
    end
  end
  error("cannot find the tensor methods behind the tensor metatable's __index")
end

-- Walks the library. Returns names: normalized name -> {name = display name, kind = ...}.
local function public_names()
  local modules = module_names()
  local names = {}
  local function add(display, kind)
    local key = norm(display)
    if not names[key] then names[key] = { name = display, kind = kind } end
  end

  -- Each table's canonical path: a module is known by its module name (luagrad.nn.functional is
  -- lg.nn.functional, not its alias lg.nn.F); any other table by the first path the walk meets.
  local path_of, walked = {}, {}
  local function resolve(path)
    local v = lg
    for part in path:gmatch("[^.]+") do
      if part ~= "lg" then
        if type(v) ~= "table" then return nil end
        local ok, x = pcall(function() return v[part] end)
        if not ok then return nil end
        v = x
      end
    end
    return v
  end
  for name in pairs(modules) do
    local t = package.loaded[name]
    local path = "lg" .. name:sub(#"luagrad" + 1)
    if type(t) == "table" and resolve(path) == t then path_of[t] = path end
  end
  local methods = tensor_methods()
  path_of[methods] = "Tensor"

  local classes = {} -- {t, path}, in the order met
  local function walk(t, path)
    walked[t] = true
    add(path, "table")
    if t == methods then
      for _, k in ipairs(module_keys(t, nil, modules)) do
        if type(t[k]) == "function" then add("Tensor:" .. k, "tensor method") end
      end
      return
    end
    if is_class(t) then
      classes[#classes + 1] = { t = t, path = path }
      return
    end
    local modname = path:gsub("^lg", "luagrad")
    for _, k in ipairs(module_keys(t, modname, modules)) do
      local ok, v = pcall(function() return t[k] end)
      local p = path .. "." .. k
      if ok and type(v) == "table" then
        if path_of[v] == nil then path_of[v] = p end
        if path_of[v] == p then
          if not walked[v] then walk(v, p) end
        else
          add(p, "alias of " .. path_of[v])
        end
      elseif ok and v ~= nil then
        add(p, type(v))
        -- lg.exp is the very function Tensor:exp is: the method's entry covers it
        if type(v) == "function" and path == "lg" and rawequal(v, rawget(methods, k)) then
          names[norm(p)].alias_of = "Tensor." .. k
        end
      end
    end
  end
  walk(methods, "Tensor")
  walk(lg, "lg")

  -- A class's methods, each under the class on the __index chain that defines it.
  local function class_methods(t, path)
    local seen_keys, seen_tables, cur = {}, {}, t
    while cur and not seen_tables[cur] do
      seen_tables[cur] = true
      local owner = (cur == t) and path or path_of[cur] or path
      for k, v in next, cur do
        if is_public(k) and type(v) == "function" and not seen_keys[k] then
          seen_keys[k] = true
          add(owner .. ":" .. k, k == "init" and "constructor body" or "method")
        end
      end
      cur = parent_of(cur)
    end
  end
  for _, c in ipairs(classes) do class_methods(c.t, c.path) end

  -- Objects only functions return.
  for _, probe in ipairs(PROBES) do
    local tname, make = probe[1], probe[2]
    local obj = make()
    if type(obj) == "table" then
      for k, v in next, obj do
        if is_public(k) and type(v) == "function" then add(tname .. ":" .. k, "method") end
      end
    end
    local mt = getmetatable(obj)
    if type(mt) == "table" and not walked[mt] then class_methods(mt, tname) end
  end
  return names
end

-- ---- the C side: the headers' declarations ---------------------------------------------------

-- Returns functions (set of declared function names) and others (typedef names, struct and
-- enum tags, enum constants, macros, extern variables), from include/*.h.
local function c_declarations()
  local functions, others = {}, {}
  for _, path in ipairs(C_HEADERS) do
    local text = assert(read_file(path), "cannot read " .. path)
    text = text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", "")
    local code = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do
      local macro = line:match("^%s*#%s*define%s+([%a_][%w_]*)")
      if macro then others[macro] = true end
      if not line:match("^%s*#") then code[#code + 1] = line end
    end
    text = table.concat(code, "\n")
    -- split into top-level statements at ';' outside braces
    local depth, start = 0, 1
    local statements = {}
    for i = 1, #text do
      local c = text:sub(i, i)
      if c == "{" then depth = depth + 1
      elseif c == "}" then
        depth = depth - 1
        -- a function defined in the header (static inline) ends at its closing brace
        local so_far = text:sub(start, i)
        if depth == 0 and so_far:match("^[^{]*%)%s*{") and not so_far:match("^%s*typedef") then
          statements[#statements + 1] = so_far:match("^([^{]*)")
          start = i + 1
        end
      elseif c == ";" and depth == 0 then
        statements[#statements + 1] = text:sub(start, i - 1)
        start = i + 1
      end
    end
    for _, s in ipairs(statements) do
      s = s:gsub("%s+", " "):gsub("^ ", "")
      if s:match("^typedef") then
        local fnptr = s:match("%(%s*%*%s*([%a_][%w_]*)%s*%)")
        local last = s:match("([%a_][%w_]*)%s*$")
        others[fnptr or last] = true
        local tag = s:match("^typedef%s+struct%s+([%a_][%w_]*)") or s:match("^typedef%s+enum%s+([%a_][%w_]*)")
        if tag then others[tag] = true end
        local body = s:match("^typedef%s+enum[^{]*(%b{})")
        if body then
          for const in body:gmatch("([%a_][%w_]*)%s*[=,}]") do others[const] = true end
        end
      elseif s:match("%(") then
        local name = s:match("([%a_][%w_]*)%s*%(")
        functions[name] = true
      else
        local name = s:match("([%a_][%w_]*)%s*%b[]%s*$") or s:match("([%a_][%w_]*)%s*$")
        if name then others[name] = true end
        local tag = s:match("^struct%s+([%a_][%w_]*)")
        if tag then others[tag] = true end
      end
    end
  end
  return functions, others
end

-- ---- the checks ------------------------------------------------------------------------------

local function listing(title, lines)
  return title .. ":\n  " .. table.concat(lines, "\n  ")
end

describe("the reference (docs/reference.md)", function()
  local parsed -- the reference, read once by the first test that needs it
  local entries, duplicates, malformed, texts
  before_each(function()
    if not parsed then
      parsed = { parse_reference() }
      entries, duplicates, malformed, texts = table.unpack(parsed)
    end
  end)

  it("has an index that links every file under docs/reference/, and docs/README.md links the index", function()
    local index = texts[REFERENCE_INDEX]
    local unlinked = {}
    for path in pairs(texts) do
      if path ~= REFERENCE_INDEX then
        local rel = path:gsub("^docs/", "")
        if not index:find("(" .. rel .. ")", 1, true) then unlinked[#unlinked + 1] = path end
      end
    end
    table.sort(unlinked)
    assert.are.same({}, unlinked, "files under docs/reference/ that docs/reference.md does not link")
    local readme = assert(read_file("docs/README.md"), "docs/README.md is missing")
    assert.is_truthy(readme:find("(reference.md)", 1, true), "docs/README.md does not link reference.md")
    local top = assert(read_file("README.md"))
    assert.is_truthy(top:find("docs/reference.md", 1, true), "README.md does not link docs/reference.md")
  end)

  it("has well-formed entries: `name` or `name(arguments)` headings, each once, each with a text", function()
    local problems = {}
    for _, m in ipairs(malformed) do problems[#problems + 1] = "malformed heading " .. m end
    for _, d in ipairs(duplicates) do problems[#problems + 1] = "documented twice: " .. d end
    for _, key in ipairs(sorted(entries)) do
      local e = entries[key]
      if #e.body == 0 then problems[#problems + 1] = "no text under " .. e.where .. " `" .. e.sig .. "`" end
    end
    assert(#problems == 0, listing(#problems .. " problems with the reference's headings", problems))
  end)

  it("documents every public Lua name reachable from require 'luagrad'", function()
    local names = public_names()
    local missing = {}
    for _, key in ipairs(sorted(names)) do
      local n = names[key]
      local covered = entries[key] ~= nil
      if not covered and n.kind == "constructor body" then covered = entries[key:gsub("%.init$", "")] ~= nil end
      if not covered and n.alias_of then covered = entries[n.alias_of] ~= nil end
      if not covered then missing[#missing + 1] = string.format("%-52s (%s)", n.name, n.kind) end
    end
    assert(#missing == 0, listing(#missing .. " public names have no entry in the reference; add a heading "
      .. "'### `name(arguments)`' with a line saying what it does to a file under docs/reference/", missing))
  end)

  it("documents no Lua name that does not exist", function()
    local names = public_names()
    local sample = lg.ones(2, 2, { requires_grad = true })
    sample.grad = lg.zeros(2, 2)
    local stale = {}
    for _, key in ipairs(sorted(entries)) do
      local e = entries[key]
      if not is_c_name(e.name) and not names[key] then
        local field = key:match("^Tensor%.([%a_][%w_]*)$")
        local ok = field and e.name:find(".", 1, true) and sample[field] ~= nil
        if not ok then stale[#stale + 1] = string.format("%-52s %s", e.name, e.where) end
      end
    end
    assert(#stale == 0, listing(#stale .. " documented Lua names do not exist (renamed or removed? update or "
      .. "delete their entries)", stale))
  end)

  it("documents every function of include/luagrad.h and include/lg_lua.h", function()
    local functions = c_declarations()
    assert.is_true(next(functions) ~= nil, "no C functions found in the headers")
    local missing = {}
    for _, name in ipairs(sorted(functions)) do
      if not entries[name] then missing[#missing + 1] = name end
    end
    assert(#missing == 0, listing(#missing .. " C functions declared in include/ have no entry in "
      .. "docs/reference/c_api.md; add '### `name(arguments)`' with its prototype and meaning", missing))
  end)

  it("documents no C name that the headers do not declare", function()
    local functions, others = c_declarations()
    local stale = {}
    for _, key in ipairs(sorted(entries)) do
      local e = entries[key]
      if is_c_name(e.name) then
        local declared = functions[e.name] or others[e.name]
        local wants_function = e.sig:find("(", 1, true) ~= nil
        if not declared or (wants_function and not functions[e.name]) then
          stale[#stale + 1] = string.format("%-40s %s", e.name, e.where)
        end
      end
    end
    assert(#stale == 0, listing(#stale .. " documented C names are not declared in include/*.h (as functions, "
      .. "where the heading has arguments)", stale))
  end)
end)
