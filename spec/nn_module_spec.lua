-- nn.Module mechanics: classes and extend, registration by assignment, names and order,
-- train/eval, zero_grad, to(dtype), state dicts (round trip, strict errors), printing; forward
-- hooks and pre-hooks, apply, requires_grad_, num_parameters, nn.summary.
local lg = require "luagrad"
local nn = lg.nn

local F64 = { dtype = "float64" }

local function names_of(iter_fn)
  local out = {}
  for name in iter_fn do out[#out + 1] = name end
  return out
end

local function same_values(a, b) return a.dtype == b.dtype and (a - b):abs():max():item() == 0 end

-- A user-defined module holding a Residual block, as a user would write it.
local Block = nn.Module:extend("Block")
function Block:init(d)
  self.fc1 = nn.Linear(d, 2 * d)
  self.act = nn.GELU()
  self.fc2 = nn.Linear(2 * d, d)
end
function Block:forward(x) return self.fc2(self.act(self.fc1(x))) end

local Net = nn.Module:extend("Net")
function Net:init(d_in, d, n_out)
  self.embed = nn.Linear(d_in, d)
  self.res = nn.Residual(Block(d))
  self.norm = nn.LayerNorm(d)
  self.head = nn.Linear(d, n_out)
  self.scale = nn.Parameter(lg.ones(1))
  self:register_buffer("steps", lg.zeros({}, { dtype = "int64" }))
  self.note = "plain field"
end
function Net:forward(x)
  return self.head(self.norm(self.res(self.embed(x)))) * self.scale
end

describe("nn.Module classes", function()
  it("extend makes a subclass; calling the class runs init, calling an instance runs forward", function()
    local Double = nn.Module:extend("Double")
    function Double:init(k) self.k = k end
    function Double:forward(x) return x * self.k end
    local m = Double(2)
    assert.are.equal(2, m.k)
    assert.are.same({ 2, 4 }, m(lg.tensor({ 1, 2 })):tolist())
    assert.is_true(nn.is_module(m))
    assert.is_false(nn.is_module(Double))
    assert.is_true(m.training)
    -- a subclass of a subclass inherits methods and metamethods
    local Triple = Double:extend("Triple")
    function Triple:init() Double.init(self, 3) end
    local t = Triple()
    assert.are.same({ 3 }, t(lg.tensor({ 1 })):tolist())
    assert.are.equal("Triple()", tostring(t))
  end)

  it("a module without forward says so", function()
    local Empty = nn.Module:extend("Empty")
    local ok, err = pcall(Empty(), lg.ones(1))
    assert.is_false(ok)
    assert.matches("Empty: forward is not implemented", err)
  end)

  it("a user-defined module with a Residual block trains end to end", function()
    lg.manual_seed(1)
    local net = Net(5, 8, 3)
    local x = lg.randn(4, 5)
    local y = net(x)
    assert.are.same({ 4, 3 }, y.shape)
    -- the residual path: res(h) = h + block(h)
    local h = net.embed(x)
    assert.is_true((net.res(h) - (h + net.res.block(h))):abs():max():item() == 0)
    local loss = nn.F.cross_entropy(y, { 1, 2, 3, 1 })
    loss:backward()
    for name, p in net:named_parameters() do
      assert.is_not_nil(p.grad, name .. " has a gradient")
      assert.are.same(p.shape, p.grad.shape)
    end
  end)
end)

describe("nn.Module registration", function()
  it("routes parameters, children, buffers and plain fields, in registration order", function()
    local net = Net(5, 8, 3)
    assert.are.same({
      "scale",
      "embed.weight", "embed.bias",
      "res.block.fc1.weight", "res.block.fc1.bias", "res.block.fc2.weight", "res.block.fc2.bias",
      "norm.weight", "norm.bias",
      "head.weight", "head.bias",
    }, names_of(net:named_parameters()))
    assert.are.equal(11, #net:parameters())
    assert.are.same({ "steps" }, names_of(net:named_buffers()))
    assert.are.same({ "embed", "res", "norm", "head" }, names_of(net:named_children()))
    assert.are.equal(4, #net:children())
    assert.are.equal("plain field", net.note)
    assert.is_nil(net._parameters.values.note)
    -- named_modules: pre-order, self first
    assert.are.same({ "", "embed", "res", "res.block", "res.block.fc1", "res.block.act", "res.block.fc2", "norm", "head" },
      names_of(net:named_modules()))
    -- recurse = false: only the module's own members
    assert.are.same({ "scale" }, names_of(net:named_parameters({ recurse = false })))
    assert.are.same({ "p.scale" }, names_of(net:named_parameters({ recurse = false, prefix = "p" })))
  end)

  it("keeps non-parameters out: plain tensors, non-leaf tensors, nil removes", function()
    local m = nn.Module()
    m.w = nn.Parameter(lg.zeros(2))
    m.cache = lg.ones(2)                              -- no grad: a plain field
    m.act = (m.w * 2)                                 -- requires grad but not a leaf: a plain field
    assert.are.same({ "w" }, names_of(m:named_parameters()))
    assert.is_not_nil(m.cache)
    assert.is_not_nil(m.act)
    m.w = nil
    assert.are.equal(0, #m:parameters())
    assert.is_nil(m.w)
  end)

  it("raises when a parameter or child name is given something else", function()
    local lin = nn.Linear(2, 2)
    local ok, err = pcall(function() lin.weight = lg.zeros(2, 2) end)
    assert.is_false(ok)
    assert.matches("Linear: cannot assign a tensor that does not require grad as parameter 'weight'", err, 1, true)
    local seq = nn.Sequential(nn.ReLU())
    ok, err = pcall(function() seq["0"] = 5 end)
    assert.is_false(ok)
    assert.matches("cannot assign a number as child module '0'", err, 1, true)
    ok, err = pcall(function() seq[true] = 1 end)
    assert.is_false(ok)
    assert.matches("field names must be strings", err, 1, true)
  end)

  it("a buffer stays a buffer when reassigned; non-persistent buffers stay out of state_dict", function()
    local m = nn.Module()
    m:register_buffer("stat", lg.zeros(3))
    m:register_buffer("scratch", lg.zeros(3), { persistent = false })
    m.stat = lg.ones(3)
    assert.are.same({ "stat", "scratch" }, names_of(m:named_buffers()))
    assert.are.same({ 1, 1, 1 }, m.stat:tolist())
    local sd = m:state_dict()
    assert.is_not_nil(sd.stat)
    assert.is_nil(sd.scratch)
    assert.are.equal(0, #m:parameters())
  end)

  it("deduplicates shared parameters and modules", function()
    local shared = nn.Linear(3, 3)
    local seq = nn.Sequential(shared, nn.Tanh(), shared)
    assert.are.equal(2, #seq:parameters())
    assert.are.same({ "0.weight", "0.bias" }, names_of(seq:named_parameters()))
    -- the state dict names both positions, as PyTorch's does
    local sd = seq:state_dict()
    assert.is_not_nil(sd["0.weight"])
    assert.is_not_nil(sd["2.weight"])
  end)
end)

describe("nn.Sequential", function()
  it("names children 0, 1, ... while seq[i] is 1-based; #seq, seq[-1], append, seq[i] = m", function()
    local a, b, c = nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)
    local seq = nn.Sequential(a, b, c)
    assert.are.equal(3, #seq)
    assert.are.equal(a, seq[1])
    assert.are.equal(c, seq[3])
    assert.are.equal(c, seq[-1])
    assert.is_nil(seq[4])
    assert.are.equal(a, seq["0"])
    assert.are.same({ "0", "1", "2" }, names_of(seq:named_children()))
    local d = nn.Sigmoid()
    seq:append(d)
    assert.are.equal(4, #seq)
    assert.are.equal(d, seq[4])
    local e = nn.Tanh()
    seq[2] = e
    assert.are.equal(e, seq[2])
    assert.are.same({ "0", "1", "2", "3" }, names_of(seq:named_children()))
    -- a list argument works too
    assert.are.equal(2, #nn.Sequential({ nn.ReLU(), nn.Tanh() }))
    -- forward runs in order: sigmoid(linear(tanh(linear(x))))
    local x = lg.randn(5, 4)
    local want = c(a(x):tanh()):sigmoid()
    assert.is_true(same_values(seq(x), want))
  end)

  it("rejects non-modules", function()
    local ok, err = pcall(nn.Sequential, nn.ReLU(), 3)
    assert.is_false(ok)
    assert.matches("Sequential: argument 2 is not a module (got number)", err, 1, true)
  end)
end)

describe("nn.Module modes and gradients", function()
  it("train and eval recurse into every descendant", function()
    local net = Net(3, 4, 2)
    net:eval()
    for _, m in ipairs(net:modules()) do assert.is_false(m.training) end
    net:train()
    for _, m in ipairs(net:modules()) do assert.is_true(m.training) end
    net.res:train(false)
    assert.is_true(net.training)
    assert.is_false(net.res.block.fc1.training)
    assert.has_error(function() net:train("yes") end)
  end)

  it("zero_grad sets every gradient to nil", function()
    local net = Net(3, 4, 2)
    net(lg.randn(2, 3)):sum():backward()
    for _, p in ipairs(net:parameters()) do assert.is_not_nil(p.grad) end
    net:zero_grad()
    for _, p in ipairs(net:parameters()) do assert.is_nil(p.grad) end
  end)

  it("to(dtype) converts parameters and buffers in place, keeping the tensors' identity", function()
    local bn = nn.BatchNorm1d(3)
    local seq = nn.Sequential(nn.Linear(2, 3), bn)
    local held = seq:parameters()                -- as an optimizer would hold them
    local w_before = held[1]:tolist()
    seq(lg.randn(4, 2)):sum():backward()
    assert.are.equal(seq, seq:to("float64"))
    for i, p in ipairs(seq:parameters()) do
      assert.are.equal(held[i], p)
      assert.are.equal("float64", p.dtype)
      assert.is_true(p.requires_grad)
      assert.is_nil(p.grad)                      -- the float32 gradient is dropped
    end
    assert.are.equal("float64", bn.running_mean.dtype)
    assert.are.equal("int64", bn.num_batches_tracked.dtype)
    local w_after = held[1]:tolist()
    for i = 1, #w_before do
      for j = 1, #w_before[i] do assert.are.equal(w_before[i][j], w_after[i][j]) end   -- float32 values are exact in float64
    end
    assert.are.same({ 5, 3 }, seq(lg.randn(5, 2, F64)).shape)
    assert.has_error(function() seq:to("int64") end, 'Sequential:to: dtype must be "float32" or "float64", got int64')
  end)
end)

describe("nn.Module state dicts", function()
  it("state_dict holds detached tensors sharing storage, with PyTorch's keys", function()
    local seq = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    local sd = seq:state_dict()
    local keys = {}
    for k, v in pairs(sd) do
      keys[#keys + 1] = k
      assert.is_false(v.requires_grad)
    end
    table.sort(keys)
    assert.are.same({ "0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var",
      "1.weight", "3.bias", "3.weight" }, keys)
    lg.no_grad(function() seq[1].weight:fill_(7) end)
    assert.are.equal(7, sd["0.weight"][1][1])         -- shares storage
  end)

  it("round-trips into a fresh model: same outputs in eval mode", function()
    lg.manual_seed(3)
    local function make() return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)) end
    local a = make()
    for _ = 1, 3 do a(lg.randn(8, 3)) end             -- move the running statistics
    local b = make()
    local res = b:load_state_dict(a:state_dict())
    assert.are.same({}, res.missing_keys)
    assert.are.same({}, res.unexpected_keys)
    for k, v in pairs(a:state_dict()) do assert.is_true(same_values(v, b:state_dict()[k]), k) end
    assert.are.equal(3, b[2].num_batches_tracked:item())
    a:eval(); b:eval()
    local x = lg.randn(5, 3)
    assert.is_true(same_values(a(x), b(x)))
    -- the copies are independent: changing a does not change b
    lg.no_grad(function() a[1].weight:fill_(0) end)
    assert.is_false(same_values(a[1].weight, b[1].weight))
    -- parameters stay leaves that require grad
    assert.is_true(b[1].weight.requires_grad)
  end)

  it("strict loading lists missing and unexpected keys and leaves the model unchanged", function()
    local m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    local before = m[1].weight:clone()
    local sd = nn.Sequential(nn.Linear(2, 2)):state_dict()
    sd["0.weight"] = lg.full({ 2, 2 }, 5)
    sd["extra.weight"] = lg.zeros(1)
    local ok, err = pcall(m.load_state_dict, m, sd)
    assert.is_false(ok)
    assert.matches("Sequential:load_state_dict: missing keys: '1.bias', '1.weight'; unexpected keys: 'extra.weight'",
      err, 1, true)
    assert.is_true(same_values(m[1].weight, before))
    -- non-strict loads what matches and reports the rest
    local res = m:load_state_dict(sd, { strict = false })
    assert.are.same({ "1.bias", "1.weight" }, res.missing_keys)
    assert.are.same({ "extra.weight" }, res.unexpected_keys)
    assert.are.same({ { 5, 5 }, { 5, 5 } }, m[1].weight:tolist())
  end)

  it("a shape mismatch names the key and both shapes, strict or not", function()
    local m = nn.Linear(3, 2)
    local sd = m:state_dict()
    sd.weight = lg.zeros(3, 2)
    for _, strict in ipairs({ true, false }) do
      local ok, err = pcall(m.load_state_dict, m, sd, { strict = strict })
      assert.is_false(ok)
      assert.matches("size mismatch for 'weight': copying a tensor of shape {3,2} into one of shape {2,3}", err, 1, true)
    end
  end)

  it("loading converts dtypes", function()
    local m64 = nn.Linear(2, 2, { dtype = "float64" })
    local m32 = nn.Linear(2, 2)
    m64:load_state_dict(m32:state_dict())
    assert.are.equal("float64", m64.weight.dtype)
    assert.is_true(same_values(m64.weight, m32.weight:to("float64")))
  end)
end)

describe("tostring(module)", function()
  it("prints PyTorch's tree", function()
    local seq = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2),
      nn.Linear(256, 10, { bias = false }))
    assert.are.equal(table.concat({
      "Sequential(",
      "  (0): Linear(in_features=784, out_features=256, bias=true)",
      "  (1): BatchNorm1d(256, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)",
      "  (2): ReLU()",
      "  (3): Dropout(p=0.2)",
      "  (4): Linear(in_features=256, out_features=10, bias=false)",
      ")",
    }, "\n"), tostring(seq))
  end)

  it("indents nested modules", function()
    local net = Net(5, 8, 3)
    assert.are.equal(table.concat({
      "Net(",
      "  (embed): Linear(in_features=5, out_features=8, bias=true)",
      "  (res): Residual(",
      "    (block): Block(",
      "      (fc1): Linear(in_features=8, out_features=16, bias=true)",
      "      (act): GELU()",
      "      (fc2): Linear(in_features=16, out_features=8, bias=true)",
      "    )",
      "  )",
      "  (norm): LayerNorm({8}, eps=1e-05, elementwise_affine=true)",
      "  (head): Linear(in_features=8, out_features=3, bias=true)",
      ")",
    }, "\n"), tostring(net))
    assert.are.equal("BatchNorm1d(4, eps=0.001, momentum=false, affine=false, track_running_stats=false)",
      tostring(nn.BatchNorm1d(4, { eps = 1e-3, momentum = false, affine = false, track_running_stats = false })))
    assert.are.equal("Flatten(start_dim=2, end_dim=-1)", tostring(nn.Flatten()))
    assert.are.equal("Softmax(dim=2)", tostring(nn.Softmax(2)))
    assert.are.equal('GELU(approximate="tanh")', tostring(nn.GELU({ approximate = "tanh" })))
    assert.are.equal("LeakyReLU(negative_slope=0.2)", tostring(nn.LeakyReLU(0.2)))
  end)
end)

describe("nn.Module forward hooks", function()
  local function linear(w, b) -- a 1 -> 1 Linear computing w x + b, in float64
    local m = nn.Linear(1, 1, F64)
    lg.no_grad(function()
      m.weight:fill_(w)
      m.bias:fill_(b)
    end)
    return m
  end
  local x = lg.tensor({ { 1 }, { 2 } }, F64)

  it("run in registration order around forward when the module is called, not by forward itself", function()
    local m, log = linear(2, 1), {}
    m:register_forward_pre_hook(function(mod, inputs)
      assert.are.equal(m, mod)
      log[#log + 1] = string.format("pre1 n=%d %g", inputs.n, inputs[1]:sum():item())
    end)
    m:register_forward_pre_hook(function() log[#log + 1] = "pre2" end)
    m:register_forward_hook(function(mod, inputs, out)
      assert.are.equal(m, mod)
      log[#log + 1] = string.format("post1 in=%g out=%g", inputs[1]:sum():item(), out:sum():item())
    end)
    m:register_forward_hook(function() log[#log + 1] = "post2" end)
    m:register_forward_pre_hook(function() log[#log + 1] = "pre0" end, { prepend = true })
    local y = m(x)
    assert.are.same({ { 3 }, { 5 } }, y:tolist())
    assert.are.same({ "pre0", "pre1 n=1 3", "pre2", "post1 in=3 out=8", "post2" }, log)
    log = {}
    m:forward(x)
    assert.are.same({}, log)
  end)

  it("replace the inputs and the output, each hook seeing what the one before left", function()
    local m = linear(2, 1)
    m:register_forward_pre_hook(function(_, inputs) return inputs[1] * 10 end)      -- a single value
    m:register_forward_pre_hook(function(_, inputs) return { inputs[1] + 1 } end)   -- a list
    local seen
    m:register_forward_hook(function(_, inputs, out)
      seen = inputs[1]:tolist()
      return out * -1
    end)
    m:register_forward_hook(function(_, _, out) return out + 100 end)
    m:register_forward_hook(function() return nil end) -- nil keeps the output
    -- x -> 10 x + 1 -> 2 (10 x + 1) + 1 -> -(...) -> + 100
    assert.are.same({ { 77 }, { 57 } }, m(x):tolist())
    assert.are.same({ { 11 }, { 21 } }, seen)
  end)

  it("see every argument and every result of a module with several", function()
    local rnn = nn.RNN(2, 3, { dtype = "float64" })
    local got = {}
    rnn:register_forward_pre_hook(function(_, inputs) got.n = inputs.n end)
    rnn:register_forward_hook(function(_, _, out, h)
      got.out, got.h = out.shape, h.shape
      return out, h * 0 -- both replaced
    end)
    local out, h = rnn(lg.randn(4, 1, 2, F64), lg.zeros(1, 1, 3, F64))
    assert.are.same({ n = 2, out = { 4, 1, 3 }, h = { 1, 1, 3 } }, got)
    assert.are.same({ 4, 1, 3 }, out.shape)
    assert.are.equal(0, h:abs():sum():item())
  end)

  it("go away with handle:remove() (twice is harmless), and a module without hooks calls forward", function()
    local m = linear(2, 1)
    local h1 = m:register_forward_hook(function(_, _, out) return out + 1 end)
    local h2 = m:register_forward_pre_hook(function(_, inputs) return inputs[1] * 3 end)
    assert.are.same({ { 8 }, { 14 } }, m(x):tolist())
    h2:remove()
    assert.are.same({ { 4 }, { 6 } }, m(x):tolist())
    h1:remove()
    h1:remove()
    assert.are.same({ { 3 }, { 5 } }, m(x):tolist())
    assert.is_nil(rawget(m, "_forward_hooks"))
    assert.is_nil(rawget(m, "_forward_pre_hooks"))
  end)

  it("removed during a call take effect from the next call", function()
    local m, count = linear(1, 0), 0
    local h
    h = m:register_forward_hook(function()
      count = count + 1
      h:remove()
    end)
    m:register_forward_hook(function() count = count + 10 end)
    m(x)
    m(x)
    assert.are.equal(21, count)
  end)

  it("run on children called inside a parent's forward, and gradients flow through replacements", function()
    local net, log = nn.Sequential(linear(2, 0), nn.ReLU(), linear(3, 0)), {}
    for name, mod in net:named_modules() do
      mod:register_forward_hook(function() log[#log + 1] = name == "" and "seq" or name end)
    end
    net[3]:register_forward_hook(function(_, _, out) return out * 2 end)
    local y = net(x)
    assert.are.same({ "0", "1", "2", "seq" }, log)
    y:sum():backward()
    -- y = 2 * 3 * relu(2 x): dy/dw3 = 2 * sum(relu(2 x)) = 2 * (2 + 4)
    assert.are.equal(12, net[3].weight.grad:item())
  end)

  it("refuse what is not a function, naming the method", function()
    local m = nn.Linear(2, 2)
    assert.has_error(function() m:register_forward_hook(3) end,
      "Linear:register_forward_hook: fn must be a function, got number")
    assert.has_error(function() m:register_forward_pre_hook(print, { prepend = 1 }) end,
      "Linear:register_forward_pre_hook: opts.prepend must be a boolean, got number")
  end)
end)

describe("nn.Module apply, requires_grad_, num_parameters", function()
  it("apply visits children before their parents, then the module itself, and returns it", function()
    local inner = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    local net = nn.Sequential(nn.Linear(2, 2), inner, nn.Tanh())
    local order = {}
    assert.are.equal(net, net:apply(function(m) order[#order + 1] = getmetatable(m).__name end))
    assert.are.same({ "Linear", "Linear", "ReLU", "Sequential", "Tanh", "Sequential" }, order)
    net:apply(function(m) if m.bias then lg.nn.init.zeros_(m.bias) end end)
    assert.are.equal(0, net[1].bias:abs():sum():item())
    assert.are.equal(0, net[2][1].bias:abs():sum():item())
  end)

  it("requires_grad_(false) freezes every parameter; requires_grad_() unfreezes; counts follow", function()
    local net = Net(5, 8, 3)
    -- embed 5*8+8, res 8*16+16 + 16*8+8, norm 8+8, head 8*3+3, scale 1
    local n = 48 + 144 + 136 + 16 + 27 + 1
    assert.are.equal(n, net:num_parameters())
    assert.are.equal(n, net:num_parameters({ trainable_only = true }))
    assert.are.equal(net.res, net.res:requires_grad_(false))
    assert.is_false(net.res.block.fc1.weight.requires_grad)
    assert.are.equal(n - 280, net:num_parameters({ trainable_only = true }))
    assert.are.equal(n, net:num_parameters())
    net(lg.randn(2, 5)):sum():backward()
    assert.is_nil(net.res.block.fc2.weight.grad)
    assert.is_not_nil(net.head.weight.grad)
    net:requires_grad_()
    assert.is_true(net.res.block.fc1.weight.requires_grad)
    assert.are.equal(n, net:num_parameters({ trainable_only = true }))
    assert.has_error(function() net:requires_grad_("no") end,
      "Net:requires_grad_: requires_grad must be a boolean, got string")
  end)

  it("num_parameters counts a shared tensor once", function()
    local a = nn.Linear(3, 3)
    local net = nn.Sequential(a, nn.ReLU(), a)
    assert.are.equal(12, net:num_parameters())
  end)
end)

describe("nn.summary", function()
  local CNN = nn.Module:extend("SmallCNN")
  function CNN:init()
    self.conv1 = nn.Conv2d(1, 4, 3, { padding = 1 })
    self.bn = nn.BatchNorm2d(4)
    self.pool = nn.MaxPool2d(2)
    self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
  end
  function CNN:forward(x) return self.head(self.pool(self.bn(self.conv1(x)):relu())) end

  local function column(s, key)
    local out = {}
    for i, r in ipairs(s.rows) do out[i] = r[key] == nil and "--" or r[key] end
    return out
  end

  it("lists a small CNN's layers with their output shapes and parameter counts", function()
    local model = CNN()
    model.conv1.weight.requires_grad = false -- 36 frozen
    local s = nn.summary(model, { 2, 1, 8, 8 })
    assert.are.same({ "", "conv1", "bn", "pool", "head", "head.0", "head.1" }, column(s, "name"))
    assert.are.same({ "SmallCNN", "Conv2d", "BatchNorm2d", "MaxPool2d", "Sequential", "Flatten", "Linear" },
      column(s, "class"))
    assert.are.same({ { 2, 10 }, { 2, 4, 8, 8 }, { 2, 4, 8, 8 }, { 2, 4, 4, 4 }, { 2, 10 }, { 2, 64 }, { 2, 10 } },
      column(s, "output_shape"))
    assert.are.same({ 0, 40, 8, 0, 0, 0, 650 }, column(s, "params"))
    assert.are.same({ 0, 4, 8, 0, 0, 0, 650 }, column(s, "trainable"))
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1 }, column(s, "calls"))
    assert.are.equal(698, s.total_params)
    assert.are.equal(662, s.trainable_params)
    assert.are.equal(36, s.non_trainable_params)
    assert.are.equal(698 * 4, s.param_bytes)
    assert.are.same({ { 2, 1, 8, 8 } }, s.input_shapes)
    assert.are.same({ 2, 10 }, s.output_shape)
    assert.are.equal("float32", s.dtype)
    assert.are.equal(model:num_parameters(), s.total_params)
    -- in eval mode, then back: the running statistics did not move, the modes are restored
    assert.is_true(model.training and model.bn.training)
    assert.are.equal(0, model.bn.running_mean:abs():sum():item())
    assert.are.equal(0, model.bn.num_batches_tracked:item())
    assert.is_nil(rawget(model.conv1, "_forward_hooks"))
  end)

  it("prints as a table with totals", function()
    local s = nn.summary(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), { 3, 784 })
    assert.are.same({ { 3, 10 }, { 3, 256 }, { 3, 256 }, { 3, 10 } }, column(s, "output_shape"))
    assert.are.same({ 0, 200960, 0, 2570 }, column(s, "params"))
    assert.are.equal(table.concat({
      "Layer    Class       Output shape   Params",
      "------------------------------------------",
      "(model)  Sequential  {3, 10}            --",
      "0        Linear      {3, 256}      200,960",
      "1        ReLU        {3, 256}            0",
      "2        Linear      {3, 10}         2,570",
      "==========================================",
      "Total params: 203,530",
      "Trainable params: 203,530",
      "Non-trainable params: 0",
      "Params size (MB): 0.81",
      "Input shape: {3, 784} (float32)",
    }, "\n"), tostring(s))
  end)

  it("takes int64 inputs (ones: the first index), several inputs, and notes modules never called", function()
    local s = nn.summary(nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 3, { batch_first = true })), { 2, 5 },
      { dtype = "int64" })
    assert.are.same({ { 2, 5, 3 }, { 2, 5, 4 }, { 2, 5, 3 } }, column(s, "output_shape"))
    assert.are.same({ 0, 40, 4 * 3 * (4 + 3) + 2 * 4 * 3 }, column(s, "params"))
    local Pair = nn.Module:extend("Pair")
    function Pair:init()
      self.a = nn.Linear(3, 2)
      self.unused = nn.Linear(2, 2)
    end
    function Pair:forward(x, y) return self.a(x) + y end
    s = nn.summary(Pair(), { { 4, 3 }, { 4, 2 } }, { dtype = "float64" })
    assert.are.same({ { 4, 2 }, { 4, 2 }, "--" }, column(s, "output_shape"))
    assert.are.same({ 1, 1, 0 }, column(s, "calls"))
    assert.are.equal(8 + 6, s.total_params)
    assert.truthy(tostring(s):find("Input shape: {4, 3}, {4, 2} (float64)", 1, true))
    -- a tensor is the input itself; a layer called twice is one row with calls = 2
    local twice = nn.Module:extend("Twice")
    function twice:init() self.fc = nn.Linear(3, 3) end
    function twice:forward(x) return self.fc(self.fc(x)):sum(2) end
    s = nn.summary(twice(), lg.randn(5, 3))
    assert.are.same({ { 5 }, { 5, 3 } }, column(s, "output_shape"))
    assert.are.same({ 1, 2 }, column(s, "calls"))
    assert.are.same({ { 5, 3 } }, s.input_shapes)
  end)

  it("names itself when the shape or the model is wrong, and leaves the model as it was", function()
    local model = CNN()
    assert.has_error(function() nn.summary(model, { 2, 3, 8, 8 }) end,
      "summary: the forward pass of SmallCNN on {2, 3, 8, 8} (float32) failed: Conv2d: weight {4,1,3,3} with 1 group " ..
      "expects 1 input channels, got input of shape {2,3,8,8}")
    assert.is_true(model.training)
    assert.is_nil(rawget(model.conv1, "_forward_hooks"))
    assert.has_error(function() nn.summary(nn.Linear, { 2, 3 }) end,
      "summary: model must be a module (an instance of nn.Module), got table")
    assert.has_error(function() nn.summary(model, { 2, -1 }) end,
      "summary: input_shape[2] must be a non-negative integer, got number")
    assert.has_error(function() nn.summary(model, { 2, 1, 8, 8 }, { dtype = "int32" }) end,
      'summary: dtype must be "float32", "float64" or "int64", got "int32"')
  end)
end)

describe("lg.nn", function()
  it("exposes every class, nn.functional as nn.F, and nn.init", function()
    for _, name in ipairs({ "Module", "Parameter", "Linear", "Sequential", "Residual", "Identity", "Flatten", "Dropout",
      "ReLU", "Sigmoid", "Tanh", "GELU", "LeakyReLU", "ELU", "SiLU", "Softplus", "Softmax", "LogSoftmax",
      "BatchNorm1d", "LayerNorm", "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss" }) do
      assert.is_not_nil(nn[name], name)
    end
    assert.are.equal(nn.functional, nn.F)
    assert.is_function(nn.utils.clip_grad_norm_)
    assert.are.equal(nn, require("luagrad.nn"))
    for _, name in ipairs({ "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "uniform_",
      "normal_", "zeros_", "ones_", "constant_", "calculate_gain" }) do
      assert.is_function(nn.init[name], name)
    end
    local p = nn.Parameter(lg.ones(2))
    assert.is_true(p.requires_grad)
    assert.is_nil(p:grad_fn())
  end)
end)
