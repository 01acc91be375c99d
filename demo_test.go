package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/task/skillsworld"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// TestDemoPreparesWorldStudentAndTeacher: statjob demo writes the world
// and the base student, serves the teacher, and hands the demo spec to the
// same runner as statjob run; while stages are missing it stops there.
// A second demo leaves the files as they were and serves the teacher at
// the same address, so its spec (and every fingerprint) is the first one's.
func TestDemoPreparesWorldStudentAndTeacher(t *testing.T) {
	g, err := stages.Graph(newSpec())
	if err != nil {
		t.Fatal(err)
	}
	missing := job.Missing(g.Stages())
	if len(missing) == 0 {
		t.Fatal("every stage is installed: this test should now run the demo end to end")
	}
	dir := t.TempDir()
	out, err := statjob(t, "demo", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "nothing was run") {
		t.Fatalf("statjob demo: %v\n%s", err, out)
	}
	if !strings.Contains(out, "of 13 stages are installed") || !strings.Contains(out, "teacher:      http://127.0.0.1:") {
		t.Errorf("statjob demo printed:\n%s", out)
	}

	data := filepath.Join(dir, "data")
	test, err := problems.LoadMATH(filepath.Join(data, skillsworld.TestFile))
	if err != nil || len(test) == 0 {
		t.Fatalf("the demo's world: %d test questions, %v", len(test), err)
	}
	student := filepath.Join(dir, "student")
	if _, err := tokenizer.LoadDir(student); err != nil {
		t.Fatalf("the demo's student: %v", err)
	}
	st, err := storage.Open(context.Background(), student)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := model.Load(context.Background(), st, ""); err != nil {
		t.Fatalf("the demo's student: %v", err)
	}

	weights := filepath.Join(student, model.WeightsFile)
	before, err := os.Stat(weights)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := os.ReadFile(filepath.Join(dir, oracleAddrFile))
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := statjob(t, "demo", "--dir", dir)
	if !strings.Contains(out2, "http://"+strings.TrimSpace(string(addr))+"/v1") {
		t.Errorf("a second demo serves the teacher elsewhere than %s:\n%s", addr, out2)
	}
	after, err := os.Stat(weights)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("a second demo rewrote the base student's weights")
	}
}

// TestDemoSpecReachesTheTeacher: the demo's resolved spec points the
// teacher section at the oracle it serves, and a STAT prompt sent through
// the real client with that section gets the world's answer.
func TestDemoSpecReachesTheTeacher(t *testing.T) {
	d, err := startDemo(t.TempDir())
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
