-- nn.Module mechanics: classes and extend, registration by assignment, names and order,
-- train/eval, zero_grad, to(dtype), state dicts (round trip, strict errors), printing.
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
