-- The main job, examples/fashion_mnist.lua, in quick mode: it trains on a slice of
-- Fashion-MNIST, evaluates on test images, saves the model and its curves, and prints the test
-- accuracy. (The full run, 12 epochs on all 60,000 images, is the README's first command.)
package.path = "spec/?.lua;" .. package.path
local lg = require "luagrad"
local util = require "helpers.util"

describe("examples/fashion_mnist.lua --quick", function()
  local dir, out, ok

  setup(function()
    dir = util.tmpdir()
    out, ok = util.run(string.format("LUAGRAD_PROGRESS=plain %s examples/fashion_mnist.lua --quick --out %s 2>&1",
      util.shell_quote(util.LUAGRAD), util.shell_quote(dir .. "/fm")))
  end)

  teardown(function() util.remove_dir(dir) end)

  it("runs to the end and reports a test accuracy above 80% on the quick slice", function()
    assert.is_true(ok, out)
    local last = out:match("([^\n]*)\n?$")
    local acc = tonumber(last:match("^test accuracy: ([%d%.]+)%%$"))
    assert.is_not_nil(acc, "last line: " .. last)
    assert.is_true(acc > 80 and acc <= 100, "accuracy " .. tostring(acc))
  end)

  it("shows progress as plain lines when the output is not a terminal", function()
    assert.matches("epoch 1/2: 100%% 47/47", out)
    assert.is_nil(out:find("\r", 1, true))
    assert.is_nil(out:find("\27[", 1, true))
  end)

  it("saves the model as safetensors that load back into the same architecture", function()
    local sd = assert(lg.load(dir .. "/fm.safetensors"))
    local keys = {}
    for k in pairs(sd) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var",
      "1.weight", "3.bias", "3.weight", "4.bias", "4.num_batches_tracked", "4.running_mean", "4.running_var",
      "4.weight", "6.bias", "6.weight" }, keys)
    assert.are.same({ 256, 784 }, sd["0.weight"].shape)
    assert.are.equal(94, sd["1.num_batches_tracked"]:item()) -- 2 epochs x 47 batches
    local nn = lg.nn
    local model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 128),
      nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    model:load_state_dict(sd)
    model:eval()
    -- the reloaded model classifies test images as well as the run reported (within the slice)
    local test = lg.datasets.fashion_mnist({ split = "test", normalize = true })
    local x = test.images:view(-1, 784):narrow(1, 1, 2000)
    local y = test.labels:narrow(1, 1, 2000)
    local acc = lg.no_grad(function() return model(x):argmax(2):eq(y):sum():item() / 2000 end)
    local reported = tonumber(out:match("test accuracy: ([%d%.]+)%%"))
    assert.is_true(math.abs(acc * 100 - reported) < 0.06, string.format("reloaded %.2f%%, reported %.2f%%", acc * 100, reported))
  end)

  it("writes the loss and accuracy curves as SVG", function()
    for _, name in ipairs({ "fm_loss.svg", "fm_accuracy.svg" }) do
      local svg = util.read_file(dir .. "/" .. name)
      assert.is_truthy(svg:find("<svg", 1, true), name)
      assert.is_truthy(svg:find("<polyline", 1, true) or svg:find("<circle", 1, true), name)
    end
  end)
end)

-- The second main job, the CNN (examples/fashion_mnist_cnn.lua), in quick mode: one epoch on a
-- slice. (The full run is in the README.)
describe("examples/fashion_mnist_cnn.lua --quick", function()
  local dir, out, ok

  setup(function()
    dir = util.tmpdir()
    out, ok = util.run(string.format("LUAGRAD_PROGRESS=plain %s examples/fashion_mnist_cnn.lua --quick --out %s 2>&1",
      util.shell_quote(util.LUAGRAD), util.shell_quote(dir .. "/cnn")))
  end)

  teardown(function() util.remove_dir(dir) end)

  it("runs to the end and reports a test accuracy above 60% after one epoch on the slice", function()
    assert.is_true(ok, out)
    local last = out:match("([^\n]*)\n?$")
    local acc = tonumber(last:match("^test accuracy: ([%d%.]+)%%$"))
    assert.is_not_nil(acc, "last line: " .. last)
    assert.is_true(acc > 60 and acc <= 100, "accuracy " .. tostring(acc))
    assert.matches("epoch 1/1: 100%% 16/16", out)
  end)

  it("saves PyTorch's state-dict keys, which load back into the same model and classify as reported", function()
    local sd = assert(lg.load(dir .. "/cnn.safetensors"))
    local keys = {}
    for k in pairs(sd) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var",
      "1.weight", "12.bias", "12.weight", "4.bias", "4.weight", "5.bias", "5.num_batches_tracked", "5.running_mean",
      "5.running_var", "5.weight", "9.bias", "9.weight" }, keys)
    assert.are.same({ 32, 1, 3, 3 }, sd["0.weight"].shape)
    assert.are.same({ 64, 32, 3, 3 }, sd["4.weight"].shape)
    assert.are.same({ 128, 3136 }, sd["9.weight"].shape)
    local nn = lg.nn
    local model = nn.Sequential(
      nn.Conv2d(1, 32, 3, { padding = 1 }), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3, { padding = 1 }), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    model:load_state_dict(sd)
    model:eval()
    local test = lg.datasets.fashion_mnist({ split = "test", normalize = true })
    local x = test.images:view(-1, 1, 28, 28):narrow(1, 1, 1000)
    local y = test.labels:narrow(1, 1, 1000)
    local acc = lg.no_grad(function() return model(x):argmax(2):eq(y):sum():item() / 1000 end)
    local reported = tonumber(out:match("test accuracy: ([%d%.]+)%%"))
    assert.is_true(math.abs(acc * 100 - reported) < 0.06, string.format("reloaded %.2f%%, reported %.2f%%", acc * 100, reported))
  end)
end)
