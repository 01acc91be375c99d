package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
)

// statjob runs the command line in-process and returns stdout and the error.
func statjob(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestVersion(t *testing.T) {
	if out, err := statjob(t, "version"); err != nil || out != "statjob "+version+"\n" {
		t.Errorf("statjob version = %q, %v", out, err)
	}
}

func TestEveryCommandHasAnExample(t *testing.T) {
	var check func(c *cobra.Command)
	check = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() != "version" && sub.Name() != "help" && sub.Name() != "completion" && sub.Example == "" {
				t.Errorf("statjob %s has no example in its help", sub.Name())
			}
			check(sub)
		}
	}
	check(newRootCmd())
}

// TestEveryStrategyIsInstalled: every arm a spec can name has its stages
// in this build, so no plan is refused for a missing stage.
func TestEveryStrategyIsInstalled(t *testing.T) {
	spec := newSpec()
	if err := spec.Set("pipeline.strategies=[" + strings.Join(stages.Strategies, ", ") + "]"); err != nil {
		t.Fatal(err)
	}
	g, err := stages.Graph(spec)
	if err != nil {
		t.Fatal(err)
	}
	if missing := job.Missing(g.Stages()); len(missing) != 0 {
		t.Errorf("not installed: %v", missing)
	}
	// The embedded default spec is valid and resolves every section.
	y, err := statjob(t, "spec")
	if err != nil || !strings.Contains(y, "lease_ttl: 5m0s") || !strings.Contains(y, "- stat-syn") {
		t.Errorf("statjob spec: %v\n%s", err, y)
	}
}

func TestSpecErrorsNameFileAndLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "my.yaml")
	os.WriteFile(f, []byte("pipeline:\n  strategies: [stat-sel]\n  arms: 2\n"), 0o644)
	if _, err := statjob(t, "stages", "--config", f); err == nil || !strings.Contains(err.Error(), f+`:3: pipeline.arms: unknown key "arms"`) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := statjob(t, "stages", "--set", "pipeline.strategies=[stat-sel, magic]"); err == nil ||
		!strings.Contains(err.Error(), `spec: pipeline.strategies[1]: "magic" is not one of`) {
		t.Errorf("bad strategy: %v", err)
	}
	if _, err := statjob(t, "stages", "--config", filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("missing file: %v", err)
	}
	out, err := statjob(t, "stages", "--set", "pipeline.strategies=[train]")
	if err != nil || !strings.Contains(out, "evaluate/train") || strings.Contains(out, "stat-sel") {
		t.Errorf("stages with one strategy: %v\n%s", err, out)
	}
}

// TestRunWithoutData: a run whose data directory is not there stops before
// any stage, saying where a relative one was looked for.
func TestRunWithoutData(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"no-such-data", filepath.Join(t.TempDir(), "none")} {
		root := t.TempDir()
		_, err := statjob(t, "run", "--root", root, "--set", "data.dir="+dir)
		if err == nil || !strings.Contains(err.Error(), "data.dir: "+dir) || !strings.Contains(err.Error(), "is not a directory") {
			t.Errorf("data.dir=%s: %v", dir, err)
		}
		if rel := !filepath.IsAbs(dir); err != nil && rel != strings.Contains(err.Error(), "working directory, "+wd) {
			t.Errorf("data.dir=%s: the working directory is named only for a relative path: %v", dir, err)
		}
		if entries, _ := os.ReadDir(root); len(entries) != 0 {
			t.Errorf("data.dir=%s: a refused run wrote under its root", dir)
		}
	}
}

// TestEverySectionIsValidatedUpFront: each package's settings section is in
// the spec, and a bad field in any of them fails before a stage runs, naming
// the field.
func TestEverySectionIsValidatedUpFront(t *testing.T) {
	for _, c := range []struct{ set, want string }{
		{"data.unknown_skills=maybe", "unknown_skills"},
		{"grade.rel_tol=-1", "rel_tol"},
		{"teacher.provider=bogus", "teacher.provider"},
		{"sft.lora.rank=-1", "sft.lora.rank"},
	} {
		dir := t.TempDir()
		_, err := statjob(t, "run", "--root", dir, "--set", c.set)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: got %v, want an error naming %s", c.set, err, c.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("--set %s: a refused run wrote under its root", c.set)
		}
	}
}

