-- fashion_mnist.lua: the main job. Train an MLP on Fashion-MNIST (Debian's dataset-fashion-mnist)
-- and report its test accuracy.
--
--   build/luagrad examples/fashion_mnist.lua [--epochs 12] [--batch-size 128] [--lr 2e-3]
--       [--optimizer adamw|adam|sgd] [--weight-decay 0.05] [--warmup 1] [--seed 0]
--       [--threads N] [--out fashion_mnist] [--quick] [--distributed]
--   mpirun -np 2 build/luagrad examples/fashion_mnist.lua --distributed
--       (as root: mpirun --allow-run-as-root --oversubscribe ...)
--
-- Model: 784-256-128-10, each hidden layer Linear -> BatchNorm1d -> ReLU; cross-entropy with
-- light label smoothing; AdamW with a linear warmup then cosine decay (SequentialLR of LinearLR
-- and CosineAnnealingLR, stepped every batch). Every epoch it evaluates on the 10,000 test
-- images; at the end it saves the model (safetensors), loss and accuracy curves (SVG), and prints
-- one line "test accuracy: NN.NN%". --quick trains on a slice for the test suite.
-- --distributed (under mpirun) splits each batch of --batch-size across the ranks: each rank
-- trains a DistributedDataParallel copy on its shard (DistributedSampler), gradients averaged
-- over the ranks; rank 1 prints, draws and saves.
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

-- ---- options ----
local opts = lg.cli.options(arg, { epochs = 12, batch_size = 128, lr = 2e-3, optimizer = "adamw", weight_decay = 0.05,
  warmup = 1, seed = 0, out = "fashion_mnist", quick = false, smoothing = 0.05, distributed = false }, "fashion_mnist",
  { unset = { "threads" }, metavar = { epochs = "N", batch_size = "N", lr = "X", optimizer = "adamw|adam|sgd",
    weight_decay = "X", warmup = "EPOCHS", seed = "N", threads = "N", out = "PREFIX", smoothing = "X" } })
if opts.quick then
  opts.epochs = math.min(opts.epochs, 2)
end
if opts.threads then lg.set_num_threads(opts.threads) end
lg.manual_seed(opts.seed)
local dist = lg.distributed
local world = 1
if opts.distributed then
  local _
  _, world = dist.init()
  if opts.batch_size % world ~= 0 then
    error(string.format("fashion_mnist: --batch-size %d does not split over %d ranks", opts.batch_size, world), 0)
  end
end
local main = dist.rank() == 1
local say = main and print or function() end

-- ---- data ----
local t_start = lg.clock()
-- pixels standardized with the training set's mean and std as they are decoded (no copies)
local train = lg.datasets.fashion_mnist({ split = "train", normalize = true })
local test = lg.datasets.fashion_mnist({ split = "test", normalize = true })
local xtr, ytr = train.images:view(-1, 784), train.labels
local xte, yte = test.images:view(-1, 784), test.labels
if opts.quick then
  xtr, ytr = xtr:narrow(1, 1, 6000), ytr:narrow(1, 1, 6000)
  xte, yte = xte:narrow(1, 1, 2000), yte:narrow(1, 1, 2000)
end
local train_set = lg.data.TensorDataset(xtr, ytr)
local sampler = opts.distributed and lg.data.DistributedSampler(train_set, { seed = opts.seed }) or nil
local loader = lg.data.DataLoader(train_set, { batch_size = opts.batch_size // world, shuffle = sampler == nil,
  sampler = sampler })
local steps_per_epoch = #loader
say(string.format("Fashion-MNIST: %d training and %d test images, %d batches of %d per epoch",
  xtr:size(1), xte:size(1), steps_per_epoch, opts.batch_size))

-- ---- model, optimizer, schedule ----
local model = nn.Sequential(
  nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
  nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(),
  nn.Linear(128, 10))
say(model)
local net = model -- the model itself (what is saved); `model` is what trains
if opts.distributed then
  model = nn.DistributedDataParallel(net)
  say(string.format("distributed: %d ranks, %d images per rank per step", world, opts.batch_size // world))
end

local params = model:parameters()
local opt
if opts.optimizer == "adamw" then
  opt = lg.optim.AdamW(params, { lr = opts.lr, weight_decay = opts.weight_decay })
elseif opts.optimizer == "adam" then
  opt = lg.optim.Adam(params, { lr = opts.lr })
elseif opts.optimizer == "sgd" then
  opt = lg.optim.SGD(params, { lr = opts.lr, momentum = 0.9, nesterov = true, weight_decay = 5e-4 })
else
  error("fashion_mnist: --optimizer must be adamw, adam or sgd, got " .. tostring(opts.optimizer), 0)
end
local S = lg.optim.lr_scheduler
local total = opts.epochs * steps_per_epoch
local warm = math.max(1, math.min(total - 1, math.floor(opts.warmup * steps_per_epoch)))
local sched = S.SequentialLR(opt, {
  schedulers = { S.LinearLR(opt, { start_factor = 0.05, total_iters = warm }),
    S.CosineAnnealingLR(opt, { T_max = total - warm, eta_min = opts.lr * 0.01 }) },
  milestones = { warm } })

-- ---- evaluation ----
local function evaluate(x, y)
  model:eval()
  local correct, loss_sum = 0, 0
  lg.no_grad(function()
    for s = 1, x:size(1), 1000 do
      local n = math.min(1000, x:size(1) - s + 1)
      local logits = model(x:narrow(1, s, n))
      local yb = y:narrow(1, s, n)
      loss_sum = loss_sum + F.cross_entropy(logits, yb, { reduction = "sum" }):item()
      correct = correct + logits:argmax(2):eq(yb):sum():item()
    end
  end)
  model:train()
  return correct / x:size(1), loss_sum / x:size(1)
end

-- ---- training ----
local history = { step = {}, train_loss = {}, epoch = {}, test_acc = {}, test_loss = {}, lr = {} }
local step = 0
local t_train = lg.clock()
for epoch = 1, opts.epochs do
  if sampler then sampler:set_epoch(epoch) end
  local bar = lg.progress(steps_per_epoch, { desc = string.format("epoch %d/%d", epoch, opts.epochs),
    file = not main and { write = function() end } or nil })
  local run_loss, run_correct, run_n = 0, 0, 0
  for xb, yb in loader do
    opt:zero_grad()
    local logits = model(xb)
    local loss = F.cross_entropy(logits, yb, { label_smoothing = opts.smoothing })
    loss:backward()
    opt:step()
    sched:step()
    step = step + 1
    local l = loss:item()
    run_loss = run_loss + l * xb:size(1)
    run_n = run_n + xb:size(1)
    if step % 10 == 0 then
      run_correct = run_correct + logits:argmax(2):eq(yb):sum():item() * 10 -- a sample of accuracy
      history.step[#history.step + 1] = step
      history.train_loss[#history.train_loss + 1] = l
      history.lr[#history.lr + 1] = opt.param_groups[1].lr
    end
    bar:update(1, { loss = run_loss / run_n })
  end
  local acc, tloss = evaluate(xte, yte)
  bar:close({ loss = run_loss / run_n, test_acc = acc })
  history.epoch[#history.epoch + 1] = epoch
  history.test_acc[#history.test_acc + 1] = acc
  history.test_loss[#history.test_loss + 1] = tloss
end
local train_time = lg.clock() - t_train

-- ---- results ----
if opts.distributed then
  dist.save(opts.out .. ".safetensors", net:state_dict())
  local st = model.stats
  say(string.format("distributed: %d ranks; per step %.2f MB all-reduced in %d buckets, %.2f ms waiting for it",
    world, st.bytes / st.steps / 2 ^ 20, st.buckets, st.wait_seconds / st.steps * 1e3))
end
if not main then return end
if not opts.distributed then lg.save(opts.out .. ".safetensors", net:state_dict()) end
lg.plot.line({ { name = "train loss (batch)", x = history.step, y = history.train_loss } },
  { title = "Fashion-MNIST: training loss", xlabel = "step", ylabel = "cross-entropy", logy = true,
    path = opts.out .. "_loss.svg" })
lg.plot.line({ { name = "test accuracy", x = history.epoch, y = history.test_acc } },
  { title = "Fashion-MNIST: test accuracy", xlabel = "epoch", ylabel = "accuracy", path = opts.out .. "_accuracy.svg" })
local acc = history.test_acc[#history.test_acc]
print(string.format("saved %s.safetensors, %s_loss.svg, %s_accuracy.svg", opts.out, opts.out, opts.out))
print(string.format("training: %d epochs in %.1f s (%.2f ms/step); total %.1f s", opts.epochs, train_time,
  train_time / step * 1e3, lg.clock() - t_start))
print(string.format("test accuracy: %.2f%%", acc * 100))
