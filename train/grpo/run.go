package grpo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/sft"
)

// MetricsFile is the per-step record under the run's prefix, JSON lines.
const MetricsFile = "metrics.jsonl"

// Metric is one line of metrics.jsonl: one GRPO step.
type Metric struct {
	Step           int     `json:"step"` // 1-based GRPO step
	LR             float64 `json:"lr"`
	RewardMean     float64 `json:"reward_mean"`
	SignalFraction float64 `json:"signal_fraction"` // groups with differing rewards
	Loss           float64 `json:"loss"`
	GradNorm       float64 `json:"grad_norm"`
	ClipFraction   float64 `json:"clip_fraction"`
	KL             float64 `json:"kl,omitempty"` // mean KL to the reference per completion token (kl_coef > 0)
	CompletionLen  float64 `json:"completion_len"`
	Updates        int     `json:"updates"`      // optimizer steps in this GRPO step
	TokensPerSec   float64 `json:"tokens_per_s"` // completion tokens sampled per second of the step
}

// Run trains Trainer for Config.Steps GRPO steps on Questions, checkpointing
// to Store under Prefix and resuming from the newest complete checkpoint
// found there.
type Run struct {
	Trainer   *Trainer
	Questions []Question
	Reward    Reward
	Store     storage.Store
	Prefix    string    // ends in "/" or is empty
	Log       io.Writer // one line per step and per checkpoint (optional)
	// StopAfter stops after this many GRPO steps in all (0: run to
	// Config.Steps), with a checkpoint; a later Run continues.
	StopAfter int
	// Now is the clock for tokens/s (time.Now when nil).
	Now func() time.Time
}

// Result sums up a Run.
type Result struct {
	Steps       int      // GRPO steps done in all
	Updates     int      // optimizer steps done in all
	ResumedFrom string   // checkpoint key prefix, or empty
	Done        bool     // Config.Steps reached
	Metrics     []Metric // every step since the start of the run (across resumes)
}

// progress is a checkpoint's GRPO state (sft.Manifest.Extra); the
// manifest's Step is the GRPO steps done, which name the checkpoint.
type progress struct {
	Updates int `json:"updates"` // optimizer steps done, which AdamW's bias correction counts
}

// ErrIncompatible: the newest checkpoint was written with another recipe
// or other questions.
var ErrIncompatible = sft.ErrIncompatible

// questions returns the questions of GRPO step step: epochs over a seeded
// permutation of all questions, Questions at a time, so every question is
// drawn once before any is drawn again and step s's draw depends on s
// alone.
func (r *Run) questions(step int) []Question {
	cfg := r.Trainer.cfg
	n := len(r.Questions)
	out := make([]Question, cfg.Questions)
	var perm []int
	epoch := -1
	for j := range out {
		i := step*cfg.Questions + j
		if e := i / n; e != epoch {
			perm, epoch = rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(e))).Perm(n), e
		}
		out[j] = r.Questions[perm[i%n]]
	}
	return out
}

