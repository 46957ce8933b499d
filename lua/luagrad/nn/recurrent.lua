-- luagrad.nn.recurrent: PyTorch's recurrent layers RNN, LSTM, GRU and their cells RNNCell,
-- LSTMCell, GRUCell, composed from differentiable ops (no kernel of their own), so reverse mode,
-- double backward and forward mode all come from the ops' rules.
--
--   RNN(input_size, hidden_size, {num_layers = 1, nonlinearity = "tanh", bias = true,
--       batch_first = false, dropout = 0, bidirectional = false, dtype})
--   LSTM(..., {num_layers, bias, batch_first, dropout, bidirectional, proj_size = 0, dtype})
--   GRU(...,  {num_layers, bias, batch_first, dropout, bidirectional, dtype})
--   RNNCell(input_size, hidden_size, {bias, nonlinearity, dtype}), LSTMCell, GRUCell
--
-- One step, with gi = W_ih x + b_ih and gh = W_hh h + b_hh split into the gates in PyTorch's order:
--   RNN   h' = tanh(gi + gh)               (or relu)
--   LSTM  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of gi + gh   (4H rows: i, f, g, o)
--         c' = f * c + i * g,   h' = o * tanh(c')       (proj_size > 0: h' = W_hr (o * tanh(c')))
--   GRU   r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z)        (3H rows: r, z, n)
--         n = tanh(gi_n + r * gh_n),  h' = (1 - z) * n + z * h = n + z * (h - n)
-- A layer computes gi for every time step at once (one GEMM over the (T, B, in) sequence), then
-- per step only the hidden projection and the gates. Sequences run time-major inside; batch_first
-- input is read through a transposed view and its output stacked batch-first directly.
--
-- Parameters are named as PyTorch names them, per layer k (0-based, as in PyTorch's state dicts)
-- and direction ("" or "_reverse"): weight_ih_l{k} (G*H, in), weight_hh_l{k} (G*H, H),
-- bias_ih_l{k}, bias_hh_l{k} (G*H), weight_hr_l{k} (proj_size, H) for a projected LSTM; the
-- cells' are weight_ih, weight_hh, bias_ih, bias_hh. All start as U(-1/sqrt(H), 1/sqrt(H)).
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local init = require "luagrad.nn.initializers"
local F = require "luagrad.nn.functional"

local Parameter = base.Parameter
local linear = core._linear -- x W^T + b as one GEMM; the callers check shapes and dtypes first
local shape_str = F._shape_str

-- ---- one time step of each kind -------------------------------------------------------------
-- gi: (B, G*H) the input's projection with b_ih; h (B, H or proj) and c (B, H) the state;
-- w holds w_hh, b_hh (nil without bias) and w_hr (projected LSTM only). Returns h' (and c').

local function rnn_tanh_step(gi, h, _, w) return (gi + linear(h, w.w_hh, w.b_hh)):tanh() end
local function rnn_relu_step(gi, h, _, w) return (gi + linear(h, w.w_hh, w.b_hh)):relu() end

-- gate block k (1-based) of a (B, G*H) tensor: a view (narrow is one C call; chunk builds a table)
local function block(t, k, H) return t:narrow(2, (k - 1) * H + 1, H) end

local function lstm_step(gi, h, c, w)
  local H = c:size(2)
  local g = gi + linear(h, w.w_hh, w.b_hh)
  local c2 = block(g, 2, H):sigmoid() * c + block(g, 1, H):sigmoid() * block(g, 3, H):tanh()
  local h2 = block(g, 4, H):sigmoid() * c2:tanh()
  if w.w_hr then h2 = linear(h2, w.w_hr) end
  return h2, c2
end

local function gru_step(gi, h, _, w)
  local H = h:size(2)
  local gh = linear(h, w.w_hh, w.b_hh)
  local r = (block(gi, 1, H) + block(gh, 1, H)):sigmoid()
  local z = (block(gi, 2, H) + block(gh, 2, H)):sigmoid()
  local n = (block(gi, 3, H) + r * block(gh, 3, H)):tanh()
  return n + z * (h - n)
end

-- The T steps of a (T, ...) tensor as views, out[first + t - 1] = t-th step, reached through a
-- binary tree of narrows. A view's gradient is built at its parent's full size (narrow's adjoint
-- pads with zeros), so selecting each step of gi directly would cost T full-size gradients,
-- quadratic in T (1600 steps: 0.9 s of a 1.2 s LSTM backward); halving costs about log2(T).
local function unbind_steps(t, first, out)
  local n = t:size(1)
  if n <= 4 then
    for i = 1, n do out[first + i - 1] = t[i] end
    return out
  end
  local half = n // 2
  unbind_steps(t:narrow(1, 1, half), first, out)
  unbind_steps(t:narrow(1, half + 1, n - half), first + half, out)
  return out
end

-- mode -> gates per hidden unit and the step function
local MODES = {
  RNN_TANH = { gates = 1, step = rnn_tanh_step },
  RNN_RELU = { gates = 1, step = rnn_relu_step },
  LSTM = { gates = 4, step = lstm_step },
  GRU = { gates = 3, step = gru_step },
}

-- ---- shared checks --------------------------------------------------------------------------

local function check_size(name, what, v, min)
  if math.type(v) ~= "integer" or v < min then
    errors.raisef("%s: %s must be an integer >= %d, got %s", name, what, min, tostring(v))
  end
end

local function check_bool(name, what, v)
  if v ~= nil and type(v) ~= "boolean" then errors.raisef("%s: %s must be a boolean, got %s", name, what, type(v)) end
end

local function check_dtype(name, dtype)
  if dtype ~= "float32" and dtype ~= "float64" then
    errors.raisef('%s: dtype must be "float32" or "float64", got %s', name, tostring(dtype))
  end
end

local function check_nonlinearity(name, v)
  if v ~= "tanh" and v ~= "relu" then
    errors.raisef('%s: nonlinearity must be "tanh" or "relu", got %s', name, tostring(v))
  end
end

-- a floating tensor of the parameters' dtype, or an error naming the layer and `what`
local function check_float(name, what, t, dtype)
  if not core.is_tensor(t) then errors.raisef("%s: %s must be a tensor, got %s", name, what, type(t)) end
  if t.dtype ~= dtype then
    errors.raisef("%s: %s is %s but the parameters are %s (convert one with :to(dtype))", name, what, t.dtype, dtype)
  end
end

local function check_state_shape(name, what, t, want)
  local ok = t:dim() == #want
  for d = 1, #want do ok = ok and t:size(d) == want[d] end
  if not ok then
    errors.raisef("%s: expected %s of shape {%s}, got %s", name, what, table.concat(want, ","), shape_str(t))
  end
end

-- G * hidden_size rows must not wrap around (4 * 2^62 is 0 in integer arithmetic)
local function check_rows(name, G, hidden_size)
  if hidden_size > math.maxinteger // G then
    errors.raisef("%s: hidden_size %d is too large (%d gate rows per unit)", name, hidden_size, G)
  end
end

local function draw_uniform(m, hidden)
  local bound = hidden > 0 and 1 / math.sqrt(hidden) or 0
  for _, p in ipairs(m:parameters()) do init.uniform_(p, -bound, bound) end
end

-- ---- RNN, LSTM, GRU -------------------------------------------------------------------------

---@class luagrad.nn.RNNOptions
---@field num_layers? integer stacked layers, each reading the previous one's output (default 1)
---@field nonlinearity? "tanh"|"relu" RNN only (default "tanh")
---@field bias? boolean whether the layers learn b_ih and b_hh (default true)
---@field batch_first? boolean input and output are (B, T, features) instead of (T, B, features) (default false)
---@field dropout? number dropout on each layer's output but the last, in training (default 0)
---@field bidirectional? boolean run each layer forward and backward in time, concatenating both (default false)
---@field proj_size? integer LSTM only: project h to this size with weight_hr (default 0: no projection)
---@field dtype? "float32"|"float64" the parameters' dtype (default lg.get_default_dtype())

---The recurrent layers' base class (not exported): RNN, LSTM and GRU.
---@class luagrad.nn.RNNBase: luagrad.nn.Module
---@field mode "RNN_TANH"|"RNN_RELU"|"LSTM"|"GRU"
---@field input_size integer
---@field hidden_size integer
---@field num_layers integer
---@field bias boolean
---@field batch_first boolean
---@field dropout number
---@field bidirectional boolean
---@field proj_size integer
local RNNBase = base.Module:extend("RNNBase")

---@param input_size integer
---@param hidden_size integer
---@param opts? luagrad.nn.RNNOptions
function RNNBase:init(input_size, hidden_size, opts)
  local name = getmetatable(self).__name
  check_size(name, "input_size", input_size, 1)
  check_size(name, "hidden_size", hidden_size, 1)
  local allowed = { "num_layers", "bias", "batch_first", "dropout", "bidirectional", "dtype" }
  if name == "RNN" then allowed[#allowed + 1] = "nonlinearity" end
  if name == "LSTM" then allowed[#allowed + 1] = "proj_size" end
  local o = errors.options(name, opts, allowed)
  local num_layers = o.num_layers == nil and 1 or o.num_layers
  check_size(name, "num_layers", num_layers, 1)
  for _, k in ipairs({ "bias", "batch_first", "bidirectional" }) do check_bool(name, k, o[k]) end
  local dropout = o.dropout == nil and 0 or o.dropout
  if type(dropout) ~= "number" or not (dropout >= 0 and dropout <= 1) then
    errors.raisef("%s: dropout must be a probability between 0 and 1, got %s", name, tostring(dropout))
  end
  local proj = o.proj_size == nil and 0 or o.proj_size
  check_size(name, "proj_size", proj, 0)
  if proj >= hidden_size then
    errors.raisef("%s: proj_size (%d) must be smaller than hidden_size (%d)", name, proj, hidden_size)
  end
  local mode = name
  if name == "RNN" then
    local nl = o.nonlinearity == nil and "tanh" or o.nonlinearity
    check_nonlinearity(name, nl)
    self.nonlinearity = nl
    mode = nl == "tanh" and "RNN_TANH" or "RNN_RELU"
  end
  local dtype = o.dtype or core.get_default_dtype()
  check_dtype(name, dtype)
  self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
  self.bias, self.batch_first, self.dropout = o.bias ~= false, o.batch_first == true, dropout
  self.bidirectional, self.proj_size = o.bidirectional == true, proj
  -- PyTorch's registration order: per layer, per direction: w_ih, w_hh, b_ih, b_hh (, w_hr)
  local G, H = MODES[mode].gates, hidden_size
  check_rows(name, G, H)
  local out = proj > 0 and proj or H -- the size of h
  local D = self.bidirectional and 2 or 1
  local function param(shape) return Parameter(errors.call_as(name, core.empty, shape, { dtype = dtype })) end
  for k = 0, num_layers - 1 do
    local in_k = k == 0 and input_size or out * D
    for dir = 1, D do
      local sfx = string.format("_l%d%s", k, dir == 2 and "_reverse" or "")
      self["weight_ih" .. sfx] = param({ G * H, in_k })
      self["weight_hh" .. sfx] = param({ G * H, out })
      if self.bias then
        self["bias_ih" .. sfx] = param({ G * H })
        self["bias_hh" .. sfx] = param({ G * H })
      end
      if proj > 0 then self["weight_hr" .. sfx] = param({ proj, H }) end
    end
  end
  self:reset_parameters()
end

---Draws every parameter again from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch.
function RNNBase:reset_parameters() draw_uniform(self, self.hidden_size) end

-- The forward pass over a table P of parameters by name (the module's own, or a gradcheck's
-- stand-ins). x: (T, B, in), (B, T, in) with batch_first, or unbatched (T, in); hx: nil, a
-- tensor, or for LSTM {h0, c0}.
function RNNBase:_run(x, hx, P)
  local fields = rawget(self, "_fields")
  local name, mode = getmetatable(self).__name, fields.mode
  local step = MODES[mode].step
  local L, H, proj = fields.num_layers, fields.hidden_size, fields.proj_size
  local D = fields.bidirectional and 2 or 1
  local out = proj > 0 and proj or H
  local dtype = P.weight_ih_l0.dtype
  check_float(name, "input", x, dtype)
  local batched = x:dim() == 3
  if not batched and x:dim() ~= 2 then
    errors.raisef("%s: expected input of 2 (unbatched: T, features) or 3 dimensions, got shape %s", name, shape_str(x))
  end
  if x:size(-1) ~= fields.input_size then
    errors.raisef("%s: expected input with %d features in its last dimension, got shape %s", name,
      fields.input_size, shape_str(x))
  end
  -- time-major (T, B, in)
  if not batched then
    x = x:unsqueeze(2)
  elseif fields.batch_first then
    x = x:transpose(1, 2)
  end
  local T, B = x:size(1), x:size(2)
  if T == 0 then errors.raisef("%s: expected a sequence of at least one step, got shape %s", name, shape_str(x)) end
  -- initial states: (L * D, B, out) and for LSTM (L * D, B, H); nil means zeros
  local h0, c0
  if mode == "LSTM" then
    if hx ~= nil then
      if type(hx) ~= "table" or core.is_tensor(hx) then
        errors.raisef("%s: the initial state must be a table {h0, c0}, got %s", name,
          core.is_tensor(hx) and "a tensor" or type(hx))
      end
      h0, c0 = hx[1], hx[2]
      if h0 == nil or c0 == nil then errors.raisef("%s: the initial state {h0, c0} needs both tensors", name) end
      check_float(name, "h0", h0, dtype)
      check_float(name, "c0", c0, dtype)
    end
  elseif hx ~= nil then
    check_float(name, "h0", hx, dtype)
    h0 = hx
  end
  local function state_shape(size)
    return batched and { L * D, B, size } or { L * D, size }
  end
  if h0 ~= nil then
    check_state_shape(name, "h0", h0, state_shape(out))
    if not batched then h0 = h0:unsqueeze(2) end
  end
  if c0 ~= nil then
    check_state_shape(name, "c0", c0, state_shape(H))
    if not batched then c0 = c0:unsqueeze(2) end
  end
  local zeros_h, zeros_c
  if h0 == nil then zeros_h = core.zeros({ B, out }, { dtype = dtype }) end
  if mode == "LSTM" and c0 == nil then zeros_c = core.zeros({ B, H }, { dtype = dtype }) end
  local hn, cn = {}, {}
  local input = x
  local stack_dim = (batched and fields.batch_first) and 2 or 1
  for k = 0, L - 1 do
    local last = k == L - 1
    local outs = {}
    for dir = 1, D do
      local sfx = string.format("_l%d%s", k, dir == 2 and "_reverse" or "")
      local w = { w_hh = P["weight_hh" .. sfx], b_hh = P["bias_hh" .. sfx], w_hr = P["weight_hr" .. sfx] }
      -- (T, B, G*H): every step's input projection in one GEMM, then one view per step
      local gi = unbind_steps(linear(input, P["weight_ih" .. sfx], P["bias_ih" .. sfx]), 1, {})
      local s = k * D + dir
      local h = h0 and h0[s] or zeros_h
      local c = c0 and c0[s] or zeros_c
      local ys = {}
      local t0, t1, dt = 1, T, 1
      if dir == 2 then t0, t1, dt = T, 1, -1 end
      for t = t0, t1, dt do
        h, c = step(gi[t], h, c, w)
        ys[t] = h
      end
      hn[s], cn[s] = h, c
      outs[dir] = core.stack(ys, last and stack_dim or 1)
    end
    input = D == 1 and outs[1] or core.cat(outs, -1)
    if not last and fields.dropout > 0 and self.training then input = F.dropout(input, fields.dropout) end
  end
  local output, h_n, c_n = input, core.stack(hn, 1), mode == "LSTM" and core.stack(cn, 1) or nil
  if not batched then
    output, h_n = output:squeeze(2), h_n:squeeze(2)
    if c_n then c_n = c_n:squeeze(2) end
  end
  if mode == "LSTM" then return output, { h_n, c_n } end
  return output, h_n
end

---output, h_n = rnn(x, h0) (RNN, GRU); output, {h_n, c_n} = lstm(x, {h0, c0}).
---@param x luagrad.Tensor (T, B, input_size), (B, T, input_size) with batch_first, or (T, input_size)
---@param hx? luagrad.Tensor|luagrad.Tensor[] h0 (num_layers * D, B, H), or {h0, c0} for LSTM; default zeros
---@return luagrad.Tensor output (T, B, D * H) (or (B, T, D * H), or (T, D * H))
---@return luagrad.Tensor|luagrad.Tensor[] h_n, or {h_n, c_n} for LSTM
function RNNBase:forward(x, hx)
  return self:_run(x, hx, rawget(self, "_parameters").values)
end

---PyTorch's extra_repr: the sizes, then the settings that differ from their defaults.
---@return string
function RNNBase:extra_repr()
  local s = string.format("%d, %d", self.input_size, self.hidden_size)
  if self.proj_size ~= 0 then s = s .. ", proj_size=" .. self.proj_size end
  if self.num_layers ~= 1 then s = s .. ", num_layers=" .. self.num_layers end
  if self.nonlinearity == "relu" then s = s .. ', nonlinearity="relu"' end
  if not self.bias then s = s .. ", bias=false" end
  if self.batch_first then s = s .. ", batch_first=true" end
  if self.dropout ~= 0 then s = s .. ", dropout=" .. self.dropout end
  if self.bidirectional then s = s .. ", bidirectional=true" end
  return s
end

---RNN(input_size, hidden_size, opts): an Elman network, h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
---@class luagrad.nn.RNN: luagrad.nn.RNNBase
local RNN = RNNBase:extend("RNN")

---LSTM(input_size, hidden_size, opts): long short-term memory, gates i, f, g, o.
---@class luagrad.nn.LSTM: luagrad.nn.RNNBase
local LSTM = RNNBase:extend("LSTM")

---GRU(input_size, hidden_size, opts): gated recurrent unit, gates r, z, n.
---@class luagrad.nn.GRU: luagrad.nn.RNNBase
local GRU = RNNBase:extend("GRU")

-- ---- the cells ------------------------------------------------------------------------------

---@class luagrad.nn.RNNCellOptions
---@field bias? boolean (default true)
---@field nonlinearity? "tanh"|"relu" RNNCell only (default "tanh")
---@field dtype? "float32"|"float64" the parameters' dtype (default lg.get_default_dtype())

---The cells' base class (not exported): one time step of RNN, LSTM or GRU.
---@class luagrad.nn.RNNCellBase: luagrad.nn.Module
---@field input_size integer
---@field hidden_size integer
---@field bias boolean
local RNNCellBase = base.Module:extend("RNNCellBase")

local CELL_MODE = { RNNCell = "RNN", LSTMCell = "LSTM", GRUCell = "GRU" }

---@param input_size integer
---@param hidden_size integer
---@param opts? luagrad.nn.RNNCellOptions
function RNNCellBase:init(input_size, hidden_size, opts)
  local name = getmetatable(self).__name
  check_size(name, "input_size", input_size, 1)
  check_size(name, "hidden_size", hidden_size, 1)
  local allowed = { "bias", "dtype" }
  if name == "RNNCell" then allowed[3] = "nonlinearity" end
  local o = errors.options(name, opts, allowed)
  check_bool(name, "bias", o.bias)
  local mode = CELL_MODE[name]
  if name == "RNNCell" then
    local nl = o.nonlinearity == nil and "tanh" or o.nonlinearity
    check_nonlinearity(name, nl)
    self.nonlinearity = nl
    mode = nl == "tanh" and "RNN_TANH" or "RNN_RELU"
  end
  local dtype = o.dtype or core.get_default_dtype()
  check_dtype(name, dtype)
  self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, o.bias ~= false
  local G = MODES[mode].gates
  check_rows(name, G, hidden_size)
  local function param(shape) return Parameter(errors.call_as(name, core.empty, shape, { dtype = dtype })) end
  self.weight_ih = param({ G * hidden_size, input_size })
  self.weight_hh = param({ G * hidden_size, hidden_size })
  if self.bias then
    self.bias_ih = param({ G * hidden_size })
    self.bias_hh = param({ G * hidden_size })
  end
  self:reset_parameters()
end

---Draws every parameter again from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch.
function RNNCellBase:reset_parameters() draw_uniform(self, self.hidden_size) end

-- One step over a table P of parameters by name. x: (B, in) or unbatched (in); hx: nil, a
-- tensor, or for LSTMCell {h, c}.
function RNNCellBase:_run(x, hx, P)
  local fields = rawget(self, "_fields")
  local name, mode, H = getmetatable(self).__name, fields.mode, fields.hidden_size
  local dtype = P.weight_ih.dtype
  check_float(name, "input", x, dtype)
  local batched = x:dim() == 2
  if not batched and x:dim() ~= 1 then
    errors.raisef("%s: expected input of 1 (unbatched) or 2 dimensions, got shape %s", name, shape_str(x))
  end
  if x:size(-1) ~= fields.input_size then
    errors.raisef("%s: expected input with %d features in its last dimension, got shape %s", name,
      fields.input_size, shape_str(x))
  end
  if not batched then x = x:unsqueeze(1) end
  local B = x:size(1)
  local want = batched and { B, H } or { H }
  local h, c
  if mode == "LSTM" then
    if hx ~= nil then
      if type(hx) ~= "table" or core.is_tensor(hx) then
        errors.raisef("%s: the state must be a table {h, c}, got %s", name, core.is_tensor(hx) and "a tensor" or type(hx))
      end
      h, c = hx[1], hx[2]
      if h == nil or c == nil then errors.raisef("%s: the state {h, c} needs both tensors", name) end
      check_float(name, "h", h, dtype)
      check_float(name, "c", c, dtype)
      check_state_shape(name, "c", c, want)
      if not batched then c = c:unsqueeze(1) end
    end
  elseif hx ~= nil then
    check_float(name, "h", hx, dtype)
    h = hx
  end
  if h ~= nil then
    check_state_shape(name, "h", h, want)
    if not batched then h = h:unsqueeze(1) end
  else
    h = core.zeros({ B, H }, { dtype = dtype })
    if mode == "LSTM" then c = core.zeros({ B, H }, { dtype = dtype }) end
  end
  local h2, c2 = MODES[mode].step(linear(x, P.weight_ih, P.bias_ih), h, c, { w_hh = P.weight_hh, b_hh = P.bias_hh })
  if not batched then
    h2 = h2:squeeze(1)
    if c2 then c2 = c2:squeeze(1) end
  end
  if mode == "LSTM" then return { h2, c2 } end
  return h2
end

---h' = cell(x, h) (RNNCell, GRUCell); {h', c'} = cell(x, {h, c}) (LSTMCell).
---@param x luagrad.Tensor (B, input_size) or (input_size)
---@param hx? luagrad.Tensor|luagrad.Tensor[] h (B, H) or (H), or {h, c} for LSTMCell; default zeros
---@return luagrad.Tensor|luagrad.Tensor[]
function RNNCellBase:forward(x, hx)
  return self:_run(x, hx, rawget(self, "_parameters").values)
end

---PyTorch's extra_repr: the sizes, then bias and nonlinearity when they differ from the defaults.
---@return string
function RNNCellBase:extra_repr()
  local s = string.format("%d, %d", self.input_size, self.hidden_size)
  if not self.bias then s = s .. ", bias=false" end
  if self.nonlinearity == "relu" then s = s .. ', nonlinearity="relu"' end
  return s
end

---RNNCell(input_size, hidden_size, opts): h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu).
---@class luagrad.nn.RNNCell: luagrad.nn.RNNCellBase
local RNNCell = RNNCellBase:extend("RNNCell")

---LSTMCell(input_size, hidden_size, opts): one LSTM step, {h', c'} = cell(x, {h, c}).
---@class luagrad.nn.LSTMCell: luagrad.nn.RNNCellBase
local LSTMCell = RNNCellBase:extend("LSTMCell")

---GRUCell(input_size, hidden_size, opts): one GRU step, h' = cell(x, h).
---@class luagrad.nn.GRUCell: luagrad.nn.RNNCellBase
local GRUCell = RNNCellBase:extend("GRUCell")

return { RNN = RNN, LSTM = LSTM, GRU = GRU, RNNCell = RNNCell, LSTMCell = LSTMCell, GRUCell = GRUCell }
