-- lg.save_npy / lg.load_npy / lg.load_npz: numpy's .npy and .npz. numpy is not needed: the .npy
-- bytes are written here by hand, byte for byte as numpy.lib.format writes them, and the .npz
-- fixtures in spec/fixtures/ were made by Python's zipfile and zlib the way numpy.savez and
-- numpy.savez_compressed make them (spec/fixtures/make_npz.py). Round trips are bit-exact; every
-- hostile file gives "<function>: <path>: <problem>", never a crash or a huge allocation.
local lg = require "luagrad"
local core = require "luagrad.core"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local read_file, write_file, listdir = util.read_file, util.write_file, util.listdir

local FIXTURES = "spec/fixtures/"

local dir
local function tmp(name) return dir .. "/" .. name end
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- An .npy file's bytes: header dict text as given, padded as numpy pads it, version major.minor.
local function npy(dict, data, major)
  major = major or 1
  local pre = major == 1 and 10 or 12
  local pad = (64 - (pre + #dict + 1) % 64) % 64
  local header = dict .. string.rep(" ", pad) .. "\n"
  local len = major == 1 and string.pack("<I2", #header) or string.pack("<I4", #header)
  return "\x93NUMPY" .. string.char(major, 0) .. len .. header .. (data or "")
end
local function dict(descr, shape, fortran)
  return string.format("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fortran and "True" or "False", shape)
end
local function pack(fmt, values)
  local parts = {}
  for i, v in ipairs(values) do parts[i] = string.pack(fmt, v) end
  return table.concat(parts)
end

local function load_bytes(bytes)
  local p = tmp("x.npy")
  write_file(p, bytes)
  return lg.load_npy(p), p
end

local function error_of(fn, p)
  local ok, err = pcall(fn, p)
  assert.is_false(ok, "expected an error loading " .. p)
  return err
end

local function contains(msg, ...)
  for _, piece in ipairs({ ... }) do
    assert.is_truthy(msg:find(piece, 1, true), "'" .. piece .. "' not in: " .. msg)
  end
end

-- A zip archive (no compression library needed): members {name, data, method}, method 0
-- (stored) or 8 (deflated as one "stored" deflate block, which every inflater reads).
local function zip(members)
  local locals, central, offset = {}, {}, 0
  for _, m in ipairs(members) do
    local data, method = m[2], m[3] or 0
    local body = data
    if method == 8 then body = "\1" .. string.pack("<I2I2", #data, ~#data & 0xffff) .. data end
    local crc = core._crc32(data)
    local lh = string.pack("<I4I2I2I2I2I2I4I4I4I2I2", 0x04034b50, 20, 0, method, 0, 0, crc, #body, #data, #m[1], 0)
      .. m[1]
    locals[#locals + 1] = lh .. body
    central[#central + 1] = string.pack("<I4I2I2I2I2I2I2I4I4I4I2I2I2I2I2I4I4", 0x02014b50, 20, 20, 0, method, 0, 0,
      crc, #body, #data, #m[1], 0, 0, 0, 0, 0, offset) .. m[1]
    offset = offset + #lh + #body
  end
  local cd = table.concat(central)
  return table.concat(locals) .. cd .. string.pack("<I4I2I2I2I2I4I4I2", 0x06054b50, 0, 0, #members, #members, #cd,
    offset, 0)
end

describe("lg.save_npy / lg.load_npy", function()
  before_each(function() dir = util.tmpdir() end)
  after_each(function() util.remove_dir(dir) end)

  it("writes the bytes numpy writes: version 1.0, a dict padded to 64, C order", function()
    local p = tmp("a.npy")
    lg.save_npy(p, lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }))
    local want = npy(dict("<f4", "(2, 3)"), pack("<f", { 1, 2, 3, 4, 5, 6 }))
    assert.are.equal(hex(want), hex(read_file(p)))
    assert.are.equal(128 + 24, #read_file(p))
    lg.save_npy(p, lg.tensor({ 7 }, { dtype = "int64" }))
    assert.are.equal(hex(npy(dict("<i8", "(1,)"), string.pack("<i8", 7))), hex(read_file(p)))
    lg.save_npy(p, lg.tensor(2.5, { dtype = "float64" }))
    assert.are.equal(hex(npy(dict("<f8", "()"), string.pack("<d", 2.5))), hex(read_file(p)))
  end)

  it("round-trips every dtype bit-exactly, views and empty tensors included", function()
    local f32 = core._from_bytes(pack("<I4", { 0x7fc00001, 0x80000000, 0x00000001, 0x7f800000, 0xff800000, 0x3f800000 }),
      0, 24, "float32", { 2, 3 })
    local cases = {
      f32,
      lg.tensor({ { 1e-310, -0.0 }, { math.huge, 1 / 3 } }, { dtype = "float64" }),
      lg.tensor({ math.mininteger, -1, 0, math.maxinteger }, { dtype = "int64" }),
      lg.arange(0, 12):reshape(3, 4):t(), -- a transposed view is written in its logical order
      lg.zeros(0, 3),
      lg.tensor(42, { dtype = "int64" }),
    }
    for i, t in ipairs(cases) do
      local p = tmp("rt" .. i .. ".npy")
      lg.save_npy(p, t)
      local back = lg.load_npy(p)
      assert.are.equal(t.dtype, back.dtype)
      assert.are.same(t.shape, back.shape)
      assert.are.equal(hex(t:_to_bytes()), hex(back:_to_bytes()), "case " .. i)
    end
  end)

  it("reads versions 2.0 and 3.0, Fortran order and bool (as int64 0/1)", function()
    local t = load_bytes(npy(dict("<f8", "(2,)"), pack("<d", { 1.5, -2 }), 2))
    assert.are.same({ 1.5, -2 }, t:tolist())
    t = load_bytes(npy(dict("<i8", "(1,)"), string.pack("<i8", -5), 3))
    assert.are.same({ -5 }, t:tolist())
    -- shape (2, 3, 2) in Fortran order: element [i][j][k] sits at i + 2 j + 6 k
    local vals = {}
    for n = 0, 11 do vals[n + 1] = n end
    t = load_bytes(npy(dict("<i8", "(2, 3, 2)", true), pack("<i8", vals)))
    assert.are.same({ 2, 3, 2 }, t.shape)
    local list = t:tolist()
    for i = 0, 1 do
      for j = 0, 2 do
        for k = 0, 1 do assert.are.equal(i + 2 * j + 6 * k, list[i + 1][j + 1][k + 1]) end
      end
    end
    assert.is_true(t:is_contiguous())
    t = load_bytes(npy(dict("|b1", "(2, 2)"), "\1\0\0\1"))
    assert.are.equal("int64", t.dtype)
    assert.are.same({ { 1, 0 }, { 0, 1 } }, t:tolist())
    -- numpy's other spellings of the same header: double quotes, no trailing comma, other key order
    t = load_bytes(npy('{"shape": (3,), "fortran_order": False, "descr": "<f4"}', pack("<f", { 1, 2, 3 })))
    assert.are.same({ 1, 2, 3 }, t:tolist())
    t = load_bytes(npy(dict("<f4", "(1L, 2L)"), pack("<f", { 1, 2 }))) -- written by Python 2's numpy
    assert.are.same({ { 1, 2 } }, t:tolist())
  end)

  it("returns nil and a message for a missing file, as io.open does", function()
    local v, msg = lg.load_npy(tmp("absent.npy"))
    assert.is_nil(v)
    contains(msg, "absent.npy", "No such file")
  end)

  -- name, file bytes, substrings of the message
  local BAD = {
    { "an empty file", "", { "truncated" } },
    { "no magic", "PK\3\4 not numpy at all", { "not an .npy file" } },
    { "version 4.0", "\x93NUMPY\4\0\0\0", { "version 4.0" } },
    { "a cut header", npy(dict("<f4", "(1,)"), string.pack("<f", 1)):sub(1, 40), { "truncated", "header length" } },
    { "a header over the limit", "\x93NUMPY\2\0" .. string.pack("<I4", 0xffffffff), { "exceeds the limit" } },
    { "not a dict", npy("[1, 2]", ""), { "bad header", "expected '{'" } },
    { "an unterminated string", npy("{'descr: 1}", ""), { "unterminated string" } },
    { "a missing shape", npy("{'descr': '<f4', 'fortran_order': False}", ""), { "'shape' missing" } },
    { "an unknown key", npy(dict("<f4", "(1,)"):gsub("}$", "'x': 1, }"), ""), { "bad header" } },
    { "a repeated key", npy("{'descr': '<f4', 'descr': '<f4'}", ""), { "'descr' twice" } },
    { "big-endian", npy(dict(">f4", "(1,)"), "\0\0\0\0"), { "big-endian", "'<f4'" } },
    { "int32", npy(dict("<i4", "(1,)"), "\0\0\0\0"), { "'<i4' is not supported", "'|b1'" } },
    { "an object array", npy(dict("|O", "(1,)"), "\0"), { "'|O' is not supported" } },
    { "a negative dimension", npy(dict("<f4", "(-1,)"), ""), { "shape entries must be integers" } },
    { "a float dimension", npy(dict("<f4", "(1.5,)"), ""), { "shape entries must be integers" } },
    { "a 30-digit dimension", npy(dict("<f4", "(" .. string.rep("9", 30) .. ",)"), ""), { "too large" } },
    { "a huge shape", npy(dict("<f8", "(1099511627776, 1099511627776)"), ""), { "too large" } },
    { "17 dimensions", npy(dict("<f4", "(" .. string.rep("1, ", 17) .. ")"), "\0\0\0\0"), { "17 dimensions" } },
    { "truncated data", npy(dict("<f4", "(2, 3)"), string.rep("\0", 20)), { "truncated", "needs 24 bytes", "has 20" } },
    { "trailing bytes", npy(dict("<f4", "(1,)"), string.rep("\0", 5)), { "1 bytes after the data" } },
    { "a bool byte of 2", npy(dict("|b1", "(2,)"), "\1\2"), { "neither 0 nor 1" } },
  }
  for _, case in ipairs(BAD) do
    it("refuses " .. case[1], function()
      local p = tmp("bad.npy")
      write_file(p, case[2])
      local err = error_of(lg.load_npy, p)
      contains(err, "load_npy: " .. p .. ": ", table.unpack(case[3]))
    end)
  end

  it("writes atomically: a failed save leaves the old file and no temporary", function()
    local p = tmp("keep.npy")
    lg.save_npy(p, lg.ones(2))
    local before = read_file(p)
    lg.save_npy(p, lg.zeros(3)) -- replaces it whole
    assert.are.same({ 0, 0, 0 }, lg.load_npy(p):tolist())
    assert.are.same({ "keep.npy" }, listdir(dir))
    local ok, err = pcall(lg.save_npy, tmp("no/such/dir/x.npy"), lg.ones(1))
    assert.is_false(ok)
    contains(err, "save_npy:", "No such file")
    assert.are_not.equal(before, read_file(p))
    assert.are.same({ "keep.npy" }, listdir(dir))
  end)

  it("names itself for wrong arguments", function()
    contains(util.message_of(lg.save_npy, 1, lg.ones(1)), "save_npy", "path must be a string")
    contains(util.message_of(lg.save_npy, tmp("a.npy"), {}), "save_npy", "must be a tensor")
    contains(util.message_of(lg.load_npy, {}), "load_npy", "path must be a string")
    contains(util.message_of(lg.load_npz, nil), "load_npz", "path must be a string")
  end)
end)

describe("lg.load_npz", function()
  before_each(function() dir = util.tmpdir() end)
  after_each(function() util.remove_dir(dir) end)

  it("reads numpy.savez_compressed's archive (deflated, zip64 local headers)", function()
    local z = lg.load_npz(FIXTURES .. "savez_compressed.npz")
    local names = {}
    for k in pairs(z) do names[#names + 1] = k end
    table.sort(names)
    assert.are.same({ "b", "i", "mask", "w", "zeros" }, names)
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6.5 } }, z.w:tolist())
    assert.are.equal("float64", z.b.dtype)
    assert.are.same({ -1.5, 0.25, 1e300 }, z.b:tolist())
    assert.are.same({ { 1, 1 << 62 }, { -2, 7 } }, z.i:tolist()) -- written in Fortran order
    assert.are.same({ 1, 0, 0, 1 }, z.mask:tolist())
    assert.are.same({ 1000, 1000 }, z.zeros.shape)
    assert.are.equal(0, z.zeros:abs():sum():item())
  end)

  it("reads numpy.savez's archive (stored members)", function()
    local z = lg.load_npz(FIXTURES .. "savez.npz")
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6.5 } }, z.w:tolist())
    assert.are.same({ 1, 0, 0, 1 }, z.mask:tolist())
  end)

  it("reads an archive written here, stored and deflated members side by side", function()
    local p = tmp("mine.npz")
    write_file(p, zip({
      { "a.npy", npy(dict("<f8", "(2,)"), pack("<d", { 3, 4 })), 0 },
      { "nested/b.npy", npy(dict("<i8", "()"), string.pack("<i8", 9)), 8 },
    }))
    local z = lg.load_npz(p)
    assert.are.same({ 3, 4 }, z.a:tolist())
    assert.are.equal(9, z["nested/b"]:item())
  end)

  it("refuses a zip bomb: inflation stops at the size the member's header implies", function()
    local p = FIXTURES .. "bomb.npz"
    contains(error_of(lg.load_npz, p), "load_npz: " .. p .. ": member 'x.npy'", "more or less than the 136 bytes")
  end)

  it("refuses a member claiming more than deflate can produce, before inflating", function()
    local p = FIXTURES .. "giant.npz"
    contains(error_of(lg.load_npz, p), "claims 4000000128 bytes from", "more than deflate can produce")
  end)

  local good = zip({ { "a.npy", npy(dict("<f4", "(2,)"), pack("<f", { 1, 2 })), 0 } })
  local function patch(s, at, bytes) return s:sub(1, at - 1) .. bytes .. s:sub(at + #bytes) end
  local local_size = 30 + 5
  -- name, archive bytes, substrings of the message
  local BAD = {
    { "a file that is not a zip", "hello, world", { "not a zip archive" } },
    { "a cut archive", good:sub(1, #good - 30), { "not a zip archive" } },
    { "a cut member", good:sub(1, 40) .. good:sub(#good - 21 - 51 + 1), { "outside the file" } },
    { "a flipped data byte", patch(good, local_size + 130, "\9"), { "CRC-32 mismatch" } },
    { "an unknown method", patch(patch(good, 9, "\12"), #good - 22 - 51 + 11, "\12"), { "method 12" } },
    { "an encrypted member", patch(good, #good - 22 - 51 + 9, "\1"), { "encrypted" } },
    { "a corrupt deflate stream", -- the block type made the reserved 3
      zip({ { "a.npy", npy(dict("<f4", "(1,)"), "\0\0\0\0"), 8 } }):gsub("\1(..)(..)\x93", "\7%1%2\x93", 1),
      { "corrupt deflate data" } },
    { "a bad .npy member", zip({ { "a.npy", "\x93NUMPY\1\0\4\0{}  ", 0 } }), { "member 'a.npy'", "'descr' missing" } },
    { "two members with one name", zip({ { "a.npy", npy(dict("<f4", "()"), "\0\0\0\0") },
      { "a", npy(dict("<f4", "()"), "\0\0\0\0") } }), { "two members are named 'a'" } },
  }
  for _, case in ipairs(BAD) do
    it("refuses " .. case[1], function()
      local p = tmp("bad.npz")
      write_file(p, case[2])
      local err = error_of(lg.load_npz, p)
      contains(err, "load_npz: " .. p .. ": ", table.unpack(case[3]))
    end)
  end

  it("returns nil and a message for a missing file", function()
    local v, msg = lg.load_npz(tmp("absent.npz"))
    assert.is_nil(v)
    contains(msg, "No such file")
  end)
end)

describe("mutated files", function()
  before_each(function() dir = util.tmpdir() end)
  after_each(function() util.remove_dir(dir) end)

  -- Flipped bytes, cuts and splices of valid files (a seeded LCG picks them): each load returns a
  -- value or raises "<function>: <path>: ...", never a raw Lua error, a crash or a hang.
  it("load or fail cleanly, 600 times", function()
    local sources = {
      { lg.load_npy, npy(dict("<f4", "(2, 3)"), pack("<f", { 1, 2, 3, 4, 5, 6 })) },
      { lg.load_npy, npy(dict("|b1", "(3,)", true), "\1\0\1") },
      { lg.load_npz, read_file(FIXTURES .. "savez.npz") },
      { lg.load_npz, read_file(FIXTURES .. "savez_compressed.npz") },
      { lg.load_npz, zip({ { "a.npy", npy(dict("<i8", "(2,)"), pack("<i8", { 1, 2 })), 8 } }) },
    }
    local seed = 7
    local function rand(n) -- 1..n
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local p = tmp("m.bin")
    for i = 1, 600 do
      local src = sources[(i - 1) % #sources + 1]
      local s = src[2]
      local kind = rand(3)
      if kind == 1 then -- flip a few bytes
        for _ = 1, rand(4) do
          local at = rand(#s)
          s = s:sub(1, at - 1) .. string.char(rand(256) - 1) .. s:sub(at + 1)
        end
      elseif kind == 2 then -- cut
        s = s:sub(1, rand(#s) - 1)
      else -- drop a stretch from the middle
        local a = rand(#s)
        s = s:sub(1, a) .. s:sub(a + rand(64))
      end
      write_file(p, s)
      local fn = src[1]
      local ok, err = pcall(fn, p)
      if not ok then
        local name = fn == lg.load_npy and "load_npy" or "load_npz"
        assert.are.equal("string", type(err))
        assert.are.equal(name .. ": " .. p .. ": ", err:sub(1, #name + #p + 4), "mutation " .. i .. ": " .. err)
      end
    end
  end)
end)

-- Against numpy itself, where a python3 on PATH (or Debian's /usr/bin/python3, whose
-- python3-numpy a pyenv python3 first on PATH does not see) imports it; pending otherwise, the
-- hand-written bytes above standing in for it.
local function numpy_python()
  for _, py in ipairs({ "python3", "/usr/bin/python3" }) do
    if os.execute(py .. " -c 'import numpy' >/dev/null 2>&1") == true then return py end
  end
end

describe("against numpy", function()
  local PY = numpy_python()
  if not PY then
    pending("numpy is not installed: the .npy bytes above are written by hand instead")
    return
  end
  before_each(function() dir = util.tmpdir() end)
  after_each(function() util.remove_dir(dir) end)

  local function python(code)
    local out, ok = util.run(PY .. " -c " .. util.shell_quote(code) .. " 2>&1")
    assert.is_true(ok, out)
    return out
  end

  it("reads what numpy.save and numpy.savez_compressed write", function()
    python(string.format([==[
import numpy as np
d = %q
np.save(d + "/f4.npy", np.arange(6, dtype="<f4").reshape(2, 3) / 4)
np.save(d + "/f8.npy", np.array([-0.0, 1e-310, np.inf], dtype="<f8"))
np.save(d + "/i8.npy", np.asfortranarray(np.arange(12, dtype="<i8").reshape(3, 4)))
np.save(d + "/b1.npy", np.array([[True, False], [False, True]]))
np.savez_compressed(d + "/z.npz", a=np.ones((4, 5), dtype="<f8"), b=np.arange(3, dtype="<i8"))
]==], dir))
    assert.are.same({ { 0, 0.25, 0.5 }, { 0.75, 1, 1.25 } }, lg.load_npy(tmp("f4.npy")):tolist())
    local f8 = lg.load_npy(tmp("f8.npy"))
    assert.are.equal(hex(pack("<d", { -0.0, 1e-310, math.huge })), hex(f8:_to_bytes()))
    assert.are.same({ { 0, 1, 2, 3 }, { 4, 5, 6, 7 }, { 8, 9, 10, 11 } }, lg.load_npy(tmp("i8.npy")):tolist())
    assert.are.same({ { 1, 0 }, { 0, 1 } }, lg.load_npy(tmp("b1.npy")):tolist())
    local z = lg.load_npz(tmp("z.npz"))
    assert.are.equal(20, z.a:sum():item())
    assert.are.same({ 0, 1, 2 }, z.b:tolist())
  end)

  it("writes what numpy.load reads", function()
    lg.save_npy(tmp("x.npy"), lg.tensor({ { 1.5, -2 }, { 3, 4 } }, { dtype = "float64" }))
    lg.save_npy(tmp("y.npy"), lg.tensor({ 1, 2, 3 }, { dtype = "int64" }))
    local out = python(string.format([[
import numpy as np
x, y = np.load(%q), np.load(%q)
print(x.dtype, x.shape, x.tolist(), y.dtype, y.tolist())
]], tmp("x.npy"), tmp("y.npy")))
    contains(out, "float64 (2, 2) [[1.5, -2.0], [3.0, 4.0]] int64 [1, 2, 3]")
  end)
end)
