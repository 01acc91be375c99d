package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/sft"
)

// reportFake is a fixed upstream that also reports metrics.
type reportFake struct {
	fixed
	metrics job.Metrics
}

func (f reportFake) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	_, err := f.fixed.Run(ctx, env)
	return f.metrics, err
}

// reportResponses builds MATH responses q0..q9, each with the given samples'
// verdicts.
func reportResponses(verdicts [][]bool) []Response {
	var out []Response
	for i, vs := range verdicts {
		r := Response{Problem: problems.Problem{ID: fmt.Sprintf("q%d", i), Benchmark: problems.MATH, Subject: "algebra"}}
		for _, ok := range vs {
			r.Samples = append(r.Samples, Sample{Answer: "1", Correct: ok})
		}
		out = append(out, r)
	}
	return out
}

func reportEval(stage string, math, gsm float64) Evaluation {
	res := func(p float64, n int) BenchmarkResult {
		return BenchmarkResult{Summary: mathgrade.Summary{Problems: n, Samples: n, Pass1: p, K: 1},
			Interval: mathgrade.Interval{Lo: p - 0.1, Hi: p + 0.1}}
	}
	return Evaluation{Stage: stage, Model: "m", Benchmarks: map[string]BenchmarkResult{
		problems.MATH: res(math, 10), problems.GSM8K: res(gsm, 20)}}
}

const reportScriptSkill = "<script>alert(1)</script>"

// reportUpstream fakes every stage the report reads. With full false, the
// optional parts are left out: no per-question MATH file, no profile, no
// difficult questions, no training metrics, no teacher usage.
func reportUpstream(full bool) []job.Stage {
	T, F := true, false
	base := map[string]any{EvaluationFile: reportEval("evaluate/base", 0.5, 0.6)}
	arm := map[string]any{EvaluationFile: reportEval("evaluate/stat-sel", 0.7, 0.65)}
	diag := map[string]any{}
	diff := map[string]any{}
	train := map[string]any{}
	var diagMetrics job.Metrics
	if full {
		// Base: q4 and q5 are half right (not difficult), q6..q9 all wrong.
		base["math.jsonl"] = reportResponses([][]bool{{T, T}, {T, T}, {T, T}, {T, T}, {F, T}, {T, F}, {F, F}, {F, F}, {F, F}, {F, F}})
		arm["math.jsonl"] = reportResponses([][]bool{{T}, {T}, {T}, {T}, {T}, {F}, {T}, {T}, {F}, {F}})
		diag[ProfileFile] = Profile{Questions: 4, Failed: 1, JudgedCorrect: 1, Skills: []SkillCount{
			{Subject: "geometry", Skill: "angle chasing", Count: 1},
			{Subject: "algebra", Skill: reportScriptSkill, Count: 2},
			{Subject: "algebra", Skill: "completing the square", Count: 5},
		}}
		diff[DifficultFile] = []Difficult{
			{Response: Response{Problem: problems.Problem{ID: "v1", Subject: "algebra"}}, Accuracy: 0},
			{Response: Response{Problem: problems.Problem{ID: "v2", Subject: "algebra"}}, Accuracy: 0.2},
			{Response: Response{Problem: problems.Problem{ID: "v3", Subject: "geometry"}}, Accuracy: 0},
		}
		train[MetricsFile] = []sft.Metric{{Step: 1, Loss: 2.5, LR: 1e-4}, {Step: 2, Loss: 2.0, LR: 1e-4}, {Step: 3, Loss: 1.25, LR: 1e-4}}
		diagMetrics = job.Metrics{"teacher": teacher.Stats{InputTokens: 1000, OutputTokens: 200, Budget: teacher.BudgetState{SpentUSD: 0.25}}}
	}
	return []job.Stage{
		fixed{name: "evaluate/base", files: base},
		fixed{name: "evaluate/stat-sel", files: arm},
		fixed{name: "difficulty", files: diff},
		reportFake{fixed{name: "diagnose", files: diag}, diagMetrics},
		fixed{name: "sft/stat-sel", files: train},
		NewReport("evaluate/base", "evaluate/stat-sel"),
	}
}

// reportRun runs the report over fake upstreams in a fresh store and returns
// its three outputs.
func reportRun(t *testing.T, full bool) (page, md []byte, sum reportSummary) {
	t.Helper()
	st, err := storage.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := runStages(t, st, testSpec(t, "models/base"), reportUpstream(full)...); err != nil {
		t.Fatal(err)
	}
	page, md = readOutput(t, st, "report", ReportHTML), readOutput(t, st, "report", ReportMD)
	if err := json.Unmarshal(readOutput(t, st, "report", ReportSummary), &sum); err != nil {
		t.Fatal(err)
	}
	return page, md, sum
}

