-- matmul for 1-d, 2-d and batched inputs, on transposed, narrowed and expanded layouts,
-- against a Lua triple loop.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"
local util = require "helpers.util"

local TOL = { float32 = { 1e-5, 1e-5 }, float64 = { 1e-12, 1e-12 } }

local function randn(dtype, ...)
  return lg.randn({ ... }, { dtype = dtype })
end

-- the same values as randn(shape) but laid out transposed in the last two dims
local function transposed(dtype, ...)
  local s = { ... }
  local n = #s
  s[n - 1], s[n] = s[n], s[n - 1]
  return lg.randn(s, { dtype = dtype }):transpose(n - 1, n)
end

-- a window of a wider tensor along the last dim
local function narrowed(dtype, ...)
  local s = { ... }
  local n = #s
  local w = s[n]
  s[n] = w + 5
  return lg.randn(s, { dtype = dtype }):narrow(n, 3, w)
end

local CASES = {
  { "1-d . 1-d", function(d) return randn(d, 5), randn(d, 5) end, {} },
  { "2-d . 2-d", function(d) return randn(d, 3, 4), randn(d, 4, 5) end, { 3, 5 } },
  { "1-d . 2-d", function(d) return randn(d, 4), randn(d, 4, 5) end, { 5 } },
  { "2-d . 1-d", function(d) return randn(d, 3, 4), randn(d, 4) end, { 3 } },
  { "3-d . 2-d", function(d) return randn(d, 2, 3, 4), randn(d, 4, 5) end, { 2, 3, 5 } },
  { "2-d . 3-d", function(d) return randn(d, 3, 4), randn(d, 2, 4, 5) end, { 2, 3, 5 } },
  { "3-d . 3-d", function(d) return randn(d, 2, 3, 4), randn(d, 2, 4, 5) end, { 2, 3, 5 } },
  { "(1,3,4) . (5,4,2)", function(d) return randn(d, 1, 3, 4), randn(d, 5, 4, 2) end, { 5, 3, 2 } },
  { "(2,1,3,4) . (3,4,2)", function(d) return randn(d, 2, 1, 3, 4), randn(d, 3, 4, 2) end,
    { 2, 3, 3, 2 } },
  { "1-d . 3-d", function(d) return randn(d, 4), randn(d, 2, 4, 3) end, { 2, 3 } },
  { "3-d . 1-d", function(d) return randn(d, 2, 3, 4), randn(d, 4) end, { 2, 3 } },
  { "transposed . transposed", function(d) return transposed(d, 3, 4), transposed(d, 4, 5) end,
    { 3, 5 } },
  { "transposed . contiguous", function(d) return transposed(d, 6, 2), randn(d, 2, 3) end, { 6, 3 } },
  { "contiguous . transposed", function(d) return randn(d, 3, 7), transposed(d, 7, 2) end, { 3, 2 } },
  { "narrowed . narrowed", function(d) return narrowed(d, 3, 4), narrowed(d, 4, 5) end, { 3, 5 } },
  { "row-narrowed . 2-d", function(d) return randn(d, 6, 4):narrow(1, 2, 3), randn(d, 4, 2) end,
    { 3, 2 } },
  { "narrowed transposed . 1-d", function(d) return transposed(d, 5, 4):narrow(1, 2, 3), narrowed(d, 4) end,
    { 3 } },
  { "batched transposed . narrowed", function(d) return transposed(d, 2, 3, 4), narrowed(d, 2, 4, 5) end,
    { 2, 3, 5 } },
  { "expanded batch . 2-d", function(d) return randn(d, 1, 3, 4):expand(4, 3, 4), randn(d, 4, 2) end,
    { 4, 3, 2 } },
  { "permuted batch . 3-d", function(d) return randn(d, 3, 2, 4):permute(2, 1, 3), randn(d, 2, 4, 5) end,
    { 2, 3, 5 } },
  { "column vector . row vector", function(d) return randn(d, 4, 1), randn(d, 1, 3) end, { 4, 3 } },
  { "larger than a BLAS block", function(d) return randn(d, 33, 65), transposed(d, 65, 17) end,
    { 33, 17 }, 4 },
}

