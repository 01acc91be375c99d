package sft

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/storage"
)

const childEnv = "STATJOB_SFT_RESUME_CHILD"

// tinyRun builds a LoRA run (dropout on, so the RNG state matters) of the
// tiny model over a local store at dir.
func tinyRun(t testing.TB, dir string, log io.Writer) *Run {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation, cfg.Epochs = 16, 2, 2, 3
	cfg.LR, cfg.CheckpointEvery, cfg.KeepCheckpoints, cfg.EvalEvery = 1e-2, 2, 2, 5
	cfg.LoRA = LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"up_proj", "down_proj"}}
	ctx, _ := newTinyContext(1)
	tr, err := NewTrainer(cfg, tinyBackend(t), ctx, tinyForward(NewAdapters(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Run{Trainer: tr, Train: randomDataset(3, 40, cfg.MaxLen), Valid: randomDataset(4, 6, cfg.MaxLen),
		Store: store, Prefix: "run/sft/", Log: log}
}

// blockAt passes log lines to w and blocks forever once a line starts with
// prefix: the parent test kills the process there.
type blockAt struct {
	w      io.Writer
	prefix string
}

func (b blockAt) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	if strings.HasPrefix(string(p), b.prefix) {
		io.Copy(io.Discard, os.Stdin) // the parent never closes it
	}
	return n, err
}

// TestResumeAfterKillIsExact trains in a child process that is SIGKILLed
// after step 5 (newest complete checkpoint: step 4), resumes here to the end
// and compares with an uninterrupted run: adapters, AdamW moments and the
// per-step losses must be bitwise equal.
func TestResumeAfterKillIsExact(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		r := tinyRun(t, dir, blockAt{os.Stdout, "step 5/"})
		_, err := r.Run(context.Background())
		t.Fatalf("child was not killed: %v", err)
	}
	killedDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeAfterKillIsExact$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+killedDir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.HasPrefix(sc.Text(), "step 5/") {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			break
		}
	}
	go io.Copy(io.Discard, out)
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child: want killed, got %v; output:\n%s", err, strings.Join(seen, "\n"))
	}

	var log strings.Builder
	resumed := tinyRun(t, killedDir, &log)
	got, err := resumed.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.ResumedFrom, "step-000000004/") {
		t.Fatalf("resumed from %q, want step 4; log:\n%s", got.ResumedFrom, log.String())
	}
	straight := tinyRun(t, t.TempDir(), nil)
	want, err := straight.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || !want.Done || got.Steps != want.Steps {
		t.Fatalf("steps: resumed %d done=%v, straight %d done=%v", got.Steps, got.Done, want.Steps, want.Done)
	}
	gs, ws := resumed.Trainer.stateTensors(), straight.Trainer.stateTensors()
	if len(gs) != len(ws) || len(gs) < 13 { // 4 adapters × (param, m1, m2) + rng
		t.Fatalf("state tensors: %d vs %d", len(gs), len(ws))
	}
	for name, v := range ws {
		a, b := tensorBytes(t, gs[name]), tensorBytes(t, v)
		if a != b {
			t.Errorf("%s differs after resume", name)
		}
	}
	if len(got.Metrics) != len(want.Metrics) {
		t.Fatalf("metrics: %d vs %d records", len(got.Metrics), len(want.Metrics))
	}
	for i := range want.Metrics {
		g, w := got.Metrics[i], want.Metrics[i]
		if g.Loss != w.Loss || g.GradNorm != w.GradNorm || g.LR != w.LR || (w.ValLoss != nil) != (g.ValLoss != nil) ||
			(w.ValLoss != nil && *w.ValLoss != *g.ValLoss) {
			t.Errorf("step %d: resumed %+v, straight %+v", w.Step, g, w)
		}
	}
	// Keep-last-K: only the 2 newest complete checkpoints remain, plus the
	// one resumed from (never deleted by the process that resumed from it).
	refs, err := listCheckpoints(context.Background(), resumed.Store, resumed.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, fmt.Sprintf("%d:%v", r.step, r.complete))
	}
	wantNames := fmt.Sprintf("[4:true %d:true %d:true]", got.Steps-got.Steps%2-2, got.Steps)
	if fmt.Sprint(names) != wantNames {
		t.Errorf("checkpoints left: %v, want %s", names, wantNames)
	}
	t.Logf("killed after step 5, resumed from step 4, %d steps: all %d state tensors bitwise equal", got.Steps, len(ws))
}

func tensorBytes(t testing.TB, v *mlctx.Variable) string {
	t.Helper()
	var out string
	if err := v.MustValue().ConstBytes(func(b []byte) { out = string(b) }); err != nil {
		t.Fatal(err)
	}
	return out
}
