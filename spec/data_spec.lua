-- lg.data (TensorDataset, Subset, ConcatDataset, random_split, Generator, DataLoader and its options),
-- lg.datasets.fashion_mnist (IDX files through zlib) and lg.datasets.fortunes (the text of
-- Debian's fortune files, as character tokens).
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"

-- An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian sizes, data.
local function idx(sizes, data)
  local parts = { string.pack(">I2BB", 0, 8, #sizes) }
  for _, s in ipairs(sizes) do parts[#parts + 1] = string.pack(">I4", s) end
  parts[#parts + 1] = data
  return table.concat(parts)
end

describe("TensorDataset", function()
  it("indexes rows of every tensor and has the common length", function()
    local x = lg.arange(12):view(6, 2)
    local y = lg.arange(6) * 10
    local ds = lg.data.TensorDataset(x, y)
    assert.are.equal(6, #ds)
    local item = ds[3]
    assert.are.same({ 4, 5 }, item[1]:tolist())
    assert.are.equal(20, item[2])
  end)

  it("rejects tensors with different numbers of rows, 0-d tensors and non-tensors", function()
    assert.has_error(function() lg.data.TensorDataset(lg.zeros(3, 2), lg.zeros(4)) end,
      "TensorDataset: tensor 2 has 4 rows, tensor 1 has 3")
    assert.has_error(function() lg.data.TensorDataset(lg.tensor(1)) end,
      "TensorDataset: tensor 1 is 0-d; it needs a first dimension")
    assert.has_error(function() lg.data.TensorDataset(lg.zeros(3), "y") end,
      "TensorDataset: argument 2 is a string, not a tensor")
  end)
end)

describe("DataLoader", function()
  local x = lg.arange(10):view(10, 1):double()
  local y = lg.arange(10)
  local ds = lg.data.TensorDataset(x, y)

  it("batches in order without shuffling, the last batch short, #loader batches", function()
    local loader = lg.data.DataLoader(ds, { batch_size = 4 })
    local sizes, seen = {}, {}
    for xb, yb in loader do
      sizes[#sizes + 1] = xb:size(1)
      for i = 1, yb:numel() do seen[#seen + 1] = yb[i] end
      assert.are.same(yb:tolist(), xb:view(-1):long():tolist()) -- rows stay paired
    end
    assert.are.same({ 4, 4, 2 }, sizes)
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, seen)
    assert.are.equal(3, #loader)
  end)

  it("drop_last drops the short batch", function()
    local loader = lg.data.DataLoader(ds, { batch_size = 4, drop_last = true })
    local n = 0
    for xb in loader do
      n = n + 1
      assert.are.equal(4, xb:size(1))
    end
    assert.are.equal(2, n)
    assert.are.equal(2, #loader)
  end)

  it("shuffles into a permutation, reproducibly for a seed, and reshuffles every epoch", function()
    local function epoch(loader)
      local order = {}
      for _, yb in loader do
        for i = 1, yb:numel() do order[#order + 1] = yb[i] end
      end
      return order
    end
    lg.manual_seed(7)
    local loader = lg.data.DataLoader(ds, { batch_size = 3, shuffle = true })
    local e1, e2 = epoch(loader), epoch(loader)
    local sorted = { table.unpack(e1) }
    table.sort(sorted)
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, sorted)
    assert.are_not.same(e1, e2)
    lg.manual_seed(7)
    local again = lg.data.DataLoader(ds, { batch_size = 3, shuffle = true })
    assert.are.same(e1, epoch(again))
    assert.are.same(e2, epoch(again))
  end)

  it("batches any dataset with __len and __index by stacking its items", function()
    local items = setmetatable({}, {
      __len = function() return 5 end,
      __index = function(_, i) return { lg.full({ 2 }, i), i * 10 } end,
    })
    local loader = lg.data.DataLoader(items, { batch_size = 2 })
    local xb, yb = loader()
    assert.are.same({ { 1, 1 }, { 2, 2 } }, xb:tolist())
    assert.are.same({ 10, 20 }, yb:tolist())
  end)

  it("rejects a bad batch size", function()
    assert.has_error(function() lg.data.DataLoader(ds, { batch_size = 0 }) end,
      "DataLoader: batch_size must be a positive integer, got 0")
    assert.has_error(function() lg.data.DataLoader(ds, { batch_size = 2.5 }) end,
      "DataLoader: batch_size must be a positive integer, got 2.5")
  end)
end)

describe("FunctionDataset", function()
  it("computes ds[i] = fn(i) when asked, for i in 1..n (negative from the end), each time afresh", function()
    local calls = 0
    local ds = lg.data.FunctionDataset(4, function(i)
      calls = calls + 1
      return { lg.full({ 2 }, i * 1.5), i * 10 }
    end)
    assert.are.equal(4, #ds)
    assert.are.equal(0, calls)
    assert.are.same({ 3, 3 }, ds[2][1]:tolist())
    assert.are.equal(40, ds[-1][2])
    assert.are.equal(10, ds[-4][2])
    ds = lg.data.FunctionDataset(4, function(i) calls = calls + 1 return i end)
    calls = 0
    assert.are.equal(ds[1], ds[1])
    assert.are.equal(2, calls)
    assert.are.equal(0, #lg.data.FunctionDataset(0, print))
  end)

  it("is batched by a DataLoader: tensors stacked, integer labels int64, in shuffled or sampled order", function()
    local ds = lg.data.FunctionDataset(5, function(i) return { lg.full({ 2 }, i), i } end)
    local batches = {}
    for xb, yb in lg.data.DataLoader(ds, { batch_size = 2 }) do batches[#batches + 1] = { xb:tolist(), yb:tolist(), yb.dtype } end
    assert.are.same({
      { { { 1, 1 }, { 2, 2 } }, { 1, 2 }, "int64" },
      { { { 3, 3 }, { 4, 4 } }, { 3, 4 }, "int64" },
      { { { 5, 5 } }, { 5 }, "int64" },
    }, batches)
    -- an item that is one tensor gives one batch tensor; fractional numbers a float tensor
    local single = lg.data.FunctionDataset(3, function(i) return lg.full({ 2, 2 }, i) end)
    local b = lg.data.DataLoader(single, { batch_size = 3, sampler = { 3, 1, 2 } })()
    assert.are.same({ 3, 2, 2 }, b.shape)
    assert.are.same({ 3, 1, 2 }, b:select(2, 1):select(2, 1):tolist())
    local halves = lg.data.DataLoader(lg.data.FunctionDataset(2, function(i) return i / 2 end), { batch_size = 2 })()
    assert.are.same({ 0.5, 1 }, halves:tolist())
    assert.are.equal("float32", halves.dtype)
    -- random_split and Subset compose with it
    local a, rest = lg.data.random_split(ds, { 2, 3 }, lg.data.Generator(3))
    local seen = {}
    for _, part in ipairs({ a, rest }) do
      for _, yb in lg.data.DataLoader(part, { batch_size = 5 }) do
        for _, v in ipairs(yb:tolist()) do seen[#seen + 1] = v end
      end
    end
    table.sort(seen)
    assert.are.same({ 1, 2, 3, 4, 5 }, seen)
  end)

  it("names itself for a bad n, a bad fn, a bad index; a bad item names DataLoader", function()
    assert.has_error(function() lg.data.FunctionDataset(-1, print) end,
      "FunctionDataset: n must be a non-negative integer, got -1")
    assert.has_error(function() lg.data.FunctionDataset(2.5, print) end,
      "FunctionDataset: n must be a non-negative integer, got 2.5")
    assert.has_error(function() lg.data.FunctionDataset(3, 7) end,
      "FunctionDataset: fn must be a function, got number")
    local ds = lg.data.FunctionDataset(3, function(i) return i end)
    assert.has_error(function() return ds[4] end, "FunctionDataset: index 4 out of range 1..3")
    assert.has_error(function() return ds[1.5] end, "FunctionDataset: index must be an integer, got number 1.5")
    local words = lg.data.FunctionDataset(2, function() return "word" end)
    assert.has_error(function() lg.data.DataLoader(words)() end,
      "DataLoader: a dataset item must be a tensor, a number or a list of those (or pass a collate_fn), got string")
  end)
end)

describe("fashion_mnist", function()
  local have = io.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "rb")
  if have then have:close() end

  it("reads the test split from Debian's dataset-fashion-mnist", function()
    if not have then
      print("\nnote: dataset-fashion-mnist is not installed; skipping the real-data case")
      return
    end
    local ds = lg.datasets.fashion_mnist({ split = "test" })
    assert.are.equal(10000, #ds)
    assert.are.same({ 10000, 28, 28 }, ds.images.shape)
    assert.are.equal("float32", ds.images.dtype)
    assert.are.equal("int64", ds.labels.dtype)
    assert.are.equal(0, ds.images:min():item())
    assert.are.equal(1, ds.images:max():item())
    assert.are.equal(1, ds.labels:min():item())
    assert.are.equal(10, ds.labels:max():item())
    -- the test set is balanced: 1,000 images of each class
    for c = 1, 10 do assert.are.equal(1000, ds.labels:eq(c):sum():item()) end
    assert.are.equal("Ankle boot", ds.classes[10])
  end)

  it("reads uncompressed and gzipped IDX files from another root, scaling pixels and shifting labels", function()
    local dir = util.tmpdir()
    local pixels = string.char(0, 255, 51, 102) .. string.char(204, 153, 0, 255)
    util.write_file(dir .. "/t10k-images-idx3-ubyte", idx({ 2, 2, 2 }, pixels))
    util.write_file(dir .. "/t10k-labels-idx1-ubyte", idx({ 2 }, string.char(9, 0)))
    local ds = lg.datasets.fashion_mnist({ split = "test", root = dir })
    assert.are.equal(2, #ds)
    assert.are.same({ 10, 1 }, ds.labels:tolist())
    local img = ds.images:double():tolist()
    assert.is_true(math.abs(img[1][1][2] - 1) < 1e-7 and math.abs(img[1][2][1] - 0.2) < 1e-7)
    assert.is_true(math.abs(img[1][2][2] - 0.4) < 1e-7 and img[2][2][1] == 0, "pixels are bytes / 255")
    -- the same files gzipped are read through zlib
    assert(os.execute("gzip -f '" .. dir .. "/t10k-images-idx3-ubyte' '" .. dir .. "/t10k-labels-idx1-ubyte'"))
    local gz = lg.datasets.fashion_mnist({ split = "test", root = dir })
    assert.are.same(ds.labels:tolist(), gz.labels:tolist())
    assert.are.same(ds.images:tolist(), gz.images:tolist())
    util.remove_dir(dir)
  end)

  it("names the Debian package when the files are missing", function()
    local dir = util.tmpdir()
    local ok, err = pcall(lg.datasets.fashion_mnist, { split = "train", root = dir })
    assert.is_false(ok)
    assert.matches("fashion_mnist: cannot read train%-images%-idx3%-ubyte", err)
    assert.matches("dataset%-fashion%-mnist", err)
    util.remove_dir(dir)
  end)

  it("checks the magic numbers, the sizes and the split", function()
    local dir = util.tmpdir()
    util.write_file(dir .. "/t10k-images-idx3-ubyte", idx({ 1, 2, 2 }, string.rep("\0", 4)))
    util.write_file(dir .. "/t10k-labels-idx1-ubyte", string.pack(">I2BB", 0, 9, 1) .. string.pack(">I4", 1) .. "\0")
    local ok, err = pcall(lg.datasets.fashion_mnist, { split = "test", root = dir })
    assert.is_false(ok)
    assert.matches("has magic 0x00000901, expected 0x00000801", err)
    util.write_file(dir .. "/t10k-labels-idx1-ubyte", idx({ 3 }, "\0\1")) -- promises 3 labels, holds 2
    ok, err = pcall(lg.datasets.fashion_mnist, { split = "test", root = dir })
    assert.is_false(ok)
    assert.matches("holds 2 bytes of data, its header promises 3", err)
    util.write_file(dir .. "/t10k-labels-idx1-ubyte", idx({ 2 }, "\0\1")) -- 2 labels for 1 image
    ok, err = pcall(lg.datasets.fashion_mnist, { split = "test", root = dir })
    assert.is_false(ok)
    assert.matches("1 images but 2 labels", err)
    ok, err = pcall(lg.datasets.fashion_mnist, { split = "valid", root = dir })
    assert.is_false(ok)
    assert.matches('split must be "train" or "test", got "valid"', err)
    util.remove_dir(dir)
  end)

  it("reports a corrupt gzip stream as an error, not a crash", function()
    local dir = util.tmpdir()
    local good = idx({ 2 }, "\0\1")
    util.write_file(dir .. "/t10k-labels-idx1-ubyte", good)
    assert(os.execute("gzip -f " .. util.shell_quote(dir .. "/t10k-labels-idx1-ubyte")))
    local gz = util.read_file(dir .. "/t10k-labels-idx1-ubyte.gz")
    util.write_file(dir .. "/t10k-labels-idx1-ubyte.gz", gz:sub(1, #gz - 6)) -- cut the stream short
    util.write_file(dir .. "/t10k-images-idx3-ubyte", idx({ 2, 1, 1 }, "\0\0"))
    local ok, err = pcall(lg.datasets.fashion_mnist, { split = "test", root = dir })
    assert.is_false(ok)
    assert.matches("corrupt or truncated", err)
    util.remove_dir(dir)
  end)
end)

describe("fortunes", function()
  -- a folder shaped like Debian's: text files with their .dat index and .u8 link, plus things to skip
  local function fake_fortunes()
    local dir = util.tmpdir()
    util.write_file(dir .. "/zen", "Be here.\n%\nNow.\n%\n")
    util.write_file(dir .. "/art", "Ars longa,\nvita brevis.\n%\n")
    util.write_file(dir .. "/art.dat", "\0\0\0\2\0\0\0\1xyz") -- the strfile index: binary, skipped by name
    util.write_file(dir .. "/blob", "QQ\0QQ") -- a NUL byte: not text
    util.write_file(dir .. "/tail", "no newline at the end") -- gets one
    assert(os.execute("ln -s art " .. util.shell_quote(dir .. "/art.u8")))
    assert(os.execute("ln -s zen " .. util.shell_quote(dir .. "/other_link"))) -- any link is skipped
    assert(os.execute("mkdir " .. util.shell_quote(dir .. "/off")))
    util.write_file(dir .. "/off/hidden", "XX\n")
    return dir
  end

  it("reads the regular text files in name order, builds a byte vocabulary and splits off the end", function()
    local dir = fake_fortunes()
    local all = lg.datasets.fortunes({ root = dir, split = "all" })
    assert.are.same({ "art", "tail", "zen" }, all.files)
    local text = "Ars longa,\nvita brevis.\n%\nno newline at the end\nBe here.\n%\nNow.\n%\n"
    assert.are.equal(text, all.text)
    -- the vocabulary: every byte that occurs, sorted, ids from 1
    local seen = {}
    for c in text:gmatch(".") do seen[c] = true end
    local expect = {}
    for b = 0, 255 do if seen[string.char(b)] then expect[#expect + 1] = string.char(b) end end
    assert.are.same(expect, all.vocab)
    assert.are.equal(#expect, all.vocab_size)
    assert.are.equal("\n", all.vocab[1])
    assert.are.equal("int64", all.data.dtype)
    assert.are.same({ #text }, all.data.shape)
    local ids = all.data:tolist()
    for i = 1, #text do assert.are.equal(text:sub(i, i), all.vocab[ids[i]]) end
    assert.are.equal(text, all.decode(all.data))
    assert.are.equal(text, all.decode(ids))
    assert.are.same({ 3, 1 }, all.encode("%\n"):tolist()) -- "\n" is byte 10, " " 32, "%" 37
    -- the last val_fraction of the text is the validation split; the rest, in order, is training
    local train = lg.datasets.fortunes({ root = dir, val_fraction = 0.25 })
    local val = lg.datasets.fortunes({ root = dir, split = "val", val_fraction = 0.25 })
    local n_val = math.floor(#text * 0.25)
    assert.are.equal(text:sub(1, #text - n_val), train.text)
    assert.are.equal(text:sub(#text - n_val + 1), val.text)
    assert.are.same(all.vocab, val.vocab) -- one vocabulary for both splits
    assert.are.equal(train.data:numel() + val.data:numel(), all.data:numel())
    assert.are.equal("train", lg.datasets.fortunes({ root = dir }).split)
    assert.are.equal(math.floor(#text * 0.1), #lg.datasets.fortunes({ root = dir, split = "val" }).text)
    util.remove_dir(dir)
  end)

  it("refuses bytes outside the vocabulary, ids out of range and bad options", function()
    local dir = fake_fortunes()
    local ds = lg.datasets.fortunes({ root = dir })
    local ok, err = pcall(ds.encode, "Ars!")
    assert.is_false(ok)
    assert.matches('fortunes.encode: byte 33 %("!"%) is not in the vocabulary', err)
    ok, err = pcall(ds.decode, { 1, ds.vocab_size + 1 })
    assert.is_false(ok)
    assert.matches("fortunes.decode: id " .. (ds.vocab_size + 1) .. " at position 2 is not in 1..", err)
    ok, err = pcall(lg.datasets.fortunes, { root = dir, split = "test" })
    assert.is_false(ok)
    assert.matches('split must be "train", "val" or "all", got "test"', err)
    ok, err = pcall(lg.datasets.fortunes, { root = dir, val_fraction = 1 })
    assert.is_false(ok)
    assert.matches("val_fraction must be a number in %[0, 1%)", err)
    ok, err = pcall(lg.datasets.fortunes, { root = dir, valfraction = 0.1 })
    assert.is_false(ok)
    assert.matches("valfraction", err)
    util.remove_dir(dir)
  end)

  it("names the Debian package when the folder is missing or holds no fortunes", function()
    local dir = util.tmpdir()
    local ok, err = pcall(lg.datasets.fortunes, { root = dir .. "/nowhere" })
    assert.is_false(ok)
    assert.matches("fortunes: cannot read the folder .*nowhere", err)
    assert.matches("apt%-get install fortunes", err)
    ok, err = pcall(lg.datasets.fortunes, { root = dir })
    assert.is_false(ok)
    assert.matches("no fortune text files in", err)
    assert.matches("apt%-get install fortunes", err)
    util.remove_dir(dir)
  end)

  it("reads Debian's fortunes: about 2.5 MB of text, a vocabulary of at most 256 bytes", function()
    local have = io.open(lg.datasets.FORTUNES_ROOT .. "/fortunes", "rb")
    if not have then
      print("\nnote: the package fortunes is not installed; skipping the real-data case")
      return
    end
    have:close()
    local train, val = lg.datasets.fortunes(), lg.datasets.fortunes({ split = "val" })
    local n = train.data:numel() + val.data:numel()
    assert.is_true(n > 2e6 and n < 4e6, tostring(n))
    assert.are.equal(math.floor(n * 0.1), val.data:numel())
    assert.is_true(train.vocab_size > 90 and train.vocab_size <= 256, tostring(train.vocab_size))
    for _, f in ipairs(train.files) do assert.is_nil(f:match("%.dat$") or f:match("%.u8$"), f) end
    assert.are.equal(1, train.data:min():item())
    assert.are.equal(train.vocab_size, math.max(train.data:max():item(), val.data:max():item()))
    assert.are.equal(train.text:sub(1, 1000), train.decode(train.data:narrow(1, 1, 1000)))
    assert.is_truthy(train.text:find("\n%\n", 1, true), "fortunes are separated by lines holding %")
  end)
end)

-- ---- Generator, Subset, ConcatDataset, random_split; the loader's sampler, generator,
-- ---- collate_fn and num_workers ---------------------------------------------------------------

local function rows(ds) -- every item's first value, in order
  local out = {}
  for i = 1, #ds do out[i] = ds[i][1] end
  return out
end
local function batches(loader) -- every batch's first tensor as a list, for one epoch
  local out = {}
  for x in loader do out[#out + 1] = x:tolist() end
  return out
end
local function i64(t) return lg.tensor(t, { dtype = "int64" }) end
local function ten() return lg.data.TensorDataset(lg.arange(1, 11):float(), lg.arange(1, 11) * 10) end

describe("lg.data.Generator", function()
  it("gives a loader's shuffle its own stream: same seed, same orders, the global generator untouched", function()
    local D = lg.data
    local function orders(seed, global_seed)
      lg.manual_seed(global_seed)
      local before = lg.get_rng_state():tolist()
      local loader = D.DataLoader(ten(), { batch_size = 10, shuffle = true, generator = D.Generator(seed) })
      local e1, e2 = batches(loader), batches(loader)
      assert.are.same(before, lg.get_rng_state():tolist())
      return { e1, e2 }
    end
    local a = orders(7, 1)
    assert.are.same(a, orders(7, 2))
    assert.are_not.same(a[1], a[2]) -- each epoch draws a new order
    assert.are_not.same(a, orders(8, 1))
    local seen = {}
    for _, v in ipairs(a[1][1]) do seen[v] = true end
    for v = 1, 10 do assert.is_true(seen[v]) end
  end)

  it("manual_seed restarts it and get_state/set_state resume it", function()
    local g = lg.data.Generator():manual_seed(3)
    local s = g:get_state()
    local p1 = g:_draw(lg.randperm, 20):tolist()
    assert.are_not.same(p1, g:_draw(lg.randperm, 20):tolist())
    g:set_state(s)
    assert.are.same(p1, g:_draw(lg.randperm, 20):tolist())
    lg.manual_seed(3)
    assert.are.same(p1, lg.randperm(20):tolist()) -- the same Philox stream as lg.manual_seed(3)
    assert.has_error(function() g:manual_seed(1.5) end, "Generator:manual_seed: seed must be an integer, got number 1.5")
    assert.has_error(function() lg.data.Generator(math.huge) end, "Generator: seed must be an integer, got number inf")
  end)
end)

describe("Subset, ConcatDataset, random_split", function()
  local D = lg.data
  it("Subset indexes the dataset at the given indices", function()
    local s = D.Subset(ten(), { 3, 1, 3 })
    assert.are.equal(3, #s)
    assert.are.same({ 3, 1, 3 }, rows(s))
    assert.are.same({ 30, 10, 30 }, { s[1][2], s[2][2], s[3][2] })
    assert.are.same({ 3, 1, 3 }, rows(D.Subset(ten(), i64({ 3, 1, 3 }))))
    assert.are.equal(0, #D.Subset(ten(), {}))
    assert.has_error(function() D.Subset(ten(), { 11 }) end, "Subset: an index is outside 1..10 (the dataset's length)")
    assert.has_error(function() return s[4] end, "Subset: index 4 out of range 1..3")
  end)

  it("ConcatDataset runs through its datasets in order", function()
    local c = D.ConcatDataset({ D.Subset(ten(), { 5, 6 }), ten(), D.TensorDataset(lg.tensor({ 100 }), i64({ 7 })) })
    assert.are.equal(13, #c)
    local want = { 5, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100 }
    assert.are.same(want, rows(c))
    assert.are.equal(100, c[-1][1])
    assert.has_error(function() return c[14] end, "ConcatDataset: index 14 out of range 1..13")
    -- batches of TensorDataset items keep each tensor's dtype
    local x, y = D.DataLoader(c, { batch_size = 13 })()
    assert.are.same(want, x:tolist())
    assert.are.equal("int64", y.dtype)
    assert.are.same({ 50, 60, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 7 }, y:tolist())
  end)

  it("random_split partitions a permutation, by counts or by fractions", function()
    local a, b, c = D.random_split(ten(), { 5, 3, 2 }, D.Generator(0))
    assert.are.same({ 5, 3, 2 }, { #a, #b, #c })
    local all = {}
    for _, s in ipairs({ a, b, c }) do
      for _, v in ipairs(rows(s)) do all[#all + 1] = v end
    end
    table.sort(all)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, all)
    -- the same generator seed gives the same split
    local a2 = D.random_split(ten(), { 5, 3, 2 }, D.Generator(0))
    assert.are.same(rows(a), rows(a2))
    -- fractions: floors 3, 3, 3 and the one left over goes to the first
    local f1, f2, f3 = D.random_split(ten(), { 1 / 3, 1 / 3, 1 / 3 })
    assert.are.same({ 4, 3, 3 }, { #f1, #f2, #f3 })
    assert.has_error(function() D.random_split(ten(), { 5, 4 }) end,
      "random_split: the lengths sum to 9, the dataset has 10 items")
    assert.has_error(function() D.random_split(ten(), { 5, 5 }, 42) end,
      "random_split: generator must be a lg.data.Generator, got number")
  end)
end)

describe("DataLoader's sampler, collate_fn and num_workers", function()
  local D = lg.data
  it("a sampler gives each epoch's order: a list, a tensor or a function", function()
    assert.are.same({ { 10, 1 }, { 5 } }, batches(D.DataLoader(ten(), { batch_size = 2, sampler = { 10, 1, 5 } })))
    assert.are.same({ { 2, 2 } }, batches(D.DataLoader(ten(), { batch_size = 2, sampler = i64({ 2, 2 }) })))
    local calls = 0
    local loader = D.DataLoader(ten(), { batch_size = 4, sampler = function(n)
      calls = calls + 1
      local order = {}
      for i = n, 1, -2 do order[#order + 1] = i end
      return order
    end })
    assert.are.equal(2, #loader)
    assert.are.same({ { 10, 8, 6, 4 }, { 2 } }, batches(loader))
    assert.is_true(calls >= 2)
    assert.has_error(function() D.DataLoader(ten(), { sampler = { 1 }, shuffle = true }) end,
      "DataLoader: sampler and shuffle = true exclude each other")
    assert.has_error(function() batches(D.DataLoader(ten(), { sampler = { 0 } })) end,
      "DataLoader: the sampler gave an index outside 1..10 (the dataset's length)")
  end)

  it("collate_fn makes the batch from the list of items", function()
    local seen
    local loader = D.DataLoader(ten(), { batch_size = 3, collate_fn = function(items)
      seen = items
      local s = 0
      for _, item in ipairs(items) do s = s + item[2] end
      return s, #items
    end })
    local got = {}
    for s, n in loader do got[#got + 1] = { s, n } end
    assert.are.same({ { 60, 3 }, { 150, 3 }, { 240, 3 }, { 100, 1 } }, got)
    assert.are.same({ 10, 100 }, seen[1])
  end)

  it("num_workers is 0 or an error, never silently ignored", function()
    assert.are.equal(0, D.DataLoader(ten(), { num_workers = 0 }).num_workers)
    assert.has_error(function() D.DataLoader(ten(), { num_workers = 2 }) end,
      "DataLoader: num_workers = 2 is not supported: batches are made in the calling thread (leave num_workers out or pass 0)")
    assert.has_error(function() D.DataLoader(ten(), { bach_size = 2 }) end, "DataLoader: unknown option 'bach_size' "
      .. "(accepted: batch_size, shuffle, drop_last, sampler, generator, collate_fn, num_workers)")
  end)
end)
