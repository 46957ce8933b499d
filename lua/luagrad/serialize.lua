-- luagrad.serialize: lg.save(path, value) and lg.load(path) in the safetensors format
-- (https://github.com/huggingface/safetensors), so files load in Python's safetensors and numpy.
--
-- File layout:
--   8 bytes     N, the header length, little-endian unsigned
--   N bytes     JSON header, padded with spaces so that N is a multiple of 8:
--               {"name": {"dtype": "F32"|"F64"|"I64" (read too: "F16"|"BF16"), "shape": [..], "data_offsets": [b, e]}, ...,
--                "__metadata__": {"luagrad": "<structure JSON>"}}
--   the data    each tensor's elements row-major, little-endian, at [b, e) counted from the start
--               of the data; tensors follow one another in name order, with no gaps.
--
-- What is saved. `value` is a tensor, or a table nesting tensors, numbers, strings, booleans and
-- tables (a module's state_dict, an optimizer's state_dict). Each tensor is stored under its
-- dotted path ("state.1.exp_avg"; a bare tensor as "tensor"). Everything else is described by
-- the structure JSON in __metadata__.luagrad, which lg.load uses to rebuild the same value:
--   {"format": "luagrad.structure", "version": 1, "value": NODE}
--   NODE = integer | float | string | true | false   -- a float always has '.', 'e' or is
--        | {"tensor": name}                           --   {"float": "inf"|"-inf"|"nan"|"-nan"}
--        | [NODE, ...]                                -- a table with keys 1..n (n >= 0)
--        | {"dict": {string: NODE}}                   -- a table with only string keys
--        | {"table": [[KEY, NODE], ...]}              -- any other table; KEY is a NODE that is
--                                                     --   a number, string or boolean
-- Integers stay integers and floats stay floats bit-exactly ("%.17g"). A table reached twice
-- is written twice (and a tensor under both names); a table that contains itself is an error.
-- A file without luagrad metadata (written by another tool) loads as a flat table name -> tensor.
--
-- Writing is atomic: the file is written to a temporary in the same directory, flushed and
-- closed, then renamed over `path`; on any error the temporary is removed, the old file stays,
-- and the error is raised. Loading checks every size before reading or allocating, so a
-- truncated, oversized or hostile file raises "load: <path>: <problem>", never crashes.
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local json = require "luagrad.json"

local M = {}

M.MAX_HEADER = 100000000 -- bytes; the limit Python's safetensors uses
M.MAX_DEPTH = 100        -- nesting of tables in a saved value

local format = string.format
local mtype = math.type

local to_code = { float32 = "F32", float64 = "F64", int64 = "I64" }
local from_code = { F32 = "float32", F64 = "float64", I64 = "int64" }
local elem_size = { F32 = 4, F64 = 8, I64 = 8 }
-- dtypes other tools write that luagrad has no tensors for
-- 16-bit floats, converted on load to float32 (or the `dtype` option's float64), exactly
local elem_size_16 = { F16 = 2, BF16 = 2 }
local unsupported = {
  F8_E4M3 = true, F8_E5M2 = true, F8_E8M0 = true, F4 = true,
  F6_E2M3 = true, F6_E3M2 = true, C64 = true, I32 = true, I16 = true, I8 = true, U64 = true,
  U32 = true, U16 = true, U8 = true, BOOL = true,
}
local MAX_DIMS = 16 -- LG_MAX_DIMS in src/luagrad.h

-- ---- the structure: a Lua value <-> tensors by name + a JSON-able description ----------------

local function key_rank(k)
  local t = type(k)
  return t == "number" and 1 or t == "string" and 2 or 3
end

-- A total, deterministic order on table keys: numbers, then strings, then false < true.
local function key_less(a, b)
  local ra, rb = key_rank(a), key_rank(b)
  if ra ~= rb then return ra < rb end
  if ra == 3 then return (not a) and b end
  return a < b
end

-- Any decoded JSON value as short text for a message (nil included).
local function show(v)
  local ok, text = pcall(json.encode, v)
  return ok and text or tostring(v)
end

local function float_node(x)
  if x ~= x then
    return { float = string.unpack("<i8", string.pack("<d", x)) < 0 and "-nan" or "nan" }
  elseif x == math.huge then
    return { float = "inf" }
  elseif x == -math.huge then
    return { float = "-inf" }
  end
  return x
end

local function key_text(k)
  if mtype(k) == "float" then return format("%.17g", k) end
  return tostring(k)
end

-- Walks `value`, collecting tensors into `tensors` (name -> tensor) and returning its NODE.
local function describe(value, name, tensors, depth, seen)
  local t = type(value)
  if core.is_tensor(value) then
    local key = name == "" and "tensor" or name
    if tensors[key] then
      error(format("save: two tensors would be stored under the same name '%s' (rename a key)", key), 0)
    end
    if key == "__metadata__" then error("save: '__metadata__' is reserved and cannot name a tensor", 0) end
    if not to_code[value.dtype] then error(format("save: tensor '%s' has dtype %s", key, value.dtype), 0) end
    tensors[key] = value
    return { tensor = key }
  elseif t == "number" then
    return mtype(value) == "integer" and value or float_node(value)
  elseif t == "string" or t == "boolean" then
    return value
  elseif t ~= "table" then
    error(format("save: cannot save a %s (at '%s')", t, name == "" and "value" or name), 0)
  end
  local where = name == "" and "value" or name
  if depth >= M.MAX_DEPTH then error(format("save: tables nested deeper than %d at '%s'", M.MAX_DEPTH, where), 0) end
  if seen[value] then error(format("save: the table at '%s' contains itself", where), 0) end
  seen[value] = true
  local keys, n, all_strings = {}, 0, true
  for k in pairs(value) do
    local kt = type(k)
    if kt ~= "number" and kt ~= "string" and kt ~= "boolean" then
      error(format("save: a %s used as a key at '%s' (keys must be numbers, strings or booleans)", kt, where), 0)
    end
    if kt ~= "string" then all_strings = false end
    n = n + 1
    keys[n] = k
  end
  table.sort(keys, key_less)
  local function child(k)
    local sub = name == "" and key_text(k) or name .. "." .. key_text(k)
    return describe(value[k], sub, tensors, depth + 1, seen)
  end
  local node
  local is_list = true
  for i = 1, n do
    if keys[i] ~= i then is_list = false break end
  end
  if is_list then
    node = {}
    for i = 1, n do node[i] = child(i) end
  elseif all_strings then
    local dict = setmetatable({}, json.object_mt)
    for _, k in ipairs(keys) do dict[k] = child(k) end
    node = { dict = dict }
  else
    local pairs_ = {}
    for i, k in ipairs(keys) do
      local knode = mtype(k) == "float" and float_node(k) or k
      pairs_[i] = { knode, child(k) }
    end
    node = { table = pairs_ }
  end
  seen[value] = nil
  return node
end

-- Rebuilds a value from its NODE (decoded JSON); `used` records the tensors referenced.
local function rebuild(node, tensors, used, fail)
  local t = type(node)
  if t == "number" or t == "string" or t == "boolean" then return node end
  if node == json.null or t ~= "table" then fail("luagrad metadata: unexpected null") end
  if json.is_array(node) then
    local list = {}
    for i, v in ipairs(node) do list[i] = rebuild(v, tensors, used, fail) end
    return list
  end
  local tag, arg = next(node)
  if tag == nil or next(node, tag) ~= nil then fail("luagrad metadata: an object must have exactly one tag") end
  if tag == "tensor" then
    if type(arg) ~= "string" or not tensors[arg] then
      fail(format("luagrad metadata names tensor %s, which the file does not hold", show(arg)))
    end
    if used[arg] then fail(format("luagrad metadata uses tensor '%s' twice", arg)) end
    used[arg] = true
    return tensors[arg]
  elseif tag == "float" then
    if arg == "inf" then return math.huge elseif arg == "-inf" then return -math.huge end
    if arg == "nan" or arg == "-nan" then
      local x = string.unpack("<d", string.pack("<i8", arg == "nan" and 0x7ff8000000000000 or -0x0008000000000000))
      return x
    end
    fail("luagrad metadata: bad float " .. show(arg))
  elseif tag == "dict" then
    if not json.is_object(arg) then fail("luagrad metadata: 'dict' must hold an object") end
    local out = {}
    for k, v in pairs(arg) do out[k] = rebuild(v, tensors, used, fail) end
    return out
  elseif tag == "table" then
    if not json.is_array(arg) then fail("luagrad metadata: 'table' must hold a list of pairs") end
    local out = {}
    for _, pair in ipairs(arg) do
      if not json.is_array(pair) or #pair ~= 2 then fail("luagrad metadata: 'table' entries must be [key, value]") end
      local k = rebuild(pair[1], tensors, used, fail)
      local kt = type(k)
      if (kt ~= "number" and kt ~= "string" and kt ~= "boolean") or k ~= k then
        fail("luagrad metadata: a table key must be a number, string or boolean")
      end
      if out[k] ~= nil then fail("luagrad metadata: duplicate table key " .. tostring(k)) end
      out[k] = rebuild(pair[2], tensors, used, fail)
    end
    return out
  end
  fail(format("luagrad metadata: unknown tag %s", show(tag)))
end

-- ---- save ------------------------------------------------------------------------------------

-- Writes header, then the bytes of tensors[name] for each of `names`, to `path`: durably and
-- atomically (core._save_atomic: a temporary fsync'd and renamed over the file, the directory
-- fsync'd; through a symlink to its target; the file's mode kept).
local function write_atomic(path, header, names, tensors)
  local list = {}
  for i, name in ipairs(names) do list[i] = tensors[name] end
  local ok, err = core._save_atomic(path, header, list)
  if not ok then error(err, 0) end
end

---lg.save(path, value): writes value (a tensor or a table of tensors and plain values).
---@param path string
---@param value luagrad.Tensor|table
function M.save(path, value)
  if type(path) ~= "string" then errors.raise("save: path must be a string, got " .. type(path)) end
  local tensors = {}
  local node = describe(value, "", tensors, 0, {})
  local names = {}
  for name in pairs(tensors) do names[#names + 1] = name end
  table.sort(names)

  local entries, offset = setmetatable({}, json.object_mt), 0
  for _, name in ipairs(names) do
    local t = tensors[name]
    local shape = t.shape
    local nbytes = t:numel() * elem_size[to_code[t.dtype]]
    entries[name] = {
      dtype = to_code[t.dtype],
      shape = shape,
      data_offsets = { offset, offset + nbytes },
    }
    offset = offset + nbytes
  end
  local structure = { format = "luagrad.structure", version = 1, value = node }
  local ok, text = pcall(json.encode, structure)
  if not ok then error("save: " .. text, 0) end
  entries.__metadata__ = { luagrad = text }
  local header = json.encode(entries)
  header = header .. string.rep(" ", (8 - #header % 8) % 8)
  if #header > M.MAX_HEADER then
    error(format("save: the header would be %d bytes, more than the %d a reader accepts", #header, M.MAX_HEADER), 0)
  end
  write_atomic(path, string.pack("<I8", #header) .. header, names, tensors)
end

-- ---- load ------------------------------------------------------------------------------------

local function check_entry(name, e, fail, half_dtype)
  if not json.is_object(e) then fail(format("tensor '%s': entry is not an object", name)) end
  local code = e.dtype
  if type(code) ~= "string" then fail(format("tensor '%s': dtype missing or not a string", name)) end
  if not from_code[code] and not elem_size_16[code] then
    if unsupported[code] then
      fail(format("tensor '%s': dtype %s is not supported (luagrad reads F32, F64, I64, F16 and BF16)", name, code))
    end
    fail(format("tensor '%s': unknown dtype %s", name, show(code)))
  end
  local shape, offs = e.shape, e.data_offsets
  if not json.is_array(shape) then fail(format("tensor '%s': shape missing or not a list", name)) end
  if #shape > MAX_DIMS then fail(format("tensor '%s': %d dimensions (at most %d)", name, #shape, MAX_DIMS)) end
  -- numel as the product of the nonzero sizes, kept below 2^53 so no step overflows
  local numel, zero = 1, false
  for i, d in ipairs(shape) do
    if mtype(d) ~= "integer" or d < 0 then
      fail(format("tensor '%s': dimension %d is %s, not a non-negative integer", name, i, show(d)))
    end
    if d == 0 then
      zero = true
    elseif numel > (1 << 53) // d then
      fail(format("tensor '%s': shape %s is too large", name, show(shape)))
    else
      numel = numel * d
    end
  end
  if zero then numel = 0 end
  if not json.is_array(offs) or #offs ~= 2 or mtype(offs[1]) ~= "integer" or mtype(offs[2]) ~= "integer" then
    fail(format("tensor '%s': data_offsets must be two integers", name))
  end
  local b, en = offs[1], offs[2]
  if b < 0 or en < b then fail(format("tensor '%s': bad data_offsets [%d, %d]", name, b, en)) end
  local size = elem_size[code] or elem_size_16[code]
  if numel > (en - b) // size or numel * size ~= en - b then
    fail(format("tensor '%s': shape %s of %s needs %s bytes but data_offsets [%d, %d] hold %d",
      name, show(shape), code, numel <= (1 << 53) // size and tostring(numel * size) or "too many",
      b, en, en - b))
  end
  if elem_size_16[code] then return { name = name, dtype = half_dtype, half = code, shape = shape, b = b, e = en } end
  return { name = name, dtype = from_code[code], shape = shape, b = b, e = en }
end

---lg.load(path[, opts]) -> value; nil, message when the file cannot be opened. opts.dtype
---("float32", the default, or "float64") is what F16 and BF16 tensors are converted to.
---@param path string
---@param opts? {dtype: string}
---@return any value what was saved, or a table name -> tensor for another tool's file
---@return string? err
function M.load(path, opts)
  if type(path) ~= "string" then errors.raise("load: path must be a string, got " .. type(path)) end
  opts = errors.options("load", opts, { "dtype" })
  local half_dtype = opts.dtype or "float32"
  if half_dtype ~= "float32" and half_dtype ~= "float64" then
    errors.raisef("load: option dtype must be \"float32\" or \"float64\", got %s", show(half_dtype))
  end
  core._clean_temps(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local function fail(msg)
    f:close()
    error(format("load: %s: %s", path, msg), 0)
  end
  local size, serr = f:seek("end")
  if not size then fail("cannot read: " .. tostring(serr)) end
  f:seek("set", 0)
  local function read(n, what)
    if n == 0 then return "" end
    local s, rerr = f:read(n)
    if s == nil and rerr then fail("cannot read: " .. rerr) end
    if s == nil or #s < n then fail(format("truncated: %s needs %d bytes, the file ends first", what, n)) end
    return s
  end
  if size < 8 then fail(format("truncated: %d bytes, too short for the 8-byte header length", size)) end
  local n = string.unpack("<i8", read(8, "the header length"))
  if n < 0 or n > M.MAX_HEADER then
    -- n read as signed: print it unsigned (q * 10 + r, with q from a logical shift)
    local unsigned = n < 0 and format("%d%d", (n >> 1) // 5, n - ((n >> 1) // 5) * 10) or tostring(n)
    fail(format("header length %s exceeds the limit of %d bytes", unsigned, M.MAX_HEADER))
  end
  if n > size - 8 then
    fail(format("truncated: header length %d but only %d bytes follow", n, size - 8))
  end
  local text = read(n, "the header")
  local ok, header = pcall(json.decode, text, { max_depth = 4 })
  if not ok then fail("invalid JSON header: " .. tostring(header):gsub("^json: ", "")) end
  if not json.is_object(header) then fail("the header is not a JSON object") end
  local data_size = size - 8 - n

  local entries, metadata = {}, nil
  for name, e in pairs(header) do
    if name == "__metadata__" then
      if not json.is_object(e) then fail("__metadata__ is not an object") end
      for k, v in pairs(e) do
        if type(v) ~= "string" then fail(format("__metadata__ value for '%s' is not a string", k)) end
      end
      metadata = e
    else
      entries[#entries + 1] = check_entry(name, e, fail, half_dtype)
    end
  end
  -- the tensors must tile the data exactly: sorted by offset, each begins where the last ended
  table.sort(entries, function(a, b)
    if a.b ~= b.b then return a.b < b.b end
    if a.e ~= b.e then return a.e < b.e end
    return a.name < b.name
  end)
  local pos = 0
  for _, e in ipairs(entries) do
    if e.b < pos then fail(format("tensor '%s': data_offsets [%d, %d] overlap another tensor", e.name, e.b, e.e)) end
    if e.b > pos then fail(format("gap in the data before tensor '%s' (bytes %d to %d unused)", e.name, pos, e.b)) end
    if e.e > data_size then
      fail(format("tensor '%s': data_offsets [%d, %d] lie outside the %d bytes of data (truncated?)",
        e.name, e.b, e.e, data_size))
    end
    pos = e.e
  end
  if pos ~= data_size then fail(format("%d bytes of data after the last tensor", data_size - pos)) end

  local tensors = {}
  for _, e in ipairs(entries) do
    local bytes = read(e.e - e.b, format("tensor '%s'", e.name))
    if e.half then
      tensors[e.name] = core._from_16bit(bytes, 0, #bytes, e.half, e.dtype, setmetatable(e.shape, nil))
    else
      tensors[e.name] = core._from_bytes(bytes, 0, #bytes, e.dtype, setmetatable(e.shape, nil))
    end
  end
  f:close()

  local structure = metadata and metadata.luagrad
  if not structure then return tensors end
  local sok, desc = pcall(json.decode, structure, { max_depth = 3 * M.MAX_DEPTH + 8 })
  if not sok then error(format("load: %s: luagrad metadata: %s", path, desc:gsub("^json: ", "")), 0) end
  local function mfail(msg) error(format("load: %s: %s", path, msg), 0) end
  if not json.is_object(desc) or desc.format ~= "luagrad.structure" then mfail("luagrad metadata: not a luagrad structure") end
  if desc.version ~= 1 then mfail("luagrad metadata: version " .. show(desc.version) .. " is not supported") end
  if desc.value == nil then mfail("luagrad metadata: no value") end
  local used = {}
  local value = rebuild(desc.value, tensors, used, mfail)
  for name in pairs(tensors) do
    if not used[name] then mfail(format("tensor '%s' is not in the luagrad metadata", name)) end
  end
  return value
end

return M
