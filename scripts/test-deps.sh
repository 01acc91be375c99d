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

# --- storage: versitygw, the S3 server process the storage tests start ---
# (storage/storagetest finds it in $(go env GOPATH)/bin; go install is a
# no-op when the same version is already built.)
if ! go version -m "$(go env GOPATH)/bin/versitygw" 2>/dev/null | grep -q 'mod[[:space:]]*github.com/versity/versitygw[[:space:]]*v1.8.0'; then
  GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
# --- end storage ---
