-- gpt.lua: the third main job. A character-level GPT, written out in Lua, trained on the text of
-- Debian's fortunes package; at the end it writes new fortunes.
--
--   build/luagrad examples/gpt.lua [--time-limit 600] [--max-steps 0] [--context 128] [--width 192]
--       [--layers 4] [--heads 6] [--batch-size 32] [--lr 2e-3] [--min-lr 1e-4] [--warmup 100]
--       [--weight-decay 0.1] [--clip 1.0] [--eval-every 100] [--eval-batches 16] [--seed 0]
--       [--threads N] [--out gpt] [--quick]
--   build/luagrad examples/gpt.lua --sample [--out gpt] [--prompt "..."] [--length 500]
--       [--temperature 0.8] [--top-k 20] [--seed 0]
--
-- The data: lg.datasets.fortunes, every fortune file concatenated (2.6 MB), one token per byte
-- (114 distinct bytes); the first 90% trains, the last 10% validates. A batch is batch-size
-- windows of context + 1 characters starting at random places: the model reads characters 1..T
-- and predicts 2..T+1, every position at once.
--
-- The model (GPT-2's layout, the names of Karpathy's nanoGPT, so the state dict reads the same in
-- bench/gpt_torch.py):
--   x = wte[token] + wpe[position]               token and learned position embeddings, N(0, 0.02^2)
--   layers x:  x = x + attn(ln_1(x))             pre-LayerNorm residual blocks: causal self-attention
--              x = x + mlp(ln_2(x))              with one fused q,k,v Linear, then a 4x MLP (tanh-GELU)
--   logits = ln_f(x) wte^T                       final LayerNorm; the head is the token embedding
-- Linear weights N(0, 0.02^2), the two projections back into the residual stream N(0, 0.02^2 / (2
-- layers)) (GPT-2's scaling), biases zero. No dropout: ten minutes is far from overfitting 2.3 MB.
--
-- The recipe: AdamW (betas 0.9, 0.99) with weight decay on the Linear layers' weights only (not
-- on biases, LayerNorms or the embeddings), a linear warmup then a cosine decay to min-lr, the
-- gradients clipped to norm 1. The cosine runs over the budget: its progress is the larger of
-- step / max-steps and elapsed / time-limit, so a run cut by the clock still ends annealed.
--
-- The defaults are sized for the target: validation loss <= 1.75 nats/char within 10 minutes on
-- 2 cores. 4 layers of width 192 (1.8M parameters, 6 heads of 32) at context 128 and batch 32
-- cost ~50 GFLOP a step (6 x parameters x 4096 tokens, plus attention), so a quiet 2-core machine
-- should make about a thousand steps, 4M characters, in 10 minutes: less than two passes over the
-- text (an estimate from W6's step time; the 10-minute run is still to be recorded). A
-- wider or deeper model learns more per step but makes too few of them in the budget, a smaller
-- one plateaus above the target; context 128 covers most fortunes' lines and costs little more
-- attention than 64 at this width.
--
-- Printed: a progress bar with the training loss, one line "val loss: X.XXX nats/char at N s
-- (step S)" every eval-every steps and at the end (N: seconds since training began, evaluation
-- included), then the files saved (OUT.safetensors: the model's state dict and its
-- configuration; OUT_loss.svg), then a sample. --sample loads OUT.safetensors and only writes.
-- --quick trains a tiny model for a few seconds, for the test suite.
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

-- ---- options ----
local opts = lg.cli.options(arg, {
  time_limit = 600, max_steps = 0, context = 128, width = 192, layers = 4, heads = 6, batch_size = 32,
  lr = 2e-3, min_lr = 1e-4, warmup = 100, weight_decay = 0.1, clip = 1.0, eval_every = 100, eval_batches = 16,
  seed = 0, out = "gpt", quick = false, sample = false,
  prompt = "%\n", length = 500, temperature = 0.8, top_k = 20,
}, "gpt", { unset = { "threads" }, metavar = { time_limit = "SECONDS", max_steps = "N", context = "T",
  width = "D", layers = "N", heads = "N", batch_size = "N", lr = "X", min_lr = "X", warmup = "STEPS",
  weight_decay = "X", clip = "NORM", eval_every = "STEPS", eval_batches = "N", seed = "N", threads = "N",
  out = "PREFIX", prompt = "TEXT", length = "N", temperature = "X", top_k = "K" } })
