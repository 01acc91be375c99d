package sft

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
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
	return &Run{Trainer: tr, Train: randomDataset(3, 40, cfg.MaxLen), Valid: randomDataset(4, 6, cfg.MaxLen),
		Store: openStore(t, dir), Prefix: "run/sft/", Log: log}
}

func openStore(t testing.TB, dir string) storage.Store {
	t.Helper()
	store, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
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

// studentRun builds a run of the tiny Qwen2 student (the model core on
// SimpleGo, as the project trains on CPU) on MATH conversations over a local
// store at dir: full fine-tuning, or the paper's LoRA (dropout 0.05).
func studentRun(t testing.TB, dir string, log io.Writer, lora bool) *Run {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation, cfg.Epochs = 128, 2, 1, 1
	cfg.LR, cfg.CheckpointEvery, cfg.KeepCheckpoints = 3e-3, 2, 2
	if !lora {
		cfg.LoRA = LoRAConfig{}
	}
	tr, _, _ := studentTrainer(t, cfg)
	return &Run{Trainer: tr, Train: mathDataset(t, 16, cfg), Store: openStore(t, dir), Prefix: "run/sft/", Log: log}
}

// TestResumeAfterKillIsExact trains in a child process that is SIGKILLed
// after step 5 (newest complete checkpoint: step 4), resumes here to the end
// and compares with an uninterrupted run: weights (or adapters), AdamW
// moments, RNG state and the per-step losses must be bitwise equal. For the
// tiny model with LoRA dropout, and for the Qwen2 student fully fine-tuned
// and with the paper's LoRA (dropout 0.05: the RNG state matters). On XLA
// the test adds the backend's deterministic option, without which a GPU's
// atomic scatter-adds make two runs differ (by 4e-5 to 2e-4 after eight
// steps of full fine-tuning on an H200), resumed or not.
func TestResumeAfterKillIsExact(t *testing.T) {
	if spec := backend.Resolve(""); !backend.Deterministic(spec) {
		t.Setenv(backend.EnvVar, spec+",deterministic")
	}
	runs := map[string]func(testing.TB, string, io.Writer) *Run{"tiny-lora": tinyRun,
		"student-full": func(t testing.TB, dir string, log io.Writer) *Run { return studentRun(t, dir, log, false) },
		"student-lora": func(t testing.TB, dir string, log io.Writer) *Run { return studentRun(t, dir, log, true) }}
	if v := os.Getenv(childEnv); v != "" {
		kind, dir, _ := strings.Cut(v, ":")
		r := runs[kind](t, dir, blockAt{os.Stdout, "step 5/"})
		_, err := r.Run(context.Background())
		t.Fatalf("child was not killed: %v", err)
	}
	kinds := []string{"tiny-lora", "student-full", "student-lora"}
	// Every child is trained and killed before this process opens a backend:
	// on a GPU the process holding the device would leave the children none.
	killed := map[string]string{}
	for _, kind := range kinds {
		killed[kind] = trainAndKill(t, kind)
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { testResume(t, kind, killed[kind], runs[kind]) })
	}
}

// trainAndKill runs kind's training in a child process, SIGKILLs it once it
// logs step 5 and returns the directory of its store.
func trainAndKill(t *testing.T, kind string) string {
	killedDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeAfterKillIsExact$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+kind+":"+killedDir)
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
		t.Fatalf("%s child: want killed, got %v; output:\n%s", kind, err, strings.Join(seen, "\n"))
	}
	return killedDir
}

