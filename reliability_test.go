package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// TestMain lets the tests start this binary as the statjob command (a
// separate process they can kill): with STATJOB_TEST_MAIN=1 it runs main.
func TestMain(m *testing.M) {
	if os.Getenv("STATJOB_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// reliabilitySets make the demo small enough to run twice in a test: one
// arm, one epoch, 64 test questions.
var reliabilitySets = []string{
	"--set", "pipeline.strategies=[stat-sel]", "--set", "sft.epochs=1", "--set", "sft.checkpoint_every=4",
	"--set", "dataset.size=96", "--set", "probe.samples=2", "--set", "evaluate.limit=64", "--set", "job.grace=1s",
}

// TestDemoSurvivesKills stops the demo again and again — SIGTERM (it gives
// up its work and exits 75) and SIGKILL (no warning; its leases are left
// behind) at seeded random moments — and starts it again each time, as a
// preempted batch job is. The run it finishes holds the same bytes as an
// uninterrupted demo's: the same responses, training set and student
// weights, the same evaluations (but for the student's folder they name).
// Only the SFT metrics file (it records tokens/s) and the report (it
// records times) may differ.
func TestDemoSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the small demo twice")
	}
	// The stopped demo keeps its runs on the GCS emulator, as a batch job
	// keeps them in a bucket; the uninterrupted one in a local folder.
	killed, gcs := t.TempDir(), storagetest.FakeGCS(t)
	onGCS := []string{"--root", gcs.Root, "--set", "storage.gcs.endpoint=" + gcs.GCS.Endpoint}
	rng := rand.New(rand.NewPCG(7, 11))
	stops := 0
	for attempt := 0; ; attempt++ {
		if attempt > 12 {
			t.Fatal("the demo did not finish in 12 starts")
		}
		args := append([]string{"demo", "--dir", killed, "--log", "json"}, onGCS...)
		cmd := exec.Command(os.Args[0], append(args, reliabilitySets...)...)
		cmd.Env = append(os.Environ(), "STATJOB_TEST_MAIN=1")
		logFile, err := os.Create(filepath.Join(killed, "log.txt"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err2 error
		if stops < 5 {
			sig := syscall.SIGKILL
			if stops%2 == 0 {
				sig = syscall.SIGTERM
			}
			select {
			case err2 = <-done:
			case <-time.After(time.Duration(3000+rng.IntN(12000)) * time.Millisecond):
				_ = cmd.Process.Signal(sig)
				err2 = <-done
				stops++
				t.Logf("start %d: stopped by %v: %v", attempt, sig, err2)
				var exit *exec.ExitError
				if sig == syscall.SIGTERM && errors.As(err2, &exit) && exit.ExitCode() != job.ExitInterrupted && exit.ExitCode() != 0 {
					logFile.Close()
					log, _ := os.ReadFile(filepath.Join(killed, "log.txt"))
					t.Fatalf("after SIGTERM the demo exited %d, want %d (try again):\n%s", exit.ExitCode(), job.ExitInterrupted, tail(log))
				}
				logFile.Close()
				continue
			}
		} else {
			err2 = <-done
		}
		logFile.Close()
		if err2 != nil {
			log, _ := os.ReadFile(filepath.Join(killed, "log.txt"))
			t.Fatalf("start %d: %v\n%s", attempt, err2, tail(log))
		}
		t.Logf("start %d finished the run", attempt)
		break
	}
	if stops == 0 {
		t.Fatal("the demo was never stopped: nothing was tested")
	}

	whole := t.TempDir()
	if out, err := statjobLogged(t, append([]string{"demo", "--dir", whole, "--log", "json"}, reliabilitySets...)...); err != nil {
		t.Fatalf("uninterrupted demo: %v\n%s", err, tail([]byte(out)))
	}
	got, want := runOutputs(t, gcs), runOutputs(t, storage.Config{Root: filepath.Join(whole, "store")})
	if len(want) == 0 {
		t.Fatal("the uninterrupted demo recorded no outputs")
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasSuffix(k, "/metrics.jsonl") || strings.HasPrefix(k, "report/") {
			continue
		}
		if got[k] != want[k] {
			t.Errorf("%s: sha256 %.12s after the stops, %.12s uninterrupted", k, got[k], want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d outputs after the stops, %d uninterrupted", len(got), len(want))
	}
}

// runOutputs maps "<stage>/<output>" to its sha256 for the one finished run
// in the store of cfg (the newest, whose stages must all be done).
func runOutputs(t *testing.T, cfg storage.Config) map[string]string {
	t.Helper()
	ctx := context.Background()
	st := storagetest.Open(t, cfg)
	runs, _, err := job.ListRuns(ctx, st)
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs under %s: %v", cfg.Root, err)
	}
	out := map[string]string{}
	for _, name := range runs[0].Stages {
		m, err := job.ReadManifest(ctx, st, runs[0].ID, name)
		if err != nil {
			t.Fatalf("run %s: %v", runs[0].ID, err)
		}
		for _, o := range m.Outputs {
			out[name+"/"+o.Path] = o.SHA256
			if o.Path == stages.EvaluationFile {
				// It names the student's folder, which is under dir.
				var e map[string]any
				raw := storagetest.ReadAll(t, st, job.OutputKey(runs[0].ID, name, o.Path))
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				delete(e, "model")
				b, _ := json.Marshal(e)
				out[name+"/"+o.Path] = fmt.Sprintf("%x", sha256.Sum256(b))
			}
		}
	}
	return out
}

// tail is the end of a log, enough to see why a process failed.
func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
