-- luagrad.npy: numpy's .npy files (lg.save_npy, lg.load_npy) and .npz archives (lg.load_npz).
-- The format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
--
-- An .npy file:
--   6 bytes     "\x93NUMPY"
--   2 bytes     major, minor version: 1.0 (a 2-byte header length) or 2.0 / 3.0 (4 bytes)
--   2|4 bytes   the header length H, little-endian
--   H bytes     a Python dict literal, padded with spaces and ended by '\n' so that the data
--               start at a multiple of 64: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
--   the data    the elements, C (row-major) order or, when fortran_order is True, column-major
-- luagrad reads and writes descr '<f4' (float32), '<f8' (float64) and '<i8' (int64), and reads
-- '|b1' (numpy's bool) as an int64 tensor of 0s and 1s, luagrad having no bool dtype.
--
-- An .npz is a zip archive of .npy members (numpy.savez stores them, numpy.savez_compressed
-- deflates them); lg.load_npz returns a table from each member's name, less ".npy", to its tensor.
-- The parsing is here in Lua, as lg.load's safetensors reader is (lua/luagrad/serialize.lua):
-- string.unpack cannot read past a string's end, so a truncated or hostile file raises an error
-- rather than reading stray memory. C does what Lua cannot do cheaply: inflating a member and its
-- CRC-32 (core._inflate, core._crc32 in src/binding/lua_io.c, over zlib), copying bytes into a
-- tensor (core._from_bytes) and the durable, atomic write lg.save uses (core._save_atomic).
--
-- Every size is checked before anything is allocated: the data must be as long as the header's
-- shape says; a deflated member is inflated only up to the size its .npy header implies, and a
-- member claiming more than deflate can produce from its compressed bytes (1032 to 1) is refused
-- before inflating, so a zip bomb costs no more memory than the tensor it claims to be.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

local M = {}

M.MAX_HEADER = 100000 -- bytes of an .npy header read; numpy itself refuses more than 10000 by default
local MAX_DIMS = 16 -- LG_MAX_DIMS in include/luagrad.h
local DEFLATE_RATIO = 1032 -- the most output deflate gives per input byte

local format = string.format

local descr_dtype = { ["<f4"] = "float32", ["<f8"] = "float64", ["<i8"] = "int64", ["|b1"] = "int64" }
local item_size = { ["<f4"] = 4, ["<f8"] = 8, ["<i8"] = 8, ["|b1"] = 1 }
local dtype_descr = { float32 = "<f4", float64 = "<f8", int64 = "<i8" }

-- ---- the header: a Python dict literal -------------------------------------------------------

-- Parses the header text: a dict of 'string' keys to 'strings', True/False and tuples of
-- integers, as numpy writes it. Raises fail(message) on anything else.
local function parse_header(text, fail)
  local pos = 1
  local function skip() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function expect(c)
    skip()
    if text:sub(pos, pos) ~= c then
      fail(format("bad header: expected '%s' at byte %d of %q", c, pos, text:sub(1, 200)))
    end
    pos = pos + 1
  end
  local function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "'" or c == '"' then
      local close = text:find(c, pos + 1, true)
      if not close then fail("bad header: an unterminated string") end
      local s = text:sub(pos + 1, close - 1)
      pos = close + 1
      return s
    elseif c == "(" then
      pos = pos + 1
      local list = {}
      while true do
        skip()
        if text:sub(pos, pos) == ")" then pos = pos + 1 break end
        local digits = text:match("^%d+", pos)
        if not digits then fail(format("bad header: shape entries must be integers, at %q", text:sub(pos, pos + 20))) end
        local d = math.tointeger(tonumber(digits))
        if not d or #digits > 18 then fail("bad header: a dimension of " .. digits .. " is too large") end
        list[#list + 1] = d
        pos = pos + #digits
        if text:sub(pos, pos) == "L" then pos = pos + 1 end -- Python 2's longs: (3L, 4L)
        skip()
        if text:sub(pos, pos) == "," then pos = pos + 1 end
      end
      return list
    end
    for word, v in pairs({ True = true, False = false }) do
      if text:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        return v
      end
    end
    fail(format("bad header: unexpected %q", text:sub(pos, pos + 20)))
  end
  local dict = {}
  expect("{")
  while true do
    skip()
    if text:sub(pos, pos) == "}" then pos = pos + 1 break end
    local key = value()
    if type(key) ~= "string" then fail("bad header: a key that is not a string") end
    expect(":")
    if dict[key] ~= nil then fail("bad header: key '" .. key .. "' twice") end
    dict[key] = value()
    skip()
    if text:sub(pos, pos) == "," then pos = pos + 1 end
  end
  skip()
  if pos <= #text then fail(format("bad header: %q after the dict", text:sub(pos, pos + 20))) end
  return dict
end

-- Reads the preamble and header at the start of s. Returns {descr, shape, fortran, offset (where
-- the data start, 0-based), nbytes (the data's length)}. With `prefix` s holds only the start of
-- the file (a member being inflated) and the data's length is not checked against it.
local function read_header(s, fail, prefix)
  local size = #s
  if #s < 10 or s:sub(1, 6) ~= "\x93NUMPY" then
    if #s >= 6 and s:sub(1, 6) ~= "\x93NUMPY" then fail("not an .npy file (no \\x93NUMPY magic)") end
    fail(format("truncated: %d bytes, too short for an .npy preamble", #s))
  end
  local major, minor = s:byte(7, 8)
  local hlen, start
  if major == 1 then
    hlen, start = string.unpack("<I2", s, 9), 11
  elseif major == 2 or major == 3 then
    if #s < 12 then fail("truncated: the header length is cut off") end
    hlen, start = string.unpack("<I4", s, 9), 13
  else
    fail(format(".npy version %d.%d is not supported (luagrad reads 1.0, 2.0 and 3.0)", major, minor))
  end
  if hlen > M.MAX_HEADER then fail(format("header length %d exceeds the limit of %d bytes", hlen, M.MAX_HEADER)) end
  if start - 1 + hlen > #s then
    fail(format("truncated: header length %d but only %d bytes follow", hlen, #s - (start - 1)))
  end
  local h = parse_header(s:sub(start, start - 1 + hlen), fail)
  for k in pairs(h) do
    if k ~= "descr" and k ~= "fortran_order" and k ~= "shape" then fail("bad header: unknown key '" .. k .. "'") end
  end
  local descr, fortran, shape = h.descr, h.fortran_order, h.shape
  if type(descr) ~= "string" then fail("bad header: 'descr' missing or not a string") end
  if type(fortran) ~= "boolean" then fail("bad header: 'fortran_order' missing or not True/False") end
  if type(shape) ~= "table" then fail("bad header: 'shape' missing or not a tuple") end
  if not descr_dtype[descr] then
    local swapped = descr:match("^>(.*)")
    if swapped and descr_dtype["<" .. swapped] then
      fail(format("dtype '%s' is big-endian; luagrad reads little-endian '<%s' (numpy: a.astype('<%s'))",
        descr, swapped, swapped))
    end
    fail(format("dtype '%s' is not supported (luagrad reads '<f4', '<f8', '<i8' and '|b1')", descr))
  end
  if #shape > MAX_DIMS then fail(format("%d dimensions (at most %d)", #shape, MAX_DIMS)) end
  -- the data's length, checked below 2^53 at every step (no overflow, no huge allocation)
  local numel, zero = 1, false
  for _, d in ipairs(shape) do
    if d == 0 then
      zero = true
    elseif numel > (1 << 53) // d // item_size[descr] then
      fail(format("shape (%s) is too large", table.concat(shape, ", ")))
    else
      numel = numel * d
    end
  end
  if zero then numel = 0 end
  local offset = start - 1 + hlen
  local nbytes = numel * item_size[descr]
  if not prefix and size - offset < nbytes then
    fail(format("truncated: shape (%s) of '%s' needs %d bytes of data, the file has %d",
      table.concat(shape, ", "), descr, nbytes, size - offset))
  elseif not prefix and size - offset > nbytes then
    fail(format("%d bytes after the data of shape (%s)", size - offset - nbytes, table.concat(shape, ", ")))
  end
  return { descr = descr, shape = shape, fortran = fortran, offset = offset, nbytes = nbytes }
end

-- The tensor an .npy held in s (header h from read_header).
local function to_tensor(s, h, fail)
  local shape = h.shape
  if h.fortran then -- column-major: the transpose of the reversed shape's row-major tensor
    local rev = {}
    for i = #shape, 1, -1 do rev[#rev + 1] = shape[i] end
    shape = rev
  end
  local t
  if h.descr == "|b1" then
    if s:find("[^\0\1]", h.offset + 1) then fail("a '|b1' (bool) element is neither 0 nor 1") end
    t = core._bytes_to_tensor(s, h.offset, shape, "int64")
  else
    t = core._from_bytes(s, h.offset, h.nbytes, descr_dtype[h.descr], shape)
  end
  if h.fortran and #shape > 1 then
    local dims = {}
    for i = #shape, 1, -1 do dims[#dims + 1] = i end
    t = t:permute(dims):contiguous()
  end
  return t
end

-- ---- save_npy / load_npy ---------------------------------------------------------------------

---lg.save_npy(path, t): writes t as an .npy file (version 1.0, C order), atomically.
---@param path string
---@param t luagrad.Tensor
function M.save_npy(path, t)
  if type(path) ~= "string" then errors.raise("save_npy: path must be a string, got " .. type(path)) end
  if not core.is_tensor(t) then errors.raise("save_npy: argument #2 must be a tensor, got " .. type(t)) end
  local shape = t.shape
  local dims = #shape == 1 and shape[1] .. "," or table.concat(shape, ", ")
  local header = format("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", dtype_descr[t.dtype], dims)
  local version, len_format = "\1\0", "<I2"
  local pad = (64 - (10 + #header + 1) % 64) % 64
  if #header + pad + 1 > 65535 then -- only with very many dimensions' digits; never in practice
    version, len_format = "\2\0", "<I4"
    pad = (64 - (12 + #header + 1) % 64) % 64
  end
  header = header .. string.rep(" ", pad) .. "\n"
  local ok, err = core._save_atomic(path, "\x93NUMPY" .. version .. string.pack(len_format, #header) .. header, { t })
  if not ok then error((err:gsub("^save:", "save_npy:")), 0) end
end

-- The whole file at path, or nil, message when it cannot be opened; fail(...) on a read error.
local function slurp(path, fail_name)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s, rerr = f:read("a")
  f:close()
  if not s then error(format("%s: %s: cannot read: %s", fail_name, path, tostring(rerr)), 0) end
  return s
end

---lg.load_npy(path) -> tensor; nil, message when the file cannot be opened.
---@param path string
---@return luagrad.Tensor?
---@return string? err
function M.load_npy(path)
  if type(path) ~= "string" then errors.raise("load_npy: path must be a string, got " .. type(path)) end
  local s, err = slurp(path, "load_npy")
  if not s then return nil, err end
  local function fail(msg) error(format("load_npy: %s: %s", path, msg), 0) end
  return to_tensor(s, read_header(s, fail), fail)
end

-- ---- load_npz: the zip container -------------------------------------------------------------

-- The central directory's entries: {name, method, csize, usize, crc, local_offset}.
local function zip_entries(s, fail)
  -- the end-of-central-directory record: its signature, searched back from the end (a comment
  -- of up to 65535 bytes may follow it)
  local eocd
  for i = #s - 21, math.max(1, #s - 21 - 65535), -1 do
    if s:sub(i, i + 3) == "PK\5\6" then
      eocd = i
      break
    end
  end
  if not eocd then fail("not a zip archive (no end-of-central-directory record; truncated?)") end
  local _, _, _, _, count, cd_size, cd_offset = string.unpack("<I4I2I2I2I2I4I4", s, eocd)
  -- zip64: the sizes live in a record the locator just before points to
  if (count == 0xffff or cd_offset == 0xffffffff or cd_size == 0xffffffff) and eocd > 20
    and s:sub(eocd - 20, eocd - 17) == "PK\6\7" then
    local rec = string.unpack("<I8", s, eocd - 20 + 8)
    if rec < 0 or rec + 56 > #s or s:sub(rec + 1, rec + 4) ~= "PK\6\6" then fail("bad zip64 end-of-directory record") end
    count, _, cd_size, cd_offset = string.unpack("<I8I8I8I8", s, rec + 1 + 24)
  end
  if cd_offset < 0 or cd_size < 0 or cd_offset + cd_size > #s then
    fail("the central directory lies outside the file (truncated?)")
  end
  if count > cd_size // 46 then fail(format("%d entries cannot fit in a %d-byte central directory", count, cd_size)) end
  local entries, pos, seen = {}, cd_offset + 1, {}
  for _ = 1, count do
    if pos + 46 > cd_offset + cd_size + 1 or s:sub(pos, pos + 3) ~= "PK\1\2" then
      fail("bad central directory entry (truncated or corrupt)")
    end
    local flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _, loff =
      string.unpack("<I2I2I2I2I4I4I4I2I2I2I2I2I4I4", s, pos + 8)
    if pos + 46 + nlen + xlen + clen > cd_offset + cd_size + 1 then fail("a central directory entry runs past its end") end
    local name = s:sub(pos + 46, pos + 45 + nlen)
    -- zip64 extra field: the 8-byte sizes and offset, for those whose 4-byte field is 0xffffffff
    local x, xend = pos + 46 + nlen, pos + 46 + nlen + xlen
    while x + 4 <= xend do
      local id, len = string.unpack("<I2I2", s, x)
      if x + 4 + len > xend then fail(format("member '%s': bad extra field", name)) end
      if id == 1 then
        local at = x + 4
        local function big(v)
          if v ~= 0xffffffff then return v end
          if at + 8 > x + 4 + len then fail(format("member '%s': short zip64 field", name)) end
          local b = string.unpack("<I8", s, at)
          at = at + 8
          if b < 0 then fail(format("member '%s': size beyond 2^63", name)) end
          return b
        end
        usize, csize, loff = big(usize), big(csize), big(loff)
      end
      x = x + 4 + len
    end
    if flags & 1 ~= 0 then fail(format("member '%s' is encrypted", name)) end
    if seen[name] then fail(format("member '%s' appears twice", name)) end
    seen[name] = true
    entries[#entries + 1] = { name = name, method = method, csize = csize, usize = usize, crc = crc, loff = loff }
    pos = pos + 46 + nlen + xlen + clen
  end
  return entries
end

-- The 1-based position of entry e's data in s, from its local header.
local function member_data(s, e, fail)
  local p = e.loff + 1
  if e.loff < 0 or p + 30 > #s + 1 or s:sub(p, p + 3) ~= "PK\3\4" then
    fail(format("member '%s': bad local header", e.name))
  end
  local nlen, xlen = string.unpack("<I2I2", s, p + 26)
  local start = p + 30 + nlen + xlen
  if start - 1 + e.csize > #s then fail(format("member '%s': its %d bytes run past the end (truncated?)", e.name, e.csize)) end
  return start
end

---lg.load_npz(path) -> {name = tensor, ...}; nil, message when the file cannot be opened.
---@param path string
---@return table<string, luagrad.Tensor>?
---@return string? err
function M.load_npz(path)
  if type(path) ~= "string" then errors.raise("load_npz: path must be a string, got " .. type(path)) end
  local s, err = slurp(path, "load_npz")
  if not s then return nil, err end
  local function fail(msg) error(format("load_npz: %s: %s", path, msg), 0) end
  local out = {}
  for _, e in ipairs(zip_entries(s, fail)) do
    local function mfail(msg) fail(format("member '%s': %s", e.name, msg)) end
    local key = e.name:gsub("%.npy$", "")
    if out[key] then mfail("two members are named '" .. key .. "'") end
    local start = member_data(s, e, fail)
    local data
    if e.method == 0 then -- stored
      if e.csize ~= e.usize then mfail(format("stored, but its sizes differ (%d and %d)", e.csize, e.usize)) end
      data = s:sub(start, start - 1 + e.csize)
      read_header(data, mfail) -- checked before anything is copied into a tensor
    elseif e.method == 8 then -- deflated: the header first, then exactly the bytes it implies
      local head, herr = core._inflate(s, start - 1, e.csize, 12 + M.MAX_HEADER)
      if not head then mfail(herr) end
      local h = read_header(head, mfail, true)
      local want = h.offset + h.nbytes
      if want ~= e.usize then
        mfail(format("its .npy header implies %d bytes but the zip directory says %d", want, e.usize))
      end
      if want > e.csize * DEFLATE_RATIO + 64 then
        mfail(format("claims %d bytes from %d compressed, more than deflate can produce", want, e.csize))
      end
      local ended
      data, ended = core._inflate(s, start - 1, e.csize, want)
      if not data then mfail(ended) end
      if #data ~= want or not ended then mfail(format("inflates to more or less than the %d bytes it claims", want)) end
    else
      mfail(format("compression method %d is not supported (stored and deflated are)", e.method))
    end
    if core._crc32(data) ~= e.crc then mfail("CRC-32 mismatch (corrupt data)") end
    out[key] = to_tensor(data, read_header(data, mfail), mfail)
  end
  return out
end

return M
