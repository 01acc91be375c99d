package job

// Tests with real processes: the test binary re-executes itself as a
// runner (JOBTEST_CHILD=1), so leases, SIGKILL and SIGTERM meet separate
// processes sharing one storage root.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

func TestMain(m *testing.M) {
	if os.Getenv("JOBTEST_CHILD") == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain is a runner process: the test graph over the store that
// JOBTEST_STORAGE configures, exit status as statjob's.
func childMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h := &hooks{dir: os.Getenv("JOBTEST_DIR"), holder: os.Getenv("JOBTEST_HOLDER"), block: os.Getenv("JOBTEST_BLOCK")}
	var cfg storage.Config
	if err := yaml.Unmarshal([]byte(os.Getenv("JOBTEST_STORAGE")), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := cfg.Open(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	spec, g, err := testSpec(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, s := range append(append([]string(nil), fastJob...), strings.Fields(os.Getenv("JOBTEST_SETS"))...) {
		if err := spec.Set(s); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	o := Options{RunID: os.Getenv("JOBTEST_RUN"), Holder: h.holder, Reporter: NewReporter(os.Stderr, false)}
	if s := os.Getenv("JOBTEST_SHARD"); s != "" {
		i, n, _ := strings.Cut(s, "/")
		o.Shard, _ = strconv.Atoi(i)
		o.Shards, _ = strconv.Atoi(n)
	}
	_, err = Run(ctx, st, spec, g, o)
	switch {
	case errors.Is(err, ErrInterrupted):
		fmt.Fprintln(os.Stderr, err)
		return ExitInterrupted
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type proc struct {
	cmd    *exec.Cmd
	stderr string // file
	done   chan error
}

// spawn starts a runner process; env holds JOBTEST_* settings.
func spawn(t *testing.T, cfg storage.Config, dir, holder string, env ...string) *proc {
	t.Helper()
	sc, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "JOBTEST_CHILD=1", "JOBTEST_STORAGE="+string(sc), "JOBTEST_DIR="+dir, "JOBTEST_HOLDER="+holder)
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, stderr: filepath.Join(dir, holder+".stderr"), done: make(chan error, 1)}
	f, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// wait returns the process's exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("runner %v did not exit; its log:\n%s", p.cmd.Env[len(p.cmd.Env)-1], p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// eventually polls cond (files written by other processes) until it holds.
// It fails at once if one of the watched processes exits.
func eventually(t *testing.T, what string, cond func() bool, watch ...*proc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		for _, p := range watch {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("waiting for %s, runner exited (%v):\n%s", what, err, p.log())
			default:
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// procBackend is a store that runner processes reach by its Config.
type procBackend struct {
	name string
	cfg  storage.Config
}

// procBackends returns fresh stores for process tests: a local folder, and
// the GCS and S3 emulators (in this test process, on loopback ports).
func procBackends(t *testing.T) []procBackend {
	bs := []procBackend{
		{"local", storage.Config{Root: t.TempDir()}},
		{"gcs-fake", storagetest.FakeGCS(t)},
		{"s3-gofakes3", storagetest.GoFakeS3(t)},
	}
	if c, ok := storagetest.Versitygw(t); ok {
		bs = append(bs, procBackend{"s3-versitygw", c})
	}
	return bs
}

// forProcBackends runs test once per backend.
func forProcBackends(t *testing.T, test func(t *testing.T, cfg storage.Config, st storage.Store)) {
	for _, b := range procBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			st := storagetest.Open(t, b.cfg)
			if !st.Conditional() {
				t.Logf("%s cannot do conditional writes: runs on it are refused (forBackends checks that)", b.name)
				return
			}
			test(t, b.cfg, st)
		})
	}
}

func TestLeaseExclusionBetweenProcesses(t *testing.T) {
	forProcBackends(t, testLeaseExclusion)
}

func testLeaseExclusion(t *testing.T, cfg storage.Config, st storage.Store) {
	dir := t.TempDir()
	p1 := spawn(t, cfg, dir, "p1", "JOBTEST_RUN=shared", "JOBTEST_BLOCK=gen")
	eventually(t, "p1 to start gen", func() bool { return exists(startedFile(dir, "gen")) }, p1)
	p2 := spawn(t, cfg, dir, "p2", "JOBTEST_RUN=shared", "JOBTEST_BLOCK=gen")
	// p2 finds gen leased, says by whom, and waits.
	eventually(t, "p2 to wait for p1's lease", func() bool { return strings.Contains(p2.log(), "gen held by p1") }, p2)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*proc{p1, p2} {
		if code := p.wait(t); code != 0 {
			t.Fatalf("%s exited %d:\n%s", p.stderr, code, p.log())
		}
	}
	checkList(t, "runs.log", runLog(t, dir), "gen 0/1", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "sum 0/1")
	if got := readSum(t, st, "shared"); got != "12450" {
		t.Errorf("sum = %s, want 12450", got)
	}
}

func TestShardWorkersAsProcesses(t *testing.T) {
	forProcBackends(t, testShardWorkers)
}

func testShardWorkers(t *testing.T, cfg storage.Config, st storage.Store) {
	dir := t.TempDir()
	w0 := spawn(t, cfg, dir, "w0", "JOBTEST_RUN=arr", "JOBTEST_SHARD=0/2")
	// Alone, w0 does its shard, then waits for shard 1, which nobody has
	// started (it belongs to a task that may still be starting up).
	eventually(t, "w0 to wait for shard 1", func() bool {
		return strings.Contains(w0.log(), "gen: shards 1 of 2 not finished")
	}, w0)
	rows, err := Status(context.Background(), st, "arr", time.Now())
	if err != nil || len(rows) == 0 || rows[0].Stage != "gen" || rows[0].State != "pending" || rows[0].Shards != "1/2 shards" {
		t.Fatalf("status while shard 1 is missing: %+v %v", rows, err)
	}
	w1 := spawn(t, cfg, dir, "w1", "JOBTEST_RUN=arr", "JOBTEST_SHARD=1/2")
	for _, p := range []*proc{w0, w1} {
		if code := p.wait(t); code != 0 {
			t.Fatalf("%s exited %d:\n%s", p.stderr, code, p.log())
		}
	}
	checkList(t, "runs.log", runLog(t, dir), "gen 0/2", "gen 1/2", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "sum 0/1")
	b, _ := os.ReadFile(filepath.Join(dir, "runs.log"))
	for _, want := range []string{"gen 0/2 w0\n", "gen 1/2 w1\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("runs.log lacks %q (each worker runs its own shard):\n%s", want, b)
		}
	}
	if got := readSum(t, st, "arr"); got != "12450" {
		t.Errorf("sum = %s, want 12450", got)
	}
}

// TestKillThenResume kills a runner in the middle of a stage (an output
// written, no manifest) and resumes: the result is the uninterrupted one.
func TestKillThenResume(t *testing.T) {
	refStore := storagetest.Local(t)
	mustStart(t, refStore, nil, Options{RunID: "ref"})
	want := outputs(t, refStore, "ref")
	forProcBackends(t, func(t *testing.T, cfg storage.Config, st storage.Store) {
		testKillThenResume(t, cfg, st, want)
	})
}

func testKillThenResume(t *testing.T, cfg storage.Config, st storage.Store, want map[string]string) {
	dir := t.TempDir()
	p := spawn(t, cfg, dir, "victim", "JOBTEST_RUN=k", "JOBTEST_BLOCK=scale/a")
	eventually(t, "the runner to be inside scale/a", func() bool { return exists(startedFile(dir, "scale/a")) }, p)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	if _, err := st.Stat(context.Background(), stageKey("k", "scale/a", "partial.txt")); err != nil {
		t.Fatalf("the killed stage left no partial output: %v", err)
	}
	if _, err := ReadManifest(context.Background(), st, "k", "scale/a"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("the killed stage has a manifest: %v", err)
	}

	// The dead runner's lease still stands: a resume now waits for it,
	// naming the holder. With the clock past its expiry, it takes over.
	spec, g, err := testSpec(&hooks{dir: dir, holder: "waiter"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ReadRun(context.Background(), st, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Load("run.json", rec.Spec); err != nil { // as `statjob resume` does
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchWriter{want: "scale/a held by victim", seen: cancel}
	_, err = Run(ctx, st, spec, g, Options{RunID: "k", Resume: true, Reporter: NewReporter(w, false)})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("resume while the dead runner's lease stands: %v", err)
	}
	h := &hooks{dir: dir, holder: "resumer"}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	sum := mustStart(t, st, h, Options{RunID: "k", Resume: true, Now: later})
	// The first resume did the work nobody held (scale/b) before waiting.
	checkList(t, "resume.Done", sum.Done, "gen", "scale/b")
	checkList(t, "resume.Ran", sum.Ran, "scale/a", "sum")
	checkList(t, "runs.log", runLog(t, dir), "gen 0/1", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "scale/a 0/1", "sum 0/1")
	if got := outputs(t, st, "k"); !mapsEqual(got, want) {
		t.Errorf("outputs after kill + resume differ from an uninterrupted run:\n got %v\nwant %v", got, want)
	}
}

// TestSignals: SIGTERM (or SIGINT) stops new work, lets the stage in flight
// finish within the grace period (or abandons it when the grace is 0),
// releases the lease and exits 75; the next start resumes.
func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		grace    string
		sig      syscall.Signal
		finished bool // scale/a finishes within the grace
	}{{"job.grace=0s", syscall.SIGINT, false}, {"job.grace=5m", syscall.SIGTERM, true}} {
		t.Run(tc.grace, func(t *testing.T) {
			cfg := storage.Config{Root: t.TempDir()}
			dir := t.TempDir()
			p := spawn(t, cfg, dir, "p", "JOBTEST_RUN=s", "JOBTEST_BLOCK=scale/a", "JOBTEST_SETS="+tc.grace)
			eventually(t, "the runner to be inside scale/a", func() bool { return exists(startedFile(dir, "scale/a")) }, p)
			if err := p.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if tc.finished {
				eventually(t, "the runner to see the signal", func() bool { return strings.Contains(p.log(), "stop requested: scale/a may finish") }, p)
				if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if code := p.wait(t); code != ExitInterrupted {
				t.Fatalf("exit status %d, want %d:\n%s", code, ExitInterrupted, p.log())
			}
			st := storagetest.Open(t, cfg)
			_, err := ReadManifest(context.Background(), st, "s", "scale/a")
			if tc.finished != (err == nil) {
				t.Fatalf("scale/a manifest after %v: %v (want finished=%v)", tc.sig, err, tc.finished)
			}
			if _, err := ReadManifest(context.Background(), st, "s", "scale/b"); err == nil {
				t.Fatalf("a stage started after %v", tc.sig)
			}
			leases, err := ReadLeases(context.Background(), st, "s")
			if err != nil || !leases["scale/a"].Released {
				t.Fatalf("scale/a lease after SIGTERM: %+v, %v", leases["scale/a"], err)
			}
			// No clock games: the released lease is free at once.
			sum := mustStart(t, st, &hooks{dir: dir, holder: "again"}, Options{RunID: "s", Resume: true})
			if got := readSum(t, st, "s"); got != "12450" || len(sum.Done) < 1 {
				t.Fatalf("resumed after SIGTERM: sum %s, %+v", got, sum)
			}
		})
	}
}

// watchWriter calls seen once a line holding want is written.
type watchWriter struct {
	want string
	seen func()
}

func (w *watchWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.seen()
	}
	return len(p), nil
}
