#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Go.
# Idempotent: a second run finds everything in place and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (packages are added here by the parts of the suite that need them)
# --- train/sft: the PyTorch reference runs under Debian's interpreter.
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then need_apt+=(python3-torch); fi
if ! ls /usr/lib/*/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then need_apt+=(libopenblas0-pthread); fi
# --- end train/sft
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
