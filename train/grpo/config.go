// Package grpo is the optional reinforcement-learning step after SFT: Group
// Relative Policy Optimization with a caller-supplied reward (the pipeline
// grades correctness against the gold answer, 1 or 0).
//
// One step draws Config.Questions questions (seeded per step), samples
// Config.Group rollouts of each with the model's KV-cached sampler (each
// rollout seeded on its own, so batching never changes it), rewards them,
// and gives each rollout the group-relative advantage
// (r − mean_group) / (std_group + 1e-4); a group whose rewards are all equal
// carries no signal and is left out. The old log-probabilities are computed
// once; then every mini-batch of Config.MiniBatch rollouts takes one AdamW
// step on PPO's clipped surrogate −min(ratio·A, clip(ratio, 1±ε)·A),
// averaged over completion tokens (the prompt is masked; the end-of-turn
// token counts).
//
// With Config.KLCoef β > 0 each completion token's loss also carries
// β·KL, the k3 estimator exp(ref − logp) − (ref − logp) − 1 of DeepSeekMath
// and TRL, against a frozen reference policy: the student as GRPO started
// (with LoRA the base weights, adapters off; with full fine-tuning a frozen
// copy of the starting weights, which doubles their memory). The reference
// log-probabilities are computed once per step, with the old ones.
//
// Optimizer, LoRA, mixed precision and checkpoints are train/sft's: a GRPO
// run is an sft.Trainer with another loss and another loop, so a checkpoint
// has the same format and resuming one is exact.
package grpo

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// Config is the GRPO recipe. DefaultConfig returns the STAT paper's.
type Config struct {
	Steps      int `yaml:"steps"`       // GRPO steps (each: sample, reward, update)
	Questions  int `yaml:"questions"`   // questions drawn per step
	Group      int `yaml:"group"`       // rollouts per question (G)
	MiniBatch  int `yaml:"mini_batch"`  // rollouts per optimizer step
	MicroBatch int `yaml:"micro_batch"` // rollouts per forward/backward pass; sets memory, not the update
	// SampleBatch is the number of rollouts decoded together; it sets
	// speed and memory, never the rollouts.
	SampleBatch int `yaml:"sample_batch"`

	LR          float64 `yaml:"lr"`           // constant after warm-up
	WarmupSteps int     `yaml:"warmup_steps"` // GRPO steps of linear warm-up (0: none)
	ClipEpsilon float64 `yaml:"clip_epsilon"` // PPO ratio clip ε
	// KLCoef (β) weighs a per-token KL penalty to the student as GRPO
	// started; 0 (the paper's) keeps no reference model and costs nothing.
	KLCoef      float64 `yaml:"kl_coef"`
	WeightDecay float64 `yaml:"weight_decay"`
	Beta1       float64 `yaml:"beta1"`
	Beta2       float64 `yaml:"beta2"`
	Epsilon     float64 `yaml:"epsilon"`
	ClipNorm    float64 `yaml:"clip_norm"` // global gradient norm; 0 disables clipping

	// Sampling draws the rollouts. Its stop_tokens are added to the
	// caller's (the tokenizer's EOS and end-of-turn tokens).
	Sampling model.Sampling `yaml:"sampling"`
	Seed     int64          `yaml:"seed"` // question order, rollout seeds, adapter init, dropout

	// LoRA adapters (rank 0: full fine-tuning). Their dropout acts in the
	// update's forward pass only, as PEFT's in training mode: neither the
	// rollouts nor the old log-probabilities see it.
	LoRA      sft.LoRAConfig `yaml:"lora"`
	Precision string         `yaml:"precision"` // "f32" or "bf16", as sft

	CheckpointEvery int `yaml:"checkpoint_every"` // GRPO steps; 0: only at the end
	Keep            int `yaml:"keep"`             // newest checkpoints kept
}

