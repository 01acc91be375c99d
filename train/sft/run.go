package sft

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/statjob/statjob/storage"
)

// metricsFile is the per-step record under the run's prefix, JSON lines.
const metricsFile = "metrics.jsonl"

// Metric is one line of metrics.jsonl: one optimizer step.
type Metric struct {
	Step         int      `json:"step"`  // 1-based optimizer step
	Epoch        float64  `json:"epoch"` // fractional epochs done
	Loss         float64  `json:"loss"`  // mean per target token
	LR           float64  `json:"lr"`
	GradNorm     float64  `json:"grad_norm"` // before clipping
	Tokens       int      `json:"tokens"`    // non-padding tokens in the step
	TokensPerSec float64  `json:"tokens_per_s"`
	ValLoss      *float64 `json:"val_loss,omitempty"`
}

// Run trains Trainer on Train for Config.Epochs epochs, checkpointing to
// Store under Prefix (e.g. "runs/<id>/sft/<arm>/") and resuming from the
// newest complete checkpoint found there.
type Run struct {
	Trainer *Trainer
	Train   *Dataset
	Valid   *Dataset // optional; its loss every Config.EvalEvery steps
	Store   storage.Store
	Prefix  string // ends in "/" or is empty
	// Log receives one line per step and per checkpoint (optional).
	Log io.Writer
	// StopAfter stops after this many optimizer steps in all (0: run to the
	// end), with a checkpoint; a later Run continues.
	StopAfter int
	// Now is the clock for tokens/s (time.Now when nil).
	Now func() time.Time
}

// Result sums up a Run.
type Result struct {
	Steps       int       // optimizer steps done in all
	TotalSteps  int       // of the whole schedule
	ResumedFrom string    // checkpoint key prefix, or empty
	Final       Metric    // the last step
	Done        bool      // all epochs trained
	Metrics     []Metric  // every step since the start of the run (across resumes)
	Data        DataStats // of the training set
}

