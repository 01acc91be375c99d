package grpo

import (
	"context"
	"github.com/statjob/statjob/internal/torchref"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// Tolerances of the PyTorch comparison (float32 on both sides, different
// summation orders): the loss to 1e-5 relative, each gradient entry to
// 1e-5 + 1e-4 × the tensor's largest entry.
const (
	refLossTol    = 1e-5
	refGradAbsTol = 1e-5
	refGradRelTol = 1e-4
	// The mean KL to 1e-3 relative: exp(d) − d − 1 of a small d cancels
	// most of float32's digits.
	refKLTol = 1e-3
)

// refRollouts are three rollouts of different prompt and completion
// lengths with positive, negative and small advantages.
func refRollouts(rng *rand.Rand, vocab int) []*rollout {
	shape := [][2]int{{3, 4}, {5, 2}, {4, 6}}
	adv := []float64{1.2, -0.7, 0.3}
	var rs []*rollout
	for i, s := range shape {
		r := &rollout{advantage: adv[i]}
		for range s[0] {
			r.prompt = append(r.prompt, rng.IntN(vocab))
		}
		for range s[1] {
			r.result.Tokens = append(r.result.Tokens, rng.IntN(vocab))
		}
		rs = append(rs, r)
	}
	return rs
}

// refKLCoef is the KL coefficient of the comparisons with a KL term: large
// enough that the KL's gradient weighs as much as the surrogate's.
const refKLCoef = 0.2

// TestMiniBatchMatchesTorch compares the loss of one mini-batch and its
// gradient with a PyTorch transcription, for full fine-tuning and for LoRA,
// with and without a KL term (computed as TRL's GRPOTrainer does, from the
// reference model's own forward pass in PyTorch). The old log-probabilities
// are the policy's own shifted by up to ±0.4, so ratios fall outside 1 ± ε
// on both sides and the clipping is exercised. With KL, the policy differs
// from the reference: LoRA's B is random (the reference is the base model),
// and full fine-tuning's weights are perturbed after the trainer took its
// reference copy; the trainer's own optimizer step then reports the same
// loss and mean KL.
func TestMiniBatchMatchesTorch(t *testing.T) {
	torchref.Python(t)
	for _, tc := range []struct {
		name     string
		lora, kl bool
	}{{"full", false, false}, {"lora", true, false}, {"full_kl", false, true}, {"lora_kl", true, true}} {
		lora, name := tc.lora, tc.name
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			policy := dir // the trained model's weights, as PyTorch reads them
			m := tinyModel(t, 3)
			if err := m.Save(ctx, openStore(t, dir), "", model.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.MicroBatch = 4
			if tc.kl {
				cfg.KLCoef = refKLCoef
			}
			if lora {
				cfg.LoRA = sft.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"q_proj", "up_proj", "down_proj"}}
			}
			tr, err := NewTrainer(cfg, testBackend(t), m, []int{15})
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.prepare(); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 5))
			if lora { // B starts at zero, which would leave A without gradient
				for _, v := range tr.Params() {
					if v.Name() == sft.LoRABName {
						data := make([]float32, v.Shape().Size())
						for i := range data {
							data[i] = float32(rng.NormFloat64() * 0.3)
						}
						if err := v.SetValue(tensors.FromFlatDataAndDimensions(data, v.Shape().Dimensions...)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if tc.kl && !lora { // the policy moves away from the reference the trainer copied
				for _, v := range tr.Params() {
					w := tensors.MustCopyFlatData[float32](v.MustValue())
					for i := range w {
						w[i] += float32(rng.NormFloat64() * 0.05)
					}
					if err := v.SetValue(tensors.FromFlatDataAndDimensions(w, v.Shape().Dimensions...)); err != nil {
						t.Fatal(err)
					}
				}
				policy = t.TempDir()
				if err := m.Save(ctx, openStore(t, policy), "", model.SaveOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			rs := refRollouts(rng, m.Config.VocabSize)
			b := tr.batch(rs)
			if err := tr.fixedLogProbs(b); err != nil {
				t.Fatal(err)
			}
			for i, w := range b.Weights {
				if w != 0 {
					b.Aux[auxOldLogProb][i] += float32(rng.Float64()*0.8 - 0.4)
				}
			}

			// Go: the loss and its gradient through the trainer's graph.
			params := tr.Params()
			exec := mlctx.MustNewExec(tr.backend, m.Ctx, func(ctx *mlctx.Context, in []*Node) []*Node {
				g := in[0].Graph()
				ctx.SetTraining(g, false) // no dropout: compare the function itself
				loss := tr.loss(ctx, sft.BatchNodes{Tokens: in[0], Targets: in[1], Positions: in[2], Segments: in[3],
					Weights: in[4], Aux: in[5:]})
				values := make([]*Node, len(params))
				for i, v := range params {
					values[i] = v.ValueGraph(g)
				}
				return append([]*Node{loss}, Gradient(loss, values...)...)
			})
			args := []any{}
			for _, a := range [][]int32{b.Tokens, b.Targets, b.Positions, b.Segments} {
				args = append(args, tensors.FromFlatDataAndDimensions(a, b.Rows, b.Len))
			}
			args = append(args, tensors.FromFlatDataAndDimensions(b.Weights, b.Rows, b.Len))
			for _, a := range b.Aux {
				args = append(args, tensors.FromFlatDataAndDimensions(a, b.Rows, b.Len))
			}
			out, err := exec.Exec(args...)
			if err != nil {
				t.Fatal(err)
			}
			n := float64(b.TargetCount())
			goLoss := float64(tensors.ToScalar[float32](out[0])) / n

			// Torch, from the same weights, rows and old log-probabilities.
			var rows []map[string]any
			for row, r := range rs {
				seq := append(append([]int{}, r.prompt...), r.result.Tokens...)
				var old []float32
				for i := len(r.prompt) - 1; i < len(seq)-1; i++ {
					old = append(old, b.Aux[auxOldLogProb][row*b.Len+i])
				}
				rows = append(rows, map[string]any{"tokens": seq, "prompt_len": len(r.prompt), "old_logp": old, "advantage": r.advantage})
			}
			in := map[string]any{"rows": rows, "epsilon": cfg.ClipEpsilon}
			if tc.kl {
				kl := map[string]any{"beta": cfg.KLCoef, "ref_dir": nil}
				if !lora {
					kl["ref_dir"] = dir
				}
				in["kl"] = kl
			}
			if lora {
				ad := map[string]map[string]any{}
				for _, v := range params {
					mod := strings.ReplaceAll(strings.TrimPrefix(v.Scope(), "/"), "/", ".")
					if ad[mod] == nil {
						ad[mod] = map[string]any{}
					}
					key := map[string]string{sft.LoRAAName: "a", sft.LoRABName: "b"}[v.Name()]
					ad[mod][key] = tensors.MustCopyFlatData[float32](v.MustValue())
					ad[mod][key+"_shape"] = v.Shape().Dimensions
				}
				in["lora"] = map[string]any{"scale": cfg.LoRA.Scale(), "adapters": ad}
			}
			var ref struct {
				Loss    float64              `json:"loss"`
				Clipped int                  `json:"clipped"`
				KL      float64              `json:"kl"`
				Grads   map[string][]float64 `json:"grads"`
			}
			torchref.RunScript(t, filepath.Join("testdata", "grpo_ref.py"), policy, in, &ref)
			if ref.Clipped == 0 {
				t.Fatal("no token clipped: the test does not exercise the clip")
			}
			if tc.kl && ref.KL < 1e-3 {
				t.Fatalf("mean KL %g: the policy is too close to the reference to exercise the KL term", ref.KL)
			}
			if rel := math.Abs(goLoss-ref.Loss) / math.Abs(ref.Loss); rel > refLossTol {
				t.Errorf("loss: go %.8g torch %.8g (rel %.2g)", goLoss, ref.Loss, rel)
			}
			if len(ref.Grads) != len(params) {
				t.Fatalf("torch trained %d tensors, go %d", len(ref.Grads), len(params))
			}
			worst := 0.0
			for i, v := range params {
				key := strings.ReplaceAll(strings.TrimPrefix(v.Scope(), "/"), "/", ".")
				key += "." + v.Name()
				want, ok := ref.Grads[key]
				if !ok {
					t.Fatalf("no torch gradient for %s", key)
				}
				got := tensors.MustCopyFlatData[float32](out[1+i])
				scale := 0.0
				for _, w := range want {
					scale = max(scale, math.Abs(w))
				}
				for j := range want {
					d := math.Abs(float64(got[j])/n - want[j])
					worst = max(worst, d/(scale+1e-12))
					if d > refGradAbsTol+refGradRelTol*scale {
						t.Fatalf("%s[%d]: go %.8g torch %.8g", key, j, float64(got[j])/n, want[j])
					}
				}
			}
			t.Logf("%s: loss go %.7f torch %.7f, %d clipped tokens, mean KL %.6f, worst gradient diff %.2g of its tensor's max",
				name, goLoss, ref.Loss, ref.Clipped, ref.KL, worst)

			// The trainer's own step (no dropout here) sees the same loss
			// and reports the same mean KL.
			st, err := tr.sft.Step([]*sft.Batch{b}, cfg.LR)
			if err != nil {
				t.Fatal(err)
			}
			if rel := math.Abs(st.Loss-ref.Loss) / math.Abs(ref.Loss); rel > refLossTol {
				t.Errorf("step loss: go %.8g torch %.8g (rel %.2g)", st.Loss, ref.Loss, rel)
			}
			wantStats := 1
			if tc.kl {
				wantStats = 2
			}
			if len(st.Stats) != wantStats {
				t.Fatalf("step reports %d stats, want %d", len(st.Stats), wantStats)
			}
			if int(st.Stats[0]) != ref.Clipped {
				t.Errorf("step clipped %g tokens, torch %d", st.Stats[0], ref.Clipped)
			}
			if tc.kl {
				if kl := st.Stats[1] / n; math.Abs(kl-ref.KL) > refKLTol*ref.KL {
					t.Errorf("mean KL: go %.8g torch %.8g", kl, ref.KL)
				}
			}
		})
	}
}
