#!/usr/bin/env bash
# CPU speed of the student model, GoMLX (SimpleGo) vs PyTorch, on the same
# tiny Llama-shaped checkpoint: forward+backward+SGD tokens/s and KV-cached
# decode ms/step. Prints a Markdown table for BENCHMARKS.md.
#   usage: bench/model/run.sh          (TORCH_THREADS=n sets PyTorch threads; default: all cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

go_out=$(STATJOB_BENCH_CHECKPOINT="$dir" go test -run '^$' -bench 'TrainStep|DecodeStep' -benchtime 5x -count 1 ./train/model/ 2>&1)
metric() { awk -v unit="$1" '{for (i=1;i<NF;i++) if ($(i+1)==unit) print $i}' <<<"$go_out"; }
go_tps=$(metric tokens/s)
go_ms=$(metric ms/step)
if [[ -z "$go_tps" || -z "$go_ms" ]]; then echo "$go_out" >&2; exit 1; fi
# Batch/lengths must match train/model/bench_test.go (benchBatch, benchSeq, benchPrompt, benchNewTokens).
py_out=$(/usr/bin/python3 bench/model/torch_bench.py "$dir" 4 128 64 64)
py_tps=$(sed -n 's/.*train_tokens_per_s=\([0-9.]*\).*/\1/p' <<<"$py_out")
py_ms=$(sed -n 's/.*decode_ms_per_step=\([0-9.]*\).*/\1/p' <<<"$py_out")
threads=$(sed -n 's/.*torch_threads=\([0-9]*\).*/\1/p' <<<"$py_out")

echo "| measure | GoMLX SimpleGo | PyTorch ${threads} threads | GoMLX / PyTorch |"
echo "|---|---|---|---|"
awk -v g="$go_tps" -v p="$py_tps" 'BEGIN {printf "| train step (fwd+bwd+SGD), tokens/s, higher is better | %.0f | %.0f | %.3f |\n", g, p, g/p}'
awk -v g="$go_ms" -v p="$py_ms" 'BEGIN {printf "| decode step, batch 4, ms/step, lower is better | %.1f | %.1f | %.3f (speed ratio) |\n", g, p, p/g}'
