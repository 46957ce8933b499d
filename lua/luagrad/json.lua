-- luagrad.json: a small, strict JSON encoder and a defensive decoder (RFC 8259).
--
-- Written for the safetensors header (lua/luagrad/serialize.lua), which may come from a hostile
-- file, so the decoder
--   * never recurses: containers live on an explicit stack, and nesting deeper than max_depth
--     is an error, so `[[[[...` of any length costs one error, not a stack overflow;
--   * refuses input longer than max_length bytes before looking at it;
--   * keeps integers exact: a number without fraction or exponent is a Lua integer, and one
--     outside the 64-bit range is an error (never silently rounded to a float); a number with
--     a fraction or exponent is a float, converted by the C library (correctly rounded);
--   * rejects what strict JSON rejects: trailing commas, comments, NaN/Infinity, leading zeros,
--     raw control characters and invalid UTF-8 in strings, lone surrogates, duplicate object
--     keys, and anything after the top-level value;
--   * reports every error as "json: <what> at byte <n>" (1-based offset into the input).
--
-- Decoded arrays and objects are plain Lua tables marked with the metatables json.array_mt and
-- json.object_mt (so `[]` and `{}` stay distinguishable); JSON null decodes to json.null.
--
-- The encoder writes compact JSON with object keys sorted (so output is deterministic), floats
-- with "%.17g" (which reads back bit-exactly) and a ".0" added when that looks like an integer
-- (so a float stays a float), integers with "%d". It raises on what JSON cannot represent:
-- NaN and infinities, functions and other userdata, tables mixing string and other keys, sparse
-- arrays, cycles, invalid UTF-8. A table with json.object_mt is always an object (an empty one
-- is `{}`); any other empty table is `[]`.
local errors = require "luagrad.errors"

local json = {}

json.null = setmetatable({}, { __name = "json.null", __tostring = function() return "null" end })
json.array_mt = { __name = "json.array" }
json.object_mt = { __name = "json.object" }

json.MAX_DEPTH = 512

local concat, format, byte, sub, find = table.concat, string.format, string.byte, string.sub, string.find
local mtype, utf8len, utf8char = math.type, utf8.len, utf8.char

-- ---- encoding --------------------------------------------------------------------------------

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t",
}
for c = 0, 31 do
  local ch = string.char(c)
  if not escapes[ch] then escapes[ch] = format("\\u%04x", c) end
end
escapes["\127"] = "\\u007f"

local function encode_string(s, where)
  if not utf8len(s) then error(format("json: invalid UTF-8 in string at %s", where), 0) end
  return '"' .. s:gsub('[%c"\\]', escapes) .. '"'
end

-- A float as text that reads back as the same float: %.17g always round-trips a double.
local function encode_float(x, where)
  if x ~= x or x == math.huge or x == -math.huge then
    error(format("json: cannot encode %s at %s (not representable in JSON)", tostring(x), where), 0)
  end
  local s = format("%.17g", x)
  if not find(s, "[.eEn]") then s = s .. ".0" end
  return s
end

local function path_join(where, key)
  return where .. "." .. tostring(key)
end

