-- Errors blame the user's line: for entry points across the library (layers, constructors,
-- optimizers, schedules, data, save/load, nn.init, autograd, plots, progress bars), the message
-- starts with "<this file>:<line>: ", the line of user code that called into the library, however
-- deep inside the library the check runs and however many user functions wrap the call; the
-- rest of the message names the operation. Also: the library's files are recognised when loaded
-- from the executable's embedded copy, an installed tree, a luarocks tree or any other folder.
local lg = require "luagrad"
local errors = require "luagrad.errors"
local nn = lg.nn

local SPEC = debug.getinfo(1, "S").short_src -- this file as error messages name it

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function at(line) return SPEC .. ":" .. line .. ": " end

-- The line of a one-line function, where each case below calls into the library.
local function line_of(fn)
  local info = debug.getinfo(fn, "S")
  assert(info.linedefined == info.lastlinedefined, "a case must fit on one line")
  return info.linedefined
end

-- User code wrapping the call: a wrapper, and a wrapper of the wrapper (no tail calls, which
-- would take the wrapper's frame off the stack).
local function wrapper(fn) fn() end
local function wrapper_of_wrapper(fn) wrapper(fn) end

-- ---- the objects the cases use, made beforehand so that each case is the failing call -------

local lin = nn.Linear(4, 3)
local seq = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(3, 2)) -- the last layer does not fit
local params = { nn.Parameter(lg.randn(3)) }
local opt = lg.optim.SGD(params, { lr = 0.1 })
local stepped = lg.optim.SGD(params, { lr = 0.1 })
stepped.param_groups[1].lr = -0.1 -- checked again by step()
local plateau = lg.optim.lr_scheduler.ReduceLROnPlateau(lg.optim.SGD(params, { lr = 0.1 }))
local ds = lg.data.TensorDataset(lg.randn(6, 4), lg.randn(6))
local exploded = nn.Parameter(lg.ones(2))
exploded.grad = lg.full({ 2 }, math.huge)

-- { what, a one-line function calling the library, the message after the position }
local CASES = {
  { "a layer's forward with a bad shape", function() lin(lg.randn(2, 5)) end,
    "Linear: expected input with 4 features in its last dimension, got shape {2,5}" },
  { "a layer run by nn.Sequential", function() seq(lg.randn(2, 5)) end,
    "Linear: expected input with 3 features in its last dimension, got shape {2,4}" },
  { "nn.Linear's constructor with a bad size", function() nn.Linear(2.5, 3) end,
    "Linear: in_features must be a non-negative integer, got 2.5" },
  { "nn.Linear's constructor with an unknown option", function() nn.Linear(2, 3, { biass = false }) end,
    "Linear: unknown option 'biass' (accepted: bias, dtype)" },
  { "nn.BatchNorm1d's constructor", function() nn.BatchNorm1d(0) end,
    "BatchNorm1d: num_features must be a positive integer, got 0" },
  { "a loss module (through nn.functional)", function() nn.CrossEntropyLoss()(lg.randn(2, 3), { 1, 4 }) end,
    "cross_entropy: label 4 at position 2 is out of range 1..3 (labels are 1-based)" },
  { "nn.functional.softmax without a dimension", function() nn.F.softmax(lg.randn(2, 3)) end,
    "softmax: a dimension is needed, e.g. softmax(x, -1)" },
  { "assigning a number to a module's parameter", function() lin.weight = 1 end,
    "Linear: cannot assign a number as parameter 'weight' (use nn.Parameter(t), or nil to remove it)" },
  { "Module:load_state_dict", function() lin:load_state_dict({}) end,
    "Linear:load_state_dict: missing keys: 'bias', 'weight'" },
  { "nn.init", function() nn.init.calculate_fan_in_and_fan_out(lg.ones(3)) end,
    "nn.init.calculate_fan_in_and_fan_out: fan in and fan out cannot be computed for a tensor with fewer than 2 " ..
    "dimensions (shape {3})" },
  { "clip_grad_norm_ (raised inside the library's no_grad)",
    function() nn.utils.clip_grad_norm_({ exploded }, 1, { error_if_nonfinite = true }) end,
    "clip_grad_norm_: the total norm of order 2 of the gradients is inf, so it cannot be clipped; "
      .. "pass {error_if_nonfinite = false} to clip anyway" },
  { "an optimizer's constructor with a bad option", function() lg.optim.Adam(params, { lr = -1 }) end,
    "Adam: invalid learning rate: -1 (must be >= 0)" },
  { "an optimizer's constructor with an unknown option", function() lg.optim.SGD(params, { lr = 0.1, momentun = 0.9 }) end,
    "SGD: unknown option 'momentun' (accepted: dampening, lr, maximize, momentum, nesterov, weight_decay)" },
  { "an optimizer's step after a bad change", function() stepped:step() end,
    "SGD: invalid learning rate: -0.1 (must be >= 0)" },
  { "a schedule without its required option", function() lg.optim.lr_scheduler.StepLR(opt, { gamma = 0.5 }) end,
    "StepLR: option 'step_size' is required" },
  { "ReduceLROnPlateau:step without a metric", function() plateau:step("high") end,
    "ReduceLROnPlateau:step: metric must be a number or a one-element tensor, got string" },
  { "a DataLoader option", function() lg.data.DataLoader(ds, { batch_size = 0 }) end,
    "DataLoader: batch_size must be a positive integer, got 0" },
  { "TensorDataset", function() lg.data.TensorDataset(lg.randn(6, 4), lg.randn(5)) end,
    "TensorDataset: tensor 2 has 5 rows, tensor 1 has 6" },
  { "lg.save with a path that is not a string", function() lg.save(42, lg.ones(1)) end,
    "save: path must be a string, got number" },
  { "lg.load with a path that is not a string", function() lg.load(nil) end,
    "load: path must be a string, got nil" },
  { "lg.autograd.jacobian with a bad mode", function() lg.autograd.jacobian(lg.exp, lg.ones(2), { mode = "sideways" }) end,
    'jacobian: mode must be "reverse" or "forward", got "sideways"' },
  { "lg.progress", function() lg.progress(-1) end,
    "progress: total must be a non-negative number or nil, got -1" },
  { "lg.plot.line", function() lg.plot.line({}) end,
    "plot.line: no series to plot (series is empty)" },
}

