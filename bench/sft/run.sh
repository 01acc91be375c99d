#!/usr/bin/env bash
# CPU speed and peak memory of SFT optimizer steps (forward, backward,
# clipping, AdamW) on the same Qwen2-shaped checkpoint and batch, GoMLX
# (SimpleGo, train/sft) vs PyTorch, full fine-tuning and LoRA; every
# measurement in its own process. Prints a Markdown table for BENCHMARKS.md.
#   usage: bench/sft/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/sft.test" ./train/sft/

# ROWS and LEN must match train/sft/bench_test.go (benchRows, benchLen).
rows=4 len=128
echo "| mode | GoMLX tokens/s | PyTorch tokens/s | GoMLX / PyTorch | GoMLX peak MiB | PyTorch peak MiB |"
echo "|---|---|---|---|---|---|"
for mode in full lora; do
  go_out=$(cd train/sft && STATJOB_BENCH_CHECKPOINT="$dir/ckpt" "$dir/sft.test" -test.run '^$' \
    -test.bench "SFTStep/$mode\$" -test.benchtime 3x 2>&1)
  metric() { awk -v unit="$1" '{for (i=1;i<NF;i++) if ($(i+1)==unit) print $i}' <<<"$go_out"; }
  go_tps=$(metric tokens/s) go_mib=$(metric peak-MiB)
  if [[ -z "$go_tps" ]]; then echo "$go_out" >&2; exit 1; fi
  py_out=$(/usr/bin/python3 bench/sft/torch_bench.py "$mode" "$dir/ckpt" "$rows" "$len")
  py_tps=$(sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p' <<<"$py_out")
  py_mib=$(sed -n 's/.*peak_mib=\([0-9.]*\).*/\1/p' <<<"$py_out")
  threads=$(sed -n 's/.*torch_threads=\([0-9]*\).*/\1/p' <<<"$py_out")
  awk -v m="$mode" -v g="$go_tps" -v p="$py_tps" -v gm="$go_mib" -v pm="$py_mib" -v th="$threads" \
    'BEGIN {printf "| %s | %.1f | %.1f (%d threads) | %.3f | %.0f | %.0f |\n", m, g, p, th, g/p, gm, pm}'
done
