package grpo

import (
	"math/rand/v2"
	"testing"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// benchConfig is a model of the skills-world student's size (Qwen2, 2
// layers, hidden 64, vocabulary 285).
func benchConfig(b *testing.B) *model.Config {
	cfg, err := model.ParseConfig([]byte(`{"model_type": "qwen2", "vocab_size": 285, "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 512,
		"tie_word_embeddings": true, "hidden_act": "silu"}`))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkGRPOStep times one GRPO step: 8 questions of 32 prompt tokens ×
// 4 rollouts of up to 32 new tokens, two updates of 16 rollouts in
// micro-batches of 8; full fine-tuning and LoRA r16 on every projection.
func BenchmarkGRPOStep(b *testing.B) {
	for _, lora := range []bool{false, true} {
		b.Run(map[bool]string{false: "full", true: "lora"}[lora], func(b *testing.B) {
			tr, qs := benchTrainer(b, lora, 0)
			cfg := tr.cfg
			var sample, train float64
			tokens, updates := 0, 0
			b.ResetTimer()
			for i := range b.N {
				st, err := tr.Step(i+1, qs, lowTokens, cfg.LR)
				if err != nil {
					b.Fatal(err)
				}
				sample, train = sample+st.SampleSeconds, train+st.TrainSeconds
				tokens, updates = tokens+st.Tokens, updates+st.Updates
			}
			b.ReportMetric(sample/float64(b.N), "sample-s/step")
			b.ReportMetric(train/float64(b.N), "train-s/step")
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(updates)/float64(b.N), "updates/step")
		})
	}
}

// benchTrainer is the benchmarks' trainer, with one step taken (which
// compiles the graphs), and its questions.
func benchTrainer(b *testing.B, lora bool, klCoef float64) (*Trainer, []Question) {
	cfg := DefaultConfig()
	cfg.Questions, cfg.Group, cfg.MiniBatch, cfg.MicroBatch = 8, 4, 16, 8
	cfg.LR, cfg.Sampling.MaxNewTokens, cfg.KLCoef = 1e-3, 32, klCoef
	if lora {
		cfg.LoRA = sft.LoRAConfig{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}
	}
	m := model.NewRandom(benchConfig(b), 1, 0.05)
	tr, err := NewTrainer(cfg, testBackend(b), m, []int{284})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var qs []Question
	for i := range cfg.Questions {
		q := Question{ID: string(rune('a' + i))}
		for range 32 {
			q.Prompt = append(q.Prompt, rng.IntN(280))
		}
		qs = append(qs, q)
	}
	if _, err := tr.Step(0, qs, lowTokens, cfg.LR); err != nil {
		b.Fatal(err)
	}
	return tr, qs
}

// BenchmarkGRPOKLCost measures what a KL term (kl_coef 0.04) adds to
// BenchmarkGRPOStep's training phase: two trainers from the same weights,
// one without and one with the term, take their steps in turn, so that a
// shared machine's load falls on both alike (their rollouts start equal
// and drift apart only as far as the small KL lets the weights). It reports
// each one's training seconds per step and the overhead.
func BenchmarkGRPOKLCost(b *testing.B) {
	for _, lora := range []bool{false, true} {
		b.Run(map[bool]string{false: "full", true: "lora"}[lora], func(b *testing.B) {
			plain, qs := benchTrainer(b, lora, 0)
			withKL, _ := benchTrainer(b, lora, 0.04)
			var secs [2]float64
			b.ResetTimer()
			for i := range b.N {
				for j, tr := range []*Trainer{plain, withKL} {
					st, err := tr.Step(i+1, qs, lowTokens, tr.cfg.LR)
					if err != nil {
						b.Fatal(err)
					}
					secs[j] += st.TrainSeconds
				}
			}
			b.ReportMetric(secs[0]/float64(b.N), "train-s/step")
			b.ReportMetric(secs[1]/float64(b.N), "kl-train-s/step")
			b.ReportMetric(100*(secs[1]/secs[0]-1), "kl-overhead-%")
		})
	}
}
