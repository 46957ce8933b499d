-- demo.lua: a two-minute tour of luagrad's tensors. Run: build/luagrad examples/demo.lua
local lg = require "luagrad"

lg.manual_seed(0)

print("A tensor, its shape and dtype:")
local a = lg.tensor({{1, 2, 3}, {4, 5, 6}})
print(a, "shape {" .. table.concat(a.shape, ",") .. "}", a.dtype)

print("\nViews share storage: the transpose is not a copy.")
local at = a:t()
at[1][2] = 40 -- writes a[2][1]
print(a)

print("\nBroadcasting (2,3) + (3,), numbers on either side:")
print(a + lg.tensor({10, 20, 30}), 1 - a:sum())

print("\nmatmul through OpenBLAS, checked against a Lua triple loop:")
local x, w = lg.randn(64, 32, {dtype = "float64"}), lg.randn(32, 16, {dtype = "float64"})
local y = x:matmul(w)
local worst = 0
for i = 1, 64 do
  for j = 1, 16 do
    local s = 0
    for k = 1, 32 do s = s + x[i][k] * w[k][j] end
    worst = math.max(worst, math.abs(s - y[i][j]))
  end
end
print(string.format("largest difference over 1024 entries: %.3g", worst))
assert(worst < 1e-12, "matmul disagrees with the reference")

print("\nReductions with a dimension return values and 1-based indices:")
local scores = lg.tensor({{0.1, 0.7, 0.2}, {0.5, 0.3, 0.2}})
local v, i = scores:max(2)
print(v, i)

print("\nA softmax written with tensor ops:")
local z = lg.randn(2, 4)
local p = (z - z:max(2, true)):exp()
p = p / p:sum(2, true)
print(p, p:sum(2))
print("\ndemo: ok")
