package sft

import (
	"github.com/statjob/statjob/internal/torchref"
	"math"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// refInput is the JSON the PyTorch reference scripts train from: the
// recipe, the micro-batches of every step and LoRA's initial A matrices.
func refInput(cfg Config, warm int, plan [][]*Batch, loraA map[string]any) map[string]any {
	var steps [][]map[string]any
	for _, st := range plan {
		var rs []map[string]any
		for _, b := range st {
			rs = append(rs, map[string]any{"rows": b.Rows, "len": b.Len, "tokens": b.Tokens, "targets": b.Targets,
				"weights": b.Weights, "segments": b.Segments})
		}
		steps = append(steps, rs)
	}
	return map[string]any{"steps": steps, "lora_a": loraA, "config": map[string]any{"lr": cfg.LR, "warmup": warm,
		"total": len(plan), "weight_decay": cfg.WeightDecay, "no_decay": cfg.NoDecay, "beta1": cfg.Beta1, "beta2": cfg.Beta2,
		"epsilon": cfg.Epsilon, "clip": cfg.ClipNorm, "lora_rank": cfg.LoRA.Rank, "lora_alpha": cfg.LoRA.Alpha}}
}

type refOut struct {
	Losses     []float64            `json:"losses"`
	GradNorms  []float64            `json:"grad_norms"`
	LRs        []float64            `json:"lrs"`
	AfterFirst map[string][]float64 `json:"after_first"`
	Final      map[string][]float64 `json:"final"`
}

// groupSteps cuts micro-batches into optimizer steps.
func groupSteps(batches []*Batch, accum, steps int) [][]*Batch {
	var out [][]*Batch
	for i := 0; i+accum <= len(batches) && len(out) < steps; i += accum {
		out = append(out, batches[i:i+accum])
	}
	return out
}

// torchName maps a context variable to the reference's parameter name.
func torchName(scopeAndName string) string {
	return strings.ReplaceAll(strings.TrimPrefix(scopeAndName, "/"), "/", ".")
}

// TestTinyTrainingMatchesTorch trains the tiny model 20 optimizer steps (2
// micro-batches accumulated per step, warm-up, cosine, clipping that bites,
// weight decay with a no-decay bias) and compares with torch.optim.AdamW on
// the same weights and batches: the weights after the first update, the per-step loss
// and grad norm, and the final weights.
func TestTinyTrainingMatchesTorch(t *testing.T) {
	torchref.Python(t)
	for _, lora := range []bool{false, true} {
		name := map[bool]string{false: "full", true: "lora"}[lora]
		t.Run(name, func(t *testing.T) {
			const steps = 20
			cfg := DefaultConfig()
			cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = 16, 2, 2
			cfg.LR, cfg.ClipNorm, cfg.WeightDecay = 1e-2, 0.5, 0.1
			cfg.LoRA = LoRAConfig{}
			if lora {
				cfg.LoRA = LoRAConfig{Rank: 4, Alpha: 8, Targets: []string{"up_proj", "down_proj"}}
				cfg.ClipNorm = 0.05 // adapter gradients are smaller; clipping must still bite
			}
			warm := WarmupSteps(0.1, steps)
			ctx, weights := newTinyContext(1)
			ad := NewAdapters(cfg)
			tr, err := NewTrainer(cfg, tinyBackend(t), ctx, tinyForward(ad))
			if err != nil {
				t.Fatal(err)
			}
			d := randomDataset(3, 100, cfg.MaxLen)
			plan := groupSteps(d.EpochBatches(cfg, 0), cfg.Accumulation, steps)
			if len(plan) != steps {
				t.Fatalf("only %d steps of data", len(plan))
			}
			base := map[string][]float32{}
			for v := range ctx.IterVariables() {
				if !isAdapter(v) && !strings.HasPrefix(v.Scope(), "/sft") && v.Name() == "weight" {
					base[v.ScopeAndName()] = tensorFloats(t, v)
				}
			}

			var goLoss, goNorm []float64
			var afterFirst map[string][]float32
			for i, st := range plan {
				lr := LearningRate(cfg.LR, i, warm, steps)
				s, err := tr.Step(st, lr)
				if err != nil {
					t.Fatal(err)
				}
				goLoss, goNorm = append(goLoss, s.Loss), append(goNorm, s.GradNorm)
				if i == 1 { // step 1 runs at lr 0 (warm-up starts at zero, as HF)
					afterFirst = map[string][]float32{}
					for _, v := range tr.Params() {
						afterFirst[torchName(v.ScopeAndName())] = tensorFloats(t, v)
					}
				}
			}
			loraA := map[string]any{}
			if lora {
				// The adapters' initial A (B starts at zero) for the reference.
				fresh, _ := newTinyContext(1)
				tr2, err := NewTrainer(cfg, tinyBackend(t), fresh, tinyForward(NewAdapters(cfg)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tr2.Loss(plan[0]); err != nil {
					t.Fatal(err)
				}
				for v := range fresh.IterVariables() {
					if v.Name() == LoRAAName {
						val := v.MustValue()
						loraA[strings.TrimPrefix(v.Scope(), "/")] = map[string]any{"shape": val.Shape().Dimensions, "data": tensors.MustCopyFlatData[float32](val)}
					}
				}
				if len(loraA) != 2 {
					t.Fatalf("want 2 adapters, got %d", len(loraA))
				}
				// Only adapters changed: the base weights are bit-for-bit the same.
				for v := range ctx.IterVariables() {
					if want, ok := base[v.ScopeAndName()]; ok {
						got := tensorFloats(t, v)
						for i := range got {
							if got[i] != want[i] {
								t.Fatalf("LoRA training changed base weight %s", v.ScopeAndName())
							}
						}
					}
				}
			}
			in := refInput(cfg, warm, plan, loraA)
			in["weights"] = weights
			var ref refOut
			torchref.RunScript(t, "testdata/tiny_ref.py", "", in, &ref)

			clipped := 0
			for i := range goLoss {
				if rel := math.Abs(goLoss[i]-ref.Losses[i]) / ref.Losses[i]; rel > 1e-5 {
					t.Errorf("step %d loss: go %.8g torch %.8g (rel %.2g)", i+1, goLoss[i], ref.Losses[i], rel)
				}
				if rel := math.Abs(goNorm[i]-ref.GradNorms[i]) / ref.GradNorms[i]; rel > 1e-4 {
					t.Errorf("step %d grad norm: go %.8g torch %.8g", i+1, goNorm[i], ref.GradNorms[i])
				}
				if goNorm[i] > cfg.ClipNorm {
					clipped++
				}
			}
			if clipped == 0 {
				t.Errorf("clipping never applied; the test does not exercise it")
			}
			if len(afterFirst) != len(ref.AfterFirst) {
				t.Fatalf("trained %d tensors, torch %d", len(afterFirst), len(ref.AfterFirst))
			}
			maxDiff := func(got map[string][]float32, want map[string][]float64) float64 {
				worst := 0.0
				for k, w := range want {
					g, ok := got[k]
					if !ok {
						t.Fatalf("tensor %s not trained in Go", k)
					}
					for i := range w {
						worst = max(worst, math.Abs(float64(g[i])-w[i]))
					}
				}
				return worst
			}
			if d := maxDiff(afterFirst, ref.AfterFirst); d > 1e-6 {
				t.Errorf("weights after step 2 (the first at lr > 0) differ from torch by %.3g", d)
			}
			final := map[string][]float32{}
			for _, v := range tr.Params() {
				final[torchName(v.ScopeAndName())] = tensorFloats(t, v)
			}
			d1, dN := maxDiff(afterFirst, ref.AfterFirst), maxDiff(final, ref.Final)
			if dN > 1e-4 {
				t.Errorf("weights after %d steps differ from torch by %.3g", steps, dN)
			}
			t.Logf("%s: step-2 max |Δw| %.2g, step-%d max |Δw| %.2g, losses %.5f → %.5f (torch %.5f → %.5f)",
				name, d1, steps, dN, goLoss[0], goLoss[steps-1], ref.Losses[0], ref.Losses[steps-1])
		})
	}
}