describe("matmul", function()
  for _, c in ipairs(CASES) do
    for _, dtype in ipairs({ "float32", "float64" }) do
      it(c[1] .. " " .. dtype, function()
        lg.manual_seed(7)
        local a, b = c[2](dtype)
        local want = ref.matmul(a, b)
        assert.are.same(c[3], want.shape, "reference shape")
        local scale = c[4] or 1
        local got = a:matmul(b)
        assert.are.equal(dtype, got.dtype)
        assert.are.same(c[3], got.shape)
        ref.assert_close(got, want, TOL[dtype][1], TOL[dtype][2] * scale, c[1] .. " method")
        ref.assert_close(lg.matmul(a, b), want, TOL[dtype][1], TOL[dtype][2] * scale,
          c[1] .. " lg.matmul")
      end)
    end
  end

  it("gives exact small-integer results (the issue's example)", function()
    local r = lg.tensor({ { 1, 2 }, { 3, 4 } }):matmul(lg.eye(2))
    assert.are.same({ { 1, 2 }, { 3, 4 } }, r:tolist())
    assert.are.equal(10, r:sum():item())
    local p = lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }):matmul(lg.tensor({ { 1, 0 }, { 0, 1 }, { 1, 1 } }))
    assert.are.same({ { 4, 5 }, { 10, 11 } }, p:tolist())
    assert.are.equal(32, lg.tensor({ 1, 2, 3 }):matmul(lg.tensor({ 4, 5, 6 })):item())
  end)

  it("returns a fresh tensor that does not alias its inputs", function()
    local a, b = lg.eye(2), lg.ones(2, 2)
    local r = a:matmul(b)
    r[1][1] = 100
    assert.are.same({ { 1, 0 }, { 0, 1 } }, a:tolist())
    assert.are.same({ { 1, 1 }, { 1, 1 } }, b:tolist())
  end)

  it("zero-size: zero inner dim gives zeros, zero outer dims give empty results", function()
    for _, dtype in ipairs({ "float32", "float64" }) do
      local r = lg.matmul(lg.ones({ 3, 0 }, { dtype = dtype }), lg.ones({ 0, 4 }, { dtype = dtype }))
      assert.are.same({ 3, 4 }, r.shape)
      ref.assert_equal(r, ref.build({ 3, 4 }, function() return 0 end))
      ref.assert_equal(lg.ones({ 3, 0 }, { dtype = dtype }):matmul(lg.ones({ 0 }, { dtype = dtype })),
        { 0, 0, 0 })
      assert.are.equal(0, lg.zeros({ 0 }, { dtype = dtype }):matmul(lg.zeros({ 0 }, { dtype = dtype })):item())
      assert.are.same({ 2, 0, 5 }, lg.matmul(lg.ones(2, 0, 3), lg.ones(3, 5)).shape)
    end
  end)

  it("gives the same result with 1 and 2 threads", function()
    local n0 = lg.get_num_threads()
    lg.manual_seed(3)
    local a, b = lg.randn(64, 48, { dtype = "float64" }), lg.randn(48, 40, { dtype = "float64" })
    lg.set_num_threads(1)
    local r1 = a:matmul(b)
    lg.set_num_threads(2)
    local r2 = a:matmul(b)
    lg.set_num_threads(n0)
    ref.assert_close(r2, r1, 1e-12, 1e-12)
    ref.assert_close(r1, ref.matmul(a, b), 1e-12, 1e-11)
  end)
end)

describe("the BLAS luagrad loads", function()
  -- a child luagrad with the given environment prefix; its stdout
  local function child(env, code)
    local p = assert(io.popen(env .. " " .. util.shell_quote(util.LUAGRAD) .. " -e '" .. code .. "' 2>&1"))
    local out = p:read("a")
    p:close()
    return out
  end

  it("blas_info names OpenBLAS and its kernels; the loading leaves OPENBLAS_CORETYPE as it was", function()
    local out = child("env -u OPENBLAS_CORETYPE -u OPENBLAS_THREAD_TIMEOUT",
      'local lg = require "luagrad"; lg.ones(2, 2):matmul(lg.ones(2, 2)); print(lg.blas_info()); '
      .. 'print("env", os.getenv("OPENBLAS_CORETYPE"), os.getenv("OPENBLAS_THREAD_TIMEOUT"))')
    assert.matches("^OpenBLAS [%d.]+ .*, kernels %a+", out)
    assert.matches("\nenv\tnil\tnil\n", out)
  end)

  it("keeps the default thread count after small products (which run on one BLAS thread)", function()
    local out = child("env -u OPENBLAS_NUM_THREADS -u GOTO_NUM_THREADS -u OMP_NUM_THREADS",
      'local lg = require "luagrad"; local n0 = lg.get_num_threads(); '
      .. 'lg.matmul(lg.randn(8, 8, {dtype = "float64"}), lg.randn(8, 8, {dtype = "float64"})); '
      .. 'lg.matmul(lg.randn(8, 32), lg.randn(32, 32)); print("threads", n0, lg.get_num_threads())')
    local n0, n1 = out:match("threads\t(%d+)\t(%d+)")
    assert.is_not_nil(n0, out)
    assert.are.equal(n0, n1)
    local cores = tonumber(child("", 'local p = io.popen("nproc"); print("nproc", p:read("n"))'):match("nproc\t(%d+)"))
    assert.are.equal(math.min(cores, 64), tonumber(n0), "the default is one thread per core (OpenBLAS: at most 64)")
  end)

  it("chooses OpenBLAS's kernels by the CPU and says why: AVX2 on AMD Zen 4, OpenBLAS's own elsewhere", function()
    local f = assert(io.open("/proc/cpuinfo"))
    local info = f:read("a")
    f:close()
    local vendor, family = info:match("vendor_id%s*:%s*(%S+)"), tonumber(info:match("cpu family%s*:%s*(%d+)"))
    local avx512 = info:match("\nflags%s*:[^\n]* avx512f[ \n]") ~= nil
    local out = child("env -u OPENBLAS_CORETYPE", 'local lg = require "luagrad"; print(lg.blas_info())')
    if vendor == "AuthenticAMD" and avx512 and family >= 26 then
      assert.matches("kernels %a+ %(OpenBLAS's own choice: AMD Zen 5", out)
      assert.is_nil(out:find("kernels Haswell", 1, true), out)
    elseif vendor == "AuthenticAMD" and avx512 then
      assert.matches("kernels Haswell %(chosen by luagrad: AMD Zen 4", out)
    else
      assert.matches("kernels %a+ %(OpenBLAS's own choice for this CPU%)", out)
    end
    assert.matches("; small float32 products: ", out)
    assert.matches("; elementwise loops: ", out)
  end)

  it("keeps a user's OPENBLAS_CORETYPE", function()
    local out = child("OPENBLAS_CORETYPE=Sandybridge",
      'local lg = require "luagrad"; print(lg.blas_info()); print("env", os.getenv("OPENBLAS_CORETYPE"))')
    assert.matches("kernels Sandybridge %(OPENBLAS_CORETYPE set in the environment%)", out)
    assert.is_nil(out:find("chosen by luagrad", 1, true))
    assert.matches("\nenv\tSandybridge\n", out)
  end)
end)
