#!/usr/bin/env bash
# Installs what Lethe needs to build, test and benchmark on Debian 12, when it is absent.
# Safe to run again: it does nothing when every package is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang
  libinih-dev libevent-dev libjemalloc-dev libcriterion-dev
  libibverbs-dev librdmacm-dev
  python3 coreutils procps gnuplot-nox
  # real programs the tests run under lethed (test_lethed_runtimes, test_lethed_programs)
  openjdk-17-jdk-headless nodejs redis-server redis-tools
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
