-- lg.save / lg.load: safetensors files. Round trips are bit-exact (tensors compared through
-- their raw bytes, numbers through their bits and Lua subtype); writes are atomic; every
-- corrupt or hostile file gives "load: <path>: <problem>"; a stdlib-only Python reader/writer
-- (spec/helpers/safetensors_check.py) proves the files are ordinary safetensors.
local lg = require "luagrad"
local core = require "luagrad.core"
local json = require "luagrad.json"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"
local util = require "helpers.util"
local shell_quote, read_file, write_file, listdir = util.shell_quote, util.read_file, util.write_file, util.listdir
local f32 = ref.f32

local HELPER = "spec/helpers/safetensors_check.py"

-- ---- helpers ---------------------------------------------------------------------------------

local dir -- a fresh temporary directory per test
local function tmp(name) return dir .. "/" .. name end

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

local function bits(x) return string.pack("<d", x) end

-- Deep equality: tensors by dtype, shape and raw bytes; numbers by subtype and bits.
local function same(a, b, where)
  where = where or "value"
  if lg.is_tensor(a) or lg.is_tensor(b) then
    assert.is_true(lg.is_tensor(a) and lg.is_tensor(b), where .. ": tensor expected on both sides")
    assert.are.equal(a.dtype, b.dtype, where .. " dtype")
    assert.are.same(a.shape, b.shape, where .. " shape")
    assert.are.equal(hex(a:_to_bytes()), hex(b:_to_bytes()), where .. " bytes")
    return
  end
  assert.are.equal(type(a), type(b), where .. " type")
  if type(a) == "number" then
    assert.are.equal(math.type(a), math.type(b), where .. " subtype")
    if math.type(a) == "float" then
      assert.are.equal(hex(bits(a)), hex(bits(b)), where .. " bits of " .. tostring(a))
    else
      assert.are.equal(a, b, where)
    end
  elseif type(a) == "table" then
    for k, v in pairs(a) do
      assert.are_not.equal(nil, b[k], where .. ": key " .. tostring(k) .. " (" .. (math.type(k) or type(k)) .. ") missing")
      same(v, b[k], where .. "." .. tostring(k))
    end
    for k in pairs(b) do
      assert.are_not.equal(nil, a[k], where .. ": extra key " .. tostring(k))
    end
  else
    assert.are.equal(a, b, where)
  end
end

local function roundtrip(value, name)
  local p = tmp(name or "rt.safetensors")
  lg.save(p, value)
  return lg.load(p), p
end

