package sft

import (
	"context"
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX's graph DSL reads best unqualified.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/train/model"
)

// ModelForward is the Forward of a train/model decoder (Llama, Qwen2):
// summed gather-based cross-entropy over the weighted targets, attention
// within each example of a row (model.ForwardSegments, so packed examples
// never see each other), and LoRA adapters (with dropout) on
// cfg.LoRA.Targets through the model's adapter hook when enabled (full
// fine-tuning otherwise). With cfg.Precision "bf16" the matrix products run
// in bfloat16 (model.UseComputeDType) while the weights, adapters and
// optimizer state stay float32 masters; see ComputeDType.
func ModelForward(mcfg *model.Config, cfg Config) (Forward, error) {
	dt, err := ComputeDType(cfg.Precision)
	if err != nil {
		return nil, err
	}
	model.RegisterDotGeneralGradient()
	ad := NewAdapters(cfg)
	return func(ctx *mlctx.Context, b BatchNodes) *Node {
		model.UseComputeDType(ctx, b.Tokens.Graph(), dt)
		if cfg.LoRA.Enabled() {
			model.UseAdapter(ctx, b.Tokens.Graph(), ad.Apply)
		}
		logits := model.ForwardSegments(ctx, mcfg, b.Tokens, b.Positions, b.Segments)
		n := ReduceAllSum(b.Weights)
		return Mul(model.CrossEntropy(logits, b.Targets, b.Weights), Max(n, OnesLike(n)))
	}, nil
}

// ComputeDType is the matrix-product dtype of a precision name: float32 for
// "f32" (the default, and what the CPU backend is shipped with), bfloat16
// for "bf16" (GPU). An unknown name is an error naming sft.precision.
func ComputeDType(precision string) (dtypes.DType, error) {
	switch precision {
	case PrecisionF32, "":
		return dtypes.Float32, nil
	case PrecisionBF16:
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("sft.precision: %q, want %q or %q", precision, PrecisionF32, PrecisionBF16)
}

// MergeLoRA folds trained adapters into m's weights in place:
// W ← W + (α/r)·B·A for every target projection (sums in float64), then
// zeroes B, so that the model computes the same with or without its
// adapters and a second merge (an export retried after a storage error)
// changes nothing. Without adapters it does nothing.
func MergeLoRA(m *model.Model, cfg Config) error {
	ad := NewAdapters(cfg)
	for _, v := range ad.targets(m.Ctx) {
		av := m.Ctx.GetVariableByScopeAndName(v.Scope(), LoRAAName)
		bv := m.Ctx.GetVariableByScopeAndName(v.Scope(), LoRABName)
		if av == nil || bv == nil {
			return fmt.Errorf("merge LoRA: no adapter for %s", v.ScopeAndName())
		}
		w, err := model.Float32Data(v.MustValue()) // the base may be held in bfloat16
		if err != nil {
			return fmt.Errorf("merge LoRA into %s: %w", v.ScopeAndName(), err)
		}
		a := tensors.MustCopyFlatData[float32](av.MustValue())
		b := tensors.MustCopyFlatData[float32](bv.MustValue())
		r, scale := cfg.LoRA.Rank, cfg.LoRA.Scale()
		in := len(a) / r
		out := len(w) / in
		col := make([]float64, r)
		for o := range out {
			for j := range r {
				col[j] = scale * float64(b[o*r+j])
			}
			for k := range in {
				s := 0.0
				for j := range r {
					s += col[j] * float64(a[j*in+k])
				}
				w[o*in+k] = float32(float64(w[o*in+k]) + s)
			}
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(w, out, in)); err != nil {
			return fmt.Errorf("merge LoRA into %s: %w", v.ScopeAndName(), err)
		}
		if err := bv.SetValue(tensors.FromShape(bv.Shape())); err != nil {
			return fmt.Errorf("merge LoRA into %s: %w", v.ScopeAndName(), err)
		}
	}
	return nil
}

// Export writes the fine-tuned student under prefix in dst as a Hugging Face
// directory: config.json, the weights with LoRA merged (m is merged in place)
// as dtype ("F32", "BF16" or "F16"), and files (tokenizer.json,
// tokenizer_config.json, …) alongside.
func Export(ctx context.Context, m *model.Model, cfg Config, dst model.Sink, prefix, dtype string, files map[string][]byte) error {
	if err := MergeLoRA(m, cfg); err != nil {
		return err
	}
	if err := m.Save(ctx, dst, prefix, model.SaveOptions{DType: dtype, Files: files}); err != nil {
		return fmt.Errorf("export %s: %w", prefix, err)
	}
	return nil
}