func TestShardOptions(t *testing.T) {
	for _, v := range []string{"BATCH_TASK_INDEX", "BATCH_TASK_COUNT", "AWS_BATCH_JOB_ARRAY_INDEX", "STATJOB_SHARD_COUNT"} {
		t.Setenv(v, "")
	}
	var o job.Options
	if err := shardOptions(&o, "2/4"); err != nil || o.Shard != 2 || o.Shards != 4 {
		t.Errorf("--shard 2/4: %+v %v", o, err)
	}
	for _, bad := range []string{"4/4", "x/2", "1", "-1/2"} {
		if err := shardOptions(&o, bad); err == nil {
			t.Errorf("--shard %s accepted", bad)
		}
	}
	t.Setenv("BATCH_TASK_INDEX", "1")
	t.Setenv("BATCH_TASK_COUNT", "3")
	if err := shardOptions(&o, ""); err != nil || o.Shard != 1 || o.Shards != 3 {
		t.Errorf("Cloud Batch env: %+v %v", o, err)
	}
	t.Setenv("BATCH_TASK_INDEX", "")
	t.Setenv("AWS_BATCH_JOB_ARRAY_INDEX", "5")
	if err := shardOptions(&o, ""); err == nil || !strings.Contains(err.Error(), "STATJOB_SHARD_COUNT") {
		t.Errorf("AWS index without a count: %v", err)
	}
	t.Setenv("STATJOB_SHARD_COUNT", "8")
	if err := shardOptions(&o, ""); err != nil || o.Shard != 5 || o.Shards != 8 {
		t.Errorf("AWS Batch env: %+v %v", o, err)
	}
	t.Setenv("AWS_BATCH_JOB_ID", "abc-123:5")
	if id := batchRunID(); id != "abc-123" {
		t.Errorf("run id from AWS_BATCH_JOB_ID = %q", id)
	}
}

// oneStage is a stage for driving the commands that read runs.
type oneStage struct {
	name string
	fail bool
}

func (s oneStage) Name() string    { return s.name }
func (s oneStage) Needs() []string { return nil }
func (s oneStage) Fingerprint(*job.Spec, map[string]string) (string, error) {
	return job.Hash("one", s.name)
}
func (s oneStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	if s.fail {
		return nil, errors.New("failing on purpose")
	}
	return nil, env.WriteFile(ctx, "out.txt", []byte(s.name))
}