// hashData fingerprints the tokenized training set.
func hashData(d *Dataset) string {
	h := sha256.New()
	var b [4]byte
	for _, e := range d.Examples {
		binary.LittleEndian.PutUint32(b[:], uint32(len(e.IDs)))
		h.Write(b[:])
		for i, id := range e.IDs {
			binary.LittleEndian.PutUint32(b[:], uint32(id))
			if e.Loss[i] {
				b[3] |= 0x80 // ids are < 2^24 in every vocabulary we load
			}
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// recipeHash covers the settings that fix the sequence of steps and updates.
func recipeHash(c Config) string {
	js, _ := json.Marshal([]any{c.MaxLen, c.Overlong, c.Packing, c.MicroBatch, c.Accumulation, c.Epochs, c.Seed,
		c.LR, c.WarmupRatio, c.WeightDecay, c.NoDecay, c.Beta1, c.Beta2, c.Epsilon, c.ClipNorm, c.LoRA, c.Precision})
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:8])
}

// Run trains until all epochs are done (or StopAfter), returning what it did.
func (r *Run) Run(ctx context.Context) (*Result, error) {
	t, cfg := r.Trainer, r.Trainer.cfg
	now := r.Now
	if now == nil {
		now = time.Now
	}
	// The schedule: micro-batches per epoch, optimizer steps per epoch.
	perEpoch := make([]int, cfg.Epochs)
	total := 0
	for e := range perEpoch {
		perEpoch[e] = StepsPerEpoch(len(r.Train.epochPlan(cfg, e)), cfg)
		total += perEpoch[e]
	}
	warmup := WarmupSteps(cfg.WarmupRatio, total)
	dataHash, recipe := hashData(r.Train), recipeHash(cfg)
	res := &Result{TotalSteps: total, Data: r.Train.Stats}
	st := r.Train.Stats
	r.logf("data: %d examples read, %d kept, %d truncated, %d dropped (max_len %d, overlong %s)",
		st.Read, st.Kept, st.Truncated, st.Dropped, cfg.MaxLen, cfg.Overlong)

	var plan []batchPlan
	planEpoch := -1
	position := func(step int) (epoch, batch int) {
		for epoch = 0; epoch < cfg.Epochs && step >= perEpoch[epoch]; epoch++ {
			step -= perEpoch[epoch]
		}
		return epoch, step * cfg.Accumulation
	}
	stepBatches := func(step int) []*Batch {
		e, first := position(step)
		if e != planEpoch {
			plan, planEpoch = r.Train.epochPlan(cfg, e), e
		}
		var out []*Batch
		for _, p := range plan[first:min(first+cfg.Accumulation, len(plan))] {
			out = append(out, r.Train.materialize(cfg, p))
		}
		return out
	}
	// The trained variables exist once a graph is built.
	if err := t.prepare(stepBatches(0)[0]); err != nil {
		return nil, err
	}

	// Resume from the newest complete checkpoint.
	refs, err := listCheckpoints(ctx, r.Store, r.Prefix)
	if err != nil {
		return nil, err
	}
	var tokensSeen int64
	for i := len(refs) - 1; i >= 0; i-- {
		if !refs[i].complete {
			continue
		}
		man, err := readManifest(ctx, r.Store, refs[i].dir)
		if err != nil {
			return nil, err
		}
		if man.DataHash != dataHash || man.Recipe != recipe || man.TotalSteps != total {
			return nil, fmt.Errorf("%w: %s (data or recipe changed since it was written)", ErrIncompatible, r.Store.URI(refs[i].dir))
		}
		if err := t.loadCheckpoint(ctx, r.Store, refs[i].dir, man); err != nil {
			return nil, err
		}
		t.step, tokensSeen, res.ResumedFrom = man.Step, man.TokensSeen, refs[i].dir
		if res.Metrics, err = r.readMetrics(ctx, man.Step); err != nil {
			return nil, err
		}
		r.logf("resumed from %s at step %d/%d", r.Store.URI(refs[i].dir), man.Step, total)
		break
	}

	stop := total
	if r.StopAfter > 0 {
		stop = min(stop, r.StopAfter)
	}
	var lr float64
	for t.step < stop {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		step := t.step
		lr = LearningRate(cfg.LR, step, warmup, total)
		start := now()
		st, err := t.Step(stepBatches(step), lr)
		if err != nil {
			return res, err
		}
		secs := now().Sub(start).Seconds()
		tokensSeen += int64(st.Tokens)
		e, b := position(step + 1)
		m := Metric{Step: step + 1, Loss: st.Loss, LR: lr, GradNorm: st.GradNorm, Tokens: st.Tokens,
			Epoch: float64(e) + float64(b)/float64(max(1, perEpoch[min(e, cfg.Epochs-1)]*cfg.Accumulation))}
		if secs > 0 {
			m.TokensPerSec = float64(st.Tokens) / secs
		}
		if r.Valid != nil && cfg.EvalEvery > 0 && (m.Step%cfg.EvalEvery == 0 || m.Step == total) {
			vl, err := t.Loss(r.Valid.EpochBatches(cfg, 0))
			if err != nil {
				return res, err
			}
			m.ValLoss = &vl
		}
		res.Metrics = append(res.Metrics, m)
		r.logf("step %d/%d loss %.4f lr %.3g grad_norm %.3f tokens/s %.0f", m.Step, total, m.Loss, m.LR, m.GradNorm, m.TokensPerSec)
		if (cfg.CheckpointEvery > 0 && m.Step%cfg.CheckpointEvery == 0) || m.Step == stop {
			man := Manifest{Step: m.Step, TotalSteps: total, Epoch: e, Batch: b, LR: lr, Seed: cfg.Seed,
				DataHash: dataHash, Recipe: recipe, TokensSeen: tokensSeen, Created: now().UTC()}
			if err := r.writeMetrics(ctx, res.Metrics); err != nil {
				return res, err
			}
			dir, err := t.saveCheckpoint(ctx, r.Store, r.Prefix, man)
			if err != nil {
				return res, err
			}
			r.logf("checkpoint step %d %s", m.Step, r.Store.URI(dir))
			if err := pruneCheckpoints(ctx, r.Store, r.Prefix, cfg.KeepCheckpoints, res.ResumedFrom); err != nil {
				return res, err
			}
		}
	}
	res.Steps, res.Done = t.step, t.step == total
	if n := len(res.Metrics); n > 0 {
		res.Final = res.Metrics[n-1]
	}
	return res, nil
}

func (r *Run) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", args...)
	}
}

func (r *Run) writeMetrics(ctx context.Context, ms []Metric) error {
	return WriteMetrics(ctx, r.Store, r.Prefix+metricsFile, ms)
}

// readMetrics reads the metrics written so far, up to step.
func (r *Run) readMetrics(ctx context.Context, upTo int) ([]Metric, error) {
	return ReadMetrics(ctx, r.Store, r.Prefix+metricsFile, func(m Metric) bool { return m.Step <= upTo })
}

// WriteMetrics writes rows as JSON lines to key in store (a training loop's
// metrics file, rewritten whole at each checkpoint).
func WriteMetrics[T any](ctx context.Context, store storage.Store, key string, rows []T) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, m := range rows {
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	if _, err := store.Put(ctx, key, &buf, storage.PutOptions{ContentType: "application/jsonl"}); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// ReadMetrics reads the rows of key that keep accepts (none when key does
// not exist), naming the line of a bad one.
func ReadMetrics[T any](ctx context.Context, store storage.Store, key string, keep func(T) bool) ([]T, error) {
	rc, err := store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer rc.Close()
	var out []T
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var m T
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", store.URI(key), line, err)
		}
		if keep(m) {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}
