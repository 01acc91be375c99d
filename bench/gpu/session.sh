#!/usr/bin/env bash
# Every GPU measurement in one call, for a lent GPU machine without a Go
# toolchain (each part bounded by `timeout`, so one hang cannot eat the rest):
#   1. bench/gpu/run.sh: model parity XLA-on-GPU vs SimpleGo, decode and SFT
#      step timing of a Qwen2-0.5B-shaped model (cmd/gpucheck);
#   2. bench/sft/gpu.sh in bf16 and in f32: SFT tokens/s and MFU;
#   3. the SFT resume test on the GPU backend (resumed vs uninterrupted
#      weights within resumeTolerance).
# Build here first (gzip keeps the carried files small), then carry bin/ and
# bench/sft/sft.test.gz:
#   go build -ldflags='-s -w' -o bin/gpucheck ./cmd/gpucheck && gzip -kf bin/gpucheck
#   go test -c -ldflags='-s -w' -o bench/sft/sft.test ./train/sft/ && gzip -kf bench/sft/sft.test
#   bench/gpu/session.sh [PEAK_TFLOPS]    (default 989: H100 SXM dense bf16)
# Output goes to stdout and, when $OUT is set, to $OUT/gpu-session.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
peak=${1:-989}
log=${OUT:-/tmp}/gpu-session.log
exec > >(tee "$log") 2>&1
for f in bin/gpucheck bench/sft/sft.test; do
  [[ -x $f || ! -f $f.gz ]] || { gunzip -kf "$f.gz" && chmod +x "$f"; }
done
plugin=$(find / -name xla_cuda_plugin.so -not -path '/proc/*' 2>/dev/null | head -1)
export PLUGIN=$plugin PJRT_PLUGIN=$plugin
part() { echo; echo "=== $1 ($(date +%T))"; }

part "1. model parity and timing"
timeout 300 bench/gpu/run.sh; echo "exit $?"

for p in bf16 f32; do
  part "2. SFT step, $p"
  PRECISION=$p timeout 150 bench/sft/gpu.sh bench/sft/sft.test "$peak"; echo "exit $?"
done

part "3. SFT resume on the GPU backend"
libdevice=$(find / -name libdevice.10.bc -not -path '/proc/*' 2>/dev/null | head -1)
[[ -n $libdevice ]] && export XLA_FLAGS="--xla_gpu_cuda_data_dir=$(dirname "$(dirname "$(dirname "$libdevice")")")"
(cd train/sft && GOPJRT_CUDA_CHECKS=0 GOMLX_BACKEND="xla:$plugin" timeout 150 \
  ../../bench/sft/sft.test -test.run '^TestResumeAfterKillIsExact$' -test.v -test.count=1 2>&1 | grep -E '^(=== RUN|--- |    |ok|FAIL|PASS)'); echo "exit $?"
