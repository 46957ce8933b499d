-- The repository stands on its own: no tracked file may name a place outside it that exists on
-- one machine and not on the next. Two kinds of text are refused anywhere in a tracked file:
-- a path into a folder called "shared" beside the clone (two dots, then /shared), and an
-- absolute path under the workplace root (a slash, "work", a slash, at the start of a path).
-- The golden JSON files in spec/golden are exempt: their text is only numbers and names.
--
-- The files are those git tracks (git ls-files at the repository root); without git or .git,
-- every file under the root except the build*/ directories and .git.
--
-- The forbidden strings are assembled from pieces below, so this file does not contain them.
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"

local SHARED = ".." .. "/shared"
local WORK = "/" .. "work" .. "/"

-- The repository root, from this file's own path (spec/self_contained_spec.lua).
local here = debug.getinfo(1, "S").source:match("^@(.*)$") or "spec/self_contained_spec.lua"
local ROOT = (here:match("^(.*)/[^/]*$") or ".") .. "/.."

-- files exempt from the check, as Lua patterns over paths relative to the root
local EXEMPT = { "^spec/golden/[^/]*%.json$" }

-- The forbidden text one line holds, or nil. WORK counts at the start of the line or after a
-- character that cannot come just before it inside a longer path or a shell variable
-- (a relative path, one under ~ or $HOME, are not absolute paths under the root).
local function forbidden_in(line)
  if line:find(SHARED, 1, true) then return SHARED end
  if line:sub(1, #WORK) == WORK or line:find("[^%w_%.%-/~%$})]" .. WORK) then return WORK end
  return nil
end

-- Paths relative to the root from NUL-separated output, with `prefix` removed from each.
local function split_nul(out, prefix)
  local files = {}
  for name in out:gmatch("([^\0]+)\0") do
    if prefix and name:sub(1, #prefix) == prefix then name = name:sub(#prefix + 1) end
    files[#files + 1] = name
  end
  table.sort(files)
  return files
end

-- The tracked files, or nil when git cannot list them.
local function git_files()
  local out, ok = util.run("git -C " .. util.shell_quote(ROOT) .. " ls-files -z 2>/dev/null")
  if not ok or out == "" then return nil end
  return split_nul(out)
end

-- Every file under the root, build*/ directories and .git left out.
local function walked_files()
  local q = util.shell_quote
  local out, ok = util.run(string.format("cd %s && find . \\( -path './build*' -type d -o -path ./.git \\) -prune " ..
    "-o \\( -type f -o -type l \\) -print0", q(ROOT)))
  assert.is_true(ok, "find failed under " .. ROOT)
  return split_nul(out, "./")
end

local function exempt(path)
  for _, p in ipairs(EXEMPT) do
    if path:find(p) then return true end
  end
  return false
end

-- "path:line: text" for every line of the files holding forbidden text.
local function offences(files)
  local found = {}
  for _, path in ipairs(files) do
    local f = not exempt(path) and io.open(ROOT .. "/" .. path, "rb")
    local text = f and f:read("a") -- nil for a tracked file missing from the tree, or a directory
    if f then f:close() end
    if text then
      local n = 0
      for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if forbidden_in(line) then found[#found + 1] = string.format("%s:%d: %s", path, n, line) end
      end
    end
  end
  return found
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

describe("the repository is self-contained", function()
  local files, how

  setup(function()
    files, how = git_files(), "git ls-files"
    if not files then files, how = walked_files(), "a walk of the tree" end
  end)

  it("lists the repository's files, this spec among them", function()
    local have = set_of(files)
    for _, path in ipairs({ "README.md", "CMakeLists.txt", "spec/self_contained_spec.lua", "spec/helpers/util.lua" }) do
      assert.is_true(have[path], path .. " is missing from " .. how)
    end
    assert.is_true(#files > 50, how .. " found only " .. #files .. " files")
  end)

  it("without git, walks the tree to every tracked file and into no build directory", function()
    local tracked = git_files()
    if not tracked then pending("git cannot list the files here") return end
    local walked = set_of(walked_files())
    for _, path in ipairs(tracked) do
      if util.file_exists(ROOT .. "/" .. path) then assert.is_true(walked[path], path .. " not found by the walk") end
    end
    for path in pairs(walked) do
      assert.is_nil(path:find("^build[^/]*/"), "the walk went into " .. path)
      assert.is_nil(path:find("^%.git/"), "the walk went into " .. path)
    end
  end)

  it("recognises the forbidden text, and not its look-alikes", function()
    for _, line in ipairs({ "see " .. SHARED .. "/API.md", "[API](" .. SHARED .. "/API.md)", WORK .. "main/x",
      "cd " .. WORK .. "main", 'dofile("' .. WORK .. 'x.lua")', "(" .. WORK .. "x)", "a=" .. WORK .. "x" }) do
      assert.is_not_nil(forbidden_in(line), line)
    end
    for _, line in ipairs({ "counters shared by views", "src" .. WORK .. "x", "~" .. WORK .. "x", "$HOME" .. WORK .. "x",
      "${HOME}" .. WORK .. "x", "$(pwd)" .. WORK .. "x", "spec/golden/optim.json", "/workspace/x", "network/x" }) do
      assert.is_nil(forbidden_in(line), line)
    end
    assert.is_true(exempt("spec/golden/conv.json"))
    assert.is_false(exempt("spec/golden/README.md"))
    assert.is_false(exempt("spec/golden.json"))
  end)

  it("has no tracked file that names a path outside the repository", function()
    local found = offences(files)
    assert.is_true(#found == 0, string.format("%d line(s) in the files from %s point outside the repository " ..
      "(a folder beside the clone, or an absolute path under the workplace root):\n%s", #found, how,
      table.concat(found, "\n")))
  end)
end)
