#!/usr/bin/env bash
# The Debian packages `make bench` needs beyond the project's own (`make deps`): wrk (the
# load generator), openssl (the vault's AES figure) and a C/C++ toolchain for the llama.cpp
# peer (llama-cpp-python has no wheel on PyPI: pip compiles llama.cpp with cmake).
# Arguments: the packages wanted instead of all of them (make bench-quick: no compiler).
# Idempotent: apt runs only when one of them is missing. Not fatal: a peer that cannot be
# built is reported by the bench with its reason (bench/venvs.py), the others still run.
set -uo pipefail

PKGS=(wrk openssl build-essential cmake ninja-build pkg-config)
[ $# -gt 0 ] && PKGS=("$@")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "bench: missing Debian packages: ${missing[*]} (run as root, or apt-get install them);" \
       "what needs them is reported as not measured" >&2
  exit 0
fi
echo "bench: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
  echo "bench: apt-get failed for ${missing[*]}; what needs them is reported as not measured" >&2
fi
exit 0
