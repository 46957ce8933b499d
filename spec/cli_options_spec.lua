-- lg.cli: the examples' command-line options (lg.cli.options) and the checks behind their
-- closing "claim holds: ..." line (lg.cli.claim). --help and the examples' own use run as child
-- processes of the luagrad executable.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build").
package.path = "spec/?.lua;" .. package.path
local lg = require "luagrad"
local util = require "helpers.util"
local cli = lg.cli

-- options over a list of arguments, as the global `arg` holds them
local function parse(args, defaults, name, more)
  args[0] = args[0] or "examples/test.lua"
  return cli.options(args, defaults, name or "test", more)
end

-- the message of the error options raises (level 0: no position prepended)
local function parse_error(args, defaults, name, more)
  local ok, e = pcall(parse, args, defaults, name, more)
  assert.is_false(ok, "expected an error, got none")
  return e
end

local CHAPTER = { quick = false, out = "." }
local MAIN = { epochs = 12, batch_size = 128, lr = 2e-3, optimizer = "adamw", warmup = 1, quick = false }

describe("lg.cli.options", function()
  it("is lg.cli, loaded by require 'luagrad'", function()
    assert.are.equal(require "luagrad.cli", lg.cli)
    assert.are.equal("function", type(cli.options))
    assert.are.equal("function", type(cli.claim))
  end)

  it("returns the defaults when there are no arguments, in a new table", function()
    local opts = parse({}, CHAPTER)
    assert.are.same({ quick = false, out = "." }, opts)
    assert.are_not.equal(CHAPTER, opts)
    parse({ "--quick", "--out", "x" }, CHAPTER)
    assert.are.same({ quick = false, out = "." }, CHAPTER) -- the defaults are left alone
  end)

  it("sets a flag (a boolean default) to true, and takes the next argument as a value", function()
    assert.are.same({ quick = true, out = "." }, parse({ "--quick" }, CHAPTER))
    assert.are.same({ quick = false, out = "/tmp/o" }, parse({ "--out", "/tmp/o" }, CHAPTER))
    assert.are.same({ quick = true, out = "d" }, parse({ "--out", "d", "--quick" }, CHAPTER))
    assert.are.same({ quick = true, out = "d" }, parse({ "--quick", "--out", "d", "--quick" }, CHAPTER))
    assert.are.same({ quick = false, out = "b" }, parse({ "--out", "a", "--out", "b" }, CHAPTER)) -- the last wins
  end)

  it("takes the next argument whatever it looks like", function()
    assert.are.same({ quick = false, out = "--quick" }, parse({ "--out", "--quick" }, CHAPTER))
    assert.are.same({ quick = false, out = "" }, parse({ "--out", "" }, CHAPTER))
  end)

  it("reads a number where the default is a number, and keeps a string where it is a string", function()
    local opts = parse({ "--epochs", "3", "--lr", "1e-3", "--warmup", "0.5", "--optimizer", "sgd" }, MAIN)
    assert.are.equal(3, opts.epochs)
    assert.are.equal("integer", math.type(opts.epochs))
    assert.are.equal(1e-3, opts.lr)
    assert.are.equal("float", math.type(opts.lr))
    assert.are.equal(0.5, opts.warmup)
    assert.are.equal("sgd", opts.optimizer)
    assert.are.equal(128, opts.batch_size)
    -- a string option keeps digits as a string
    local o = parse({ "--out", "123" }, CHAPTER)
    assert.are.equal("123", o.out)
    assert.are.equal("string", type(o.out))
    -- numbers as Lua reads them
    assert.are.equal(16, parse({ "--epochs", "0x10" }, MAIN).epochs)
    assert.are.equal(-2, parse({ "--epochs", "-2" }, MAIN).epochs)
  end)

  it("spells names with dashes on the command line and underscores in the table", function()
    local opts = parse({ "--batch-size", "64", "--weight-decay", "0.1" }, { batch_size = 128, weight_decay = 0.05 })
    assert.are.same({ batch_size = 64, weight_decay = 0.1 }, opts)
    -- the underscore spelling is not an option
    assert.are.equal("main: unknown argument --batch_size (options: --batch-size BATCH_SIZE, --weight-decay WEIGHT_DECAY)",
      parse_error({ "--batch_size", "64" }, { batch_size = 128, weight_decay = 0.05 }, "main"))
  end)

  it("leaves an option without a default nil unless given, then reads a number if it can", function()
    local more = { unset = { "threads" } }
    assert.is_nil(parse({}, MAIN, "main", more).threads)
    local opts = parse({ "--threads", "4" }, MAIN, "main", more)
    assert.are.equal(4, opts.threads)
    assert.are.equal("integer", math.type(opts.threads))
    assert.are.equal("auto", parse({ "--threads", "auto" }, MAIN, "main", more).threads)
    assert.are.equal("main: --threads needs a value", parse_error({ "--threads" }, MAIN, "main", more))
  end)

  it("rejects an unknown option or a stray argument, naming the script and listing the options", function()
    assert.are.equal("adam: unknown argument --bogus (options: --out OUT, --quick)",
      parse_error({ "--bogus" }, CHAPTER, "adam"))
    assert.are.equal("adam: unknown argument extra (options: --out OUT, --quick)",
      parse_error({ "--quick", "extra" }, CHAPTER, "adam"))
    assert.are.equal("adam: unknown argument -q (options: --out OUT, --quick)", parse_error({ "-q" }, CHAPTER, "adam"))
    assert.are.equal("adam: unknown argument --out=x (options: --out OUT, --quick)",
      parse_error({ "--out=x" }, CHAPTER, "adam"))
    -- placeholders from more.metavar; an option without a default is listed too
    assert.are.equal("main: unknown argument --epoch (options: --epochs N, --lr X, --optimizer adamw|sgd, --threads N)",
      parse_error({ "--epoch", "3" }, { epochs = 12, lr = 2e-3, optimizer = "adamw" }, "main",
        { unset = { "threads" }, metavar = { epochs = "N", lr = "X", optimizer = "adamw|sgd", threads = "N" } }))
  end)

  it("rejects an option given without its value", function()
    assert.are.equal("adam: --out needs a value", parse_error({ "--out" }, CHAPTER, "adam"))
    assert.are.equal("adam: --out needs a value", parse_error({ "--quick", "--out" }, CHAPTER, "adam"))
    assert.are.equal("main: --batch-size needs a value", parse_error({ "--batch-size" }, MAIN, "main"))
  end)

  it("rejects a value that is not a number for a number option", function()
    assert.are.equal("main: --lr needs a number, got fast", parse_error({ "--lr", "fast" }, MAIN, "main"))
    assert.are.equal("main: --epochs needs a number, got --quick", parse_error({ "--epochs", "--quick" }, MAIN, "main"))
  end)

  describe("--help (in a child process)", function()
    local base, script

    setup(function()
      base = os.tmpname()
      script = base .. ".lua"
      util.write_file(script, [[
local lg = require "luagrad"
local opts = lg.cli.options(arg, { epochs = 12, lr = 2e-3, optimizer = "adamw", quick = false }, "tool",
  { unset = { "threads" }, metavar = { optimizer = "adamw|sgd", threads = "N" } })
print("parsed", opts.epochs)
]])
    end)

    teardown(function()
      if base then os.remove(base) end
      if script then os.remove(script) end
    end)

    local function run(args)
      return util.run(string.format("env -u LUA_INIT -u LUA_INIT_5_4 %s %s %s 2>&1", util.shell_quote(util.LUAGRAD),
        util.shell_quote(script), args))
    end

    it("prints every option with its default and exits 0 before anything else runs", function()
      local out, ok = run("--help")
      assert.is_true(ok, out)
      assert.are.equal(table.concat({
        "usage: luagrad " .. script .. " [options]",
        "options:",
        "  --epochs EPOCHS        default 12",
        "  --lr LR                default 0.002",
        "  --optimizer adamw|sgd  default \"adamw\"",
        "  --quick",
        "  --threads N            no default",
        "  --help                 print this and exit",
      }, "\n"), out)
      out, ok = run("--epochs 3 --help")
      assert.is_true(ok, out)
      assert.is_nil(out:find("parsed", 1, true))
    end)

    it("parses and runs on without it; an error exits non-zero with the message", function()
      local out, ok = run("--epochs 3")
      assert.is_true(ok, out)
      assert.are.equal("parsed\t3", out)
      out, ok = run("--epochs")
      assert.is_not_true(ok)
      assert.truthy(out:find("tool: --epochs needs a value", 1, true), out)
    end)
  end)

  describe("in the examples (child processes that stop at their options)", function()
    local names = { "adam", "backprop_from_scratch", "batchnorm", "chain_rule", "forward_vs_reverse", "momentum",
      "optimizer_comparison", "schedules", "sgd_variance", "vanishing_gradients" }
    for _, name in ipairs(names) do
      it(name .. ".lua: --help lists --out and --quick; an unknown option is an error naming it", function()
        local cmd = string.format("env -u LUA_INIT -u LUA_INIT_5_4 %s examples/%s.lua", util.shell_quote(util.LUAGRAD), name)
        local out, ok = util.run(cmd .. " --help 2>&1")
        assert.is_true(ok, out)
        assert.are.equal("usage: luagrad examples/" .. name .. ".lua [options]\noptions:\n  --out OUT  default \".\"\n" ..
          "  --quick\n  --help     print this and exit", out)
        out, ok = util.run(cmd .. " --no-such-option 2>&1")
        assert.is_not_true(ok)
        assert.truthy(out:find(name .. ": unknown argument --no-such-option (options: --out OUT, --quick)", 1, true), out)
      end)
    end

    it("fashion_mnist.lua: --help lists its options", function()
      local out, ok = util.run(string.format("env -u LUA_INIT -u LUA_INIT_5_4 %s examples/fashion_mnist.lua --help 2>&1",
        util.shell_quote(util.LUAGRAD)))
      assert.is_true(ok, out)
      for _, o in ipairs({ "--epochs N", "--batch-size N", "--lr X", "--optimizer adamw|adam|sgd", "--weight-decay X",
        "--warmup EPOCHS", "--seed N", "--threads N", "--out PREFIX", "--quick", "--help" }) do
        assert.truthy(out:find("\n  " .. o, 1, true), o .. " missing from:\n" .. out)
      end
    end)

    it("gpt.lua: --help lists its options; a width the heads do not divide is an error", function()
      local cmd = string.format("env -u LUA_INIT -u LUA_INIT_5_4 %s examples/gpt.lua", util.shell_quote(util.LUAGRAD))
      local out, ok = util.run(cmd .. " --help 2>&1")
      assert.is_true(ok, out)
      for _, o in ipairs({ "--time-limit SECONDS", "--max-steps N", "--context T", "--width D", "--layers N", "--heads N",
        "--batch-size N", "--lr X", "--warmup STEPS", "--clip NORM", "--eval-every STEPS", "--temperature X", "--top-k K",
        "--out PREFIX", "--quick", "--sample", "--help" }) do
        assert.truthy(out:find("\n  " .. o, 1, true), o .. " missing from:\n" .. out)
      end
      out, ok = util.run(cmd .. " --width 100 --heads 6 2>&1")
      assert.is_not_true(ok)
      assert.truthy(out:find("gpt: --width 100 is not a multiple of --heads 6", 1, true), out)
    end)
  end)
end)