func testResume(t *testing.T, kind, killedDir string, newRun func(testing.TB, string, io.Writer) *Run) {
	var log strings.Builder
	resumed := newRun(t, killedDir, &log)
	got, err := resumed.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.ResumedFrom, "step-000000004/") {
		t.Fatalf("resumed from %q, want step 4; log:\n%s", got.ResumedFrom, log.String())
	}
	straight := newRun(t, t.TempDir(), nil)
	want, err := straight.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || !want.Done || got.Steps != want.Steps {
		t.Fatalf("steps: resumed %d done=%v, straight %d done=%v", got.Steps, got.Done, want.Steps, want.Done)
	}
	gs, ws := resumed.Trainer.stateTensors(), straight.Trainer.stateTensors()
	if len(gs) != len(ws) || len(gs) < 12 { // ≥ 4 tensors × (param, m1, m2)
		t.Fatalf("state tensors: %d vs %d", len(gs), len(ws))
	}
	worst := 0.0
	for name, v := range ws {
		if a, b := tensorBytes(t, gs[name]), tensorBytes(t, v); a == b {
			continue
		}
		ga, wa, d := tensorFloats(t, gs[name]), tensorFloats(t, v), 0.0
		for i := range wa {
			d = max(d, math.Abs(float64(ga[i]-wa[i])))
		}
		t.Errorf("%s differs after resume, by up to %.3g", name, d)
		worst = max(worst, d)
	}
	if a, b := tensorBytes(t, resumed.Trainer.rngVar()), tensorBytes(t, straight.Trainer.rngVar()); a != b {
		t.Errorf("RNG state differs after resume")
	}
	ws["rng"] = straight.Trainer.rngVar()
	// Dropout draws advance the RNG (so it is what the exactness covers);
	// without dropout it stays at the seed.
	fresh := newRun(t, t.TempDir(), nil).Trainer
	if err := fresh.prepare(straight.Train.EpochBatches(fresh.cfg, 0)[0]); err != nil {
		t.Fatal(err)
	}
	moved := tensorBytes(t, fresh.rngVar()) != tensorBytes(t, ws["rng"])
	if dropout := fresh.cfg.LoRA.Enabled() && fresh.cfg.LoRA.Dropout > 0; moved != dropout {
		t.Errorf("RNG advanced: %v, LoRA dropout on: %v", moved, dropout)
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
	// The metrics file holds every step once, across the kill, with the
	// validation loss every EvalEvery steps and at the end.
	ms, err := resumed.readMetrics(context.Background(), got.Steps)
	if err != nil || len(ms) != got.Steps {
		t.Fatalf("metrics file: %d records for %d steps (%v)", len(ms), got.Steps, err)
	}
	for i, m := range ms {
		eval := resumed.Valid != nil && (m.Step%resumed.Trainer.cfg.EvalEvery == 0 || m.Step == got.Steps)
		if m.Step != i+1 || (m.ValLoss != nil) != eval || m.LR <= 0 && i > 0 || m.Tokens == 0 {
			t.Errorf("metrics record %d: %+v", i, m)
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
	t.Logf("%s on %s: killed after step 5, resumed from step 4, %d steps: %d state tensors, max |Δ| %.3g",
		kind, backend.Resolve(""), got.Steps, len(ws), worst)
}

func tensorBytes(t testing.TB, v *mlctx.Variable) string {
	t.Helper()
	var out string
	if err := v.MustValue().ConstBytes(func(b []byte) { out = string(b) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestResumeRefusesAnotherRecipe: a checkpoint written under other settings,
// or a damaged one, is an error; the same settings continue from it.
func TestResumeRefusesAnotherRecipe(t *testing.T) {
	dir := t.TempDir()
	r := tinyRun(t, dir, nil)
	r.StopAfter = 2
	if res, err := r.Run(context.Background()); err != nil || res.Steps != 2 || res.Done {
		t.Fatalf("first part: %+v, %v", res, err)
	}
	// A damaged state file is refused, not trained on.
	state := filepath.Join(dir, "run/sft/checkpoints/step-000000002/state.safetensors")
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(state, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tinyRun(t, dir, nil).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("damaged checkpoint: got %v", err)
	}
	if err := os.WriteFile(state, good, 0o644); err != nil {
		t.Fatal(err)
	}
	other := tinyRun(t, dir, nil)
	other.Trainer.cfg.LR *= 2
	if _, err := other.Run(context.Background()); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("resuming with another learning rate: got %v, want ErrIncompatible", err)
	}
	again := tinyRun(t, dir, nil)
	res, err := again.Run(context.Background())
	if err != nil || !strings.HasSuffix(res.ResumedFrom, "step-000000002/") || !res.Done {
		t.Fatalf("same recipe: %+v, %v", res, err)
	}
}
