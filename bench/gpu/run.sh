#!/usr/bin/env bash
# GPU check of the student model, for a machine with one NVIDIA GPU and jax's
# CUDA PJRT plugin (xla_cuda_plugin.so) but no Go toolchain. It runs the
# prebuilt bin/gpucheck (cmd/gpucheck):
#   1. parity of tiny models of five families, XLA-on-GPU (full float32
#      products) vs SimpleGo-on-CPU and vs the PyTorch reference when an
#      interpreter with torch exists;
#   2. a Qwen2-0.5B-shaped random model: SFT step tokens/s, decode tokens/s.
#
# Build here (the repository root), then carry the binary:
#   go build -ldflags='-s -w' -o bin/gpucheck ./cmd/gpucheck
#   bench/gpu/run.sh [gpucheck flags, e.g. -train-batch 8]
# Environment: PLUGIN=/abs/xla_cuda_plugin.so and CUDA_DIR=<dir with
# nvvm/libdevice> skip the searches.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=bin/gpucheck
[[ -x $bin ]] || { echo "missing $bin: go build -ldflags='-s -w' -o $bin ./cmd/gpucheck" >&2; exit 1; }

find_first() { find / -xdev -name "$1" -not -path '/proc/*' -print -quit 2>/dev/null || true; }
find_first_any() { find / -name "$1" -not -path '/proc/*' -print -quit 2>/dev/null || true; }

plugin=${PLUGIN:-$(find_first xla_cuda_plugin.so)}
[[ -n $plugin ]] || plugin=$(find_first_any xla_cuda_plugin.so)
[[ -n $plugin ]] || { echo "no xla_cuda_plugin.so found (pip install jax[cuda12] provides it); set PLUGIN=" >&2; exit 1; }
echo "plugin: $plugin"

# XLA needs libdevice (nvvm/libdevice/libdevice.10.bc) and ptxas from a CUDA
# directory; with pip's nvidia packages that is site-packages/nvidia/cuda_nvcc.
# go-xla would point XLA_FLAGS at a wrong directory, so set it here.
if [[ -z ${CUDA_DIR:-} ]]; then
  site=$(dirname "$(dirname "$(dirname "$plugin")")")   # …/site-packages
  libdevice=$(find "$site" -name libdevice.10.bc -print -quit 2>/dev/null || true)
  [[ -n $libdevice ]] || libdevice=$(find_first_any libdevice.10.bc)
  [[ -n $libdevice ]] && CUDA_DIR=$(dirname "$(dirname "$(dirname "$libdevice")")")
fi
if [[ -n ${CUDA_DIR:-} ]]; then
  echo "cuda dir: $CUDA_DIR"
  export XLA_FLAGS="--xla_gpu_cuda_data_dir=$CUDA_DIR ${XLA_FLAGS:-}"
  [[ -d $CUDA_DIR/bin ]] && export PATH="$CUDA_DIR/bin:$PATH"
else
  echo "warning: no libdevice.10.bc found; XLA may fail to compile for the GPU" >&2
fi
export GOPJRT_CUDA_CHECKS=0   # the nvidia/ layout check assumes go-xla's own installer
export GOMLX_BACKEND="xla:$plugin"

py=()
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then py=(-python "$p"); break; fi
done
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Parity in full float32 (XLA would multiply float32 matrices in TF32), then
# the timings with XLA's defaults, each in its own process: XLA reads its
# flags once per process.
status=0
"$bin" -backend "xla:$plugin,full-f32" -bench=false -reference train/model/testdata/reference.py "${py[@]}" "$@" || status=1
"$bin" -backend "xla:$plugin" -parity=false "$@" || status=1
exit $status
