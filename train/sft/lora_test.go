package sft

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/statjob/statjob/train/model"
)

// TestLoRATargetsMustExist: a target that names no projection of the model
// is an error naming the entry, not a run that trains fewer adapters; a
// Phi-3 checkpoint's fused projection is answered with the names to use.
func TestLoRATargetsMustExist(t *testing.T) {
	for _, tc := range []struct {
		targets []string
		want    string
	}{
		{[]string{"up_proj", "dwn_proj"}, `sft.lora.targets[1]: "dwn_proj" is no projection of the model`},
		{[]string{"qkv_proj"}, `"qkv_proj" is no projection of the model (a checkpoint fuses it; the model keeps its parts apart: name q_proj, k_proj, v_proj)`},
	} {
		r := tinyRun(t, t.TempDir(), nil)
		cfg := r.Trainer.cfg
		cfg.LoRA.Targets = tc.targets
		ctx, _ := newTinyContext(1)
		tr, err := NewTrainer(cfg, tinyBackend(t), ctx, tinyForward(NewAdapters(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		r.Trainer = tr
		_, err = r.Run(context.Background())
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoRA targets %v: got %v, want %q", tc.targets, err, tc.want)
		}
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

// TestLoRAOverBFloat16Base: LoRA over a base held in bfloat16 (model.LoadAs)
// trains exactly as over the same bfloat16 checkpoint held in float32 — the
// same losses and adapters, bit for bit — and exports the same merged
// weights; full fine-tuning of weights held in bfloat16 is refused.
func TestLoRAOverBFloat16Base(t *testing.T) {
	ctx := context.Background()
	mcfg, err := model.ParseConfig([]byte(tinyStudentConfig))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store := openStore(t, dir)
	if err := model.NewRandom(mcfg, 5, 0.08).Save(ctx, store, "", model.SaveOptions{DType: "BF16"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation, cfg.LR = 128, 2, 1, 1e-2
	cfg.LoRA.Dropout = 0
	plan := modelSteps(mathDataset(t, 12, cfg), cfg, 4)

	train := func(dtype dtypes.DType, cfg Config) (losses []float64, adapters map[string][]float32, merged *model.Model, err error) {
		m, err := model.LoadAs(ctx, store, "", dtype)
		if err != nil {
			t.Fatal(err)
		}
		tr := modelTrainer(t, m, cfg)
		for i, st := range plan {
			s, err := tr.Step(st, LearningRate(cfg.LR, i, 0, len(plan)))
			if err != nil {
				return nil, nil, nil, err
			}
			losses = append(losses, s.Loss)
		}
		adapters = map[string][]float32{}
		for _, v := range tr.Params() {
			adapters[v.ScopeAndName()] = tensorFloats(t, v)
		}
		if err := Export(ctx, m, cfg, openStore(t, t.TempDir()), "", "F32", nil); err != nil {
			t.Fatal(err)
		}
		return losses, adapters, m, nil
	}
	l32, a32, m32, err := train(dtypes.Float32, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l16, a16, m16, err := train(dtypes.BFloat16, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l32, l16) {
		t.Errorf("losses over the float32 base %v, over the bfloat16 base %v", l32, l16)
	}
	if len(a32) != 2*2*7 || len(a16) != len(a32) {
		t.Fatalf("%d and %d adapter tensors, want 28", len(a32), len(a16))
	}
	for name, a := range a32 {
		if !slices.Equal(a, a16[name]) {
			t.Errorf("%s differs between the float32 and bfloat16 bases", name)
		}
	}
	for _, h := range model.TensorNames(mcfg) {
		scope, name := path.Split(strings.ReplaceAll(h.Name, ".", "/"))
		scope = "/" + strings.TrimSuffix(scope, "/")
		v32, v16 := m32.Ctx.GetVariableByScopeAndName(scope, name), m16.Ctx.GetVariableByScopeAndName(scope, name)
		if v32 == nil || v16 == nil {
			t.Fatalf("no variable for %s", h.Name)
		}
		w32, _ := model.Float32Data(v32.MustValue())
		w16, _ := model.Float32Data(v16.MustValue())
		if !slices.Equal(w32, w16) {
			t.Errorf("merged %s differs between the float32 and bfloat16 bases", h.Name)
		}
	}

	full := cfg
	full.LoRA = LoRAConfig{}
	if _, _, _, err := train(dtypes.BFloat16, full); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "float32") {
		t.Errorf("full fine-tuning of bfloat16 weights: %v", err)
	}
}
