// Package sft fine-tunes a student model on chat conversations with GoMLX:
// full fine-tuning or LoRA, AdamW with decoupled weight decay, a cosine
// schedule counted in optimizer steps, global-norm clipping, gradient
// accumulation, checkpoints to any storage.Store with exact resume, a metrics
// file and a merged export.
//
// The trainer does not know the architecture: a Forward function builds the
// summed token loss of one micro-batch inside a GoMLX context (the model core
// supplies it), and the trainer differentiates it with respect to the
// trainable variables.
package sft

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Overlong policies: what happens to an example longer than MaxLen tokens.
const (
	OverlongTruncate = "truncate" // keep the first MaxLen tokens
	OverlongDrop     = "drop"     // leave the example out
)

// Precision names.
const (
	PrecisionF32  = "f32"  // f32 weights and compute (CPU)
	PrecisionBF16 = "bf16" // bf16 compute, f32 master weights and optimizer state (GPU)
)

// LoRAConfig configures low-rank adapters. Rank 0 means full fine-tuning.
type LoRAConfig struct {
	Rank    int      `yaml:"rank"`
	Alpha   float64  `yaml:"alpha"`
	Dropout float64  `yaml:"dropout"`
	Targets []string `yaml:"targets"` // projection names, e.g. q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
}

// Scale is alpha / rank, the factor the adapter product BA is multiplied by.
func (l LoRAConfig) Scale() float64 {
	if l.Rank == 0 {
		return 0
	}
	return l.Alpha / float64(l.Rank)
}

// Enabled reports whether adapters are trained (rank > 0).
func (l LoRAConfig) Enabled() bool { return l.Rank > 0 }

// Config is the SFT recipe. DefaultConfig returns the paper's settings.
type Config struct {
	// Data.
	MaxLen   int    `yaml:"max_len"`  // tokens per sequence (and per packed row)
	Overlong string `yaml:"overlong"` // "truncate" or "drop"
	Packing  bool   `yaml:"packing"`  // pack several examples per row (block-diagonal attention)
	// MicroBatch is the number of rows per forward/backward pass; the
	// effective batch per optimizer step is MicroBatch × Accumulation.
	MicroBatch   int   `yaml:"micro_batch"`
	Accumulation int   `yaml:"accumulation"`
	Epochs       int   `yaml:"epochs"`
	Seed         int64 `yaml:"seed"`

	// Optimizer (AdamW, as torch.optim.AdamW).
	LR          float64  `yaml:"lr"`
	WarmupRatio float64  `yaml:"warmup_ratio"` // of the total optimizer steps
	WeightDecay float64  `yaml:"weight_decay"`
	NoDecay     []string `yaml:"no_decay"` // variables whose name contains one of these get no weight decay
	Beta1       float64  `yaml:"beta1"`
	Beta2       float64  `yaml:"beta2"`
	Epsilon     float64  `yaml:"epsilon"`
	ClipNorm    float64  `yaml:"clip_norm"` // global gradient norm; 0 disables clipping

	LoRA      LoRAConfig `yaml:"lora"`
	Precision string     `yaml:"precision"` // "f32" or "bf16"

	// Checkpoints, validation and metrics.
	CheckpointEvery int `yaml:"checkpoint_every"` // optimizer steps; 0: only at the end
	KeepCheckpoints int `yaml:"keep_checkpoints"` // newest K kept
	EvalEvery       int `yaml:"eval_every"`       // optimizer steps between validation losses; 0: never
}