describe("errors blame the user's line", function()
  for _, c in ipairs(CASES) do
    local what, call, text = c[1], c[2], c[3]
    it(what .. ": called from the spec, through a wrapper and through a wrapper of the wrapper", function()
      local want = at(line_of(call)) .. text
      assert.are.equal(want, error_of(call))
      assert.are.equal(want, error_of(wrapper, call))
      assert.are.equal(want, error_of(wrapper_of_wrapper, call))
    end)
  end

  it("a user's module: the line in its forward that calls the layer, not the line calling the module", function()
    local Net = nn.Module:extend("Net")
    function Net:init() self.fc = nn.Linear(4, 2) end
    function Net:forward(x) local y = self.fc(x) return y end
    local net = Net()
    local want = at(line_of(Net.forward)) .. "Linear: expected input with 4 features in its last dimension, got shape {3,5}"
    assert.are.equal(want, error_of(function() net(lg.randn(3, 5)) end))
    assert.are.equal(want, error_of(wrapper, function() nn.Sequential(net)(lg.randn(3, 5)) end))
  end)

  it("a callback the library calls: the line in the callback that calls into the library", function()
    local function lr_lambda(step) return nn.init.calculate_gain("swish") + step end
    local o = lg.optim.SGD(params, { lr = 0.1 })
    local want = at(line_of(lr_lambda)) .. "nn.init.calculate_gain: unsupported nonlinearity 'swish'"
    assert.are.equal(want, error_of(function() lg.optim.lr_scheduler.LambdaLR(o, { lr_lambda = lr_lambda }) end))
  end)

  it("the library called by pcall itself: the line of the pcall (C functions are stepped over)", function()
    local ok, err = pcall(lin, lg.randn(2, 5)); local line = debug.getinfo(1, "l").currentline
    assert.is_false(ok)
    assert.are.equal(at(line) .. "Linear: expected input with 4 features in its last dimension, got shape {2,5}", err)
  end)

  it("errors about the world keep the message alone", function()
    local err = error_of(function() lg.save("/nonexistent-dir/x.safetensors", lg.ones(1)) end)
    local text = "save: cannot write '/nonexistent-dir/x.safetensors': "
    assert.are.equal(text, err:sub(1, #text))
  end)

  it("a C error raised inside a library function blames the user's line too (the binding walks the stack)", function()
    local sm = nn.Softmax(5) -- the C core raises for the dimension, called from nn/functional.lua
    local function call() local y = sm(lg.randn(2, 3)) return y end
    local err = error_of(call)
    assert.are.equal(at(line_of(call)), err:sub(1, #at(line_of(call))))
    assert.matches("softmax: ", err)
    local function ce() local y = nn.functional.cross_entropy(lg.randn(2, 3), { 1, 2, 3 }) return y end
    err = error_of(wrapper, ce)
    assert.are.equal(at(line_of(ce)), err:sub(1, #at(line_of(ce))))
    assert.matches("cross_entropy", err)
  end)
end)

describe("the library's files", function()
  it("are recognised by their chunk names, wherever they were loaded from", function()
    for _, source in ipairs({
      "@lua/luagrad/nn/linear.lua",                                 -- the executable's embedded copy
      "@./lua/luagrad/init.lua",                                    -- a source tree on package.path
      "@/usr/local/share/lua/5.4/luagrad/nn/linear.lua",            -- make install
      "@/usr/share/lua/5.4/luagrad/optim/lr_scheduler.lua",         -- a distribution's package
      "@/home/u/.luarocks/share/lua/5.4/luagrad/data.lua",          -- luarocks --local
      "@/home/u/proj/lua_modules/share/lua/5.4/luagrad/errors.lua", -- luarocks --tree lua_modules
    }) do
      assert.is_true(errors.in_library(source), source)
    end
    for _, source in ipairs({
      "@" .. SPEC, "@train.lua", "@/home/u/mylua/luagrad/train.lua", "@/home/u/luagrad-examples/mnist.lua",
      "=stdin", "=(load)", 'local lg = require "lua/luagrad/init"',
    }) do
      assert.is_false(errors.in_library(source), source)
    end
  end)

  -- A copy of lua/luagrad under dir/sub, loaded by a stock lua5.4 from there; the error a
  -- Linear raises inside nn.Sequential must name the script's line, not containers.lua's, and
  -- the library must really come from the copy.
  local BUILD = os.getenv("LUAGRAD_BUILD") or "build"
  local LUA = os.getenv("LUAGRAD_LUA") or "lua5.4"
  local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local function run_from(sub)
    local p = io.popen("mktemp -d")
    local dir = p:read("l")
    p:close()
    local lib = dir .. "/" .. sub
    assert(os.execute("mkdir -p " .. q(lib) .. " && cp -R lua/luagrad " .. q(lib) .. "/"))
    local script = dir .. "/train.lua"
    local f = assert(io.open(script, "w"))
    f:write('local lg = require "luagrad"\n',
      'local function model(x) local y = lg.nn.Sequential(lg.nn.Linear(5, 4), lg.nn.Linear(3, 2))(x) return y end\n',
      'local _, err = pcall(function() model(lg.randn(2, 5)) end)\n',
      'print(err)\n',
      'print(debug.getinfo(lg.nn.Linear.init, "S").source)\n')
    f:close()
    local cmd = string.format("env LUA_PATH=%s LUA_CPATH=%s %s %s 2>&1", q(lib .. "/?.lua;" .. lib .. "/?/init.lua"),
      q(BUILD .. "/lib/?.so"), LUA, q(script))
    p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    os.execute("rm -rf " .. q(dir))
    local err, source = out:match("^(.-)\n(.-)\n")
    assert.is_truthy(err, out)
    assert.are.equal("@" .. lib .. "/luagrad/nn/linear.lua", source)
    return err, dir
  end

  for _, c in ipairs({
    { "an installed tree", "share/lua/5.4" },
    { "a luarocks tree", "lua_modules/share/lua/5.4" },
    { "any other folder on package.path", "vendor" },
  }) do
    it("loaded by lua5.4 from " .. c[1] .. " (" .. c[2] .. "), they still blame the script's line", function()
      local err, dir = run_from(c[2])
      assert.are.equal(dir .. "/train.lua:2: Linear: expected input with 3 features in its last dimension, got shape {2,4}", err)
    end)
  end
end)