describe("lg.cli.claim", function()
  it("raises nothing when every check holds", function()
    local claim = cli.claim()
    claim.check(true, "never shown")
    claim.check(1 < 2, "never shown %d", 5)
    assert.are.same({}, claim.failures)
    assert.has_no.errors(claim.verify)
  end)

  it("raises 'claim fails: ...' with every failure in order, joined by '; '", function()
    local claim = cli.claim()
    claim.check(false, "first")
    claim.check(true, "passes")
    claim.check(0 / 0 < 1, "NaN fails")
    assert.are.same({ "first", "NaN fails" }, claim.failures)
    local ok, e = pcall(claim.verify)
    assert.is_false(ok)
    assert.are.equal("claim fails: first; NaN fails", e)
  end)

  it("formats the message when arguments follow it, and leaves a formatted one alone", function()
    local claim = cli.claim("fvr")
    claim.check(false, "slope %.2f outside (%g, %g)", 2.345, 0.5, 1.5)
    claim.check(false, string.format("within 2%% of %.1f", 3)) -- already formatted: "2% of" stays
    local ok, e = pcall(claim.verify)
    assert.is_false(ok)
    assert.are.equal("fvr: claim fails: slope 2.35 outside (0.5, 1.5); within 2% of 3.0", e)
  end)

  it("keeps separate claims apart", function()
    local a, b = cli.claim(), cli.claim()
    a.check(false, "a failed")
    assert.has_no.errors(b.verify)
    assert.has_error(a.verify, "claim fails: a failed")
  end)
end)