// DefaultConfig is the recipe of the STAT paper: LoRA r16 α32 dropout 0.05 on
// attention and MLP projections, 3 epochs, cosine with 3% warm-up, effective
// batch 8, clip 0.3, weight decay 0.1.
func DefaultConfig() Config {
	return Config{
		MaxLen:       2048,
		Overlong:     OverlongTruncate,
		MicroBatch:   1,
		Accumulation: 8,
		Epochs:       3,
		Seed:         1,
		LR:           1e-4,
		WarmupRatio:  0.03,
		WeightDecay:  0.1,
		NoDecay:      []string{"bias", "norm"},
		Beta1:        0.9,
		Beta2:        0.999,
		Epsilon:      1e-8,
		ClipNorm:     0.3,
		LoRA: LoRAConfig{Rank: 16, Alpha: 32, Dropout: 0.05,
			Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
		Precision:       PrecisionF32,
		CheckpointEvery: 100,
		KeepCheckpoints: 2,
		EvalEvery:       0,
	}
}

// ErrConfig is matched (errors.Is) by every Validate error.
var ErrConfig = errors.New("invalid sft config")

// FieldError is an error that reads as its message — the field and what is
// wrong with it — and matches sentinel with errors.Is, so the sentinel's
// words do not repeat what the field's name already says.
func FieldError(sentinel error, format string, args ...any) error {
	return fieldError{sentinel, fmt.Sprintf(format, args...)}
}

type fieldError struct {
	sentinel error
	msg      string
}

func (e fieldError) Error() string        { return e.msg }
func (e fieldError) Is(target error) bool { return target == e.sentinel }

// Validate names the first bad field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return FieldError(ErrConfig, "sft.%s: %s", field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.MaxLen < 2:
		return bad("max_len", "%d, want >= 2", c.MaxLen)
	case c.Overlong != OverlongTruncate && c.Overlong != OverlongDrop:
		return bad("overlong", "%q, want %q or %q", c.Overlong, OverlongTruncate, OverlongDrop)
	case c.MicroBatch < 1:
		return bad("micro_batch", "%d, want >= 1", c.MicroBatch)
	case c.Accumulation < 1:
		return bad("accumulation", "%d, want >= 1", c.Accumulation)
	case c.Epochs < 1:
		return bad("epochs", "%d, want >= 1", c.Epochs)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("lr", "%g, want > 0", c.LR)
	case c.WarmupRatio < 0 || c.WarmupRatio >= 1:
		return bad("warmup_ratio", "%g, want in [0, 1)", c.WarmupRatio)
	case c.WeightDecay < 0:
		return bad("weight_decay", "%g, want >= 0", c.WeightDecay)
	case c.Beta1 < 0 || c.Beta1 >= 1:
		return bad("beta1", "%g, want in [0, 1)", c.Beta1)
	case c.Beta2 < 0 || c.Beta2 >= 1:
		return bad("beta2", "%g, want in [0, 1)", c.Beta2)
	case !(c.Epsilon > 0):
		return bad("epsilon", "%g, want > 0", c.Epsilon)
	case c.ClipNorm < 0:
		return bad("clip_norm", "%g, want >= 0 (0 disables)", c.ClipNorm)
	case c.LoRA.Rank < 0:
		return bad("lora.rank", "%d, want >= 0 (0: full fine-tuning)", c.LoRA.Rank)
	case c.LoRA.Enabled() && !(c.LoRA.Alpha > 0):
		return bad("lora.alpha", "%g, want > 0", c.LoRA.Alpha)
	case c.LoRA.Dropout < 0 || c.LoRA.Dropout >= 1:
		return bad("lora.dropout", "%g, want in [0, 1)", c.LoRA.Dropout)
	case c.LoRA.Enabled() && len(c.LoRA.Targets) == 0:
		return bad("lora.targets", "empty, name at least one projection (e.g. q_proj)")
	case c.Precision != PrecisionF32 && c.Precision != PrecisionBF16:
		return bad("precision", "%q, want %q or %q", c.Precision, PrecisionF32, PrecisionBF16)
	case c.CheckpointEvery < 0:
		return bad("checkpoint_every", "%d, want >= 0", c.CheckpointEvery)
	case c.KeepCheckpoints < 1:
		return bad("keep_checkpoints", "%d, want >= 1", c.KeepCheckpoints)
	case c.EvalEvery < 0:
		return bad("eval_every", "%d, want >= 0", c.EvalEvery)
	}
	for i, t := range c.LoRA.Targets {
		if strings.TrimSpace(t) == "" {
			return bad(fmt.Sprintf("lora.targets[%d]", i), "empty name")
		}
	}
	return nil
}

// decays reports whether the variable named name gets weight decay.
func (c Config) decays(name string) bool {
	if c.WeightDecay == 0 {
		return false
	}
	lower := strings.ToLower(name)
	for _, s := range c.NoDecay {
		if s != "" && strings.Contains(lower, strings.ToLower(s)) {
			return false
		}
	}
	return true
}