func reportNear(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestReportNumbers(t *testing.T) {
	page, md, sum := reportRun(t, true)

	// Accuracy and deltas, MATH first.
	if len(sum.Benchmarks) != 2 || sum.Benchmarks[0].Name != "math" || sum.Benchmarks[1].Name != "gsm8k" {
		t.Fatalf("benchmarks %+v", sum.Benchmarks)
	}
	m := sum.Benchmarks[0]
	if len(m.Arms) != 2 || m.Arms[0].Arm != "base" || m.Arms[0].Delta != nil || m.Arms[1].Delta == nil {
		t.Fatalf("math arms %+v", m.Arms)
	}
	reportNear(t, "math stat-sel pass@1", m.Arms[1].Pass1, 0.7)
	reportNear(t, "math delta", *m.Arms[1].Delta, 0.2)
	reportNear(t, "gsm8k delta", *sum.Benchmarks[1].Arms[1].Delta, 0.05)

	// MATH_D: q6..q9 (accuracy 0 < 0.5); q4 and q5 (0.5) are not in it.
	d := sum.MathD
	if d == nil || d.Questions != 4 || d.Of != 10 || len(d.Arms) != 2 {
		t.Fatalf("math_d %+v", d)
	}
	reportNear(t, "MATH_D base", d.Arms[0].Pass1, 0)
	reportNear(t, "MATH_D stat-sel", d.Arms[1].Pass1, 0.5)
	reportNear(t, "MATH_D delta", *d.Arms[1].Delta, 0.5)
	if len(sum.Paired) != 1 || sum.Paired[0].Questions != 10 || len(d.Paired) != 1 || d.Paired[0].Questions != 4 {
		t.Fatalf("paired %+v, MATH_D paired %+v", sum.Paired, d.Paired)
	}
	reportNear(t, "paired delta on MATH", sum.Paired[0].Delta, 0.2)
	if p := sum.Paired[0]; !(p.Lo <= p.Delta && p.Delta <= p.Hi) {
		t.Errorf("paired interval %+v does not hold its delta", p)
	}

	// The profile, most named first; the difficult validation questions.
	if sum.Profile == nil || sum.Profile.JudgedCorrect != 1 || sum.Profile.Skills[0].Skill != "completing the square" || sum.Profile.Skills[1].Skill != reportScriptSkill {
		t.Fatalf("profile %+v", sum.Profile)
	}
	if sum.Difficult == nil || sum.Difficult.Questions != 3 || sum.Difficult.BySubject["algebra"] != 2 {
		t.Fatalf("difficult %+v", sum.Difficult)
	}
	// Training and cost.
	if len(sum.Training) != 1 || sum.Training[0].Arm != "stat-sel" || sum.Training[0].Steps != 3 || *sum.Training[0].FinalLoss != 1.25 {
		t.Fatalf("training %+v", sum.Training)
	}
	if sum.CostTotal == nil || sum.CostTotal.USD != 0.25 || sum.CostTotal.InputTokens != 1000 || len(sum.Cost) != 1 || sum.Cost[0].Stage != "diagnose" {
		t.Fatalf("cost %+v total %+v", sum.Cost, sum.CostTotal)
	}

	// The page shows them, escapes names from the data and needs nothing
	// from outside.
	raw := string(page)
	text := html.UnescapeString(raw)
	for _, want := range []string{"70.0%", "+20.0 pp", "+5.0 pp", "MATH_D holds 4 of 10", reportMathDRule,
		"completing the square", "$0.25", "<polyline", "better than base",
		"On 1 of them the teacher judged the student's response correct after all: their skills are not counted."} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if !strings.Contains(raw, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("page does not escape the skill named " + reportScriptSkill)
	}
	for _, bad := range []string{reportScriptSkill, "ZgotmplZ", "<link", "src=", "<script"} {
		if strings.Contains(raw, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	text = string(md)
	for _, want := range []string{"| math | 10 | 50.0% (CI \\[40.0, 60.0\\]) | 70.0% (+20.0 pp vs base, CI \\[60.0, 80.0\\]) |",
		"&lt;script&gt;alert(1)&lt;/script&gt;", "MATH_D holds 4 of 10", "completing the square (algebra)",
		"4 difficult validation questions diagnosed (1 without a usable diagnosis). The teacher judged the student's response correct on 1 of them; their skills are not counted."} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if strings.Contains(text, reportScriptSkill+" |") {
		t.Error("markdown table holds a raw HTML tag")
	}
}

func TestReportDeterministic(t *testing.T) {
	p1, m1, _ := reportRun(t, true)
	p2, m2, _ := reportRun(t, true)
	if !bytes.Equal(p1, p2) || !bytes.Equal(m1, m2) {
		t.Fatal("two runs over the same inputs wrote different reports")
	}
}

func TestReportWithoutOptionalParts(t *testing.T) {
	page, md, sum := reportRun(t, false)
	if len(sum.Benchmarks) != 2 || sum.MathD != nil || sum.Profile != nil || len(sum.Training) != 0 || sum.CostTotal != nil {
		t.Fatalf("summary %+v", sum)
	}
	for _, want := range []string{"70.0%", "MATH_D is not available", "No training metrics were recorded", "No Missing-Skill-Profile"} {
		if !strings.Contains(html.UnescapeString(string(page)), want) || !strings.Contains(strings.ReplaceAll(string(md), "\\_", "_"), want) {
			t.Errorf("page or markdown lacks %q", want)
		}
	}
}

func TestReportReadsEveryArmInThePipeline(t *testing.T) {
	g, err := Graph(testSpec(t, "models/base", "pipeline.strategies=[stat-sel, train]"))
	if err != nil {
		t.Fatal(err)
	}
	needs := g.Stage("report").Needs()
	for _, want := range []string{"difficulty", "diagnose", "evaluate/base", "evaluate/stat-sel", "evaluate/train", "sft/stat-sel", "sft/train"} {
		if !slices.Contains(needs, want) {
			t.Errorf("report needs %v, not %s", needs, want)
		}
	}
	if slices.Contains(needs, "sft/base") {
		t.Errorf("report needs %v: the base student has no training stage", needs)
	}
}