func TestStatusRunsUnlock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g, err := job.NewGraph(oneStage{name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rep := job.NewReporter(io.Discard, false)
	spec := newSpec()
	if err := spec.Set("student.model=models/student"); err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(ctx, st, spec, g, job.Options{RunID: "r1", Reporter: rep, Holder: "me"}); err != nil {
		t.Fatal(err)
	}
	out, err := statjob(t, "status", "--root", dir)
	fp, _ := oneStage{name: "a"}.Fingerprint(nil, nil)
	// The stage's state, start time, duration, fingerprint and who ran it.
	if err != nil || !strings.Contains(out, "run r1") || !regexpMatch(out, `\na\s+done\s+\d\d-\d\d \d\d:\d\d:\d\d\s+[0-9.]+[mµn]?s\s+`+fp[:12]+`\s+me\n`) {
		t.Errorf("status:\n%s%v", out, err)
	}
	// A second run whose stage b failed, and whose lease a runner that
	// is gone holds.
	g2, _ := job.NewGraph(oneStage{name: "a"}, oneStage{name: "b", fail: true})
	if _, err := job.Run(ctx, st, spec, g2, job.Options{RunID: "r2", Reporter: rep}); err == nil {
		t.Fatal("a failing run reported success")
	}
	lease := `{"holder":"ghost","acquired":"2026-01-01T00:00:00Z","heartbeat":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z"}`
	if _, err := st.Put(ctx, "runs/r2/leases/b", strings.NewReader(lease), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = statjob(t, "runs", "--root", dir)
	if err != nil || strings.Index(out, "r2") > strings.Index(out, "r1") || !strings.Contains(out, "1/1") || !strings.Contains(out, "1/2") {
		t.Errorf("runs (newest first):\n%s%v", out, err)
	}
	out, err = statjob(t, "status", "r2", "--root", dir)
	if err != nil || !regexpMatch(out, `\nb\s+running\s.*ghost`) {
		t.Errorf("status r2:\n%s%v", out, err)
	}
	out, err = statjob(t, "status", "r2", "--root", dir, "--json")
	if err != nil || !strings.Contains(out, `"state": "running"`) || !strings.Contains(out, `"holder": "ghost"`) {
		t.Errorf("status --json:\n%s%v", out, err)
	}
	out, err = statjob(t, "runs", "--root", dir, "--json")
	if err != nil || !strings.Contains(out, `"id": "r2"`) || !strings.Contains(out, `"done": 1`) {
		t.Errorf("runs --json:\n%s%v", out, err)
	}
	out, err = statjob(t, "unlock", "r2", "b", "--root", dir)
	if err != nil || !strings.Contains(out, "b: held by ghost") || !strings.Contains(out, "b: unlocked") {
		t.Errorf("unlock:\n%s%v", out, err)
	}
	ls, _ := job.ReadLeases(ctx, st, "r2")
	if !ls["b"].Released {
		t.Errorf("lease after unlock: %+v", ls["b"])
	}
	// A lease whose holder stopped heartbeating shows as stale.
	expired := strings.Replace(lease, "2099-01-01", "2001-01-01", 1)
	if _, err := st.Put(ctx, "runs/r2/leases/b", strings.NewReader(expired), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = statjob(t, "status", "r2", "--root", dir)
	if err != nil || !regexpMatch(out, `\nb\s+stale\s.*ghost \(lease until`) {
		t.Errorf("status with an expired lease:\n%s%v", out, err)
	}
	// resume keeps the frozen spec: a --set it would ignore is refused.
	if _, err := statjob(t, "resume", "r2", "--root", dir, "--set", "job.poll=1s"); err == nil || !strings.Contains(err.Error(), "only storage.* can be set") {
		t.Errorf("resume --set job.poll: %v", err)
	}
	if _, err := statjob(t, "resume", "r9", "--root", dir); err == nil || !strings.Contains(err.Error(), `no run "r9"`) {
		t.Errorf("resume of a run that does not exist: %v", err)
	}
	// A mistyped run or stage is an error naming it, not "no lease is held".
	if _, err := statjob(t, "unlock", "r3", "--root", dir); err == nil || !strings.Contains(err.Error(), `no run "r3"`) {
		t.Errorf("unlock of a run that does not exist: %v", err)
	}
	if _, err := statjob(t, "unlock", "r2", "c", "--root", dir); err == nil || !strings.Contains(err.Error(), `run r2 has no stage "c" (stages: a, b)`) {
		t.Errorf("unlock of a stage that does not exist: %v", err)
	}
	// One shard's lease is named by its piece.
	if _, err := st.Put(ctx, "runs/r2/leases/b.1-of-2", strings.NewReader(lease), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = statjob(t, "unlock", "r2", "b.1-of-2", "--root", dir)
	if err != nil || !strings.Contains(out, "b.1-of-2: unlocked") {
		t.Errorf("unlock of one shard:\n%s%v", out, err)
	}
	out, err = statjob(t, "unlock", "r2", "a", "--root", dir)
	if err != nil || !strings.Contains(out, "no lease is held") {
		t.Errorf("unlock of a stage nobody holds:\n%s%v", out, err)
	}
}

func regexpMatch(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

// TestPruneCommand: a dry run lists and keeps, a real one deletes; the age
// is required and read as days or a duration; a damaged run.json is named
// on stderr by runs and hides no other run.
func TestPruneCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g, err := job.NewGraph(oneStage{name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec()
	if err := spec.Set("student.model=models/student"); err != nil {
		t.Fatal(err)
	}
	old := func() time.Time { return time.Now().Add(-60 * 24 * time.Hour) }
	if _, err := job.Run(ctx, st, spec, g, job.Options{RunID: "r1", Reporter: job.NewReporter(io.Discard, false), Now: old}); err != nil {
		t.Fatal(err)
	}
	fp, _ := oneStage{name: "a"}.Fingerprint(nil, nil)
	entry := "cache/stages/" + fp + "/MANIFEST.json"
	for _, bad := range []string{"", "thirty", "-3d", "0h"} {
		if _, err := statjob(t, "prune", "--root", dir, "--older-than", bad); err == nil || !strings.Contains(err.Error(), "--older-than") {
			t.Errorf("--older-than %q: %v", bad, err)
		}
	}
	out, err := statjob(t, "prune", "--root", dir, "--older-than", "30d", "--dry-run")
	if err != nil || !strings.Contains(out, "would delete") || !strings.Contains(out, fp) {
		t.Errorf("prune --dry-run:\n%s%v", out, err)
	}
	if _, err := st.Stat(ctx, entry); err != nil {
		t.Fatalf("a dry run deleted %s: %v", entry, err)
	}
	out, err = statjob(t, "prune", "--root", dir, "--older-than", "1440h")
	if err != nil || !strings.Contains(out, "deleted") {
		t.Errorf("prune:\n%s%v", out, err)
	}
	if _, err := st.Stat(ctx, entry); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("after prune, %s: %v", entry, err)
	}

	if _, err := st.Put(ctx, "runs/broken/run.json", strings.NewReader("{"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"runs", "--root", dir})
	if err := root.ExecuteContext(ctx); err != nil || !strings.Contains(stdout.String(), "r1") || !strings.Contains(stderr.String(), "skipped run broken") {
		t.Errorf("runs with a damaged run.json: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
}
