package grpo

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/statjob/statjob/train/model"
)

// The toy task: the prompt is one token x, and the answer is the token
// toyAnswer(x). The reward checks the first completion token.
func toyAnswer(x int) int { return (3*x + 1) % 15 }

func toyQuestions(n int) []Question {
	var qs []Question
	for x := range n {
		qs = append(qs, Question{ID: fmt.Sprint(x), Prompt: []int{x}, Answer: fmt.Sprint(toyAnswer(x))})
	}
	return qs
}

func toyReward(q Question, r model.Result) float64 {
	if len(r.Tokens) > 0 && fmt.Sprint(r.Tokens[0]) == q.Answer {
		return 1
	}
	return 0
}

// toyConfig is GRPO on the toy task: 8 questions × 16 rollouts of one token
// per step, up to two updates per step.
func toyConfig() Config {
	cfg := DefaultConfig()
	cfg.Steps, cfg.Questions, cfg.Group, cfg.MiniBatch, cfg.MicroBatch = 20, 8, 16, 64, 64
	cfg.LR, cfg.ClipNorm = 1e-2, 1
	cfg.Sampling.MaxNewTokens = 1
	cfg.CheckpointEvery = 0
	return cfg
}

// expectedReward is the exact mean reward of the toy task under m: the
// mean over prompts of the probability of the right first token.
func expectedReward(t *testing.T, tr *Trainer, qs []Question) float64 {
	t.Helper()
	seqs := make([][]int, len(qs))
	for i, q := range qs {
		seqs[i] = q.Prompt
	}
	m := tr.Model()
	if tr.cfg.LoRA.Enabled() {
		t.Fatal("expectedReward reads the base weights: use full fine-tuning")
	}
	logits, err := model.Logits(tr.backend, m, seqs)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for i, q := range qs {
		l := logits[i][len(q.Prompt)-1]
		hi := math.Inf(-1)
		for _, x := range l {
			hi = max(hi, float64(x))
		}
		z := 0.0
		for _, x := range l {
			z += math.Exp(float64(x) - hi)
		}
		sum += math.Exp(float64(l[toyAnswer(i)])-hi) / z
	}
	return sum / float64(len(qs))
}

// TestGRPOLearnsToyTask trains the tiny model with GRPO on a task whose
// reward is checkable and measures the exact expected reward before and
// after: a sign error in the advantage, the ratio or the masking would
// lower it or leave it at chance (1/16).
func TestGRPOLearnsToyTask(t *testing.T) {
	qs := toyQuestions(8)
	tr, err := NewTrainer(toyConfig(), testBackend(t), tinyModel(t, 1), []int{15})
	if err != nil {
		t.Fatal(err)
	}
	before := expectedReward(t, tr, qs)
	run := &Run{Trainer: tr, Questions: qs, Reward: toyReward, Store: openStore(t, t.TempDir()), Prefix: "grpo/", Log: testLog{t}}
	res, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after := expectedReward(t, tr, qs)
	first, last := res.Metrics[0], res.Metrics[len(res.Metrics)-1]
	t.Logf("expected reward %.3f → %.3f; sampled reward %.3f → %.3f over %d steps, %d updates", before, after,
		first.RewardMean, last.RewardMean, res.Steps, res.Updates)
	if !res.Done || res.Steps != 20 {
		t.Fatalf("result %+v: want 20 steps done", res)
	}
	if !(after > 5*before && after > 0.5) {
		t.Fatalf("expected reward %.3f → %.3f: GRPO did not learn the task", before, after)
	}
	for _, m := range res.Metrics {
		if m.Updates > 0 && (m.SignalFraction == 0 || m.GradNorm <= 0 || m.CompletionLen != 1) {
			t.Fatalf("step %d metrics inconsistent: %+v", m.Step, m)
		}
	}
}