local function encode_value(v, out, where, depth, seen)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = encode_string(v, where)
  elseif t == "number" then
    out[#out + 1] = mtype(v) == "integer" and format("%d", v) or encode_float(v, where)
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == json.null then
    out[#out + 1] = "null"
  elseif t == "table" then
    if depth >= json.MAX_DEPTH then
      error(format("json: nesting deeper than %d at %s", json.MAX_DEPTH, where), 0)
    end
    if seen[v] then error(format("json: the table at %s contains itself", where), 0) end
    seen[v] = true
    local mt = getmetatable(v)
    local nkeys, string_keys = 0, true
    for k in pairs(v) do
      nkeys = nkeys + 1
      if type(k) ~= "string" then string_keys = false end
    end
    if mt == json.object_mt or (nkeys > 0 and string_keys) then
      if not string_keys then error(format("json: object at %s has a key that is not a string", where), 0) end
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k, where)
        out[#out + 1] = ":"
        encode_value(v[k], out, path_join(where, k), depth + 1, seen)
      end
      out[#out + 1] = "}"
    else
      for k in pairs(v) do
        if mtype(k) ~= "integer" or k < 1 or k > nkeys then
          error(format("json: table at %s is neither an array (keys 1..n) nor an object (string keys);"
            .. " offending key %s", where, tostring(k)), 0)
        end
      end
      out[#out + 1] = "["
      for i = 1, nkeys do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, path_join(where, i), depth + 1, seen)
      end
      out[#out + 1] = "]"
    end
    seen[v] = nil
  else
    error(format("json: cannot encode a %s at %s", t, where), 0)
  end
end

---json.encode(value) -> compact JSON text. Raises "json: ..." naming the path of a bad value.
---@param value any
---@return string
function json.encode(value)
  local out = {}
  encode_value(value, out, "$", 0, {})
  return concat(out)
end

-- ---- decoding --------------------------------------------------------------------------------

-- fail(pos, "what %s", x) raises "json: what x at byte pos".
local function fail(pos, fmt, ...)
  local args = table.pack(...)
  args[args.n + 1] = pos
  error(format("json: " .. fmt .. " at byte %d", table.unpack(args, 1, args.n + 1)), 0)
end

local simple_escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- Reads the string whose opening quote is at pos; returns the string and the position after it.
local function decode_string(s, pos)
  local parts, i = {}, pos + 1
  while true do
    local j = find(s, '[%z\1-\31"\\]', i)
    if not j then fail(pos, "unterminated string starting") end
    if j > i then parts[#parts + 1] = sub(s, i, j - 1) end
    local c = byte(s, j)
    if c == 34 then -- closing quote
      local str = concat(parts)
      if not utf8len(str) then fail(pos, "invalid UTF-8 in string starting") end
      return str, j + 1
    elseif c == 92 then -- backslash
      local e = sub(s, j + 1, j + 1)
      if simple_escapes[e] then
        parts[#parts + 1] = simple_escapes[e]
        i = j + 2
      elseif e == "u" then
        local hex = s:match("^%x%x%x%x", j + 2)
        if not hex then fail(j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        i = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = s:match("^\\u(%x%x%x%x)", i)
          lo = lo and tonumber(lo, 16)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(j, "unpaired surrogate \\u%s", hex) end
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
          i = i + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(j, "unpaired surrogate \\u%s", hex)
        end
        parts[#parts + 1] = utf8char(cp)
      else
        fail(j, "bad escape '\\%s'", e)
      end
    else
      fail(j, "raw control character 0x%02x in string", c)
    end
  end
end

-- Reads the number starting at pos; returns it and the position after it.
local function decode_number(s, pos)
  local int = s:match("^-?%d+", pos)
  if not int then fail(pos, "invalid number") end
  local digits = int:sub(1, 1) == "-" and int:sub(2) or int
  if #digits > 1 and digits:sub(1, 1) == "0" then fail(pos, "number with a leading zero") end
  local i = pos + #int
  local frac = s:match("^%.%d*", i)
  if frac then
    if #frac == 1 then fail(i, "digits expected after the decimal point") end
    i = i + #frac
  end
  local exp = s:match("^[eE][-+]?%d*", i)
  if exp then
    if not exp:find("%d") then fail(i, "digits expected in the exponent") end
    i = i + #exp
  end
  local text = sub(s, pos, i - 1)
  if not frac and not exp then
    local n = math.tointeger(tonumber(text))
    -- tonumber gives a float when the literal overflows 64 bits; the string check catches the
    -- wrap-around cases that still come back as an integer.
    if not n or format("%d", n) ~= (text == "-0" and "0" or text) then
      fail(pos, "integer %s out of the 64-bit range", text)
    end
    return n, i
  end
  local x = tonumber(text)
  if not x then fail(pos, "invalid number") end
  return x, i
end

local literals = { t = { "true", true }, f = { "false", false }, n = { "null", json.null } }

---json.decode(text, opts) -> value. opts.max_depth (default json.MAX_DEPTH) bounds nesting,
---opts.max_length (default unlimited) bounds the input size. Raises "json: ... at byte n".
---@param s string
---@param opts? {max_depth?: integer, max_length?: integer}
---@return any
function json.decode(s, opts)
  if type(s) ~= "string" then errors.raise("json: decode expects a string, got " .. type(s)) end
  local max_depth = opts and opts.max_depth or json.MAX_DEPTH
  local max_length = opts and opts.max_length
  if max_length and #s > max_length then
    error(format("json: input of %d bytes is longer than the limit of %d", #s, max_length), 0)
  end
  -- stack[d] is the open container at depth d; keys[d] is the pending key when it is an object.
  local stack, keys, seen_keys, depth = {}, {}, {}, 0
  local pos, n = 1, #s
  local result, have_result = nil, false

  local function skip_ws(p)
    return (find(s, "[^ \t\r\n]", p)) or n + 1
  end

  while true do
    pos = skip_ws(pos)
    -- 1. in an object, expecting a key (or '}' right after '{')
    local top = stack[depth]
    local value, have_value = nil, false
    if top and getmetatable(top) == json.object_mt and keys[depth] == nil then
      local c = sub(s, pos, pos)
      if c == "}" and next(top) == nil then
        pos = pos + 1
        value, have_value = top, true
        stack[depth], keys[depth], seen_keys[depth] = nil, nil, nil
        depth = depth - 1
      elseif c == '"' then
        local start = pos
        local key
        key, pos = decode_string(s, pos)
        if seen_keys[depth][key] then fail(start, "duplicate object key %q", key) end
        seen_keys[depth][key] = true
        pos = skip_ws(pos)
        if sub(s, pos, pos) ~= ":" then fail(pos, "':' expected after object key") end
        keys[depth] = key
        pos = skip_ws(pos + 1)
      else
        fail(pos, pos > n and "unexpected end of input, object key expected" or "object key expected")
      end
    end
    -- 2. read a value (unless step 1 produced the closed empty object)
    if not have_value then
      local c = sub(s, pos, pos)
      if c == "{" or c == "[" then
        if depth >= max_depth then fail(pos, "nesting deeper than %d", max_depth) end
        depth = depth + 1
        stack[depth] = setmetatable({}, c == "{" and json.object_mt or json.array_mt)
        pos = pos + 1
        if c == "{" then
          seen_keys[depth] = {}
        else
          pos = skip_ws(pos)
          if sub(s, pos, pos) == "]" then
            pos = pos + 1
            value, have_value = stack[depth], true
            stack[depth] = nil
            depth = depth - 1
          end
        end
        if not have_value then goto continue end
      elseif c == '"' then
        value, pos = decode_string(s, pos)
      elseif c == "-" or find(c, "^%d") then
        value, pos = decode_number(s, pos)
      elseif literals[c] then
        local word = literals[c][1]
        if sub(s, pos, pos + #word - 1) ~= word then fail(pos, "invalid literal") end
        value, pos = literals[c][2], pos + #word
      elseif pos > n then
        fail(pos, "unexpected end of input, value expected")
      else
        fail(pos, "unexpected character %q", c)
      end
    end
    -- 3. store the value, then close as many containers as the input closes
    while true do
      top = stack[depth]
      if not top then
        result, have_result = value, true
        break
      end
      if getmetatable(top) == json.object_mt then
        top[keys[depth]] = value
        keys[depth] = nil
      else
        top[#top + 1] = value
      end
      pos = skip_ws(pos)
      local c = sub(s, pos, pos)
      local closer = getmetatable(top) == json.object_mt and "}" or "]"
      if c == "," then
        pos = pos + 1
        break
      elseif c == closer then
        pos = pos + 1
        value = top
        stack[depth], keys[depth], seen_keys[depth] = nil, nil, nil
        depth = depth - 1
      elseif pos > n then
        fail(pos, "unexpected end of input, ',' or '%s' expected", closer)
      else
        fail(pos, "',' or '%s' expected", closer)
      end
    end
    if have_result then break end
    -- after a ',', an array needs a value and an object a key: a trailing comma is an error.
    if getmetatable(stack[depth]) == json.array_mt then
      pos = skip_ws(pos)
      if sub(s, pos, pos) == "]" then fail(pos, "trailing comma before ']'") end
    end
    ::continue::
  end
  pos = skip_ws(pos)
  if pos <= n then fail(pos, "unexpected text after the JSON value") end
  return result
end

---Whether v is a table decoded from a JSON object (or marked with json.object_mt).
---@param v any
---@return boolean
function json.is_object(v) return type(v) == "table" and getmetatable(v) == json.object_mt end
---Whether v is a table decoded from a JSON array.
---@param v any
---@return boolean
function json.is_array(v) return type(v) == "table" and getmetatable(v) == json.array_mt end

return json
