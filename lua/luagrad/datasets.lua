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

return M
