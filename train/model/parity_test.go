package model

import (
	"context"
	"math"
	"testing"
)

// TestParity writes tiny random Llama, Qwen2 (sharded), Qwen3, Mistral
// (sliding window 4, shorter than the prompts and continuations), Qwen2
// windowed on some layers, Gemma 2, Gemma 3, Phi-3, SmolLM3, OLMo 2 and
// Granite checkpoints, loads
// them back, and compares GoMLX's logits (one ragged, right-padded batch)
// and KV-cached greedy continuations against the PyTorch reference. The
// longrope model's continuations stop at its original context
// (Config.MaxLength), and its longest prompt, past that context, rotates
// with the long factors.
func TestParity(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		shard        int64 // qwen2 is written in shards with an index, as large checkpoints are
	}{{"llama", tinyLlama, 0}, {"qwen2", tinyQwen2, 20000}, {"qwen3", tinyQwen3, 0}, {"mistral", tinyMistral, 0},
		{"qwen2 windowed from layer 1", tinyQwen2Windowed, 0}, {"gemma2", tinyGemma2, 0}, {"gemma3", tinyGemma3, 0},
		{"phi3", tinyPhi3, 0}, {"phi3 longrope", tinyPhi4, 0}, {"smollm3", tinySmolLM3, 0}, {"smollm3 listed", tinySmolLM3Listed, 0},
		{"olmo2", tinyOlmo2, 0}, {"granite", tinyGranite, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustConfig(t, tc.config)
			dir := t.TempDir()
			if err := NewRandom(cfg, 7, 0.15).Save(context.Background(), openDir(t, dir), "", SaveOptions{ShardBytes: tc.shard}); err != nil {
				t.Fatal(err)
			}
			m, err := Load(context.Background(), openDir(t, dir), "")
			if err != nil {
				t.Fatal(err)
			}
			prompts := [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7}, {12, 4}, {30, 31, 32, 33, 34}}
			limit := cfg.MaxLength()
			if limit > 0 {
				prompts = append(prompts, []int{3, 8, 13, 21, 34, 55, 89, 1, 2, 4, 8, 16, 32, 64, 7})
				if len(prompts[3]) <= limit {
					t.Fatalf("the longrope prompt (%d tokens) must pass the original context %d", len(prompts[3]), limit)
				}
			}
			const steps = 12
			ref := runReference(t, dir, prompts, steps)
			b := testBackend(t)

			got, err := Logits(b, m, prompts)
			if err != nil {
				t.Fatal(err)
			}
			var maxDiff float64
			for i, p := range prompts {
				for j := range p {
					for k, want := range ref.Logits[i][j] {
						maxDiff = max(maxDiff, math.Abs(float64(got[i][j][k])-want))
					}
				}
			}
			t.Logf("%s: max |logit difference| = %.2e", tc.name, maxDiff)
			if maxDiff > 1e-4 {
				t.Errorf("logits differ from PyTorch by %.2e > 1e-4", maxDiff)
			}

			gen, err := NewGenerator(b, m)
			if err != nil {
				t.Fatal(err)
			}
			var reqs []Request
			for _, p := range prompts {
				reqs = append(reqs, Request{Prompt: p})
			}
			res, err := gen.Generate(reqs, Sampling{MaxNewTokens: steps})
			if err != nil {
				t.Fatal(err)
			}
			compared, want := 0, 0
			for i, p := range prompts {
				n := steps
				if limit > 0 {
					n = max(1, min(steps, limit-len(p)))
				}
				want += n
				if len(res[i].Tokens) != n {
					t.Fatalf("prompt %d (%d tokens): %d new tokens, want %d (max length %d)", i, len(p), len(res[i].Tokens), n, limit)
				}
				for s, want := range ref.Greedy[i][:n] {
					if ref.Margins[i][s] <= 1e-3 {
						break // a near tie: the continuations may part here
					}
					compared++
					if res[i].Tokens[s] != want {
						t.Fatalf("prompt %d step %d: greedy token %d, PyTorch %d (margin %.2e); got %v want %v",
							i, s, res[i].Tokens[s], want, ref.Margins[i][s], res[i].Tokens, ref.Greedy[i])
					}
				}
			}
			t.Logf("%s: %d of %d greedy tokens compared, all identical", tc.name, compared, want)
			if compared < want/2 {
				t.Errorf("only %d greedy tokens had a margin > 1e-3", compared)
			}
		})
	}
}