if opts.quick then -- a tiny model for a few seconds: the suite checks the machinery, not the quality
  opts.context, opts.width, opts.layers, opts.heads, opts.batch_size = 32, 32, 2, 2, 16
  opts.max_steps = opts.max_steps > 0 and opts.max_steps or 200
  opts.warmup, opts.eval_every, opts.eval_batches, opts.lr = 20, 50, 4, 1e-2
  opts.length = 120
end
if opts.width % opts.heads ~= 0 then
  error(string.format("gpt: --width %d is not a multiple of --heads %d", opts.width, opts.heads), 0)
end
if opts.threads then lg.set_num_threads(opts.threads) end
lg.manual_seed(opts.seed)
do -- the sequence ops of issue 15 this script needs
  local missing = {}
  if not nn.Embedding then missing[#missing + 1] = "nn.Embedding" end
  if not F.scaled_dot_product_attention then missing[#missing + 1] = "F.scaled_dot_product_attention" end
  if not lg.zeros(1).topk then missing[#missing + 1] = "Tensor:topk" end
  if not lg.multinomial then missing[#missing + 1] = "lg.multinomial" end
  if #missing > 0 then error("gpt: this luagrad has no " .. table.concat(missing, ", "), 0) end
end

-- ---- the model ----
-- Causal self-attention: one Linear makes q, k and v for every head at once; each head attends
-- to the positions up to its own (the fused op applies the causal mask, the softmax and both
-- products), and c_proj mixes the heads' outputs back into the residual stream.
local CausalSelfAttention = nn.Module:extend("CausalSelfAttention")

function CausalSelfAttention:init(width, heads)
  self.heads = heads
  self.c_attn = nn.Linear(width, 3 * width)
  self.c_proj = nn.Linear(width, width)
end

function CausalSelfAttention:forward(x) -- x (B, T, C)
  local B, T, C = x:size(1), x:size(2), x:size(3)
  local H = self.heads
  local qkv = self.c_attn(x):split(C, 3) -- q, k, v, each (B, T, C)
  local function heads(t) return t:view(B, T, H, C // H):transpose(2, 3) end -- (B, H, T, C/H)
  local y = F.scaled_dot_product_attention(heads(qkv[1]), heads(qkv[2]), heads(qkv[3]), { is_causal = true })
  return self.c_proj(y:transpose(2, 3):reshape(B, T, C))
end

local MLP = nn.Module:extend("MLP")

function MLP:init(width)
  self.c_fc = nn.Linear(width, 4 * width)
  self.c_proj = nn.Linear(4 * width, width)
end

function MLP:forward(x) return self.c_proj(F.gelu(self.c_fc(x), { approximate = "tanh" })) end

local Block = nn.Module:extend("Block")

function Block:init(width, heads)
  self.ln_1 = nn.LayerNorm(width)
  self.attn = CausalSelfAttention(width, heads)
  self.ln_2 = nn.LayerNorm(width)
  self.mlp = MLP(width)
end

function Block:forward(x)
  x = x + self.attn(self.ln_1(x))
  return x + self.mlp(self.ln_2(x))
end

local GPT = nn.Module:extend("GPT")

function GPT:init(cfg)
  self.context = cfg.context
  self.wte = nn.Embedding(cfg.vocab_size, cfg.width)
  self.wpe = nn.Embedding(cfg.context, cfg.width)
  local blocks = {}
  for i = 1, cfg.layers do blocks[i] = Block(cfg.width, cfg.heads) end
  self.h = nn.ModuleList(blocks)
  self.ln_f = nn.LayerNorm(cfg.width)
  -- GPT-2's initialization
  lg.no_grad(function()
    for name, p in self:named_parameters() do
      if name:match("bias$") and not name:match("^ln") and not name:match("%.ln_") then
        nn.init.zeros_(p)
      elseif name:match("c_proj%.weight$") then -- the two Linears that write into the residual stream
        nn.init.normal_(p, 0, 0.02 / math.sqrt(2 * cfg.layers))
      elseif p:dim() == 2 then -- the embeddings and the other Linear weights
        nn.init.normal_(p, 0, 0.02)
      end
    end
  end)
end

function GPT:forward(idx) -- idx (B, T) int64 token ids -> logits (B, T, vocab)
  local T = idx:size(2)
  local x = self.wte(idx) + self.wpe(lg.arange(1, T + 1)) -- (B, T, C) + (T, C)
  for _, block in ipairs(self.h) do x = block(x) end
  return F.linear(self.ln_f(x), self.wte.weight) -- the head shares the token embedding
end

-- the prompt as printed: newlines and tabs shown as \n and \t
local function shown(s) return (s:gsub("\n", "\\n"):gsub("\t", "\\t")) end

-- ---- sampling ----
-- One character at a time: the logits of the last position, divided by the temperature, keep
-- their top k; a character is drawn from the softmax over those k and appended.
local function generate(model, ids, n, temperature, top_k)
  model:eval()
  local out = {}
  lg.no_grad(function()
    local ctx = { table.unpack(ids) }
    for i = 1, n do
      local first = math.max(1, #ctx - model.context + 1)
      local window = lg.tensor({ table.unpack(ctx, first) }, { dtype = "int64" }):view(1, -1)
      local logits = model(window):select(2, window:size(2)) / temperature -- (1, vocab)
      local vals, idx = logits:topk(math.min(top_k, logits:size(2)))      -- (1, k) each
      local pick = lg.multinomial(vals:softmax(2), 1)                      -- (1, 1) in 1..k
      local id = idx:gather(2, pick):item()
      out[i], ctx[#ctx + 1] = id, id
    end
  end)
  return out
end

-- ---- --sample: load a saved model and only write ----
if opts.sample then
  local saved = lg.load(opts.out .. ".safetensors")
  local cfg = saved.config
  local model = GPT(cfg)
  model:load_state_dict(saved.model)
  local vocab, stoi = {}, {}
  for i, b in ipairs(cfg.vocab) do vocab[i], stoi[string.char(b)] = string.char(b), i end
  local prompt = {}
  for c in opts.prompt:gmatch(".") do
    prompt[#prompt + 1] = stoi[c] or error(string.format("gpt: the prompt's byte %d is not in the vocabulary", c:byte()), 0)
  end
  local ids = generate(model, prompt, opts.length, opts.temperature, opts.top_k)
  local text = {}
  for i, id in ipairs(ids) do text[i] = vocab[id] end
  print(string.format('sample (%d characters, temperature %g, top-k %d) after "%s":', opts.length, opts.temperature,
    opts.top_k, shown(opts.prompt)))
  print(opts.prompt .. table.concat(text))
  return
end

-- ---- data ----
local t_start = lg.clock()
local train = lg.datasets.fortunes({ split = "train" })
local val = lg.datasets.fortunes({ split = "val" })
print(string.format("fortunes: %d training and %d validation characters, %d files, vocabulary of %d bytes",
  train.data:numel(), val.data:numel(), #train.files, train.vocab_size))

local T, B = opts.context, opts.batch_size
local offsets = lg.arange(0, T):view(1, T) -- 0..T-1

-- batch-size windows starting at the given positions: inputs x and next characters y, (B, T) each
local function windows(data, starts)
  local idx = starts:view(-1, 1) + offsets -- (B, T) positions in data
  local x = data:index_select(1, idx:view(-1)):view(-1, T)
  local y = data:index_select(1, (idx + 1):view(-1)):view(-1, T)
  return x, y
end

local function train_batch() return windows(train.data, lg.randint(1, train.data:numel() - T + 1, { B })) end

-- the validation set: the same eval-batches x batch-size windows every time, spread evenly over the split
local val_starts = {}
do
  local n, last = opts.eval_batches * B, val.data:numel() - T
  for i = 1, n do val_starts[i] = 1 + (i - 1) * (last - 1) // math.max(1, n - 1) end
end

local cfg = { vocab_size = train.vocab_size, context = T, width = opts.width, layers = opts.layers, heads = opts.heads }
local model = GPT(cfg)
local n_params = 0
for _, p in ipairs(model:parameters()) do n_params = n_params + p:numel() end
print(string.format("GPT: %d layers, width %d, %d heads, context %d, %.2fM parameters", opts.layers, opts.width,
  opts.heads, T, n_params / 1e6))

-- mean cross-entropy over the validation windows, in nats per character
local function evaluate()
  model:eval()
  local sum, count = 0, 0
  lg.no_grad(function()
    for s = 1, #val_starts, B do
      local x, y = windows(val.data, lg.tensor({ table.unpack(val_starts, s, math.min(s + B - 1, #val_starts)) },
        { dtype = "int64" }))
      local logits = model(x)
      sum = sum + F.cross_entropy(logits:view(-1, cfg.vocab_size), y:view(-1), { reduction = "sum" }):item()
      count = count + y:numel()
    end
  end)
  model:train()
  return sum / count
end

-- ---- optimizer and schedule ----
-- weight decay on the Linear layers' weights; none on biases, LayerNorms and embeddings
local decay, no_decay, is_decayed = {}, {}, {}
for _, m in ipairs(model:modules()) do
  if getmetatable(m) == nn.Linear then decay[#decay + 1], is_decayed[m.weight] = m.weight, true end
end
for _, p in ipairs(model:parameters()) do
  if not is_decayed[p] then no_decay[#no_decay + 1] = p end
end
local opt = lg.optim.AdamW({ { params = decay, weight_decay = opts.weight_decay }, { params = no_decay, weight_decay = 0 } },
  { lr = opts.lr, betas = { 0.9, 0.99 } })

-- linear warmup over `warmup` steps, then a cosine from lr to min_lr over the budget
local function lr_at(step, elapsed)
  if step <= opts.warmup then return opts.lr * step / opts.warmup end
  local p = elapsed / opts.time_limit
  if opts.max_steps > 0 then p = math.max(p, (step - opts.warmup) / math.max(1, opts.max_steps - opts.warmup)) end
  p = math.min(1, p)
  return opts.min_lr + 0.5 * (opts.lr - opts.min_lr) * (1 + math.cos(math.pi * p))
end

-- ---- training ----
local history = { step = {}, train_loss = {}, val_step = {}, val_time = {}, val_loss = {} }
local params = model:parameters()
local step, t_train = 0, lg.clock()
local function log_val(elapsed)
  local v = evaluate()
  history.val_step[#history.val_step + 1], history.val_time[#history.val_time + 1] = step, elapsed
  history.val_loss[#history.val_loss + 1] = v
  print(string.format("val loss: %.3f nats/char at %.0f s (step %d)", v, elapsed, step))
  return v
end
log_val(0)
local done = false
while not done do
  local n = opts.eval_every
  if opts.max_steps > 0 then n = math.min(n, opts.max_steps - step) end
  local bar = lg.progress(n, { desc = string.format("steps %d-%d", step + 1, step + n) })
  local run_loss = 0
  for k = 1, n do
    step = step + 1
    local lr = lr_at(step, lg.clock() - t_train)
    for _, g in ipairs(opt.param_groups) do g.lr = lr end
    local x, y = train_batch()
    opt:zero_grad()
    local logits = model(x)
    local loss = F.cross_entropy(logits:view(-1, cfg.vocab_size), y:view(-1))
    loss:backward()
    nn.utils.clip_grad_norm_(params, opts.clip)
    opt:step()
    local l = loss:item()
    run_loss = run_loss + l
    history.step[#history.step + 1], history.train_loss[#history.train_loss + 1] = step, l
    bar:update(1, { loss = run_loss / k, lr = lr })
    if lg.clock() - t_train >= opts.time_limit then
      done = true
      break
    end
  end
  bar:close()
  if opts.max_steps > 0 and step >= opts.max_steps then done = true end
  log_val(lg.clock() - t_train)
end
local train_time = lg.clock() - t_train

-- ---- results ----
local vocab_bytes = {}
for i, c in ipairs(train.vocab) do vocab_bytes[i] = c:byte() end
cfg.vocab = vocab_bytes
lg.save(opts.out .. ".safetensors", { model = model:state_dict(), config = cfg })
lg.plot.line({ { name = "train loss (batch)", x = history.step, y = history.train_loss },
    { name = "validation loss", x = history.val_step, y = history.val_loss } },
  { title = "GPT on fortunes: loss", xlabel = "step", ylabel = "nats per character", path = opts.out .. "_loss.svg" })
print(string.format("saved %s.safetensors, %s_loss.svg", opts.out, opts.out))
print(string.format("training: %d steps in %.1f s (%.0f ms/step, evaluation included); total %.1f s", step,
  train_time, train_time / step * 1e3, lg.clock() - t_start))
print(string.format("final val loss: %.3f nats/char", history.val_loss[#history.val_loss]))

local prompt = train.encode(opts.prompt):tolist()
local ids = generate(model, prompt, opts.length, opts.temperature, opts.top_k)
print(string.format('sample (%d characters, temperature %g, top-k %d) after "%s":', opts.length, opts.temperature,
  opts.top_k, shown(opts.prompt)))
print(opts.prompt .. train.decode(ids))
