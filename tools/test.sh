#!/usr/bin/env bash
# Builds luagrad (release and ASan+UBSan) and runs the whole suite in both: the C tests and
# every busted spec. Ends with one line "N passed, N failed" covering all of them.
#
#   tools/test.sh             everything (installs missing packages first)
#   tools/test.sh --release   only the release configuration (faster while developing)
#   tools/test.sh -- spec/x_spec.lua ...   only these specs (both configurations)
set -uo pipefail
cd "$(dirname "$0")/.."

configs=(release asan)
specs=(spec)
while [ $# -gt 0 ]; do
  case "$1" in
    --release) configs=(release) ;;
    --) shift; specs=("$@"); break ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ " ${configs[*]} " == *" asan "* ]]; then tools/setup.sh --asan || exit 1; else tools/setup.sh || exit 1; fi

total_pass=0 total_fail=0
count() { # label, passed, failed
  printf '%-28s %4d passed, %d failed\n' "$1" "$2" "$3"
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3))
}

# Style, once: the C sources as .clang-format lays them out, and luacheck clean (.luacheckrc).
# Each counts as one check; the offending files or lines are printed.
if [ -d .git ]; then c_files=$(git ls-files '*.c' '*.h'); else c_files=$(find src include tests tools examples -name '*.[ch]'); fi
fmt=$(clang-format --dry-run $c_files 2>&1 | grep -E 'warning:' | sed 's/:[0-9]*:[0-9]*: warning.*//' | sort -u)
if [ -z "$fmt" ]; then count "style: clang-format" 1 0
else echo "clang-format would change: $fmt (run: clang-format -i \$(git ls-files '*.c' '*.h'))"; count "style: clang-format" 0 1; fi
lint=$(luacheck -q --no-color lua spec examples bench tools 2>&1); lint_rc=$?
if [ $lint_rc -eq 0 ]; then count "style: luacheck" 1 0; else echo "$lint"; count "style: luacheck" 0 1; fi

asan_lib=$(gcc -print-file-name=libasan.so)
for cfg in "${configs[@]}"; do
  dir=build; [ "$cfg" = asan ] && dir=build-asan
  export LUAGRAD_BUILD=$dir
  if [ "$cfg" = asan ]; then
    # A stock lua5.4 loading the instrumented module needs the ASan runtime first; ASan's
    # quarantine would otherwise count against the memory bounds the specs measure.
    export LUAGRAD_LUA="env LD_PRELOAD=$asan_lib ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=16:allocator_may_return_null=1 lua5.4"
    export ASAN_OPTIONS=quarantine_size_mb=16:detect_leaks=1:allocator_may_return_null=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  else
    export LUAGRAD_LUA=lua5.4
    unset ASAN_OPTIONS UBSAN_OPTIONS
  fi

  # C tests: the engine through its header (test_engine), the op table's rows (test_op_table),
  # 8 lua_States training in 8 threads at once (test_lua_threads)
  for t in test_engine test_op_table test_lua_threads; do
    args=""; [ "$t" = test_lua_threads ] && args="8 3"
    out=$("$dir/$t" $args 2>&1); rc=$?
    echo "$out" | grep -v "^C tests:" || true
    p=$(echo "$out" | sed -n 's/^C tests: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p'); f=$(echo "$out" | sed -n 's/^C tests: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    [ -n "$p" ] || { p=0; f=1; echo "$t ($cfg) crashed (exit $rc)"; }
    [ $rc -eq 0 ] || [ "$f" -gt 0 ] || f=1
    count "C $t ($cfg)" "$p" "$f"
  done

  # busted specs, run by the luagrad executable itself (so the sanitizers see everything)
  log=$(mktemp)
  "$dir/luagrad" /usr/bin/busted -o utfTerminal "${specs[@]}" >"$log" 2>&1; rc=$?
  summary=$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -1)
  if [ -z "$summary" ]; then
    cat "$log"; count "specs ($cfg)" 0 1; echo "busted ($cfg) did not finish (exit $rc)"
  else
    grep -E -A12 '^(Failure|Error) →' "$log" || true
    grep -E -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -60 || true
    s=$(echo "$summary" | awk '{print $1}'); fl=$(echo "$summary" | awk '{print $4}'); er=$(echo "$summary" | awk '{print $7}')
    f=$((fl + er))
    [ $rc -eq 0 ] || [ $f -gt 0 ] || { f=1; echo "busted ($cfg) exited $rc"; tail -30 "$log"; }
    count "specs ($cfg)" "$s" "$f"
  fi
  rm -f "$log"
done

# ThreadSanitizer: the multi-threaded host once more, in a build made for it
if [[ " ${configs[*]} " == *" asan "* ]]; then
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLG_TSAN=ON >/dev/null &&
    cmake --build build-tsan -j"$(nproc)" --target test_lua_threads 2>&1 | grep -E "warning|error" || true
  out=$(TSAN_OPTIONS=halt_on_error=1:exitcode=66 build-tsan/test_lua_threads 8 2 2>&1); rc=$?
  echo "$out" | grep -v "^C tests:" | head -40 || true
  p=$(echo "$out" | sed -n 's/^C tests: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p'); f=$(echo "$out" | sed -n 's/^C tests: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  [ -n "$p" ] || { p=0; f=1; echo "test_lua_threads (tsan) did not finish (exit $rc)"; }
  [ $rc -eq 0 ] || [ "$f" -gt 0 ] || f=1
  count "C test_lua_threads (tsan)" "$p" "$f"
fi

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
