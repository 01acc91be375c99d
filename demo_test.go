package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/model"
)

// TestDemoEndToEnd runs statjob demo as a user does (fewer epochs, so that
// it stays short): every stage of the pipeline runs on the skills world
// through the real runner, teacher client and model; the report shows what
// STAT claims — the STAT arms answer the questions the base student fails
// (MATH_D, where the base scores 0) far better than it. A second demo makes a
// new run that takes every stage from the stage cache, asks the teacher
// nothing, writes no new weights, and serves the teacher at the same
// address, so its spec and fingerprints are the first one's.
func TestDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	out, err := statjobLogged(t, "demo", "--dir", dir, "--log", "text", "--set", "sft.epochs=6")
	if err != nil {
		t.Fatalf("statjob demo: %v\n%s", err, out)
	}
	if !regexpMatch(out, `done in [^:]+: 13 ran, 0 reused`) || !strings.Contains(out, "# STAT report") {
		t.Fatalf("statjob demo did not run the 13 stages and print the report:\n%s", out)
	}
	runs, err := filepath.Glob(filepath.Join(dir, "store", "runs", "*", "report"))
	if err != nil || len(runs) != 1 {
		t.Fatalf("report folders %v, %v", runs, err)
	}
	html, err := os.ReadFile(filepath.Join(runs[0], stages.ReportHTML))
	if err != nil || !strings.Contains(string(html), "<svg") {
		t.Errorf("report.html: %d bytes, %v", len(html), err)
	}
	var sum struct {
		MathD struct {
			Questions int `json:"questions"`
			Arms      []struct {
				Arm   string  `json:"arm"`
				Pass1 float64 `json:"pass@1"`
				Lo    float64 `json:"lo"`
			} `json:"arms"`
		} `json:"math_d"`
	}
	raw, err := os.ReadFile(filepath.Join(runs[0], "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, a := range sum.MathD.Arms {
		got[a.Arm] = a.Lo
		t.Logf("MATH_D (%d questions) %s: pass@1 %.3f, interval from %.3f", sum.MathD.Questions, a.Arm, a.Pass1, a.Lo)
	}
	if sum.MathD.Questions < 20 || len(got) != 3 {
		t.Fatalf("MATH_D: %s", raw)
	}
	for _, arm := range []string{"stat-sel", "stat-syn"} {
		// The base scores 0 on MATH_D by its definition; a trained arm's
		// whole interval must be clear of it.
		if got[arm] < 0.1 {
			t.Errorf("%s on MATH_D: interval starts at %.3f, want a clear gain over the base's 0", arm, got[arm])
		}
	}

	weights := filepath.Join(dir, "student", model.WeightsFile)
	before, err := os.Stat(weights)
	if err != nil {
		t.Fatal(err)
	}
	out2, err := statjobLogged(t, "demo", "--dir", dir, "--log", "text", "--set", "sft.epochs=6")
	if err != nil || !regexpMatch(out2, `done in [^:]+: 0 ran, 13 reused`) {
		t.Fatalf("second demo: %v\n%s", err, out2)
	}
	if after, err := os.Stat(weights); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("a second demo rewrote the base student's weights")
	}
	// The first run, resumed with its frozen spec, has nothing left to do.
	first := filepath.Base(filepath.Dir(runs[0]))
	if out3, err := statjobLogged(t, "resume", first, "--root", filepath.Join(dir, "store"), "--log", "text"); err != nil ||
		!regexpMatch(out3, `done in [^:]+: 0 ran`) {
		t.Errorf("statjob resume %s of a finished run: %v\n%s", first, err, out3)
	}
}

// statjobLogged runs the statjob command like statjob(), with its log (the
// runner's progress, on stderr) in the output too.
func statjobLogged(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestDemoSpecReachesTheTeacher: the demo's resolved spec points the
// teacher section at the oracle it serves, and a STAT prompt sent through
// the real client with that section gets the world's answer.
func TestDemoSpecReachesTheTeacher(t *testing.T) {
	d, err := startDemo(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.spec.Storage().Root; got != d.root {
		t.Errorf("storage.root = %q, want %q", got, d.root)
	}
	if got := d.spec.Section("data").(*problems.Config); got.Dir != d.data || len(got.Exclude) != 0 {
		t.Errorf("data = %+v, want dir %s and nothing excluded", got, d.data)
	}
	if got := d.spec.Section("student").(*stages.StudentConfig).Model; got != d.student {
		t.Errorf("student.model = %q, want %q", got, d.student)
	}
	cfg := *d.spec.Section("teacher").(*teacher.Config)
	cfg.Cache = false
	tc, err := teacher.New(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := tc.Request(teacher.Solve, map[string]any{"Question": "What is double 7?"}, teacher.Params{MaxTokens: 64}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := teacher.Generate(context.Background(), tc, req, teacher.Boxed)
	if r.Err != nil || !mathgrade.Equal(r.Value, "14") {
		t.Errorf("the demo teacher solved double 7 as %q (%v)", r.Value, r.Err)
	}
}
