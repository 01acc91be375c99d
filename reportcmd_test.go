package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/sft"
)

// reportInputs fakes every stage the report of a stat-sel pipeline reads.
func reportInputs() []job.Stage {
	return []job.Stage{
		filesStage{name: "difficulty", files: map[string]any{stages.DifficultFile: []stages.Difficult{
			{Response: stages.Response{Problem: problems.Problem{ID: "v1", Subject: "algebra"}}, Why: "accuracy 0.00 < 0.50"}}}},
		filesStage{name: "diagnose", files: map[string]any{stages.ProfileFile: stages.Profile{Questions: 1,
			Skills: []stages.SkillCount{{Subject: "algebra", Skill: "completing the square", Count: 1}}}},
			metrics: job.Metrics{"teacher": teacher.Stats{Budget: teacher.BudgetState{SpentUSD: 0.5}}}},
		evalStage("base", answered{problems.MATH, "m", verdicts(20, 8), true}),
		evalStage("stat-sel", answered{problems.MATH, "m", verdicts(20, 12), true}),
		filesStage{name: "sft/stat-sel", files: map[string]any{stages.MetricsFile: []sft.Metric{{Step: 1, Loss: 2.5}, {Step: 2, Loss: 1.25}}},
			metrics: job.Metrics{"steps": 2, "examples_kept": 7}},
	}
}

func TestReportRendersAgainWhatTheStageWrote(t *testing.T) {
	dir := t.TempDir()
	// The report stage itself, over fixed inputs.
	sts := append(reportInputs(), stages.NewReport("evaluate/base", "evaluate/stat-sel"))
	evalRun(t, dir, "r1", "models/s1", []string{"pipeline.strategies=[stat-sel]"}, sts...)

	out := filepath.Join(t.TempDir(), "again")
	if _, err := statjob(t, "report", "r1", "--root", dir, "--out", out); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range []string{stages.ReportHTML, stages.ReportMD, stages.ReportSummary} {
		rc, err := st.Get(ctx, job.OutputKey("r1", "report", name))
		if err != nil {
			t.Fatal(err)
		}
		var stage bytes.Buffer
		stage.ReadFrom(rc)
		rc.Close()
		again, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stage.Bytes(), again) {
			t.Errorf("%s rendered again differs from the stage's (%d vs %d bytes)", name, len(again), stage.Len())
		}
	}
	html, _ := os.ReadFile(filepath.Join(out, stages.ReportHTML))
	// The loss curve, which summary.json does not keep, is drawn again.
	if !strings.Contains(string(html), "training loss per optimizer step") {
		t.Error("the page rendered again has no loss curve")
	}

	// Without --out: the Markdown on stdout, for the newest run.
	md, err := statjob(t, "report", "--root", dir)
	want, _ := os.ReadFile(filepath.Join(out, stages.ReportMD))
	if err != nil || md != string(want) {
		t.Errorf("report to stdout: %v\n%s", err, md)
	}
	if !strings.Contains(md, "completing the square") {
		t.Errorf("markdown lacks the profile:\n%s", md)
	}

	// compare reads the teacher cost from the report's summary.json; a run
	// against itself differs by nothing.
	cmp, err := statjob(t, "compare", "r1", "r1", "--root", dir, "--fail-below", "0")
	for _, want := range []string{"A: run r1, student models/s1, teacher gemini-2.5-flash (gemini), teacher cost $0.50",
		"40.0%  40.0%  0 pp   [+0.0, +0.0] pp  20      no clear difference", "Gate: no paired interval lies entirely below -0.0 pp."} {
		if !strings.Contains(cmp, want) {
			t.Errorf("compare lacks %q:\n%s%v", want, cmp, err)
		}
	}
}

func TestReportNeedsItsStagesDone(t *testing.T) {
	dir := t.TempDir()
	// A run stopped before training: no sft/stat-sel, no evaluate/stat-sel.
	evalRun(t, dir, "r2", "models/s1", []string{"pipeline.strategies=[stat-sel]"}, reportInputs()[:3]...)
	_, err := statjob(t, "report", "r2", "--root", dir)
	if err == nil || !strings.Contains(err.Error(), "not done: evaluate/stat-sel, sft/stat-sel") {
		t.Errorf("want the stages that are not done named, got %v", err)
	}
	// Nothing was written into the run.
	ctx := context.Background()
	st, _ := storage.Open(ctx, dir)
	defer st.Close()
	if _, err := job.ReadManifest(ctx, st, "r2", "report"); err == nil {
		t.Error("statjob report recorded a report stage")
	}
}
