package job

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// fastJob makes leases and polling quick enough for tests that use real
// time between processes.
var fastJob = []string{"gen.count=20", "job.poll=20ms", "job.heartbeat=100ms", "job.lease_ttl=2s", "job.grace=0s"}

// start runs the test graph once, as a fresh process would: a new spec,
// the sets applied, then Run.
func start(t *testing.T, store storage.Store, h *hooks, opts Options, sets ...string) (*Summary, error) {
	t.Helper()
	spec, g, err := testSpec(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(slices.Clone(fastJob), sets...) {
		if err := spec.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Reporter == nil {
		opts.Reporter = NewReporter(io.Discard, false)
	}
	if opts.Holder == "" && h != nil {
		opts.Holder = h.holder
	}
	return Run(context.Background(), store, spec, g, opts)
}

func mustStart(t *testing.T, store storage.Store, h *hooks, opts Options, sets ...string) *Summary {
	t.Helper()
	sum, err := start(t, store, h, opts, sets...)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sum
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func checkList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("%s = %v, want %v", what, sorted(got), sorted(want))
	}
}

// outputs returns every stage's outputs (path → sha256) in a run.
func outputs(t *testing.T, store storage.Store, runID string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, st := range []string{"gen", "scale/a", "scale/b", "sum"} {
		m, err := ReadManifest(context.Background(), store, runID, st)
		if err != nil {
			t.Fatalf("manifest of %s: %v", st, err)
		}
		for _, o := range m.Outputs {
			out[st+"/"+o.Path] = o.SHA256
			// The manifest's sha256 is the stored object's.
			b := storagetest.ReadAll(t, store, stageKey(runID, st, o.Path))
			if int64(len(b)) != o.Bytes || sha(b) != o.SHA256 {
				t.Errorf("%s/%s: manifest says %d bytes %s, storage holds %d bytes %s", st, o.Path, o.Bytes, o.SHA256, len(b), sha(b))
			}
		}
	}
	return out
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func readSum(t *testing.T, store storage.Store, runID string) string {
	t.Helper()
	return strings.TrimSpace(string(storagetest.ReadAll(t, store, stageKey(runID, "sum", "sum.txt"))))
}

// runLog returns the lines stages appended to runs.log.
func runLog(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var what []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		what = append(what, f[0]+" "+f[1])
	}
	return what
}

func TestRunResumeAndReuse(t *testing.T) {
	forBackends(t, func(t *testing.T, st storage.Store) {
		h := &hooks{dir: t.TempDir(), holder: "r1"}

		// A run that fails in scale/b, then is resumed: the stages
		// done before are skipped, the rest run.
		h.fail = "scale/b"
		s1, err := start(t, st, h, Options{RunID: "first"})
		if err == nil || !strings.Contains(err.Error(), "stage scale/b: failing as the test asked") {
			t.Fatalf("first run: %v", err)
		}
		checkList(t, "first.Ran", s1.Ran, "gen", "scale/a")
		h.fail = ""
		// As if the runner had stopped between gen's manifest and its copy
		// into the stage cache: resume puts it there.
		genM, err := ReadManifest(context.Background(), st, "first", "gen")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(context.Background(), cacheKey(genM.Fingerprint, manifestName)); err != nil {
			t.Fatal(err)
		}
		sum := mustStart(t, st, h, Options{RunID: "first", Resume: true})
		if _, err := st.Stat(context.Background(), cacheKey(genM.Fingerprint, manifestName)); err != nil {
			t.Errorf("resume did not restore gen's stage cache entry: %v", err)
		}
		checkList(t, "resume.Done", sum.Done, "gen", "scale/a")
		checkList(t, "resume.Ran", sum.Ran, "scale/b", "sum")
		checkList(t, "runs.log", runLog(t, h.dir), "gen 0/1", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "scale/b 0/1", "sum 0/1")
		// 20 numbers k*k+1, times 2 plus times 3: 5 * (2470 + 20) = 12450.
		if got := readSum(t, st, "first"); got != "12450" {
			t.Fatalf("sum = %s, want 12450", got)
		}
		want := outputs(t, st, "first")

		// Same spec, new run: every stage comes from the stage cache.
		s2 := mustStart(t, st, h, Options{RunID: "second"})
		checkList(t, "second.Reused", s2.Reused, "gen", "scale/a", "scale/b", "sum")
		checkList(t, "second.Ran", s2.Ran)
		if got := outputs(t, st, "second"); !mapsEqual(got, want) {
			t.Errorf("reused outputs differ:\n got %v\nwant %v", got, want)
		}
		m, err := ReadManifest(context.Background(), st, "second", "sum")
		if err != nil || m.ReusedFrom != "first" || m.RunID != "second" {
			t.Errorf("sum manifest of second run: %+v, %v; want reused_from first", m, err)
		}

		// A changed section recomputes exactly the stages that read it
		// and their downstream.
		s3 := mustStart(t, st, h, Options{RunID: "third"}, "scale.b=4")
		checkList(t, "third.Ran", s3.Ran, "scale/b", "sum")
		checkList(t, "third.Reused", s3.Reused, "gen", "scale/a")
		if got := readSum(t, st, "third"); got != "14940" {
			t.Fatalf("sum with b=4 = %s, want 14940", got)
		}

		// --from forces a stage and its downstream even when cached.
		s4 := mustStart(t, st, h, Options{RunID: "fourth", From: "scale/a"})
		checkList(t, "fourth.Ran", s4.Ran, "scale/a", "sum")
		checkList(t, "fourth.Reused", s4.Reused, "gen", "scale/b")

		// A pruned cache entry recomputes rather than half-reuses.
		if err := st.Delete(context.Background(), cacheKey(m.Fingerprint, "sum.txt")); err != nil {
			t.Fatal(err)
		}
		// Going back to the first spec reuses the first run's outputs.
		s5 := mustStart(t, st, h, Options{RunID: "fifth"})
		checkList(t, "fifth.Ran", s5.Ran, "sum")
		checkList(t, "fifth.Reused", s5.Reused, "gen", "scale/a", "scale/b")
		if got := readSum(t, st, "fifth"); got != "12450" {
			t.Errorf("sum = %s, want 12450", got)
		}

		// Joining a run with another spec is refused, naming resume.
		if _, err := start(t, st, h, Options{RunID: "first"}, "gen.seed=7"); err == nil || !strings.Contains(err.Error(), "statjob resume first") {
			t.Errorf("joining run first with another spec: %v", err)
		}

		// status and runs see it all.
		rows, err := Status(context.Background(), st, "third", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]string{}
		for _, r := range rows {
			states[r.Stage] = r.State
		}
		wantStates := map[string]string{"gen": "reused", "scale/a": "reused", "scale/b": "done", "sum": "done"}
		if !mapsEqual(states, wantStates) {
			t.Errorf("status = %v, want %v", states, wantStates)
		}
		runs, skipped, err := ListRuns(context.Background(), st)
		if err != nil || len(runs) != 5 || len(skipped) != 0 {
			t.Fatalf("ListRuns: %d runs, skipped %v, %v", len(runs), skipped, err)
		}
		// A damaged run.json is reported by name and hides no other run.
		if _, err := st.Put(context.Background(), "runs/broken/run.json", strings.NewReader("{not json"), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		runs, skipped, err = ListRuns(context.Background(), st)
		if err != nil || len(runs) != 5 || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), "runs/broken/run.json") {
			t.Fatalf("ListRuns with a damaged run: %d runs, skipped %v, %v", len(runs), skipped, err)
		}
	})
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestShardsAndMerge(t *testing.T) {
	ref := storagetest.Local(t)
	mustStart(t, ref, nil, Options{RunID: "whole"})
	want := outputs(t, ref, "whole")
	forBackends(t, func(t *testing.T, st storage.Store) {
		// Three workers of one run side by side, one shard each: every
		// shard runs once, the merge once, every other stage once.
		dir := t.TempDir()
		var wg sync.WaitGroup
		errs := make([]error, 3)
		sums := make([]*Summary, 3)
		for i := range 3 {
			wg.Go(func() {
				h := &hooks{dir: dir, holder: fmt.Sprintf("w%d", i)}
				sums[i], errs[i] = start(t, st, h, Options{RunID: "sharded", Shard: i, Shards: 3})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("worker %d: %v", i, err)
			}
		}
		checkList(t, "runs.log", runLog(t, dir), "gen 0/3", "gen 1/3", "gen 2/3", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "sum 0/1")
		var shardsRun, ran []string
		for i, s := range sums {
			shardsRun = append(shardsRun, s.Shards...)
			ran = append(ran, s.Ran...)
			if len(s.Shards) != 1 || s.Shards[0] != fmt.Sprintf("gen %d/3", i) {
				t.Errorf("worker %d ran shards %v, want its own", i, s.Shards)
			}
		}
		checkList(t, "stages ran", ran, "gen", "scale/a", "scale/b", "sum")
		// Merged shards give what one unsharded run gives.
		if got := outputs(t, st, "sharded"); !mapsEqual(got, want) {
			t.Errorf("sharded outputs differ from unsharded:\n got %v\nwant %v", got, want)
		}
		// The merged stage's times span its shards (statjob status shows them).
		merged, err := ReadManifest(context.Background(), st, "sharded", "gen")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			var sm Manifest
			if err := readJSON(context.Background(), st, shardDir("sharded", "gen", i, 3)+manifestName, &sm); err != nil {
				t.Fatal(err)
			}
			if sm.Started.Before(merged.Started) || sm.Finished.After(merged.Finished) {
				t.Errorf("shard %d ran %s–%s, outside the stage's %s–%s", i, sm.Started, sm.Finished, merged.Started, merged.Finished)
			}
		}
	})
}

// TestReleasedShardIsTakenOver: a task whose shard failed (or was stopped
// by a signal) releases its lease without a manifest; another task of the
// run takes that shard over rather than waiting for it forever.
func TestReleasedShardIsTakenOver(t *testing.T) {
	st := storagetest.Local(t)
	dir := t.TempDir()
	failing := &hooks{dir: dir, holder: "w1", fail: "gen"}
	if _, err := start(t, st, failing, Options{RunID: "arr", Shard: 1, Shards: 2}); err == nil || !strings.Contains(err.Error(), "gen 1/2") {
		t.Fatalf("worker 1: %v, want its shard's failure", err)
	}
	if ls, err := ReadLeases(context.Background(), st, "arr"); err != nil || !ls["gen.1-of-2"].Released {
		t.Fatalf("shard 1's lease after the failure: %+v, %v", ls["gen.1-of-2"], err)
	}
	spec, g, err := testSpec(&hooks{dir: dir, holder: "w0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range fastJob {
		if err := spec.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := Run(ctx, st, spec, g, Options{RunID: "arr", Shard: 0, Shards: 2, Holder: "w0", Reporter: NewReporter(io.Discard, false)})
	if err != nil {
		t.Fatalf("worker 0 (waiting for a released shard?): %v", err)
	}
	checkList(t, "worker 0 shards", sum.Shards, "gen 0/2", "gen 1/2")
	if got := readSum(t, st, "arr"); got != "12450" {
		t.Errorf("sum = %s, want 12450", got)
	}
}

// TestOtherShardCountFinishesTheStartedSplit: a run whose sharded stage was
// started 3 ways and is resumed by a task with another shard count finishes
// the 3-way split (its finished piece kept, the missing ones computed, even
// those nobody started) rather than computing a second split beside it.
func TestOtherShardCountFinishesTheStartedSplit(t *testing.T) {
	st := storagetest.Local(t)
	dir := t.TempDir()
	run := func(ctx context.Context, holder string, shard, shards int) (*Summary, error) {
		spec, g, err := testSpec(&hooks{dir: dir, holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range fastJob {
			if err := spec.Set(s); err != nil {
				t.Fatal(err)
			}
		}
		return Run(ctx, st, spec, g, Options{RunID: "split", Shard: shard, Shards: shards, Holder: holder, Reporter: NewReporter(io.Discard, false)})
	}
	// Task 0 of 3 finishes its piece, then waits for pieces 1 and 2, whose
	// tasks never come; it is stopped.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := st.Stat(ctx, "runs/split/gen/_shards/0-of-3/MANIFEST.json"); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if _, err := run(ctx, "w0", 0, 3); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("task 0 of 3: %v, want it interrupted while waiting", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	sum, err := run(ctx2, "solo", 0, 1)
	if err != nil {
		t.Fatalf("resume with one shard: %v", err)
	}
	checkList(t, "pieces the resume computed", sum.Shards, "gen 1/3", "gen 2/3")
	if got := readSum(t, st, "split"); got != "12450" {
		t.Errorf("sum = %s, want 12450", got)
	}
	rows, err := Status(context.Background(), st, "split", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Stage != "gen" || rows[0].State != "done" {
		t.Errorf("status of gen: %+v", rows[0])
	}
}

// TestSummary: a terminal gets a line per stage and a closing summary with
// what ran, what was reused, the wall time and where the outputs are.
func TestSummary(t *testing.T) {
	st := storagetest.Local(t)
	for _, c := range []struct{ run, want string }{
		{"one", "4 ran, 0 reused from cache, 0 already done; outputs in " + st.URI("runs/one/")},
		{"two", "0 ran, 4 reused from cache, 0 already done; outputs in " + st.URI("runs/two/")},
	} {
		var buf bytes.Buffer
		mustStart(t, st, nil, Options{RunID: c.run, Reporter: NewReporter(&buf, true)})
		out := buf.String()
		if !regexp.MustCompile(`run ` + c.run + ` done in [0-9.]+m?s: ` + regexp.QuoteMeta(c.want)).MatchString(out) {
			t.Errorf("run %s: no summary line %q:\n%s", c.run, c.want, out)
		}
		state := map[string]string{"one": "ran", "two": "reused"}[c.run]
		for _, stage := range []string{"gen", "scale/a", "scale/b", "sum"} {
			if !regexp.MustCompile(`(?m)(^|\033\[K)` + state + ` +` + regexp.QuoteMeta(stage) + ` `).MatchString(out) {
				t.Errorf("run %s: no %q line for %s:\n%s", c.run, state, stage, out)
			}
		}
	}
}

func TestNoConditionalStore(t *testing.T) {
	_, err := start(t, noCAS{storagetest.Local(t)}, nil, Options{})
	if !errors.Is(err, ErrNoCAS) {
		t.Fatalf("run on a store without conditional writes: %v, want ErrNoCAS", err)
	}
}

// noCAS is a store that says it cannot do conditional writes, as a store
// without them does.
type noCAS struct{ storage.Store }

func (noCAS) Conditional() bool { return false }

func TestNotInstalledIsRefused(t *testing.T) {
	spec := NewSpec()
	g, err := NewGraph(NotInstalled("a"), NotInstalled("b", "a"))
	if err != nil {
		t.Fatal(err)
	}
	st := storagetest.Local(t)
	_, err = Run(context.Background(), st, spec, g, Options{Reporter: NewReporter(io.Discard, false)})
	if !errors.Is(err, errNotInstalled) || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("run of placeholders: %v", err)
	}
	var found bool
	_ = st.List(context.Background(), "", func(storage.Attrs) error { found = true; return nil })
	if found {
		t.Error("a refused run wrote to storage")
	}
}

func TestGraphErrors(t *testing.T) {
	for _, tc := range []struct {
		stages []Stage
		want   string
	}{
		{[]Stage{NotInstalled("a", "b"), NotInstalled("b", "a")}, "cycle: a → b → a"},
		{[]Stage{NotInstalled("a", "zzz")}, `needs "zzz"`},
		{[]Stage{NotInstalled("a"), NotInstalled("a")}, "appears twice"},
		{[]Stage{NotInstalled("Sft")}, "lower-case"},
		{[]Stage{NotInstalled("sft"), NotInstalled("sft/x")}, "in its folder"},
		{[]Stage{NotInstalled("leases")}, "reserved"},
	} {
		_, err := NewGraph(tc.stages...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewGraph(%v): %v, want %q", tc.stages, err, tc.want)
		}
	}
	g, err := NewGraph(NotInstalled("r", "x", "y"), NotInstalled("x", "s"), NotInstalled("y", "s"), NotInstalled("s"))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, st := range g.Stages() {
		order = append(order, st.Name())
	}
	if !slices.Equal(order, []string{"s", "x", "y", "r"}) {
		t.Errorf("order %v", order)
	}
	sel, forced, err := g.Select("x", "r")
	if err != nil || len(sel) != 4 || !forced["x"] || !forced["r"] || forced["y"] || forced["s"] {
		t.Errorf("Select(x, r) = %d stages, forced %v, %v", len(sel), forced, err)
	}
	sel, _, _ = g.Select("", "x")
	if len(sel) != 2 {
		t.Errorf("Select(until x) = %d stages, want s, x", len(sel))
	}
	if _, _, err := g.Select("nope", ""); err == nil || !strings.Contains(err.Error(), "--from nope: no such stage") {
		t.Errorf("Select(nope): %v", err)
	}
}

func TestEnvChecksReads(t *testing.T) {
	st := storagetest.Local(t)
	var env *Env
	probe := &probeStage{f: func(ctx context.Context, e *Env) error {
		env = e
		if _, err := e.ReadFile(ctx, "gen", "numbers.txt"); err == nil || !strings.Contains(err.Error(), "not among its needs") {
			t.Errorf("reading a stage not needed: %v", err)
		}
		if err := e.WriteFile(ctx, "../escape", nil); err == nil {
			t.Error("an output name outside the stage folder was accepted")
		}
		if err := e.WriteFile(ctx, manifestName, nil); err == nil {
			t.Error("an output named MANIFEST.json was accepted")
		}
		if _, err := e.Open(ctx, e.Name(), "ckpt"); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("own checkpoint before any: %v", err)
		}
		return e.WriteFile(ctx, "ckpt", []byte("1"))
	}}
	g, err := NewGraph(probe)
	if err != nil {
		t.Fatal(err)
	}
	spec := NewSpec()
	if _, err := Run(context.Background(), st, spec, g, Options{Reporter: NewReporter(io.Discard, false)}); err != nil {
		t.Fatal(err)
	}
	if env.Spec() != spec {
		t.Error("the stage does not see the run's spec")
	}
	if got := env.recorded(); len(got) != 1 || got[0].Path != "ckpt" || got[0].Bytes != 1 {
		t.Errorf("recorded outputs %+v", got)
	}
}

type probeStage struct {
	f func(context.Context, *Env) error
}

func (p *probeStage) Name() string    { return "probe" }
func (p *probeStage) Needs() []string { return nil }
func (p *probeStage) Fingerprint(*Spec, map[string]string) (string, error) {
	return Hash("probe", time.Now().UnixNano()) // never cached
}
func (p *probeStage) Run(ctx context.Context, env *Env) (Metrics, error) {
	return nil, p.f(ctx, env)
}

func TestReporterJSON(t *testing.T) {
	var buf bytes.Buffer
	r := NewReporter(&buf, false)
	r.stage("ran", "gen", time.Second, "abc", "")
	r.Logger().Warn("careful")
	out := buf.String()
	for _, want := range []string{`"severity":"INFO"`, `"message":"stage ran"`, `"stage":"gen"`, `"severity":"WARNING"`} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"level"`) {
		t.Errorf("JSON log has level rather than severity:\n%s", out)
	}
}

func TestProgress(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var tty, batch bytes.Buffer
	for _, r := range []*Reporter{NewReporter(&tty, true), NewReporter(&batch, false)} {
		r.now = func() time.Time { return clock }
		r.every = 30 * time.Second
		p := r.progress("probe", "questions", 100)
		for range 10 {
			clock = clock.Add(time.Second)
			p.Add(5) // 5 a second
		}
		r.stage("ran", "probe", 10*time.Second, "0123456789abcdef", "")
	}
	// A terminal gets a redrawn bar with count, rate and ETA, cleared
	// before the next line.
	out := tty.String()
	for _, want := range []string{"\r\033[Kprobe", "[############............] 50/100 questions  5.0/s  ETA 10s", "\r\033[Kran      probe"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
	// Batch logs get no bar, and progress only every progress_every.
	if strings.Contains(batch.String(), "[#") || strings.Count(batch.String(), `"message":"progress"`) != 0 {
		t.Errorf("batch output within 30s:\n%s", batch.String())
	}
	p := (&Reporter{w: &batch, log: NewJSONLogger(&batch), every: 30 * time.Second, now: func() time.Time { return clock }}).progress("probe", "questions", 100)
	clock = clock.Add(31 * time.Second)
	p.Add(60)
	if !strings.Contains(batch.String(), `"message":"progress","stage":"probe","done":60,"total":100`) {
		t.Errorf("batch progress line:\n%s", batch.String())
	}
}

// forBackends runs test on a fresh store of every backend storagetest
// offers. A backend without conditional writes must be refused for runs,
// clearly; that is what is checked on it instead.
func forBackends(t *testing.T, test func(t *testing.T, st storage.Store)) {
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			if !b.Store.Conditional() {
				if _, err := start(t, b.Store, nil, Options{}); !errors.Is(err, ErrNoCAS) {
					t.Fatalf("run on %s, which cannot do conditional writes: %v, want ErrNoCAS", b.Name, err)
				}
				t.Logf("%s cannot do conditional writes: checked that runs on it are refused", b.Name)
				return
			}
			test(t, b.Store)
		})
	}
}

// TestBadSpecFailsBeforeAnyStage: a field only the last stage reads is
// checked before the first stage runs.
func TestBadSpecFailsBeforeAnyStage(t *testing.T) {
	st := storagetest.Local(t)
	h := &hooks{dir: t.TempDir()}
	if _, err := start(t, st, h, Options{}, "scale.b=0"); err == nil || !strings.Contains(err.Error(), "spec: scale: a and b must be non-zero") {
		t.Fatalf("run with a bad scale section: %v", err)
	}
	if log := runLog(t, h.dir); len(log) != 0 {
		t.Errorf("stages ran before the spec was found bad: %v", log)
	}
	var n int
	_ = st.List(context.Background(), "", func(storage.Attrs) error { n++; return nil })
	if n != 0 {
		t.Errorf("a run with a bad spec wrote %d objects", n)
	}
}
