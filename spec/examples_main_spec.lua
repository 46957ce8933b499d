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

-- The third main job, the character-level GPT (examples/gpt.lua), in quick mode: a tiny model
-- trained for 200 steps on Debian's fortunes, evaluated every 50, saved, then sampled; and the
-- saved model reloaded in --sample mode. (The full run, 10 minutes, is in the README.) It needs
-- the sequence ops of issue 15 (F.embedding, nn.Embedding, topk, lg.multinomial) and the fused
-- attention; until both are in this branch the block is pending.
local F = lg.nn.functional
local gpt_waits_for = {}
if not lg.nn.Embedding then gpt_waits_for[#gpt_waits_for + 1] = "nn.Embedding" end
if not F.scaled_dot_product_attention then gpt_waits_for[#gpt_waits_for + 1] = "F.scaled_dot_product_attention" end
if not lg.multinomial then gpt_waits_for[#gpt_waits_for + 1] = "lg.multinomial" end
if not lg.zeros(1).topk then gpt_waits_for[#gpt_waits_for + 1] = "Tensor:topk" end

if #gpt_waits_for > 0 then
  pending("examples/gpt.lua --quick waits for " .. table.concat(gpt_waits_for, ", ")
    .. " (issue 15's engine ops, being added in other branches)")
else
  describe("examples/gpt.lua --quick", function()
    local dir, out, ok

    -- the output exactly as printed (util.run trims trailing whitespace, which a sample may end with)
    local function run_raw(cmd)
      local p = assert(io.popen(cmd, "r"))
      local s = p:read("a")
      return s, p:close()
    end

    setup(function()
      dir = util.tmpdir()
      out, ok = run_raw(string.format("LUAGRAD_PROGRESS=plain %s examples/gpt.lua --quick --out %s 2>&1",
        util.shell_quote(util.LUAGRAD), util.shell_quote(dir .. "/gpt")))
    end)

    teardown(function() util.remove_dir(dir) end)

    -- "val loss: X nats/char at N s (step S)" lines, in order
    local function val_lines(s)
      local rows = {}
      for v, t, step in s:gmatch("val loss: ([%d%.]+) nats/char at (%d+) s %(step (%d+)%)") do
        rows[#rows + 1] = { loss = tonumber(v), time = tonumber(t), step = tonumber(step) }
      end
      return rows
    end

    -- the sample: everything after the line 'sample (N characters, ...) after "...":'
    local function sample_of(s)
      local n, text = s:match("sample %((%d+) characters, temperature [%d%.]+, top%-k %d+%) after \"[^\n]*\":\n(.*)\n$")
      return tonumber(n), text
    end

    it("prints the validation loss at step 0 and every 50 steps, and it falls from ln(vocab) by over a nat", function()
      assert.is_true(ok, out)
      local rows = val_lines(out)
      assert.are.equal(5, #rows, out)
      for i, r in ipairs(rows) do
        assert.are.equal((i - 1) * 50, r.step)
        if i > 1 then assert.is_true(r.time >= rows[i - 1].time) end
      end
      -- an untrained model with embeddings N(0, 0.02^2) is nearly uniform over the 114 bytes
      assert.is_true(math.abs(rows[1].loss - math.log(114)) < 0.1, "first val loss " .. rows[1].loss)
      assert.is_true(rows[5].loss < rows[1].loss - 1.0, string.format("val loss %.3f -> %.3f", rows[1].loss, rows[5].loss))
      assert.is_true(rows[5].loss < rows[3].loss, "still falling in the second half")
      assert.are.equal(rows[5].loss, tonumber(out:match("final val loss: ([%d%.]+) nats/char")))
    end)

    it("shows the training loss in the progress lines, falling from the first 50 steps to the last", function()
      local first = tonumber(out:match("steps 1%-50: 100%% 50/50 [^\n]*loss=([%d%.]+)"))
      local last = tonumber(out:match("steps 151%-200: 100%% 50/50 [^\n]*loss=([%d%.]+)"))
      assert.is_not_nil(first, out)
      assert.is_not_nil(last, out)
      assert.is_true(last < first - 0.5, string.format("training loss %.3f -> %.3f", first, last))
      assert.is_nil(out:find("\r", 1, true))
    end)

    it("writes a sample of the requested length made only of the vocabulary's bytes", function()
      local n, text = sample_of(out)
      assert.are.equal(120, n)
      assert.is_not_nil(text, out)
      assert.are.equal("%\n", text:sub(1, 2)) -- the default prompt, then 120 generated bytes
      assert.are.equal(2 + 120, #text)
      local vocab = {}
      for _, c in ipairs(lg.datasets.fortunes().vocab) do vocab[c] = true end
      for i = 1, #text do assert.is_true(vocab[text:sub(i, i)], "byte " .. text:byte(i) .. " at " .. i) end
    end)

    it("saves the model with its configuration and one embedding shared by the head", function()
      local saved = assert(lg.load(dir .. "/gpt.safetensors"))
      local cfg, sd = saved.config, saved.model
      assert.are.same({ 114, 32, 32, 2, 2 }, { cfg.vocab_size, cfg.context, cfg.width, cfg.layers, cfg.heads })
      assert.are.equal(114, #cfg.vocab)
      local keys = {}
      for k in pairs(sd) do keys[#keys + 1] = k end
      table.sort(keys)
      -- 2 + 2 x 12 + 2 tensors, nanoGPT's names; no head weight: it is wte
      assert.are.equal(28, #keys, table.concat(keys, " "))
      assert.are.same({ 114, 32 }, sd["wte.weight"].shape)
      assert.are.same({ 32, 32 }, sd["wpe.weight"].shape)
      assert.are.same({ 96, 32 }, sd["h.0.attn.c_attn.weight"].shape)
      assert.are.same({ 128, 32 }, sd["h.1.mlp.c_fc.weight"].shape)
      assert.are.same({ 32 }, sd["ln_f.weight"].shape)
      local svg = util.read_file(dir .. "/gpt_loss.svg")
      assert.is_truthy(svg:find("<polyline", 1, true))
    end)

    it("reloads the saved model in --sample mode and writes the same text for the same seed", function()
      local function sample(seed)
        local s, good = run_raw(string.format("%s examples/gpt.lua --sample --out %s --prompt %s --length 80 --seed %d 2>&1",
          util.shell_quote(util.LUAGRAD), util.shell_quote(dir .. "/gpt"), util.shell_quote("The "), seed))
        assert.is_true(good, s)
        return s
      end
      local a, b, c = sample(1), sample(1), sample(2)
      local n, text = sample_of(a)
      assert.are.equal(80, n)
      assert.are.equal("The ", text:sub(1, 4))
      assert.are.equal(84, #text)
      assert.are.equal(a, b)
      assert.are_not.equal(a, c)
      assert.is_nil(a:find("val loss", 1, true), "--sample does not train")
    end)
  end)
end
