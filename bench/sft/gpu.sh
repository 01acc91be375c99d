#!/usr/bin/env bash
# SFT optimizer steps on a GPU through GoMLX's XLA backend: a
# Qwen2-0.5B-shaped random model (f32 master weights; matrix products in bf16
# by default, PRECISION=f32 for all-f32 compute), full fine-tuning and LoRA
# r16, tokens/s and MFU against the given peak. The machine needs no Go
# toolchain: build the test binary here and carry it.
#   build: go test -c -ldflags='-s -w' -o bench/sft/sft.test ./train/sft/
#   run:   bench/sft/gpu.sh bench/sft/sft.test [PEAK_TFLOPS]   (default 989: H100 SXM dense bf16)
#   env:   ROWS, LEN (micro-batch, default 8 × 512), STEPS (timed steps, default 5),
#          PRECISION (sft.precision: bf16 (default) or f32), MODES (full|lora,
#          default both), OPTIONS (backend options, e.g. ,deterministic),
#          PJRT_PLUGIN (default: the first xla_cuda_plugin.so found),
#          CUDA_DIR (XLA's CUDA data directory; default: found by libdevice.10.bc)
set -euo pipefail
bin=$(realpath "$1")
peak=${2:-989}
plugin=${PJRT_PLUGIN:-$(find / -name xla_cuda_plugin.so -not -path '/proc/*' 2>/dev/null | head -1)}
if [[ -z "$plugin" ]]; then echo "no xla_cuda_plugin.so found; set PJRT_PLUGIN" >&2; exit 1; fi
# XLA needs libdevice: CUDA_DIR (the directory holding nvvm/libdevice), else
# the first libdevice.10.bc found.
if [[ -z ${CUDA_DIR:-} ]]; then
  libdevice=$(find / -name libdevice.10.bc -not -path '/proc/*' 2>/dev/null | head -1)
  [[ -n "$libdevice" ]] && CUDA_DIR=$(dirname "$(dirname "$(dirname "$libdevice")")")
fi
[[ -n ${CUDA_DIR:-} ]] && export XLA_FLAGS="--xla_gpu_cuda_data_dir=$CUDA_DIR ${XLA_FLAGS:-}"
export GOPJRT_CUDA_CHECKS=0 # go-xla's nvidia/ layout check assumes its own installer
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "plugin: $plugin; XLA_FLAGS=${XLA_FLAGS:-}"
cd "$(dirname "$0")/../../train/sft"
GOMLX_BACKEND="xla:$plugin${OPTIONS:-}" STATJOB_BENCH_SFT_MODEL=qwen2-0.5b STATJOB_BENCH_SFT_ROWS="${ROWS:-8}" \
  STATJOB_BENCH_SFT_LEN="${LEN:-512}" STATJOB_BENCH_PEAK_TFLOPS="$peak" \
  STATJOB_BENCH_SFT_PRECISION="${PRECISION:-bf16}" \
  "$bin" -test.run '^$' -test.bench "SFTStep/(${MODES:-full|lora})\$" -test.benchtime "${STEPS:-5}x" -test.timeout 30m
