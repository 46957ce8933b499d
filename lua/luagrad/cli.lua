-- luagrad.cli: the command line of a script run by luagrad, such as the examples.
--
--   local opts = lg.cli.options(arg, { quick = false, out = "." }, "adam")
--
-- lg.cli.options parses `--flag` and `--name value` against a table of defaults; lg.cli.claim
-- collects the checks behind an example's closing "claim holds: ..." line.
local errors = require "luagrad.errors"
local cli = {}

-- A value option's placeholder in --help and in error messages: more.metavar[key], else the
-- name in capitals (argparse's habit: --out OUT, --batch-size BATCH_SIZE).
local function metavar(key, more)
  return more.metavar and more.metavar[key] or key:upper()
end

local function sorted_keys(defaults, unset)
  local keys = {}
  for k in pairs(defaults) do keys[#keys + 1] = k end
  for k in pairs(unset) do
    if defaults[k] == nil then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- "--quick" for a flag, "--batch-size BATCH_SIZE" for a value option
local function spelling(key, defaults, more)
  local s = "--" .. key:gsub("_", "-")
  if type(defaults[key]) ~= "boolean" then s = s .. " " .. metavar(key, more) end
  return s
end

local function help_text(args, keys, defaults, more, name)
  local script = args[0] or name
  local lines = { "usage: luagrad " .. tostring(script) .. " [options]", "options:" }
  local width = #"--help"
  for _, k in ipairs(keys) do width = math.max(width, #spelling(k, defaults, more)) end
  -- padded by hand: string.format's "%-Ns" takes at most two digits of N
  local function row(left, right) return "  " .. left .. string.rep(" ", width - #left) .. "  " .. right end
  for _, k in ipairs(keys) do
    local d, note = defaults[k], ""
    if type(d) == "string" then
      note = string.format("default %q", d)
    elseif type(d) == "number" then
      note = "default " .. tostring(d)
    elseif d == nil then
      note = "no default"
    end
    lines[#lines + 1] = (row(spelling(k, defaults, more), note):gsub("%s+$", ""))
  end
  lines[#lines + 1] = row("--help", "print this and exit")
  return table.concat(lines, "\n")
end

---cli.options(args, defaults, name [, more]) -> a new table of options
---  args      the script's arguments (the global `arg`: arg[1], arg[2], ...; arg[0] the script)
---  defaults  option name -> default value. A boolean default makes a flag (`--quick` sets it to
---            true); any other default makes an option that takes the next argument as its
---            value: a number when the default is a number, else the string as given. The table
---            spells names with underscores, the command line with dashes (--batch-size is
---            batch_size).
---  name      the script's name, the start of every error message
---  more      optional: more.unset = { "threads", ... } value options without a default (nil
---            unless given; a number when the value reads as one, else the string);
---            more.metavar = { optimizer = "adamw|adam|sgd" }, placeholders shown by --help.
---`--help` prints the options with their defaults and exits 0. An unknown argument, an option
---without its value, or a value that is not a number for a number option raises an error that
---names the script (level 0: the message alone, no position).
---@param args table the script's arguments (the global arg)
---@param defaults table<string, any> option name -> default value (a boolean makes a flag)
---@param name string the script's name, the start of every error message
---@param more? {unset?: string[], metavar?: table<string, string>}
---@return table<string, any> options
function cli.options(args, defaults, name, more)
  errors.check("cli.options", "args", args, "table")
  errors.check("cli.options", "defaults", defaults, "table")
  errors.check("cli.options", "name", name, "string")
  errors.check("cli.options", "more", more, "table?")
  more = errors.options("cli.options", more, { "unset", "metavar" })
  errors.check("cli.options", "more.unset", more.unset, "table?")
  errors.check("cli.options", "more.metavar", more.metavar, "table?")
  for k in pairs(defaults) do
    if type(k) ~= "string" then errors.raisef("cli.options: defaults' keys must be option names, got %s", type(k)) end
  end
  local unset = {}
  for _, k in ipairs(more.unset or {}) do
    if type(k) ~= "string" then errors.raisef("cli.options: more.unset must list option names, got %s", type(k)) end
    unset[k] = true
  end
  local opts = {}
  for k, v in pairs(defaults) do opts[k] = v end
  local keys = sorted_keys(defaults, unset)
  local function fail(msg) error(name .. ": " .. msg, 0) end

  local i = 1
  while i <= #args do
    local a = args[i]
    local dashed = type(a) == "string" and a:match("^%-%-([%w%-]+)$")
    local key = dashed and (dashed:gsub("%-", "_"))
    if key == "help" and defaults.help == nil then
      print(help_text(args, keys, defaults, more, name))
      os.exit(0)
    elseif key ~= nil and type(defaults[key]) == "boolean" then
      opts[key] = true
    elseif key ~= nil and (defaults[key] ~= nil or unset[key]) then
      local v = args[i + 1]
      if v == nil then fail("--" .. dashed .. " needs a value") end
      if type(defaults[key]) == "number" then
        opts[key] = tonumber(v) or fail("--" .. dashed .. " needs a number, got " .. tostring(v))
      elseif defaults[key] == nil then
        opts[key] = tonumber(v) or v
      else
        opts[key] = v
      end
      i = i + 1
    else
      local list = {}
      for j, k in ipairs(keys) do list[j] = spelling(k, defaults, more) end
      fail("unknown argument " .. tostring(a) .. " (options: " .. table.concat(list, ", ") .. ")")
    end
    i = i + 1
  end
  return opts
end

---@class luagrad.cli.Claim
---@field failures string[]
---@field check fun(ok: any, what: string, ...: any) records `what` as a failure when ok is false
---@field verify fun() raises "claim fails: ..." if any check failed

---cli.claim([name]) -> a claim with two functions (call them with a dot: claim.check(...)):
---  claim.check(ok, what, ...)  when ok is false, records `what` (string.format(what, ...) when
---                              arguments follow it) as a failure
---  claim.verify()              raises "claim fails: <failures joined by '; '>" (after "name: "
---                              when a name was given) if any check failed
---claim.failures is the list of failures so far.
---@param name? string
---@return luagrad.cli.Claim
function cli.claim(name)
  local claim = { failures = {} }
  local failures = claim.failures
  function claim.check(ok, what, ...)
    if not ok then
      failures[#failures + 1] = select("#", ...) > 0 and string.format(what, ...) or what
    end
  end
  function claim.verify()
    if #failures > 0 then
      error((name and (name .. ": ") or "") .. "claim fails: " .. table.concat(failures, "; "), 0)
    end
  end
  return claim
end

return cli
