package grpo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// resumeCase is one recipe the resume test runs: LoRA (with dropout, so the
// RNG state matters) or full fine-tuning, with or without a KL term.
type resumeCase struct {
	name     string
	lora, kl bool
}

var resumeCases = []resumeCase{{"lora", true, false}, {"lora_kl", true, true}, {"full_kl", false, true}}

// config has two micro-batches per update and two updates per step.
func (c resumeCase) config(steps int) Config {
	cfg := toyConfig()
	cfg.Steps, cfg.Questions, cfg.Group, cfg.MiniBatch, cfg.MicroBatch = steps, 4, 4, 8, 4
	if c.lora {
		cfg.LoRA = sft.LoRAConfig{Rank: 2, Alpha: 4, Dropout: 0.1, Targets: []string{"q_proj", "v_proj", "up_proj", "down_proj"}}
	}
	if c.kl {
		cfg.KLCoef = 0.1
	}
	cfg.Sampling.MaxNewTokens = 3
	cfg.CheckpointEvery, cfg.Keep = 1, 2
	return cfg
}

// lowTokens rewards the share of completion tokens below 8: a reward
// that almost every group spreads, so every step updates.
func lowTokens(_ Question, r model.Result) float64 {
	n := 0
	for _, id := range r.Tokens {
		if id < 8 {
			n++
		}
	}
	return float64(n) / float64(len(r.Tokens))
}

func resumeRun(t *testing.T, cfg Config, dir string, stopAfter int) (*Run, *Result, error) {
	t.Helper()
	tr, err := NewTrainer(cfg, testBackend(t), tinyModel(t, 1), []int{15})
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Trainer: tr, Questions: toyQuestions(6), Reward: lowTokens, Store: openStore(t, dir), Prefix: "run/grpo/", StopAfter: stopAfter}
	res, err := r.Run(context.Background())
	return r, res, err
}

func paramValues(t *testing.T, r *Run) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, v := range r.Trainer.Params() {
		out[v.ScopeAndName()] = tensors.MustCopyFlatData[float32](v.MustValue())
	}
	return out
}

// TestResumeIsExact stops a run after 2 steps, resumes it in new objects
// (as a new process would, and decoding in other batches) to 4, and
// compares with an uninterrupted run of 4: the weights are bitwise equal on
// the CPU, and so are the metrics but for the throughput. With a KL term the
// resumed run takes its reference from the model it starts from, as the
// uninterrupted one did (with full fine-tuning a frozen copy, which
// checkpoints do not hold). A finished run extends; a changed recipe is
// refused.
func TestResumeIsExact(t *testing.T) {
	for _, c := range resumeCases {
		t.Run(c.name, func(t *testing.T) { testResumeIsExact(t, c) })
	}
}

func testResumeIsExact(t *testing.T, c resumeCase) {
	resumeConfig := c.config
	straightDir, stopDir := t.TempDir(), t.TempDir()
	straight, sres, err := resumeRun(t, resumeConfig(4), straightDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := resumeRun(t, resumeConfig(4), stopDir, 2); err != nil || res.Steps != 2 || res.Done {
		t.Fatalf("stopped run: %+v, %v", res, err)
	}
	other := resumeConfig(4)
	other.SampleBatch = 3 // rollouts do not depend on how they are batched
	resumed, rres, err := resumeRun(t, other, stopDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(rres.ResumedFrom, "checkpoints/step-000000002/") || !rres.Done || rres.Updates != sres.Updates {
		t.Fatalf("resumed run: %+v (uninterrupted %d updates)", rres, sres.Updates)
	}
	if sres.Updates < 6 {
		t.Fatalf("%d updates in 4 steps, want at least 6: the test compares too little", sres.Updates)
	}
	want, got := paramValues(t, straight), paramValues(t, resumed)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d trained tensors, want %d", len(got), len(want))
	}
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Fatalf("%s differs between the resumed and the uninterrupted run", name)
		}
	}
	if len(rres.Metrics) != 4 {
		t.Fatalf("resumed run has %d metrics, want 4", len(rres.Metrics))
	}
	kl := 0.0
	for i := range sres.Metrics {
		a, b := sres.Metrics[i], rres.Metrics[i]
		kl = max(kl, a.KL)
		a.TokensPerSec, b.TokensPerSec = 0, 0
		if a != b {
			t.Fatalf("step %d metrics: uninterrupted %+v, resumed %+v", i+1, a, b)
		}
	}
	if c.kl != (kl > 0) || (c.kl && sres.Metrics[3].KL == 0) {
		t.Fatalf("kl_coef %g: mean KL per step %v", resumeConfig(4).KLCoef, klOf(sres.Metrics))
	}

	// Extending a finished run continues it; a changed recipe is refused.
	cfg := resumeConfig(4)
	cfg.LR *= 2
	if _, _, err := resumeRun(t, cfg, stopDir, 0); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("changed lr: err = %v, want ErrIncompatible", err)
	}
	ext, eres, err := resumeRun(t, resumeConfig(5), straightDir, 0)
	if err != nil || eres.Steps != 5 || !strings.HasSuffix(eres.ResumedFrom, "step-000000004/") {
		t.Fatalf("extended run: %+v, %v", eres, err)
	}
	changed := 0
	for name, v := range paramValues(t, ext) {
		if !slices.Equal(v, want[name]) {
			changed++
		}
	}
	if eres.Metrics[4].Updates == 0 || changed == 0 {
		t.Fatalf("step 5 took %d updates and changed %d tensors", eres.Metrics[4].Updates, changed)
	}
}

func klOf(ms []Metric) []float64 {
	var out []float64
	for _, m := range ms {
		out = append(out, m.KL)
	}
	return out
}
