#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Go.
# Idempotent: a second run finds everything in place and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (packages are added here by the parts of the suite that need them)

# --- train/model: PyTorch reference for parity tests, OpenBLAS for its speed ---
# (Debian's interpreter /usr/bin/python3 runs the reference.)
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then need_apt+=(python3-torch); fi
if ! dpkg -s libopenblas0-pthread >/dev/null 2>&1; then need_apt+=(libopenblas0-pthread); fi
# --- end train/model ---
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
