#!/usr/bin/env bash
# Every GPU measurement in one bounded call, for a lent GPU machine without a
# Go toolchain. Each part has its own `timeout`, so one hang cannot eat the
# rest, and the parts run in the order of what matters most:
#   1. bench/sft/gpu.sh in bf16: SFT tokens/s and MFU, Qwen2-0.5B shape, and
#      what the backend's deterministic option costs;
#   2. the SFT resume test on the GPU backend: resumed and uninterrupted
#      runs must be bitwise equal with the backend's deterministic option;
#   3. bench/gpu/run.sh: model parity XLA-on-GPU vs SimpleGo and PyTorch,
#      decode and SFT step timing (cmd/gpucheck);
#   4. bench/sft/gpu.sh in f32.
# Its parts' time limits add up to about 9 minutes; a call may run 10.
# Build here first (gzip keeps the carried files small), then carry
# bin/gpucheck.gz and bench/sft/sft.test.gz:
#   go build -ldflags='-s -w' -o bin/gpucheck ./cmd/gpucheck && gzip -kf bin/gpucheck
#   go test -c -ldflags='-s -w' -o bench/sft/sft.test ./train/sft/ && gzip -kf bench/sft/sft.test
#   bench/gpu/session.sh [PEAK_TFLOPS]    (default 989: H100/H200 SXM dense bf16)
# Output goes to stdout and, when $OUT is set, to $OUT/gpu-session.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
peak=${1:-989}
log=${OUT:-/tmp}/gpu-session.log
exec > >(tee "$log") 2>&1
part() { echo; echo "=== $1 ($(date +%T))"; }
for f in bin/gpucheck bench/sft/sft.test; do
  [[ -x $f || ! -f $f.gz ]] || { gunzip -kf "$f.gz" && chmod +x "$f"; }
done

part "0. the machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
# One pass over the file system finds the PJRT plugin and XLA's CUDA data
# directory (the one holding nvvm/libdevice, preferably with bin/ptxas too).
found=$(find / -xdev \( -name xla_cuda_plugin.so -o -name libdevice.10.bc \) -not -path '/proc/*' 2>/dev/null)
[[ -n $found ]] || found=$(find / \( -name xla_cuda_plugin.so -o -name libdevice.10.bc \) -not -path '/proc/*' 2>/dev/null)
echo "$found"
plugin=${PLUGIN:-$(grep -m1 '/xla_cuda_plugin.so$' <<<"$found")}
if [[ -z ${CUDA_DIR:-} ]]; then
  for d in $(grep '/nvvm/libdevice/libdevice.10.bc$' <<<"$found" | sed 's|/nvvm/libdevice/libdevice.10.bc$||'); do
    [[ -z ${CUDA_DIR:-} ]] && CUDA_DIR=$d
    [[ -x $d/bin/ptxas ]] && { CUDA_DIR=$d; break; }
  done
fi
export PLUGIN=$plugin PJRT_PLUGIN=$plugin CUDA_DIR=${CUDA_DIR:-}
echo "plugin: $PLUGIN"; echo "cuda dir: $CUDA_DIR"
[[ -n $PLUGIN ]] || { echo "no xla_cuda_plugin.so: nothing to run"; exit 1; }

part "1. SFT step, bf16, 16 x 1024 tokens"
PRECISION=bf16 ROWS=16 LEN=1024 timeout 150 bench/sft/gpu.sh bench/sft/sft.test "$peak"; echo "exit $?"

part "1b. SFT step, bf16, 16 x 1024 tokens, full, deterministic"
PRECISION=bf16 ROWS=16 LEN=1024 MODES=full OPTIONS=,deterministic timeout 80 bench/sft/gpu.sh bench/sft/sft.test "$peak"; echo "exit $?"

part "2. SFT resume on the GPU backend (the test adds the deterministic option)"
# Autotuning off: with it, XLA's allocator once failed a CHECK here, in the
# parent process that resumed right after its killed children.
export XLA_FLAGS="${CUDA_DIR:+--xla_gpu_cuda_data_dir=$CUDA_DIR }--xla_gpu_autotune_level=0"
(cd train/sft && GOPJRT_CUDA_CHECKS=0 GOMLX_BACKEND="xla:$PLUGIN" timeout 120 \
  ../../bench/sft/sft.test -test.run '^TestResumeAfterKillIsExact$' -test.v -test.count=1 2>&1 |
  grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|panic|F[0-9]{4})'); echo "exit $?"
unset XLA_FLAGS

part "3. model parity (full-f32) and timing"
timeout 140 bench/gpu/run.sh; echo "exit $?"

part "4. SFT step, f32 (TF32 products), 8 x 512 tokens"
PRECISION=f32 MODES=full timeout 60 bench/sft/gpu.sh bench/sft/sft.test "$peak"; echo "exit $?"
part "done"
