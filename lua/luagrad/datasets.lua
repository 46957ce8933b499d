-- luagrad.datasets: real data from Debian's packages.
--
--   lg.datasets.fashion_mnist({split = "train" | "test", root = "/usr/share/datasets/fashion-mnist",
--                              normalize = false | true | {mean, std}})
--
-- reads the IDX files that the package dataset-fashion-mnist installs (gzipped or not) and
-- returns a TensorDataset of images (N, 28, 28) float32 in [0, 1] and labels (N) int64 in 1..10,
-- with fields images, labels and classes (the ten class names, in label order). normalize
-- standardizes the pixels while they are decoded, (p - mean) / std, with no extra copy: true uses
-- the training set's mean and standard deviation (M.FASHION_MNIST_MEAN, M.FASHION_MNIST_STD).
--
--   lg.datasets.fortunes({root = "/usr/share/games/fortunes", split = "train" | "val" | "all",
--                         val_fraction = 0.1})
--
-- reads the plain-text fortune files that Debian's package fortunes installs, for character-level
-- language models: the text of every regular file of the folder in bytewise name order (skipping
-- the .dat index files, the .u8 links and anything holding a NUL byte), as one string. The
-- vocabulary is the set of bytes that occur in the whole text, sorted by value (about 100 for
-- Debian's files; at most 256): token i is the i-th such byte, so ids are 1-based and every text
-- made of those bytes round-trips through encode and decode. The last val_fraction of the text
-- is the validation split. Returns a table: data (the split's token ids, an int64 tensor),
-- text, vocab (the bytes, as one-character strings), vocab_size, encode(s) -> int64 tensor,
-- decode(ids) -> string (ids a tensor or a list), files, root, split.
local core = require "luagrad.core"
local data = require "luagrad.data"
local errors = require "luagrad.errors"

local M = {}

M.FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
-- the mean and standard deviation of the 60,000 training images' pixels in [0, 1]
M.FASHION_MNIST_MEAN = 0.28604059
M.FASHION_MNIST_STD = 0.35302424
M.fashion_mnist_classes = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

local function read(root, name)
  local tried = {}
  for _, suffix in ipairs({ ".gz", "" }) do
    local path = root .. "/" .. name .. suffix
    local s, err = core._read_file(path, 64 * 1024 * 1024)
    if s then return s, path end
    tried[#tried + 1] = err
  end
  errors.raisef("fashion_mnist: cannot read %s in %s (%s); install Debian's package dataset-fashion-mnist "
    .. "(apt-get install dataset-fashion-mnist) or pass {root = ...}", name, root, table.concat(tried, "; "))
end

-- An IDX file: magic 0x00000801 (labels, 1 dimension) or 0x00000803 (images, 3 dimensions) of
-- unsigned bytes, then the sizes as big-endian 32-bit integers, then the data.
local function idx(s, path, want_dims)
  if #s < 8 then errors.raisef("fashion_mnist: %s is too short for an IDX file", path) end
  local zero, kind, ndim = string.unpack(">I2BB", s)
  if zero ~= 0 or kind ~= 0x08 or ndim ~= want_dims then
    errors.raisef("fashion_mnist: %s has magic 0x%04x%02x%02x, expected 0x000008%02x (unsigned bytes, %d dimensions)",
      path, zero, kind, ndim, want_dims, want_dims)
  end
  local shape, count = {}, 1
  for d = 1, ndim do
    shape[d] = string.unpack(">I4", s, 5 + 4 * (d - 1))
    count = count * shape[d]
  end
  local offset = 4 + 4 * ndim
  if #s ~= offset + count then
    errors.raisef("fashion_mnist: %s holds %d bytes of data, its header promises %d", path, #s - offset, count)
  end
  return shape, offset
end

---@class luagrad.datasets.FashionMNISTOptions
---@field split? "train"|"test" (default "train")
---@field root? string the folder of the IDX files (default M.FASHION_MNIST_ROOT)
---@field normalize? boolean|number[] true for the training set's mean and std, or {mean, std} (default false)

---@class luagrad.datasets.FashionMNIST: luagrad.data.TensorDataset
---@field images luagrad.Tensor (N, 28, 28) float32
---@field labels luagrad.Tensor (N) int64 in 1..10
---@field classes string[] the ten class names, in label order

---@param opts? luagrad.datasets.FashionMNISTOptions
---@return luagrad.datasets.FashionMNIST
function M.fashion_mnist(opts)
  if type(opts) == "string" then opts = { split = opts } end -- fashion_mnist("test")
  if opts ~= nil and type(opts) ~= "table" then
    errors.raisef('fashion_mnist: expected a split ("train" or "test") or an options table, got %s', type(opts))
  end
  opts = errors.options("fashion_mnist", opts, { "split", "root", "normalize" })
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then
    errors.raisef('fashion_mnist: split must be "train" or "test", got %q', tostring(split))
  end
  local root = opts.root or M.FASHION_MNIST_ROOT
  local prefix = split == "train" and "train" or "t10k"
  local simg, pimg = read(root, prefix .. "-images-idx3-ubyte")
  local slab, plab = read(root, prefix .. "-labels-idx1-ubyte")
  local ishape, ioff = idx(simg, pimg, 3)
  local lshape, loff = idx(slab, plab, 1)
  if ishape[1] ~= lshape[1] then
    errors.raisef("fashion_mnist: %d images but %d labels", ishape[1], lshape[1])
  end
  local mean, std = 0, 1
  if opts.normalize == true then
    mean, std = M.FASHION_MNIST_MEAN, M.FASHION_MNIST_STD
  elseif type(opts.normalize) == "table" then
    mean, std = opts.normalize[1], opts.normalize[2]
    if type(mean) ~= "number" or type(std) ~= "number" or not (std > 0) then
      errors.raise("fashion_mnist: normalize must be true or {mean, std} with std > 0")
    end
  elseif opts.normalize ~= nil and opts.normalize ~= false then
    errors.raise("fashion_mnist: normalize must be true, false or {mean, std}, got " .. type(opts.normalize))
  end
  -- pixel p/255 standardized: (p/255 - mean)/std = p * 1/(255 std) - mean/std
  local images = core._bytes_to_tensor(simg, ioff, ishape, "float32", 1 / (255 * std), -mean / std)
  local labels = core._bytes_to_tensor(slab, loff, lshape, "int64", 1, 1)
  if labels:numel() > 0 then
    local lo, hi = labels:min():item(), labels:max():item()
    if lo < 1 or hi > #M.fashion_mnist_classes then
      errors.raisef("fashion_mnist: %s holds labels %d..%d, outside the %d classes 0..%d", plab, lo - 1, hi - 1,
        #M.fashion_mnist_classes, #M.fashion_mnist_classes - 1)
    end
  end
  local ds = data.TensorDataset(images, labels)
  rawset(ds, "images", images)
  rawset(ds, "labels", labels)
  rawset(ds, "classes", M.fashion_mnist_classes)
  return ds
end

-- ---- fortunes ---------------------------------------------------------------------------------

M.FORTUNES_ROOT = "/usr/share/games/fortunes"

local function fortune_files(root)
  local names, kinds = core._list_dir(root)
  if not names then
    errors.raisef("fortunes: cannot read the folder %s (%s); install Debian's package fortunes "
      .. "(apt-get install fortunes) or pass {root = ...}", root, kinds)
  end
  local files, texts = {}, {}
  for _, name in ipairs(names) do
    if kinds[name] == "file" and not name:match("%.dat$") and not name:match("%.u8$") then
      local s = core._read_file(root .. "/" .. name, 64 * 1024 * 1024)
      if s and #s > 0 and not s:find("\0", 1, true) then -- a NUL byte: not a text file
        files[#files + 1] = name
        texts[#texts + 1] = s
      end
    end
  end
  if #files == 0 then
    errors.raisef("fortunes: no fortune text files in %s; install Debian's package fortunes "
      .. "(apt-get install fortunes) or pass {root = ...}", root)
  end
  return files, texts
end

---@class luagrad.datasets.FortunesOptions
---@field root? string the folder of the fortune files (default M.FORTUNES_ROOT)
---@field split? "train"|"val"|"all" (default "train")
---@field val_fraction? number the share of the text, at its end, held out for validation (default 0.1)

---@class luagrad.datasets.Fortunes
---@field data luagrad.Tensor (N) int64 token ids in 1..vocab_size: the split's text
---@field text string the split's text
---@field vocab string[] token id -> its byte, as a one-character string
---@field vocab_size integer
---@field encode fun(s: string): luagrad.Tensor
---@field decode fun(ids: luagrad.Tensor|integer[]): string
---@field files string[] the files read, in order
---@field root string
---@field split string

---@param opts? luagrad.datasets.FortunesOptions|string
---@return luagrad.datasets.Fortunes
function M.fortunes(opts)
  if type(opts) == "string" then opts = { split = opts } end -- fortunes("val")
  if opts ~= nil and type(opts) ~= "table" then
    errors.raisef('fortunes: expected a split ("train", "val" or "all") or an options table, got %s', type(opts))
  end
  opts = errors.options("fortunes", opts, { "root", "split", "val_fraction" })
  local split = opts.split or "train"
  if split ~= "train" and split ~= "val" and split ~= "all" then
    errors.raisef('fortunes: split must be "train", "val" or "all", got %q', tostring(split))
  end
  local frac = opts.val_fraction or 0.1
  if type(frac) ~= "number" or not (frac >= 0 and frac < 1) then
    errors.raisef("fortunes: val_fraction must be a number in [0, 1), got %s", tostring(frac))
  end
  local root = opts.root or M.FORTUNES_ROOT
  local files, texts = fortune_files(root)
  -- one text: the files in order, each ending with a newline
  for i, s in ipairs(texts) do
    if s:sub(-1) ~= "\n" then texts[i] = s .. "\n" end
  end
  local all = table.concat(texts)

  -- the vocabulary: the bytes that occur, sorted; to_code[c] = the byte whose value is c's id - 1
  local vocab, to_code = {}, {}
  for b = 0, 255 do
    local c = string.char(b)
    if all:find(c, 1, true) then
      vocab[#vocab + 1] = c
      to_code[c] = string.char(#vocab - 1) -- the id - 1 as one byte, read back below with shift 1
    end
  end

  local function encode(s)
    errors.check("fortunes.encode", "s", s, "string")
    local bad = s:match("[^" .. table.concat(vocab):gsub("[%%%]%^%-]", "%%%0"):gsub("%z", "%%z") .. "]")
    if bad then
      errors.raisef("fortunes.encode: byte %d (%q) is not in the vocabulary", bad:byte(), bad)
    end
    return core._bytes_to_tensor((s:gsub(".", to_code)), 0, { #s }, "int64", 1, 1)
  end

  local function decode(ids)
    if core.is_tensor(ids) then ids = ids:reshape(-1):tolist() end
    errors.check("fortunes.decode", "ids", ids, "table")
    local out = {}
    for i, id in ipairs(ids) do
      local c = vocab[id]
      if not c then errors.raisef("fortunes.decode: id %s at position %d is not in 1..%d", tostring(id), i, #vocab) end
      out[i] = c
    end
    return table.concat(out)
  end

  local n_val = math.floor(#all * frac)
  local text = split == "train" and all:sub(1, #all - n_val) or split == "val" and all:sub(#all - n_val + 1) or all
  return {
    data = encode(text), text = text, vocab = vocab, vocab_size = #vocab, encode = encode, decode = decode,
    files = files, root = root, split = split,
  }
end

return M
