#!/usr/bin/env bash
# Installs the Debian packages kite needs to build its tests, examples and benchmarks.
# Run as root it installs what is missing with apt-get; otherwise it prints the exact
# command to run and exits with status 1. On a system without dpkg it only warns.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libeigen3-dev libxsimd-dev nlohmann-json3-dev
  libutf8proc-dev libstemmer-dev
  catch2 libbenchmark-dev
  libcpp-httplib-dev
  libsqlite3-dev libre2-dev
)
# Optional extras, installed with --with-faiss (FAISS 1.7.3 for the C++ benchmark anchor and
# the FAISS round-trip test).
if [[ "${1:-}" == "--with-faiss" ]]; then
  packages+=(libfaiss-dev)
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: not a Debian system; make sure these are installed: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: done"
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this as root, then run the command again:" >&2
  echo "  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
