#!/usr/bin/env bash
# Installs what luagrad needs from Debian 12's packages (only what is missing), then builds the
# release configuration into build/. Run as root (or with sudo) on a fresh machine.
#
#   tools/setup.sh            install + release build
#   tools/setup.sh --asan     also build the sanitizer configuration into build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  gcc make cmake pkg-config            # toolchain
  lua5.4 liblua5.4-dev                 # Lua 5.4 and its headers
  libopenblas-dev                      # BLAS for matmul
  libreadline-dev                      # the REPL's line editing
  zlib1g-dev                           # gzipped datasets
  lua-busted lua-dkjson                # the spec runner; JSON for the golden files
  tmux                                 # the REPL specs drive the REPL through a terminal
  clang-format lua-check git           # style checks of the suite (C format, Lua lint); git ls-files
  strace                               # the checkpoint spec sees lg.save fsync before it renames
  luarocks                             # the packaging spec builds and installs the rock
  dataset-fashion-mnist                # real data for the main example
  fortunes                             # real text for the GPT example (lg.datasets.fortunes)
  openmpi-bin libopenmpi-dev           # lg.distributed: mpirun and MPI (luagrad.mpi)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)" 2>&1 | grep -E "warning|error|Error" || true
  test -x "$dir/luagrad" || { echo "setup: build in $dir failed" >&2; exit 1; }
}

build build -DCMAKE_BUILD_TYPE=Release
if [ "${1:-}" = "--asan" ]; then
  build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLG_SANITIZE=ON
fi
echo "setup: built build/luagrad"