// hashQuestions fingerprints the training questions.
func hashQuestions(qs []Question) string {
	h := sha256.New()
	var b [4]byte
	for _, q := range qs {
		for _, s := range []string{q.ID, q.Answer} {
			binary.LittleEndian.PutUint32(b[:], uint32(len(s)))
			h.Write(b[:])
			h.Write([]byte(s))
		}
		binary.LittleEndian.PutUint32(b[:], uint32(len(q.Prompt)))
		h.Write(b[:])
		for _, id := range q.Prompt {
			binary.LittleEndian.PutUint32(b[:], uint32(id))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// recipeHash covers the settings that fix the sequence of steps and
// updates; Steps, CheckpointEvery, Keep and SampleBatch are left out, so a
// finished run can be extended and a resumed one may decode in other
// batches.
func recipeHash(c Config) string {
	c.Steps, c.CheckpointEvery, c.Keep, c.SampleBatch = 0, 0, 0, 0
	js, _ := json.Marshal(c)
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:8])
}

// Run trains until Config.Steps (or StopAfter), returning what it did.
func (r *Run) Run(ctx context.Context) (*Result, error) {
	t, cfg := r.Trainer, r.Trainer.cfg
	if len(r.Questions) == 0 {
		return nil, errors.New("grpo: no questions to train on")
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	if err := t.prepare(); err != nil {
		return nil, err
	}
	dataHash, recipe := hashQuestions(r.Questions), recipeHash(cfg)
	res := &Result{}
	done := 0
	man, dir, err := t.sft.LoadLatest(ctx, r.Store, r.Prefix, func(m sft.Manifest) error {
		if m.DataHash != dataHash || m.Recipe != recipe {
			return fmt.Errorf("%w (questions or recipe changed since it was written)", ErrIncompatible)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if dir != "" {
		var p progress
		if err := json.Unmarshal(man.Extra, &p); err != nil {
			return nil, fmt.Errorf("%w: %s: no GRPO progress in the manifest", ErrIncompatible, r.Store.URI(dir))
		}
		done, t.updates, res.ResumedFrom = man.Step, p.Updates, dir
		t.sft.SetStepsDone(p.Updates)
		res.Metrics, err = sft.ReadMetrics(ctx, r.Store, r.Prefix+MetricsFile, func(m Metric) bool { return m.Step <= done })
		if err != nil {
			return nil, err
		}
		r.logf("resumed from %s at step %d/%d", r.Store.URI(dir), done, cfg.Steps)
	}

	stop := cfg.Steps
	if r.StopAfter > 0 {
		stop = min(stop, r.StopAfter)
	}
	for done < stop {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		lr := cfg.lr(done)
		start := now()
		st, err := t.Step(done, r.questions(done), r.Reward, lr)
		if err != nil {
			return res, err
		}
		secs := now().Sub(start).Seconds()
		done++
		m := Metric{Step: done, LR: lr, RewardMean: st.RewardMean, SignalFraction: st.SignalFraction, Loss: st.Loss,
			GradNorm: st.GradNorm, ClipFraction: st.ClipFraction, KL: st.KL, CompletionLen: st.CompletionLen, Updates: st.Updates}
		if secs > 0 {
			m.TokensPerSec = float64(st.Tokens) / secs
		}
		res.Metrics = append(res.Metrics, m)
		kl := ""
		if cfg.KLCoef > 0 {
			kl = fmt.Sprintf(" kl %.5f", m.KL)
		}
		r.logf("step %d/%d reward %.3f signal %.2f loss %.4f grad_norm %.3f clip %.3f%s len %.1f updates %d tokens/s %.0f",
			m.Step, cfg.Steps, m.RewardMean, m.SignalFraction, m.Loss, m.GradNorm, m.ClipFraction, kl, m.CompletionLen, m.Updates, m.TokensPerSec)
		if (cfg.CheckpointEvery > 0 && done%cfg.CheckpointEvery == 0) || done == stop {
			if err := r.checkpoint(ctx, done, dataHash, recipe, res, now); err != nil {
				return res, err
			}
		}
	}
	res.Steps, res.Updates, res.Done = done, t.updates, done >= cfg.Steps
	return res, nil
}

// checkpoint writes the metrics so far, then the trainer's state with the
// GRPO progress, and prunes old checkpoints.
func (r *Run) checkpoint(ctx context.Context, done int, dataHash, recipe string, res *Result, now func() time.Time) error {
	t, cfg := r.Trainer, r.Trainer.cfg
	extra, _ := json.Marshal(progress{Updates: t.updates})
	man := sft.Manifest{Step: done, TotalSteps: cfg.Steps, Seed: cfg.Seed, DataHash: dataHash, Recipe: recipe,
		LR: cfg.lr(done - 1), Created: now().UTC(), Extra: extra}
	if err := sft.WriteMetrics(ctx, r.Store, r.Prefix+MetricsFile, res.Metrics); err != nil {
		return err
	}
	dir, err := t.sft.SaveCheckpoint(ctx, r.Store, r.Prefix, man)
	if err != nil {
		return err
	}
	r.logf("checkpoint step %d %s", done, r.Store.URI(dir))
	return sft.PruneCheckpoints(ctx, r.Store, r.Prefix, cfg.Keep, res.ResumedFrom)
}

func (r *Run) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", args...)
	}
}
