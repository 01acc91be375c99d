package sft

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/train/model"
)

// benchConfig is the Qwen2-shaped model bench/sft/run.sh trains in GoMLX and
// in PyTorch (the size of bench/model's, with Qwen2's Q/K/V bias and tied
// embeddings).
const benchConfig = `{"model_type": "qwen2", "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 704,
	"num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 4096, "tie_word_embeddings": true, "hidden_act": "silu"}`

const benchRows, benchLen = 4, 128

// BenchmarkSFTStep times optimizer steps (forward, backward, clipping,
// AdamW) of full fine-tuning and of LoRA (r16, α32, all seven projections)
// on one micro-batch of benchRows × benchLen tokens, and reports tokens/s
// and the process's peak resident memory. With STATJOB_BENCH_CHECKPOINT set
// it writes the model there for bench/sft/torch_bench.py.
func BenchmarkSFTStep(b *testing.B) {
	for _, mode := range []string{"full", "lora"} {
		b.Run(mode, func(b *testing.B) {
			mcfg, err := model.ParseConfig([]byte(benchConfig))
			if err != nil {
				b.Fatal(err)
			}
			m := model.NewRandom(mcfg, 11, 0.05)
			if dir := os.Getenv("STATJOB_BENCH_CHECKPOINT"); dir != "" {
				if err := m.Save(context.Background(), openStore(b, dir), "", model.SaveOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			cfg := DefaultConfig()
			cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = benchLen, benchRows, 1
			cfg.LoRA.Dropout = 0
			if mode == "full" {
				cfg.LoRA = LoRAConfig{}
			}
			fwd, err := ModelForward(mcfg, cfg)
			if err != nil {
				b.Fatal(err)
			}
			tr, err := NewTrainer(cfg, tinyBackend(b), m.Ctx, fwd)
			if err != nil {
				b.Fatal(err)
			}
			batch := newBatch(benchRows, benchLen)
			for i := range batch.Tokens {
				batch.Tokens[i], batch.Targets[i] = int32(i*31%mcfg.VocabSize), int32(i*17%mcfg.VocabSize)
				batch.Positions[i], batch.Segments[i], batch.Weights[i] = int32(i%benchLen), 1, 1
			}
			step := []*Batch{batch}
			if _, err := tr.Step(step, 1e-4); err != nil { // compile
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := tr.Step(step, 1e-4); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchRows*benchLen*b.N)/time.Since(start).Seconds(), "tokens/s")
			b.ReportMetric(peakRSSMiB(b), "peak-MiB")
		})
	}
}

// peakRSSMiB reads the process's peak resident set size (VmHWM).
func peakRSSMiB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