// DefaultConfig is the paper's GRPO: lr 5e-7 constant, no KL, 256
// questions × 4 rollouts per step, at most 2,048 new tokens at temperature
// 1.0, mini-batch 64; full fine-tuning, AdamW without weight decay and
// clipping at norm 1 (TRL's defaults), ε 0.2.
func DefaultConfig() Config {
	return Config{
		Steps:           100,
		Questions:       256,
		Group:           4,
		MiniBatch:       64,
		MicroBatch:      4,
		SampleBatch:     32,
		LR:              5e-7,
		ClipEpsilon:     0.2,
		Beta1:           0.9,
		Beta2:           0.999,
		Epsilon:         1e-8,
		ClipNorm:        1.0,
		Sampling:        model.Sampling{Temperature: 1.0, TopP: 1.0, MaxNewTokens: 2048},
		Seed:            1,
		Precision:       sft.PrecisionF32,
		CheckpointEvery: 10,
		Keep:            2,
	}
}

// ErrConfig is matched (errors.Is) by every Validate error.
var ErrConfig = errors.New("invalid grpo config")

// Validate names the first bad field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return sft.FieldError(ErrConfig, "grpo.%s: %s", field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Steps < 1:
		return bad("steps", "%d, want >= 1", c.Steps)
	case c.Questions < 1:
		return bad("questions", "%d, want >= 1", c.Questions)
	case c.Group < 2:
		return bad("group", "%d, want >= 2 (advantages are relative to the group)", c.Group)
	case c.MiniBatch < 1:
		return bad("mini_batch", "%d, want >= 1", c.MiniBatch)
	case c.MicroBatch < 1:
		return bad("micro_batch", "%d, want >= 1", c.MicroBatch)
	case c.SampleBatch < 1:
		return bad("sample_batch", "%d, want >= 1", c.SampleBatch)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("lr", "%g, want > 0", c.LR)
	case c.WarmupSteps < 0:
		return bad("warmup_steps", "%d, want >= 0", c.WarmupSteps)
	case !(c.ClipEpsilon > 0) || c.ClipEpsilon >= 1:
		return bad("clip_epsilon", "%g, want in (0, 1)", c.ClipEpsilon)
	case !(c.KLCoef >= 0) || math.IsInf(c.KLCoef, 1):
		return bad("kl_coef", "%g, want >= 0 (0: no KL term)", c.KLCoef)
	case c.Sampling.Temperature == 0:
		return bad("sampling.temperature", "0 (greedy) gives a group identical rollouts and no signal; want > 0")
	case c.CheckpointEvery < 0:
		return bad("checkpoint_every", "%d, want >= 0", c.CheckpointEvery)
	case c.Keep < 1:
		return bad("keep", "%d, want >= 1", c.Keep)
	}
	if err := c.Sampling.Validate(); err != nil {
		return sft.FieldError(ErrConfig, "grpo.%v", err)
	}
	if err := c.sft().Validate(); err != nil { // optimizer, LoRA and precision, under their grpo names
		msg := err.Error()
		return sft.FieldError(ErrConfig, "grpo.%s", msg[strings.Index(msg, "sft.")+len("sft."):])
	}
	return nil
}

// sft is the optimizer side of the recipe as the SFT trainer takes it: one
// mini-batch per optimizer step, split into micro-batches.
func (c Config) sft() sft.Config {
	return sft.Config{
		MaxLen: math.MaxInt32, Overlong: sft.OverlongTruncate, MicroBatch: c.MicroBatch, Accumulation: 1, Epochs: 1,
		Seed: c.Seed, LR: c.LR, WeightDecay: c.WeightDecay, NoDecay: []string{"bias", "norm"},
		Beta1: c.Beta1, Beta2: c.Beta2, Epsilon: c.Epsilon, ClipNorm: c.ClipNorm,
		LoRA: c.LoRA, Precision: c.Precision, KeepCheckpoints: c.Keep,
	}
}

// lr is the learning rate of GRPO step step (0-based): linear warm-up over
// WarmupSteps steps, then constant.
func (c Config) lr(step int) float64 {
	if step < c.WarmupSteps {
		return c.LR * float64(step+1) / float64(c.WarmupSteps)
	}
	return c.LR
}
