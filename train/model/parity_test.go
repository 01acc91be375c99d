package model

import (
	"context"
	"math"
	"testing"

	"github.com/gomlx/gomlx/backends"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// TestParity writes tiny random Llama and Qwen2 checkpoints, loads them
// back, and compares GoMLX's logits (one ragged, right-padded batch) and
// KV-cached greedy continuations against the PyTorch reference.
func TestParity(t *testing.T) {
	for _, tc := range []struct{ name, config string }{{"llama", tinyLlama}, {"qwen2", tinyQwen2}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustConfig(t, tc.config)
			dir := t.TempDir()
			if err := NewRandom(cfg, 7, 0.15).Save(context.Background(), dirStore(dir), "", SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			m, err := Load(context.Background(), dirStore(dir), "")
			if err != nil {
				t.Fatal(err)
			}
			prompts := [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7}, {12, 4}, {30, 31, 32, 33, 34}}
			const steps = 12
			ref := runReference(t, dir, prompts, steps)
			b := testBackend(t)

			got := forwardBatch(t, b, m, prompts)
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
			compared := 0
			for i := range prompts {
				for s, want := range ref.Greedy[i] {
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
			t.Logf("%s: %d of %d greedy tokens compared, all identical", tc.name, compared, len(prompts)*steps)
			if compared < len(prompts)*steps/2 {
				t.Errorf("only %d greedy tokens had a margin > 1e-3", compared)
			}
		})
	}
}

// forwardBatch runs Forward on prompts padded on the right into one batch
// and returns logits[prompt][position][vocab].
func forwardBatch(t testing.TB, b backends.Backend, m *Model, prompts [][]int) [][][]float32 {
	t.Helper()
	tmax := 0
	for _, p := range prompts {
		tmax = max(tmax, len(p))
	}
	n := len(prompts)
	tokens, positions, valid := make([]int32, n*tmax), make([]int32, n*tmax), make([]bool, n*tmax)
	for i, p := range prompts {
		for j := range tmax {
			positions[i*tmax+j] = int32(j)
			if j < len(p) {
				tokens[i*tmax+j], valid[i*tmax+j] = int32(p[j]), true
			}
		}
	}
	exec := mlctx.MustNewExec(b, m.Ctx, func(ctx *mlctx.Context, tok, pos, val *Node) *Node {
		return Forward(ctx, m.Config, tok, pos, val)
	})
	out := exec.MustExec1(tensors.FromFlatDataAndDimensions(tokens, n, tmax),
		tensors.FromFlatDataAndDimensions(positions, n, tmax), tensors.FromFlatDataAndDimensions(valid, n, tmax))
	flat := tensors.MustCopyFlatData[float32](out)
	v := m.Config.VocabSize
	res := make([][][]float32, n)
	for i := range n {
		res[i] = make([][]float32, tmax)
		for j := range tmax {
			res[i][j] = flat[(i*tmax+j)*v : (i*tmax+j+1)*v]
		}
	}
	return res
}
