package sft

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// TestCheckpointsOnEveryStore trains part of a run against each store
// (local, gs:// and s3:// emulators through the official SDKs), resumes it
// in a fresh trainer and checks the state equals an uninterrupted run's, that
// only the newest KeepCheckpoints complete checkpoints (and the one resumed
// from) are left, and that the metrics file holds every step.
func TestCheckpointsOnEveryStore(t *testing.T) {
	ctx := context.Background()
	const first, second = 3, 7
	straight := tinyRun(t, t.TempDir(), nil)
	straight.StopAfter = second
	if _, err := straight.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := straight.Trainer.stateTensors()
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			r := tinyRun(t, t.TempDir(), nil)
			r.Store, r.StopAfter = b.Store, first
			if res, err := r.Run(ctx); err != nil || res.Steps != first {
				t.Fatalf("first part: %+v, %v", res, err)
			}
			// A checkpoint cut off before its manifest (the process died
			// mid-write) is not resumed from, and is cleaned up later.
			partial := fmt.Sprintf("%scheckpoints/step-%09d/%s", r.Prefix, first+2, stateFile)
			if _, err := b.Store.Put(ctx, partial, strings.NewReader("half a state file"), storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			again := tinyRun(t, t.TempDir(), nil)
			again.Store, again.StopAfter = b.Store, second
			res, err := again.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if wantDir := fmt.Sprintf("%scheckpoints/step-%09d/", r.Prefix, first); res.ResumedFrom != wantDir {
				t.Fatalf("resumed from %q, want %q", res.ResumedFrom, wantDir)
			}
			got := again.Trainer.stateTensors()
			if len(got) != len(want) {
				t.Fatalf("%d state tensors, want %d", len(got), len(want))
			}
			for name, v := range want {
				if tensorBytes(t, got[name]) != tensorBytes(t, v) {
					t.Errorf("%s differs from the uninterrupted run after resuming from %s", name, b.Store.URI(res.ResumedFrom))
				}
			}
			refs, err := listCheckpoints(ctx, b.Store, r.Prefix)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, c := range refs {
				left = append(left, fmt.Sprintf("%d:%v", c.step, c.complete))
			}
			// Every 2 steps and at the stop, keep 2: 3 (resumed from), 6, 7;
			// the partial step 5 is gone.
			if fmt.Sprint(left) != "[3:true 6:true 7:true]" {
				t.Errorf("checkpoints left on %s: %v", b.Store.URI(r.Prefix), left)
			}
			ms, err := again.readMetrics(ctx, second)
			if err != nil || len(ms) != second || ms[second-1].Step != second {
				t.Errorf("metrics file on %s: %d records (%v)", b.Store.URI(r.Prefix), len(ms), err)
			}
		})
	}
}

// TestMetricsFile reads metrics.jsonl as a report would: one record per
// optimizer step with the loss, the scheduled learning rate, the gradient
// norm, tokens/s by the run's clock and the fractional epoch.
func TestMetricsFile(t *testing.T) {
	var log strings.Builder
	r := tinyRun(t, t.TempDir(), &log)
	r.Train.Stats = DataStats{Read: 45, Kept: 40, Truncated: 3, Dropped: 5}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.Now = func() time.Time { clock = clock.Add(250 * time.Millisecond); return clock }
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What tokenization did to the data is in the log, over-long examples counted.
	if first, _, _ := strings.Cut(log.String(), "\n"); first != "data: 45 examples read, 40 kept, 3 truncated, 5 dropped (max_len 16, overlong truncate)" {
		t.Errorf("first log line %q", first)
	}
	raw := storagetest.ReadAll(t, r.Store, r.Prefix+metricsFile)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != res.TotalSteps {
		t.Fatalf("%d records for %d steps", len(lines), res.TotalSteps)
	}
	cfg := r.Trainer.cfg
	warmup := WarmupSteps(cfg.WarmupRatio, res.TotalSteps)
	prevEpoch := 0.0
	for i, line := range lines {
		var m Metric
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m.Step != i+1 || !(m.Loss > 0) || !(m.GradNorm > 0) || m.Tokens == 0 {
			t.Errorf("line %d: %+v", i+1, m)
		}
		if want := LearningRate(cfg.LR, i, warmup, res.TotalSteps); m.LR != want {
			t.Errorf("step %d: lr %g, schedule says %g", m.Step, m.LR, want)
		}
		if want := float64(m.Tokens) / 0.25; math.Abs(m.TokensPerSec-want) > 1e-9*want {
			t.Errorf("step %d: %g tokens/s for %d tokens in 250ms", m.Step, m.TokensPerSec, m.Tokens)
		}
		if m.Epoch <= prevEpoch {
			t.Errorf("step %d: epoch %g after %g", m.Step, m.Epoch, prevEpoch)
		}
		prevEpoch = m.Epoch
	}
	if prevEpoch != float64(cfg.Epochs) {
		t.Errorf("last record at epoch %g, want %d", prevEpoch, cfg.Epochs)
	}
}
