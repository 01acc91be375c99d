package sft

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
)

// benchConfig is the Qwen2-shaped model bench/sft/run.sh trains in GoMLX and
// in PyTorch (the size of bench/model's, with Qwen2's Q/K/V bias and tied
// embeddings).
const benchConfig = `{"model_type": "qwen2", "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 704,
	"num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 4096, "tie_word_embeddings": true, "hidden_act": "silu"}`

// qwen2_05bConfig is Qwen2.5-0.5B's shape, for the GPU measurement.
const qwen2_05bConfig = `{"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
	"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true, "hidden_act": "silu"}`

const benchRows, benchLen = 4, 128

// benchSetup reads the benchmark's environment: STATJOB_BENCH_SFT_MODEL
// ("qwen2-0.5b" for the GPU shape; the CPU bench model otherwise),
// STATJOB_BENCH_SFT_ROWS and _LEN (the micro-batch), and GOMLX_BACKEND
// through train/backend. STATJOB_BENCH_SFT_PRECISION ("f32", the default, or
// "bf16") is read by benchPrecision.
func benchSetup(b *testing.B) (cfgJSON string, rows, length int) {
	cfgJSON, rows, length = benchConfig, benchRows, benchLen
	if os.Getenv("STATJOB_BENCH_SFT_MODEL") == "qwen2-0.5b" {
		cfgJSON = qwen2_05bConfig
	}
	for env, p := range map[string]*int{"STATJOB_BENCH_SFT_ROWS": &rows, "STATJOB_BENCH_SFT_LEN": &length} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want a positive integer", env, v)
			}
			*p = n
		}
	}
	return cfgJSON, rows, length
}

// benchPrecision is STATJOB_BENCH_SFT_PRECISION (sft.precision; "f32" when unset).
func benchPrecision(b *testing.B) string {
	p := os.Getenv("STATJOB_BENCH_SFT_PRECISION")
	if p == "" {
		return PrecisionF32
	}
	if _, err := ComputeDType(p); err != nil {
		b.Fatalf("STATJOB_BENCH_SFT_PRECISION: %v", err)
	}
	return p
}

// trainFLOPsPerToken is the usual 6·N (forward and backward through every
// weight matrix, the tied LM head included) plus attention's 12·L·H·E·T.
func trainFLOPsPerToken(c *model.Config, seq int) float64 {
	n := 0.0
	for _, h := range model.TensorNames(c) {
		if len(h.Shape) == 2 {
			n += float64(h.Shape[0] * h.Shape[1])
		}
	}
	headDim := c.HeadDim
	if headDim == 0 {
		headDim = c.HiddenSize / c.NumAttentionHeads
	}
	return 6*n + 12*float64(c.NumHiddenLayers*c.NumAttentionHeads*headDim*seq)
}

// BenchmarkSFTStep times optimizer steps (forward, backward, clipping,
// AdamW) of full fine-tuning and of LoRA (r16, α32, all seven projections)
// on one micro-batch of benchRows × benchLen tokens in the precision of
// STATJOB_BENCH_SFT_PRECISION, and reports tokens/s,
// the process's peak resident memory and, with STATJOB_BENCH_PEAK_TFLOPS
// set (the device's peak), the model FLOPs utilisation in percent. With
// STATJOB_BENCH_CHECKPOINT set it writes the model there for
// bench/sft/torch_bench.py.
func BenchmarkSFTStep(b *testing.B) {
	for _, mode := range []string{"full", "lora"} {
		b.Run(mode, func(b *testing.B) {
			cfgJSON, rows, length := benchSetup(b)
			mcfg, err := model.ParseConfig([]byte(cfgJSON))
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
			cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = length, rows, 1
			cfg.LoRA.Dropout = 0
			cfg.Precision = benchPrecision(b)
			if mode == "full" {
				cfg.LoRA = LoRAConfig{}
			}
			fwd, err := ModelForward(mcfg, cfg)
			if err != nil {
				b.Fatal(err)
			}
			be, err := backend.New("")
			if err != nil {
				b.Fatal(err)
			}
			tr, err := NewTrainer(cfg, be, m.Ctx, fwd)
			if err != nil {
				b.Fatal(err)
			}
			batch := newBatch(rows, length)
			for i := range batch.Tokens {
				batch.Tokens[i], batch.Targets[i] = int32(i*31%mcfg.VocabSize), int32(i*17%mcfg.VocabSize)
				batch.Positions[i], batch.Segments[i], batch.Weights[i] = int32(i%length), 1, 1
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
			tps := float64(rows*length*b.N) / time.Since(start).Seconds()
			b.ReportMetric(tps, "tokens/s")
			b.ReportMetric(peakRSSMiB(b), "peak-MiB")
			if v := os.Getenv("STATJOB_BENCH_PEAK_TFLOPS"); v != "" {
				peak, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				flops := trainFLOPsPerToken(mcfg, length)
				if mode == "lora" { // no weight gradients of the frozen base: 4·N instead of 6·N
					flops *= 4.0 / 6
				}
				b.ReportMetric(100*tps*flops/(peak*1e12), "MFU-%")
			}
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
