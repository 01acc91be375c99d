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
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/prm"
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
	return reportRunStages(t, nil, reportUpstream(full)...)
}

// reportRunStages runs stages (the report among them) with the spec
// assignments sets in a fresh store and returns the report's three outputs.
func reportRunStages(t *testing.T, sets []string, stages ...job.Stage) (page, md []byte, sum reportSummary) {
	t.Helper()
	st, err := storage.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := runStages(t, st, testSpec(t, "models/base", sets...), stages...); err != nil {
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
	// No GRPO arm and the accuracy method: neither section appears.
	if sum.GRPO != nil || sum.PRM != nil {
		t.Errorf("grpo %+v, prm %+v without GRPO arms or the prm method", sum.GRPO, sum.PRM)
	}
	for _, absent := range []string{"GRPO", "reward per step", "process reward model", "judged right", "τ1"} {
		if strings.Contains(string(page), absent) || strings.Contains(string(md), absent) {
			t.Errorf("page or markdown shows %q", absent)
		}
	}
}

// reportGRPOAndPRMUpstream is reportUpstream(true) with two GRPO arms
// (grpo/stat-sel, logging a KL when kl is set, and grpo/base without one)
// and a difficulty stage that used the prm method:
// eight questions of four samples judged right 0, 0, 1, 2, 2, 3, 4 and 4
// times, one sample not scored.
func reportGRPOAndPRMUpstream(kl bool) []job.Stage {
	up := reportUpstream(true)
	up = up[:len(up)-1] // the report, built again below
	var scored []PRMScored
	for i, right := range []int{0, 0, 1, 2, 2, 3, 4, 4} {
		row := PRMScored{ID: fmt.Sprintf("v%d", i), Right: float64(right) / 4}
		for k := range 4 {
			row.Samples = append(row.Samples, prm.Score{Steps: []float64{0.9}, Right: k < right, Scored: !(i == 0 && k == 0)})
		}
		scored = append(scored, row)
	}
	for i, st := range up {
		if f, ok := st.(fixed); ok && f.name == "difficulty" {
			f.files[PRMScoresFile] = scored
			up[i] = f
		}
	}
	statSel := []grpo.Metric{{Step: 1, RewardMean: 0.25, SignalFraction: 0.5}, {Step: 2, RewardMean: 0.5, SignalFraction: 0.75},
		{Step: 3, RewardMean: 0.625, SignalFraction: 0.25}}
	if kl {
		for i, v := range []float64{0, 0.02, 0.05} {
			statSel[i].KL = v
		}
	}
	return append(up,
		fixed{name: "evaluate/grpo/stat-sel", files: map[string]any{EvaluationFile: reportEval("evaluate/grpo/stat-sel", 0.75, 0.7)}},
		fixed{name: "evaluate/grpo/base", files: map[string]any{EvaluationFile: reportEval("evaluate/grpo/base", 0.55, 0.6)}},
		fixed{name: "grpo/stat-sel", files: map[string]any{MetricsFile: statSel}},
		fixed{name: "grpo/base", files: map[string]any{MetricsFile: []grpo.Metric{{Step: 1, RewardMean: 0.1, SignalFraction: 0.5},
			{Step: 2, RewardMean: 0.3, SignalFraction: 0.5}}}},
		NewReport("evaluate/base", "evaluate/stat-sel", "evaluate/grpo/stat-sel", "evaluate/grpo/base"),
	)
}

// TestReportGRPOAndPRM: with GRPO arms the report draws each arm's reward
// per step (and the KL of an arm that logged one); with the prm difficulty
// method it shows how many validation questions the PRM judged difficult,
// the spread of the fraction judged right against the threshold, and τ1 /
// τ2.
func TestReportGRPOAndPRM(t *testing.T) {
	sets := []string{"difficulty.method=prm", "difficulty.prm.model=models/prm", "difficulty.prm.tau1=0.8", "difficulty.prm.tau2=0.6"}
	page, md, sum := reportRunStages(t, sets, reportGRPOAndPRMUpstream(true)...)

	if len(sum.GRPO) != 2 {
		t.Fatalf("grpo %+v", sum.GRPO)
	}
	g := sum.GRPO[0]
	if g.Arm != "grpo/stat-sel" || g.Steps != 3 || g.FirstReward != 0.25 || g.FinalReward != 0.625 || g.FinalKL == nil || *g.FinalKL != 0.05 {
		t.Errorf("grpo/stat-sel %+v", g)
	}
	reportNear(t, "mean signal fraction", g.SignalFraction, 0.5)
	if g := sum.GRPO[1]; g.Arm != "grpo/base" || g.Steps != 2 || g.FinalReward != 0.3 || g.FinalKL != nil {
		t.Errorf("grpo/base %+v", g)
	}

	p := sum.PRM
	if p == nil {
		t.Fatal("no prm summary")
	}
	if p.Questions != 8 || p.Difficult != 3 || p.Threshold != 0.5 || p.Tau1 != 0.8 || p.Tau2 != 0.6 || p.Samples != 32 || p.NotScored != 1 {
		t.Errorf("prm %+v", p)
	}
	// numpy.quantile([0, 0, .25, .5, .5, .75, 1, 1], [0, .25, .5, .75, 1]) and the mean.
	q := p.Right
	for _, c := range []struct {
		what      string
		got, want float64
	}{{"min", q.Min, 0}, {"q25", q.Q25, 0.1875}, {"median", q.Median, 0.5}, {"q75", q.Q75, 0.8125}, {"max", q.Max, 1}, {"mean", q.Mean, 0.5}} {
		reportNear(t, "right "+c.what, c.got, c.want)
	}
	wantBins := []reportPRMBin{{0, 2, true}, {0.25, 1, true}, {0.5, 2, false}, {0.75, 1, false}, {1, 2, false}}
	if !slices.Equal(p.Histogram, wantBins) {
		t.Errorf("histogram %+v, want %+v", p.Histogram, wantBins)
	}

	text := html.UnescapeString(string(page))
	for _, want := range []string{"GRPO: reward per step", "GRPO mean reward per step", "GRPO KL to the reference policy per step",
		"<td>grpo/stat-sel</td><td>3</td><td>0.250</td><td>0.625</td><td>0.50</td><td>0.05</td>",
		"<td>grpo/base</td><td>2</td><td>0.100</td><td>0.300</td><td>0.50</td><td>—</td>",
		"Which questions were difficult: the process reward model", "τ1 = 0.80", "τ2 = 0.60",
		"3 of 8 validation questions were judged difficult: fewer than 50.0% of their samples judged right.",
		"min 0.0%, quartiles 18.8% / 50.0% / 81.2%, max 100.0%, mean 50.0%", "1 of 32 samples were not scored",
		"<td>25.0%</td><td>1</td><td>yes</td>", "<td>50.0%</td><td>2</td><td>no</td>", "difficult (< 50.0%)"} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Curves: the SFT loss, two rewards and one KL.
	if n := strings.Count(string(page), "<polyline"); n != 4 {
		t.Errorf("%d curves on the page, want 4", n)
	}
	text = string(md)
	for _, want := range []string{"### GRPO: reward per step", "| grpo/stat-sel | 3 | 0.250 | 0.625 | 0.50 | 0.05 |",
		"| grpo/base | 2 | 0.100 | 0.300 | 0.50 | — |", "grpo/stat-sel reward     ▁▆█  0.25 → 0.625 (min 0.25, max 0.625)",
		"grpo/stat-sel KL         ▁▄█  0 → 0.05 (min 0, max 0.05)", "grpo/base reward         ▁█  0.1 → 0.3",
		"### Which questions were difficult: the process reward model", "τ1 = 0.80", "τ2 = 0.60",
		"3 of 8 validation questions were judged difficult: fewer than 50.0% of their samples judged right.",
		"quartiles 18.8% / 50.0% / 81.2%", "| 0.0% | 2 | yes |", "| 100.0% | 2 | no |",
		" 25.0% * ███████████████                   1"} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if strings.Contains(text, "grpo/base KL") {
		t.Error("markdown shows a KL curve for grpo/base, which logged none")
	}

	// Without a kl field in any arm: no KL curve; with another method: no
	// PRM section, though the file is there.
	page, md, sum = reportRunStages(t, nil, reportGRPOAndPRMUpstream(false)...)
	if sum.PRM != nil || len(sum.GRPO) != 2 || sum.GRPO[0].FinalKL != nil {
		t.Errorf("without kl and prm: grpo %+v prm %+v", sum.GRPO, sum.PRM)
	}
	for _, absent := range []string{"KL to the reference policy", "process reward model", "τ1", "stat-sel KL"} {
		if strings.Contains(string(page), absent) || strings.Contains(string(md), absent) {
			t.Errorf("page or markdown shows %q", absent)
		}
	}
	if n := strings.Count(string(page), "<polyline"); n != 3 {
		t.Errorf("%d curves on the page, want 3", n)
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
	g, err = Graph(testSpec(t, "models/base", "pipeline.strategies=[stat-sel]", "pipeline.grpo=[stat-sel, base]"))
	if err != nil {
		t.Fatal(err)
	}
	needs = g.Stage("report").Needs()
	for _, want := range []string{"grpo/stat-sel", "grpo/base", "evaluate/grpo/base", "sft/stat-sel"} {
		if !slices.Contains(needs, want) {
			t.Errorf("report needs %v, not %s", needs, want)
		}
	}
}

// TestReportGRPOAndPRMRendersAgain: statjob report re-renders the GRPO and
// PRM sections of a finished run byte for byte (the curves, which
// summary.json does not keep, are read again from the stages' files).
func TestReportGRPOAndPRMRendersAgain(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Local(t)
	spec := testSpec(t, "models/base", "pipeline.strategies=[stat-sel]", "pipeline.grpo=[stat-sel, base]",
		"difficulty.method=prm", "difficulty.prm.model=models/prm")
	if _, err := runStages(t, st, spec, reportGRPOAndPRMUpstream(true)...); err != nil {
		t.Fatal(err)
	}
	run, err := OpenRun(ctx, st, "r1")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RenderReport(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	for name, again := range map[string][]byte{ReportHTML: rep.HTML, ReportMD: rep.Markdown, ReportSummary: rep.Summary} {
		if !bytes.Equal(readOutput(t, st, "report", name), again) {
			t.Errorf("%s rendered again differs from the stage's", name)
		}
	}
	if !strings.Contains(string(rep.HTML), "GRPO KL to the reference policy per step") || !strings.Contains(string(rep.Markdown), "process reward model") {
		t.Error("the report rendered again lacks the GRPO or PRM section")
	}
}
