package sft

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/statjob/statjob/train/model"
)

// TestLoRATargetsMustExist: a target that names no projection of the model
// is an error naming the entry, not a run that trains fewer adapters.
func TestLoRATargetsMustExist(t *testing.T) {
	r := tinyRun(t, t.TempDir(), nil)
	cfg := r.Trainer.cfg
	cfg.LoRA.Targets = []string{"up_proj", "dwn_proj"}
	ctx, _ := newTinyContext(1)
	tr, err := NewTrainer(cfg, tinyBackend(t), ctx, tinyForward(NewAdapters(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	r.Trainer = tr
	_, err = r.Run(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `sft.lora.targets[1]: "dwn_proj"`) {
		t.Fatalf("misspelt LoRA target: got %v", err)
	}
}

// TestExportTwiceMergesOnce: an export retried after a storage error writes
// the same weights as the first, W + (α/r)·B·A, not W + 2(α/r)·B·A.
func TestExportTwiceMergesOnce(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	mcfg, err := model.ParseConfig([]byte(`{"model_type": "qwen2", "vocab_size": 64, "hidden_size": 16,
		"intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	m := model.NewRandom(mcfg, 1, 0.1)
	cfg := DefaultConfig()
	cfg.LoRA = LoRAConfig{Rank: 2, Alpha: 6, Targets: []string{"up_proj"}}
	const scope = "/model/layers/0/mlp/up_proj"
	w := m.Ctx.GetVariableByScopeAndName(scope, "weight")
	base := tensorFloats(t, w)
	out, in := w.Shape().Dim(0), w.Shape().Dim(1)
	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return d
	}
	A, B := draw(2*in), draw(out*2)
	adapters := m.Ctx.InAbsPath(scope).Checked(false)
	adapters.VariableWithValue(LoRAAName, tensors.FromFlatDataAndDimensions(A, 2, in))
	adapters.VariableWithValue(LoRABName, tensors.FromFlatDataAndDimensions(B, out, 2))
	for _, prefix := range []string{"first", "retry"} {
		if err := Export(ctx, m, cfg, store, prefix, "F32", nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"first", "retry"} {
		back, err := model.Load(ctx, store, prefix)
		if err != nil {
			t.Fatal(err)
		}
		got := tensorFloats(t, back.Ctx.GetVariableByScopeAndName(scope, "weight"))
		for o := range out {
			for k := range in {
				want := float64(base[o*in+k]) + 3*(float64(B[o*2])*float64(A[k])+float64(B[o*2+1])*float64(A[in+k]))
				if d := math.Abs(float64(got[o*in+k]) - want); d > 1e-5 {
					t.Fatalf("%s: %s[%d,%d] = %g, want base + (α/r)·B·A = %g", prefix, scope, o, k, got[o*in+k], want)
				}
			}
		}
	}
}