-- A tensor of the given dtype holding exactly these bit patterns.
local function from_bits(dtype, fmt, values, shape)
  local s = {}
  for i, v in ipairs(values) do s[i] = string.pack(fmt, v) end
  local b = table.concat(s)
  return core._from_bytes(b, 0, #b, dtype, shape or { #values })
end

-- The parts of a safetensors file: header length, decoded header, raw header text, data.
local function parse(path)
  local s = read_file(path)
  local n = string.unpack("<I8", s)
  local text = s:sub(9, 8 + n)
  return n, json.decode(text), text, s:sub(9 + n)
end

-- A file with an explicit header text (padded to 8) and data; len overrides the length field.
local function craft(name, header, data, len)
  local h = type(header) == "string" and header or json.encode(header)
  h = h .. string.rep(" ", (8 - #h % 8) % 8)
  local p = tmp(name)
  write_file(p, string.pack("<I8", len or #h) .. h .. (data or ""))
  return p
end

local function load_error(path)
  local ok, err = pcall(lg.load, path)
  assert.is_false(ok, "expected an error loading " .. path)
  assert.are.equal("string", type(err))
  local prefix = "load: " .. path .. ": "
  assert.are.equal(prefix, err:sub(1, #prefix), "message: " .. err)
  return err
end

local function contains(msg, ...)
  for _, piece in ipairs({ ... }) do
    assert.is_truthy(msg:find(piece, 1, true), "'" .. piece .. "' not in: " .. msg)
  end
end

local function python_available()
  local ok = os.execute("command -v python3 >/dev/null 2>&1")
  return ok == true
end

local function python_dump(path)
  local out, ok = util.run("python3 " .. HELPER .. " dump " .. shell_quote(path) .. " 2>&1")
  assert.is_true(ok, "python reader rejected " .. path .. ": " .. out)
  return json.decode(out)
end

local function python_write(path, spec)
  local p = io.popen("python3 " .. HELPER .. " write " .. shell_quote(path), "w")
  p:write(json.encode(spec))
  assert.is_true(p:close(), "python writer failed")
end

-- ---- specs -----------------------------------------------------------------------------------

describe("lg.save / lg.load", function()
  before_each(function()
    dir = util.tmpdir()
  end)
  after_each(function()
    util.remove_dir(dir)
  end)

  describe("round trips", function()
    it("a float32 tensor, bit patterns included (NaN payloads, -0, denormals, inf)", function()
      local pats = { 0x00000000, 0x80000000, 0x3f800000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00001,
        0xffc12345, 0x00000001, 0x807fffff, 0x7f7fffff, 0x3eaaaaab }
      local t = from_bits("float32", "<I4", pats, { 3, 4 })
      local u = roundtrip(t)
      same(t, u)
      assert.are.equal(string.pack("<I4", 0x7fa00001), u:_to_bytes():sub(25, 28))
    end)

    it("float64 and int64 tensors, bit-exact at the extremes", function()
      local d = from_bits("float64", "<i8", { 0, math.mininteger, 0x3ff0000000000000, 0x7ff0000000000001,
        0x0000000000000001, 0x7fefffffffffffff, -1 })
      local i = lg.tensor({ math.maxinteger, math.mininteger, 0, -1, 1 << 53 | 1 }, { dtype = "int64" })
      local v = roundtrip({ d = d, i = i })
      same(d, v.d)
      same(i, v.i)
      assert.are.equal(math.maxinteger, v.i:tolist()[1])
      assert.are.equal((1 << 53) + 1, v.i:tolist()[5])
    end)

    it("a random float32 matrix loads identical, as a tensor (not a table)", function()
      lg.manual_seed(7)
      local t = lg.randn(17, 5)
      local u = roundtrip(t)
      assert.is_true(lg.is_tensor(u))
      assert.are.same({ 17, 5 }, u.shape)
      assert.are.equal("float32", u.dtype)
      same(t, u)
      assert.are.same(t:tolist(), u:tolist())
    end)

    it("0-d tensors of every dtype", function()
      local v = roundtrip({
        a = lg.tensor(2.5), b = lg.tensor(-1 / 3, { dtype = "float64" }), c = lg.tensor(-7, { dtype = "int64" }),
      })
      assert.are.same({}, v.a.shape)
      assert.are.equal(2.5, v.a:item())
      assert.are.equal(-1 / 3, v.b:item())
      assert.are.equal(-7, v.c:item())
      assert.are.equal("integer", math.type(v.c:item()))
    end)

    it("zero-size tensors keep their shapes and take no bytes", function()
      local v, p = roundtrip({ e = lg.zeros(0), f = lg.zeros(2, 0, 3, { dtype = "float64" }),
        g = lg.zeros(0, 4, { dtype = "int64" }), h = lg.ones(2) })
      assert.are.same({ 0 }, v.e.shape)
      assert.are.same({ 2, 0, 3 }, v.f.shape)
      assert.are.equal("float64", v.f.dtype)
      assert.are.same({ 0, 4 }, v.g.shape)
      assert.are.equal(0, v.g:numel())
      assert.are.same({ 1, 1 }, v.h:tolist())
      local _, header = parse(p)
      assert.are.same({ 0, 0 }, header.e.data_offsets)
      assert.are.same({ 0, 0 }, header.f.data_offsets)
      assert.are.same({ 0, 0 }, header.g.data_offsets)
      assert.are.same({ 0, 8 }, header.h.data_offsets)
    end)

    it("non-contiguous tensors are saved as their logical row-major contents", function()
      local a = lg.arange(0, 12, 1, { dtype = "float64" }):reshape(3, 4)
      local tr = a:transpose(1, 2)
      local col = a:select(2, 2)
      local nar = a:narrow(2, 2, 2)
      assert.is_false(tr:is_contiguous())
      local v = roundtrip({ tr = tr, col = col, nar = nar })
      assert.are.same({ 4, 3 }, v.tr.shape)
      assert.are.same({ { 0, 4, 8 }, { 1, 5, 9 }, { 2, 6, 10 }, { 3, 7, 11 } }, v.tr:tolist())
      assert.are.same({ 1, 5, 9 }, v.col:tolist())
      assert.are.same({ { 1, 2 }, { 5, 6 }, { 9, 10 } }, v.nar:tolist())
      assert.is_true(v.tr:is_contiguous())
    end)

    it("a state dict (name -> tensor) comes back with the same names, in sorted data order", function()
      lg.manual_seed(1)
      local sd = { ["0.weight"] = lg.randn(4, 3), ["0.bias"] = lg.randn(4),
        ["1.running_mean"] = lg.zeros(4, { dtype = "float64" }), ["1.num_batches_tracked"] = lg.tensor(5, { dtype = "int64" }) }
      local v, p = roundtrip(sd)
      same(sd, v)
      local n, header, text, data = parse(p)
      assert.are.equal(0, n % 8)
      assert.are.equal(n, #text)
      -- data laid out in name order with no gaps
      local names = { "0.bias", "0.weight", "1.num_batches_tracked", "1.running_mean" }
      local pos = 0
      for _, name in ipairs(names) do
        assert.are.equal(pos, header[name].data_offsets[1], name)
        pos = header[name].data_offsets[2]
      end
      assert.are.equal(#data, pos)
      assert.are.equal("F32", header["0.weight"].dtype)
      assert.are.equal("I64", header["1.num_batches_tracked"].dtype)
      assert.are.equal("F64", header["1.running_mean"].dtype)
      assert.are.same({ 4, 3 }, header["0.weight"].shape)
    end)

    it("an optimizer state dict keeps its structure, integer keys and number subtypes", function()
      local m1, v1 = lg.full({ 2, 2 }, 0.25), lg.full({ 2, 2 }, 1e-8, { dtype = "float64" })
      local osd = {
        state = { [1] = { step = 3, exp_avg = m1, exp_avg_sq = v1 }, [2] = { step = 3, momentum_buffer = lg.ones(3) } },
        param_groups = { { lr = 0.1, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, amsgrad = false,
          params = { 1, 2 }, name = "default", maximize = false, momentum = 0.0 } },
      }
      local v, p = roundtrip(osd)
      same(osd, v)
      assert.are.equal("integer", math.type(v.param_groups[1].params[2]))
      assert.are.equal("integer", math.type(v.param_groups[1].weight_decay))
      assert.are.equal("float", math.type(v.param_groups[1].momentum))
      assert.is_nil(v.state["1"])
      assert.is_true(lg.is_tensor(v.state[1].exp_avg))
      local _, header = parse(p)
      assert.is_truthy(header["state.1.exp_avg"])
      assert.is_truthy(header["state.1.exp_avg_sq"])
      assert.is_truthy(header["state.2.momentum_buffer"])
      assert.is_string(header.__metadata__.luagrad)
    end)

    it("floats survive bit-exactly, integer-valued floats stay floats, integers stay integers", function()
      local xs = { 0.1, 1 / 3, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0 ^ 53,
        2.0 ^ 63, 1e22, 3.0, -1.5e-300, math.pi, math.huge, -math.huge, 0 / 0, -(0 / 0),
        math.maxinteger, math.mininteger, 0, -1, 1 << 53 }
      local v = roundtrip({ xs = xs })
      same(xs, v.xs)
      assert.are.equal("float", math.type(v.xs[11]))
      assert.are.equal("integer", math.type(v.xs[18]))
      assert.are.equal(hex(bits(-0.0)), hex(bits(v.xs[3])))
    end)

    it("mixed keys: integer, float, string and boolean keys, sparse and negative integers", function()
      local value = { [1] = "int one", ["1"] = "string one", [0.5] = 0.25, [-3] = true, [0] = false,
        [100] = { nested = { deeper = { "a", "b" } } }, [true] = "yes", [false] = "no", [""] = "empty",
        list = { 1, 2, 3 }, empty = {}, ["dotted.key"] = "x" }
      local v = roundtrip(value)
      same(value, v)
      assert.are.equal("int one", v[1])
      assert.are.equal("string one", v["1"])
      assert.are.same({}, v.empty)
    end)

    it("a bare number, string or boolean, and a table without tensors", function()
      assert.are.equal(42, roundtrip(42, "n"))
      assert.are.equal("integer", math.type(roundtrip(42, "n2")))
      assert.are.equal("héllo \0 \"quoted\"\n", roundtrip("héllo \0 \"quoted\"\n", "s"))
      assert.are.equal(false, roundtrip(false, "b"))
      local v, p = roundtrip({ a = 1 }, "t")
      assert.are.same({ a = 1 }, v)
      local _, _, _, data = parse(p)
      assert.are.equal("", data)
    end)

    it("a tensor reached twice is stored twice and loads as two equal tensors", function()
      local w = lg.tensor({ 1, 2, 3 })
      local v = roundtrip({ encoder = { weight = w }, decoder = { weight = w } })
      same(w, v.encoder.weight)
      same(w, v.decoder.weight)
      assert.are_not.equal(v.encoder.weight, v.decoder.weight)
    end)

    it("saving is deterministic: the same value gives the same bytes", function()
      local value = { z = lg.ones(2), a = lg.zeros(3), m = { [3] = 1, [1] = 2, x = 0.1, [2.5] = "f" } }
      lg.save(tmp("one"), value)
      lg.save(tmp("two"), value)
      assert.are.equal(read_file(tmp("one")), read_file(tmp("two")))
    end)

    it("saving over an existing file replaces it and leaves no temporary behind", function()
      local p = tmp("m.safetensors")
      lg.save(p, { a = lg.ones(3) })
      lg.save(p, { b = lg.zeros(2) })
      local v = lg.load(p)
      assert.is_nil(v.a)
      assert.are.same({ 0, 0 }, v.b:tolist())
      assert.are.same({ "m.safetensors" }, listdir(dir))
    end)

    it("tensors that require grad save their values; loaded tensors are fresh leaves", function()
      local w = lg.tensor({ 1.5, -2 }, { requires_grad = true })
      local v = roundtrip({ w = w })
      assert.are.same({ 1.5, -2 }, v.w:tolist())
      assert.is_false(v.w.requires_grad)
    end)
  end)

  describe("with nn and optim", function()
    it("a model's and an Adam optimizer's state dicts reload bit-identical", function()
      if not (lg.nn and lg.optim) then
        pending("lg.nn or lg.optim not available in this build")
        return
      end
      lg.manual_seed(5)
      local function make() return lg.nn.Sequential(lg.nn.Linear(4, 3), lg.nn.BatchNorm1d(3)) end
      local m = make()
      local opt = lg.optim.Adam(m:parameters(), { lr = 1e-3 })
      m(lg.randn(6, 4)):sum():backward()
      opt:step()
      local msd, osd = m:state_dict(), opt:state_dict()
      local mv, ov = roundtrip(msd, "model.safetensors"), roundtrip(osd, "optim.safetensors")
      same(msd, mv)
      same(osd, ov)
      local m2 = make()
      m2:load_state_dict(mv)
      same(msd, m2:state_dict())
    end)
  end)

  describe("save errors", function()
    local CASES = {
      { "a function", function() return { f = print } end, { "function", "f" } },
      { "a coroutine deep inside", function() return { a = { b = { coroutine.create(print) } } } end,
        { "thread", "a.b.1" } },
      { "a table key", function() return { [{}] = 1 } end, { "table used as a key" } },
      { "a cycle", function() local t = { x = {} } t.x.back = t return t end, { "contains itself", "x.back" } },
      { "two tensors under one name", function() return { ["a.b"] = lg.ones(1), a = { b = lg.ones(1) } } end,
        { "a.b", "same name" } },
      { "a tensor named __metadata__", function() return { __metadata__ = lg.ones(1) } end, { "__metadata__" } },
      { "nesting too deep", function()
        local t = {}
        local cur = t
        for _ = 1, 200 do cur.x = {} cur = cur.x end
        return t
      end, { "deeper than 100" } },
      { "invalid UTF-8 in a string", function() return { s = "\255\254" } end, { "UTF-8" } },
    }
    for _, c in ipairs(CASES) do
      it("refuses " .. c[1] .. " and leaves the old file and the directory untouched", function()
        local p = tmp("keep.safetensors")
        lg.save(p, { old = lg.ones(2) })
        local before = read_file(p)
        local ok, err = pcall(lg.save, p, c[2]())
        assert.is_false(ok)
        assert.are.equal("save: ", err:sub(1, 6), err)
        contains(err, table.unpack(c[3]))
        assert.are.equal(before, read_file(p))
        assert.are.same({ "keep.safetensors" }, listdir(dir))
      end)
    end

    it("a path that is not a string is a programmer error", function()
      local ok, err = pcall(lg.save, 42, lg.ones(1))
      assert.is_false(ok)
      contains(err, "save: path must be a string")
    end)

    it("a missing directory gives an error naming the path", function()
      local p = tmp("no/such/dir/x.safetensors")
      local ok, err = pcall(lg.save, p, lg.ones(1))
      assert.is_false(ok)
      contains(err, "save: cannot write", p)
    end)
  end)

  describe("atomic writes", function()
    -- A child process whose files may not grow past `kb` KB (ulimit -f, with SIGXFSZ ignored, so a
    -- write past it fails with EFBIG as a full disk would) saves `code`'s value over p.
    local function save_limited(kb, p, code)
      local script = string.format("local lg = require 'luagrad'; lg.save(%q, %s)", p, code)
      local out = util.run(string.format("ulimit -f %d; trap '' XFSZ; %s -e %s 2>&1", kb,
        util.shell_quote(util.LUAGRAD), util.shell_quote(script)))
      return out
    end

    it("a write failing midway leaves the old file intact and removes the temporary", function()
      local p = tmp("model.safetensors")
      lg.save(p, { w = lg.ones(100) })
      local before = read_file(p)
      for _, kb in ipairs({ 1, 4, 16 }) do
        local out = save_limited(kb, p, "{ w = lg.zeros(20000), b = lg.zeros(50) }")
        contains(out, "save: writing", p, "File too large")
        assert.are.equal(before, read_file(p), kb .. " KB")
        assert.are.same({ "model.safetensors" }, listdir(dir))
      end
      assert.are.same(lg.ones(100):tolist(), lg.load(p).w:tolist())
    end)

    it("a failed rename (the target is a directory) leaves no temporary", function()
      local p = tmp("adir")
      os.execute("mkdir " .. shell_quote(p) .. " && touch " .. shell_quote(p .. "/inside"))
      local ok, err = pcall(lg.save, p, lg.ones(2))
      assert.is_false(ok)
      contains(err, "save: cannot replace", p)
      assert.are.same({ "adir" }, listdir(dir))
      assert.are.same({ "inside" }, listdir(p))
    end)

    it("a read-only directory gives an error and the old file stays", function()
      local sub = tmp("ro")
      os.execute("mkdir " .. shell_quote(sub))
      local p = sub .. "/w.safetensors"
      lg.save(p, lg.ones(3))
      local before = read_file(p)
      os.execute("chmod 555 " .. shell_quote(sub))
      local probe = io.open(sub .. "/probe", "w")
      if probe then -- running as root: permissions do not stop writes
        probe:close()
        os.remove(sub .. "/probe")
        print("\nnote: directory permissions do not stop this user (root?); read-only case skipped")
        pending("directory permissions do not apply to this user")
        return
      end
      local ok, err = pcall(lg.save, p, lg.zeros(3))
      assert.is_false(ok)
      contains(err, "save: cannot write", p)
      assert.are.equal(before, read_file(p))
      assert.are.same({ "w.safetensors" }, listdir(sub))
    end)
  end)

  describe("loading defends itself", function()
    it("a missing file returns nil and a message, as io.open does", function()
      local p = tmp("absent.safetensors")
      local v, msg = lg.load(p)
      assert.is_nil(v)
      contains(msg, p, "No such file")
    end)

    it("a file written by another tool (no luagrad metadata) loads as a flat table", function()
      local data = string.pack("<ffff", 1, 2, 3, 4) .. string.pack("<i8", -9)
      local p = craft("other.safetensors", json.encode({
        __metadata__ = { format = "pt" },
        ["layer.weight"] = { dtype = "F32", shape = { 2, 2 }, data_offsets = { 0, 16 } },
        ["layer.count"] = { dtype = "I64", shape = {}, data_offsets = { 16, 24 } },
      }), data)
      local v = lg.load(p)
      assert.are.same({ { 1, 2 }, { 3, 4 } }, v["layer.weight"]:tolist())
      assert.are.equal(-9, v["layer.count"]:item())
      assert.is_nil(v.layer)
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      assert.are.equal(2, n)
    end)

    it("header order need not match data order", function()
      local data = string.pack("<dd", 1.5, 2.5) .. string.pack("<f", 7)
      local p = craft("order.safetensors", '{"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},' ..
        '"a":{"shape":[2],"data_offsets":[0,16],"dtype":"F64"}}', data)
      local v = lg.load(p)
      assert.are.same({ 1.5, 2.5 }, v.a:tolist())
      assert.are.same({ 7 }, v.b:tolist())
    end)

    local ONE = string.pack("<f", 1)
    local function entry(dtype, shape, b, e) return { dtype = dtype, shape = shape, data_offsets = { b, e } } end
    -- name, header (table or raw text), data, length override, substrings of the message
    local BAD = {
      { "an empty file", nil, nil, nil, { "truncated", "8-byte" } },
      { "a header length larger than the file", { x = entry("F32", { 1 }, 0, 4) }, ONE, 4096, { "4096", "truncated" } },
      { "a header length over 100 MB", { x = entry("F32", { 1 }, 0, 4) }, ONE, 100000001, { "100000001", "limit" } },
      { "a header length of 2^64 - 1", { x = entry("F32", { 1 }, 0, 4) }, ONE, -1, { "18446744073709551615", "limit" } },
      { "invalid JSON", '{"x": {"dtype": "F32",', ONE, nil, { "invalid JSON", "byte" } },
      { "trailing JSON garbage", '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}', ONE, nil,
        { "invalid JSON", "unexpected text" } },
      { "a header that is a list", "[1, 2]", "", nil, { "not a JSON object" } },
      { "deeply nested JSON", string.rep("[", 100000), "", nil, { "nesting deeper" } },
      { "an unknown dtype", { x = entry("Q7", { 1 }, 0, 4) }, ONE, nil, { "unknown dtype", "Q7", "'x'" } },
      { "F16 of the wrong size", { x = entry("F16", { 3 }, 0, 4) }, ONE, nil, { "shape [3] of F16 needs 6 bytes" } },
      { "BF16 of the wrong size", { x = entry("BF16", { 1 }, 0, 4) }, ONE, nil, { "of BF16 needs 2 bytes" } },
      { "F8_E4M3", { x = entry("F8_E4M3", { 4 }, 0, 4) }, ONE, nil, { "F8_E4M3 is not supported", "F16 and BF16" } },
      { "I32", { x = entry("I32", { 1 }, 0, 4) }, ONE, nil, { "I32 is not supported" } },
      { "a missing dtype", { x = { shape = { 1 }, data_offsets = { 0, 4 } } }, ONE, nil, { "dtype missing" } },
      { "a negative dimension", { x = entry("F32", { -1 }, 0, 4) }, ONE, nil, { "dimension 1 is -1" } },
      { "a fractional dimension", { x = entry("F32", { 1.5 }, 0, 4) }, ONE, nil, { "dimension 1 is 1.5" } },
      { "a string dimension", { x = entry("F32", { "1" }, 0, 4) }, ONE, nil, { "dimension 1", "not a non-negative integer" } },
      { "a shape that is not a list", { x = entry("F32", 4, 0, 4) }, ONE, nil, { "shape missing or not a list" } },
      { "17 dimensions", { x = entry("F32", { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 0, 4) }, ONE, nil,
        { "17 dimensions" } },
      { "a shape larger than its offsets", { x = entry("F32", { 2 }, 0, 4) }, ONE, nil, { "needs 8 bytes", "[0, 4]" } },
      { "a huge shape with small offsets", { x = entry("F64", { 1 << 40, 1 << 40 }, 0, 8) }, string.rep("\0", 8), nil,
        { "too large" } },
      { "a shape of 2^62 elements", { x = entry("I64", { 1 << 31, 1 << 31 }, 0, 8) }, string.rep("\0", 8), nil,
        { "'x'" } },
      { "offsets outside the data", { x = entry("F32", { 1 }, 4, 8) }, ONE, nil, { "gap" } },
      { "offsets past the end", { x = entry("F32", { 1 }, 0, 4), y = entry("F32", { 1 }, 4, 8) }, ONE, nil,
        { "outside the 4 bytes of data" } },
      { "reversed offsets", { x = entry("F32", { 0 }, 4, 0) }, ONE, nil, { "bad data_offsets [4, 0]" } },
      { "negative offsets", { x = entry("F32", { 1 }, -4, 0) }, ONE, nil, { "bad data_offsets" } },
      { "overlapping tensors", { x = entry("F32", { 2 }, 0, 8), y = entry("F32", { 1 }, 4, 8) }, ONE .. ONE, nil,
        { "overlap" } },
      { "bytes after the last tensor", { x = entry("F32", { 1 }, 0, 4) }, ONE .. ONE, nil, { "4 bytes of data after" } },
      { "three offsets", { x = { dtype = "F32", shape = { 1 }, data_offsets = { 0, 4, 8 } } }, ONE, nil,
        { "two integers" } },
      { "a metadata value that is not a string", { __metadata__ = { luagrad = 1 } }, "", nil, { "not a string" } },
      { "luagrad metadata naming a missing tensor",
        { __metadata__ = { luagrad = '{"format":"luagrad.structure","version":1,"value":{"tensor":"nope"}}' } }, "", nil,
        { "nope", "does not hold" } },
      { "luagrad metadata that skips a tensor",
        { x = entry("F32", { 1 }, 0, 4), __metadata__ = { luagrad = '{"format":"luagrad.structure","version":1,"value":1}' } },
        ONE, nil, { "'x' is not in the luagrad metadata" } },
      { "luagrad metadata from a future version",
        { __metadata__ = { luagrad = '{"format":"luagrad.structure","version":2,"value":1}' } }, "", nil, { "version 2" } },
      { "luagrad metadata with a bad tag",
        { __metadata__ = { luagrad = '{"format":"luagrad.structure","version":1,"value":{"bogus":1}}' } }, "", nil,
        { "unknown tag" } },
      { "luagrad metadata with a table key", { __metadata__ = {
        luagrad = '{"format":"luagrad.structure","version":1,"value":{"table":[[[1],2]]}}' } }, "", nil,
        { "table key" } },
      { "luagrad metadata that is not JSON", { __metadata__ = { luagrad = "{nope" } }, "", nil,
        { "luagrad metadata", "byte 2" } },
    }
    for _, c in ipairs(BAD) do
      it("rejects " .. c[1] .. " with a clear error", function()
        local p
        if c[2] == nil then
          p = tmp("empty")
          write_file(p, "")
        else
          p = craft("bad.safetensors", c[2], c[3], c[4])
        end
        local err = load_error(p)
        contains(err, table.unpack(c[5]))
      end)
    end

    it("a directory is an error naming it, not a crash", function()
      local err = load_error(dir)
      assert.is_truthy(err:find("cannot read") or err:find("truncated"), err)
    end)

    it("survives truncation at every 7th byte", function()
      local p = tmp("full.safetensors")
      lg.manual_seed(3)
      lg.save(p, { w = lg.randn(5, 3), b = lg.zeros(0), s = { step = 1, lr = 0.5 },
        i = lg.tensor({ 1, 2 }, { dtype = "int64" }) })
      local full = read_file(p)
      local cut = tmp("cut.safetensors")
      local count = 0
      for len = 0, #full - 1, 7 do
        write_file(cut, full:sub(1, len))
        local err = load_error(cut)
        assert.is_truthy(err:find("truncated") or err:find("outside") or err:find("invalid JSON")
          or err:find("length"), err)
        count = count + 1
      end
      assert.is_true(count > 20)
      assert.are.same({ 1, 2 }, lg.load(p).i:tolist())
    end)

    it("survives random byte flips in the header: every attempt loads or errors cleanly", function()
      local p = tmp("src.safetensors")
      lg.save(p, { w = lg.ones(2, 3), state = { [1] = { step = 2, m = lg.zeros(3, { dtype = "float64" }) } } })
      local full = read_file(p)
      local n = string.unpack("<I8", full)
      local q = tmp("flip.safetensors")
      math.randomseed(20240601)
      local loaded, failed = 0, 0
      for _ = 1, 600 do
        local bytes = { full:byte(1, #full) }
        for _ = 1, math.random(1, 3) do
          local at = math.random(1, 8 + n)
          bytes[at] = bytes[at] ~ math.random(1, 255)
        end
        local chunks = {}
        for i = 1, #bytes, 4096 do chunks[#chunks + 1] = string.char(table.unpack(bytes, i, math.min(i + 4095, #bytes))) end
        write_file(q, table.concat(chunks))
        local ok, v = pcall(lg.load, q)
        if ok then
          loaded = loaded + 1
          assert.is_true(type(v) == "table" or lg.is_tensor(v))
        else
          failed = failed + 1
          local prefix = "load: " .. q .. ": "
          assert.are.equal(prefix, tostring(v):sub(1, #prefix), tostring(v))
        end
      end
      assert.are.equal(600, loaded + failed)
      assert.is_true(failed > 300, failed .. " failures")
    end)
  end)

  describe("16-bit floats (F16, BF16) load converted, exactly", function()
    -- bit pattern -> the float32 bit pattern it must become
    local F16 = {
      { 0x0000, 0x00000000 }, { 0x8000, 0x80000000 }, -- zero, negative zero
      { 0x0001, 0x33800000 }, { 0x8001, 0xb3800000 }, -- the smallest subnormal, 2^-24
      { 0x03ff, 0x387fc000 }, { 0x0400, 0x38800000 }, -- the largest subnormal, the smallest normal 2^-14
      { 0x3c00, 0x3f800000 }, { 0xc000, 0xc0000000 }, { 0x3555, 0x3eaaa000 }, -- 1, -2, 0.333251953125
      { 0x7bff, 0x477fe000 }, { 0x7c00, 0x7f800000 }, { 0xfc00, 0xff800000 }, -- 65504, inf, -inf
      { 0x7e00, 0x7fc00000 }, { 0xfe01, 0xffc02000 }, { 0x7c01, 0x7f802000 }, -- nans, payloads kept
    }
    local BF16 = {
      { 0x0000, 0x00000000 }, { 0x8000, 0x80000000 }, { 0x0001, 0x00010000 }, { 0x807f, 0x807f0000 },
      { 0x3f80, 0x3f800000 }, { 0x4049, 0x40490000 }, { 0x7f7f, 0x7f7f0000 }, { 0x0080, 0x00800000 },
      { 0x7f80, 0x7f800000 }, { 0xff80, 0xff800000 }, { 0x7fc0, 0x7fc00000 }, { 0xffc1, 0xffc10000 },
    }
    local function file(name, rows, code)
      local halves, want = {}, {}
      for i, r in ipairs(rows) do
        halves[i] = string.pack("<I2", r[1])
        want[i] = string.pack("<I4", r[2])
      end
      local data = table.concat(halves)
      local p = craft(name, { x = { dtype = code, shape = { #rows }, data_offsets = { 0, #data } } }, data)
      return p, table.concat(want)
    end

    for code, rows in pairs({ F16 = F16, BF16 = BF16 }) do
      it(code .. " -> float32: zeros, subnormals, extremes, inf and nan bit for bit", function()
        local p, want = file(code .. ".safetensors", rows, code)
        local t = lg.load(p).x
        assert.are.equal("float32", t.dtype)
        assert.are.equal(hex(want), hex(t:_to_bytes()))
      end)

      it(code .. " -> float64 with {dtype = \"float64\"}: the same values", function()
        local p = file(code .. ".safetensors", rows, code)
        local t = lg.load(p, { dtype = "float64" }).x
        assert.are.equal("float64", t.dtype)
        local got = t:_to_bytes()
        for i, r in ipairs(rows) do
          local x = string.unpack("<f", string.pack("<I4", r[2]))
          local y = string.unpack("<d", got, 8 * i - 7)
          if x ~= x then
            assert.is_true(y ~= y, code .. " row " .. i)
          else
            assert.are.equal(hex(bits(x)), hex(bits(y)), code .. " row " .. i) -- -0 keeps its sign
          end
        end
      end)
    end

    it("mixed with F32 in one file, shaped, as published checkpoints are", function()
      local data = string.pack("<I2I2I2I2", 0x3c00, 0x4000, 0x4200, 0x4400) .. string.pack("<f", 7)
      local p = craft("mixed.safetensors", {
        ["w"] = { dtype = "BF16", shape = { 2, 2 }, data_offsets = { 0, 8 } },
        ["b"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 12 } },
      }, data)
      local v = lg.load(p)
      -- bf16 0x3c00 = 2^-7, 0x4000 = 2, 0x4200 = 32, 0x4400 = 512
      assert.are.same({ { 2 ^ -7, 2 }, { 32, 512 } }, v.w:tolist())
      assert.are.same({ 7 }, v.b:tolist())
      assert.are.equal("float32", lg.load(p, { dtype = "float64" }).b.dtype) -- the option is for 16-bit tensors
    end)

    it("checks its option", function()
      local p = file("x.safetensors", F16, "F16")
      contains(util.message_of(lg.load, p, { dtype = "int64" }), "load: option dtype must be", "float64")
      contains(util.message_of(lg.load, p, { dtyp = "float64" }), "load: unknown option 'dtyp'")
    end)
  end)

  describe("examples/pytorch_interop.lua, the Lua half, on spec/fixtures/interop", function()
    -- The fixture is what `bench/pytorch_interop.py export DIR --bf16` writes, made without
    -- PyTorch by spec/fixtures/make_interop.lua (its output computed there in plain Lua doubles).
    it("loads PyTorch's BF16 state_dict, matches its outputs and writes files PyTorch can read", function()
      local out, ok = util.run(string.format("%s examples/pytorch_interop.lua --out %s 2>&1",
        shell_quote(util.LUAGRAD), shell_quote(dir)))
      assert.is_true(ok, out)
      contains(out, "claim holds: PyTorch's weights give PyTorch's outputs in luagrad")
      local diff = tonumber(out:match("max |PyTorch %- luagrad| over 16 rows: (%S+)"))
      assert.is_true(diff ~= nil and diff < 1e-5, out)
      local torch_state = lg.load("spec/fixtures/interop/torch_model.safetensors")
      local back = lg.load(tmp("luagrad_model.safetensors"))
      local names = {}
      for name, t in pairs(back) do
        names[#names + 1] = name
        same(torch_state[name], t, name) -- bit for bit the weights PyTorch sent (as float32)
      end
      table.sort(names)
      assert.are.same({ "0.bias", "0.weight", "2.bias", "2.weight" }, names)
      if python_available() then -- a reader without luagrad sees the same flat names
        local dump = python_dump(tmp("luagrad_model.safetensors"))
        local pnames = {}
        for i, name in ipairs(dump.names) do pnames[i] = name end
        table.sort(pnames)
        assert.are.same(names, pnames)
        assert.are.same({ 8, 4 }, dump.tensors["0.weight"].shape)
      end
    end)
  end)

  describe("examples/pytorch_interop.lua with PyTorch itself, where it is installed", function()
    local PY
    for _, py in ipairs({ "python3", "/usr/bin/python3" }) do
      if not PY and os.execute(py .. " -c 'import torch' >/dev/null 2>&1") == true then PY = py end
    end
    if not PY then
      pending("PyTorch is not installed: the Lua half runs on spec/fixtures/interop above")
      return
    end
    for _, flag in ipairs({ "", "--bf16" }) do
      it("export " .. flag .. ", the Lua half, check: the outputs agree both ways", function()
        local script = "bench/pytorch_interop.py"
        local out, ok = util.run(string.format("%s %s export %s %s 2>&1", PY, script, shell_quote(dir), flag))
        assert.is_true(ok, out)
        out, ok = util.run(string.format("%s examples/pytorch_interop.lua --dir %s 2>&1", shell_quote(util.LUAGRAD),
          shell_quote(dir)))
        assert.is_true(ok, out)
        contains(out, "claim holds")
        out, ok = util.run(string.format("%s %s check %s 2>&1", PY, script, shell_quote(dir)))
        assert.is_true(ok, out)
        contains(out, "outputs agree")
      end)
    end
  end)

  describe("interoperability with a stdlib-only Python reader and writer", function()
    if not python_available() then
      print("\nnote: python3 not on PATH; skipping the safetensors interoperability cases")
      pending("python3 not on PATH")
      return
    end

    it("Python reads luagrad's file: names, dtypes, shapes, offsets and bytes agree", function()
      lg.manual_seed(11)
      local value = { ["0.weight"] = lg.randn(3, 2), ["0.bias"] = lg.randn(3, { dtype = "float64" }),
        steps = lg.tensor({ 1, -2, math.maxinteger }, { dtype = "int64" }), scalar = lg.tensor(0.5),
        empty = lg.zeros(0, 2), tr = lg.arange(0, 6, 1, { dtype = "float32" }):reshape(2, 3):transpose(1, 2), cfg = { lr = 0.1 } }
      local p = tmp("py.safetensors")
      lg.save(p, value)
      local d = python_dump(p)
      assert.are.equal(0, d.header_len % 8)
      assert.is_string(d.metadata.luagrad)
      local expect = { ["0.bias"] = "F64", ["0.weight"] = "F32", empty = "F32", scalar = "F32", steps = "I64", tr = "F32" }
      local count = 0
      for name, code in pairs(expect) do
        count = count + 1
        local t, info = value[name], d.tensors[name]
        assert.is_truthy(info, name)
        assert.are.equal(code, info.dtype, name)
        assert.are.same(t.shape, info.shape, name)
        assert.are.equal(hex(t:_to_bytes()), info.hex, name)
        -- the values Python decoded with struct/array equal luagrad's, exactly
        local flat = t:numel() > 0 and t:reshape(-1):tolist() or {}
        if t:dim() == 0 then flat = { t:item() } end
        assert.are.equal(#flat, #info.values, name)
        for i, x in ipairs(flat) do
          local y = info.values[i]
          if code ~= "I64" then y = tonumber(y) end
          assert.are.equal(x, y, name .. "[" .. i .. "]")
        end
      end
      assert.are.equal(count, #d.names)
      assert.are.same({ 3, 2 }, d.tensors.tr.shape)
      assert.are.same({ "0", "3", "1", "4", "2", "5" }, (function()
        local r = {}
        for i, s in ipairs(d.tensors.tr.values) do r[i] = s:gsub("%.0$", "") end
        return r
      end)())
    end)

    it("luagrad reads Python's file (safetensors' own layout: wide dtypes first, then by name)", function()
      local p = tmp("from_py.safetensors")
      local spec = { metadata = { format = "np", note = "written by python" }, tensors = {
        ["fc.weight"] = { dtype = "F32", shape = { 2, 3 }, values = { 0.1, -0.2, 3.5, 1e-3, 0, -0.0 } },
        ["fc.bias"] = { dtype = "F64", shape = { 2 }, values = { 0.1, 1 / 3 } },
        labels = { dtype = "I64", shape = { 4 }, values = { 1, 2, math.maxinteger, math.mininteger } },
        zero_d = { dtype = "F64", shape = {}, values = { -2.5 } },
        nothing = { dtype = "F32", shape = { 0, 5 }, values = {} },
        specials = { dtype = "F32", shape = { 3 }, values = { "inf", "-inf", "nan" } },
      } }
      python_write(p, spec)
      local v = lg.load(p)
      local w = v["fc.weight"]
      assert.are.equal("float32", w.dtype)
      local expect_w = { 0.1, -0.2, 3.5, 1e-3, 0, -0.0 }
      for i, x in ipairs(w:reshape(-1):tolist()) do assert.are.equal(f32(expect_w[i]), x) end
      assert.are.same({ 0.1, 1 / 3 }, v["fc.bias"]:tolist())
      assert.are.equal("float64", v["fc.bias"].dtype)
      assert.are.same({ 1, 2, math.maxinteger, math.mininteger }, v.labels:tolist())
      assert.are.equal(-2.5, v.zero_d:item())
      assert.are.same({}, v.zero_d.shape)
      assert.are.same({ 0, 5 }, v.nothing.shape)
      local sp = v.specials:tolist()
      assert.are.equal(math.huge, sp[1])
      assert.are.equal(-math.huge, sp[2])
      assert.is_true(sp[3] ~= sp[3])
      -- Python's layout put F64/I64 first: luagrad read the offsets, not the header order
      local _, header = parse(p)
      assert.are.equal(0, header["fc.bias"].data_offsets[1])
    end)

    it("a Python file in an arbitrary data order round-trips through luagrad byte-identically in content", function()
      local p = tmp("odd.safetensors")
      python_write(p, { order = { "z", "a", "m" }, tensors = {
        a = { dtype = "F64", shape = { 2 }, values = { 1, 2 } },
        m = { dtype = "I64", shape = { 1, 1 }, values = { 7 } },
        z = { dtype = "F32", shape = { 1 }, values = { 9 } },
      } })
      local v = lg.load(p)
      local q = tmp("again.safetensors")
      lg.save(q, v)
      local d1, d2 = python_dump(p), python_dump(q)
      for _, name in ipairs({ "a", "m", "z" }) do
        assert.are.equal(d1.tensors[name].hex, d2.tensors[name].hex, name)
        assert.are.same(d1.tensors[name].shape, d2.tensors[name].shape, name)
      end
      -- luagrad lays its data out in name order
      assert.are.same({ 0, 16 }, d2.tensors.a.data_offsets)
      assert.are.same({ 16, 24 }, d2.tensors.m.data_offsets)
      assert.are.same({ 24, 28 }, d2.tensors.z.data_offsets)
    end)
  end)

  describe("luagrad.json", function()
    it("decodes every JSON type, keeping integers exact and telling [] from {}", function()
      local v = json.decode(' {"a": [1, -0, 2.5, -1e-3, 1E2, "x\\u00e9\\ud83d\\ude00\\n", true, false, null],' ..
        ' "o": {}, "l": [], "big": 9223372036854775807, "small": -9223372036854775808} ')
      assert.are.same({ 1, 0, 2.5, -1e-3, 100.0, "x\u{e9}\u{1f600}\n", true, false, json.null }, v.a)
      assert.are.equal("integer", math.type(v.a[1]))
      assert.are.equal("float", math.type(v.a[5]))
      assert.are.equal(math.maxinteger, v.big)
      assert.are.equal(math.mininteger, v.small)
      assert.is_true(json.is_object(v.o))
      assert.is_true(json.is_array(v.l))
      assert.is_true(json.is_object(v))
    end)

    it("encodes compactly with sorted keys, and floats read back bit-exactly as floats", function()
      assert.are.equal('{"a":[1,2.0,"q\\"\\n"],"b":{},"c":[]}',
        json.encode({ c = {}, b = setmetatable({}, json.object_mt), a = { 1, 2.0, 'q"\n' } }))
      for _, x in ipairs({ 0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 2.0 ^ 70, 3.0, math.pi }) do
        local y = json.decode(json.encode(x))
        assert.are.equal("float", math.type(y))
        assert.are.equal(hex(bits(x)), hex(bits(y)))
      end
    end)

    -- input, message fragment, byte offset
    local BAD_JSON = {
      { "[1,]", "trailing comma", 4 }, { '{"a":1,}', "object key expected", 8 },
      { '{"a":1 "b":2}', "',' or '}' expected", 8 }, { "01", "leading zero", 1 }, { "1.", "decimal point", 2 },
      { "1e+", "exponent", 2 }, { "-", "invalid number", 1 }, { '"a\1"', "control character 0x01", 3 },
      { '"\\ud800x"', "unpaired surrogate", 2 }, { '"\\q"', "bad escape", 2 }, { '"\255"', "invalid UTF-8", 1 },
      { "9223372036854775808", "out of the 64-bit range", 1 }, { "-9223372036854775809", "out of the 64-bit range", 1 },
      { '{"a":1,"a":2}', 'duplicate object key "a"', 8 }, { "[1] 2", "unexpected text", 5 },
      { "", "unexpected end of input", 1 }, { '"abc', "unterminated string", 1 }, { "NaN", "unexpected character", 1 },
      { "[Infinity]", "unexpected character", 2 }, { "tru", "invalid literal", 1 }, { "[1 // c\n]", "',' or ']'", 4 },
      { string.rep("[", 600), "nesting deeper than 512", 513 },
    }
    for _, c in ipairs(BAD_JSON) do
      it("rejects " .. string.format("%q", c[1]:sub(1, 20)) .. " at byte " .. c[3], function()
        local ok, err = pcall(json.decode, c[1])
        assert.is_false(ok)
        contains(err, "json: ", c[2], "at byte " .. c[3])
      end)
    end

    it("refuses to encode what JSON cannot hold, naming where", function()
      local cyc = {}
      cyc.self = cyc
      for _, c in ipairs({ { { x = 0 / 0 }, "$.x" }, { { 1, math.huge }, "$.2" }, { cyc, "contains itself" },
        { { 1, nil, 3 }, "neither an array" }, { { [1] = 1, x = 2 }, "neither an array" }, { { f = print }, "function" },
        { "\200", "UTF-8" } }) do
        local ok, err = pcall(json.encode, c[1])
        assert.is_false(ok)
        contains(err, "json: ", c[2])
      end
    end)

    it("enforces max_length and max_depth, and a million brackets cost one error", function()
      local ok, err = pcall(json.decode, "12345", { max_length = 4 })
      assert.is_false(ok)
      contains(err, "5 bytes", "limit of 4")
      ok, err = pcall(json.decode, "[[1]]", { max_depth = 1 })
      assert.is_false(ok)
      contains(err, "nesting deeper than 1", "byte 2")
      assert.are.same({ { 1 } }, json.decode("[[1]]", { max_depth = 2 }))
      ok, err = pcall(json.decode, string.rep("{\"a\":", 1000000))
      assert.is_false(ok)
      contains(err, "nesting deeper than 512")
    end)

    it("random mutations of a document decode or fail with a json: error", function()
      local doc = json.encode({ a = { 1, 2.5, "x\ty", true, json.null }, b = { c = { d = -3 } }, e = "" })
      math.randomseed(99)
      local decoded, failed = 0, 0
      for _ = 1, 2000 do
        local b = { doc:byte(1, -1) }
        for _ = 1, math.random(1, 4) do
          local at = math.random(1, #b)
          local r = math.random(1, 3)
          if r == 1 then b[at] = math.random(0, 255)
          elseif r == 2 then table.remove(b, at)
          else table.insert(b, at, ("[]{}\",:0-e.\\u"):byte(math.random(1, 15))) end
        end
        local ok, err = pcall(json.decode, string.char(table.unpack(b)))
        if ok then decoded = decoded + 1 else
          failed = failed + 1
          assert.are.equal("json: ", err:sub(1, 6), err)
          assert.is_truthy(err:find("at byte %d+$") or err:find("limit"), err)
        end
      end
      assert.is_true(decoded > 0 and failed > 1000, decoded .. " decoded, " .. failed .. " failed")
    end)
  end)
end)
