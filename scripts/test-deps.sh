#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Go.
# Idempotent: a second run finds everything in place and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (packages are added here by the parts of the suite that need them)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
