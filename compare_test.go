package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
)

// filesStage writes fixed outputs (JSONL when a value is a slice of rows and
// the name ends in .jsonl, JSON otherwise) and reports fixed metrics: an
// upstream stage faked by its output files.
type filesStage struct {
	name    string
	files   map[string]any
	metrics job.Metrics
}

func (s filesStage) Name() string    { return s.name }
func (s filesStage) Needs() []string { return nil }
func (s filesStage) Fingerprint(*job.Spec, map[string]string) (string, error) {
	return job.Hash("files", s.name, s.files, s.metrics)
}

func (s filesStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	for name, v := range s.files {
		var buf bytes.Buffer
		if strings.HasSuffix(name, ".jsonl") {
			raw, _ := json.Marshal(v)
			var rows []json.RawMessage
			if err := json.Unmarshal(raw, &rows); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			for _, r := range rows {
				buf.Write(append(r, '\n'))
			}
		} else if err := json.NewEncoder(&buf).Encode(v); err != nil {
			return nil, err
		}
		if err := env.WriteFile(ctx, name, buf.Bytes()); err != nil {
			return nil, err
		}
	}
	return s.metrics, nil
}

// evalRun runs the stages as run id under dir, with the student set to
// student and each extra assignment applied to the spec.
func evalRun(t *testing.T, dir, id, student string, sets []string, sts ...job.Stage) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	spec := newSpec()
	for _, s := range append([]string{"student.model=" + student}, sets...) {
		if err := spec.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	g, err := job.NewGraph(sts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(ctx, st, spec, g, job.Options{RunID: id, Reporter: job.NewReporter(io.Discard, false)}); err != nil {
		t.Fatal(err)
	}
}

// answered is a benchmark's questions <prefix>0.. with the pass@1 verdict
// of each.
type answered struct {
	bench   string
	prefix  string
	correct []bool
	rows    bool // keep the per-question file
}

// evalStage fakes evaluate/<arm>: evaluation.json with pass@1 as the
// verdicts give it, and "<benchmark>.jsonl" where rows is set.
func evalStage(arm string, bs ...answered) filesStage {
	ev := stages.Evaluation{Stage: "evaluate/" + arm, Model: "m", Benchmarks: map[string]stages.BenchmarkResult{}}
	files := map[string]any{}
	for _, b := range bs {
		var rs []stages.Response
		var scores []float64
		for i, ok := range b.correct {
			rs = append(rs, stages.Response{
				Problem: problems.Problem{ID: fmt.Sprintf("%s%d", b.prefix, i), Benchmark: b.bench, Question: fmt.Sprintf("question %d", i)},
				Samples: []stages.Sample{{Answer: "1", Correct: ok}}})
			scores = append(scores, compareOne(ok))
		}
		mean, iv, _ := mathgrade.Bootstrap(scores, mathgrade.DefaultBootstrapConfig())
		ev.Benchmarks[b.bench] = stages.BenchmarkResult{Summary: mathgrade.Summary{Problems: len(rs), Samples: len(rs), Pass1: mean, K: 1}, Interval: iv}
		if b.rows {
			files[b.bench+".jsonl"] = rs
		}
	}
	files[stages.EvaluationFile] = ev
	return filesStage{name: "evaluate/" + arm, files: files}
}

// verdicts returns n verdicts, the first k true.
func verdicts(n, k int) []bool {
	out := make([]bool, n)
	for i := range k {
		out[i] = true
	}
	return out
}

// compareFixture writes two runs: a (student s1: base, stat-sel) and b
// (student s2: base, stat-sel much worse on the same MATH questions,
// stat-syn and aime only in b, minerva on other questions).
func compareFixture(t *testing.T) string {
	dir := t.TempDir()
	evalRun(t, dir, "a", "models/s1", nil,
		evalStage("base", answered{problems.MATH, "m", verdicts(40, 20), true}, answered{problems.GSM8K, "g", verdicts(10, 5), false},
			answered{"minerva", "v", verdicts(10, 3), true}),
		evalStage("stat-sel", answered{problems.MATH, "m", verdicts(40, 30), true}))
	evalRun(t, dir, "b", "models/s2", nil,
		evalStage("base", answered{problems.MATH, "m", verdicts(40, 20), true}, answered{problems.GSM8K, "g", verdicts(10, 6), false},
			answered{"minerva", "w", verdicts(10, 3), true}, answered{"aime", "i", verdicts(5, 1), true}),
		evalStage("stat-sel", answered{problems.MATH, "m", verdicts(40, 8), true}),
		evalStage("stat-syn", answered{problems.MATH, "m", verdicts(40, 25), true}))
	return dir
}

func TestCompareJSON(t *testing.T) {
	dir := compareFixture(t)
	out, err := statjob(t, "compare", "a", "b", "--root", dir, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var c comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if c.A.Student != "models/s1" || c.B.Student != "models/s2" || !strings.Contains(strings.Join(c.Notes, "\n"), "different students") {
		t.Errorf("runs %+v %+v, notes %q", c.A, c.B, c.Notes)
	}
	if got := strings.Join(c.OnlyInA, ","); got != "" {
		t.Errorf("only in a: %q", got)
	}
	if got := strings.Join(c.OnlyInB, ","); got != "arm stat-syn,benchmark aime" {
		t.Errorf("only in b: %q", got)
	}
	rows := map[string]compareRow{}
	var order []string
	for _, r := range c.Rows {
		rows[r.Benchmark+"/"+r.Arm] = r
		order = append(order, r.Benchmark+"/"+r.Arm)
	}
	// MATH first, then by name; arms in a's order, then b's own.
	want := "math/base,math/stat-sel,math/stat-syn,aime/base,gsm8k/base,minerva/base"
	if got := strings.Join(order, ","); got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

	// The same questions answered alike: a paired difference of exactly 0.
	r := rows["math/base"]
	if r.Paired == nil || r.Paired.Questions != 40 || r.Paired.Delta != 0 || r.Paired.Lo != 0 || r.Paired.Hi != 0 || !near(*r.Delta, 0) {
		t.Errorf("math/base: %+v paired %+v", r, r.Paired)
	}
	// stat-sel: 30 → 8 of 40 right, every question b gets right a got right
	// too: -55 pp, an interval well below zero.
	r = rows["math/stat-sel"]
	if r.Paired == nil || !near(r.Paired.Delta, -0.55) || !near(*r.Delta, -0.55) || r.Paired.Hi >= -0.3 || r.Paired.Lo > r.Paired.Delta {
		t.Errorf("math/stat-sel: %+v paired %+v", r, r.Paired)
	}
	if r.A.Pass1 != 0.75 || r.B.Pass1 != 0.2 || r.Regression {
		t.Errorf("math/stat-sel scores %+v %+v (regression %v without --fail-below)", r.A, r.B, r.Regression)
	}
	// Rows only one run has carry one side.
	if r := rows["math/stat-syn"]; r.A != nil || r.B == nil || r.Delta != nil || r.Paired != nil {
		t.Errorf("math/stat-syn: %+v", r)
	}
	if r := rows["aime/base"]; r.A != nil || r.B == nil || r.B.Pass1 != 0.2 {
		t.Errorf("aime/base: %+v", r)
	}
	// No per-question file: a delta, no interval, and why.
	r = rows["gsm8k/base"]
	if r.Delta == nil || !near(*r.Delta, 0.1) || r.Paired != nil || !strings.Contains(r.Unpaired, "per-question gsm8k.jsonl") {
		t.Errorf("gsm8k/base: %+v", r)
	}
	// Different questions are never paired.
	r = rows["minerva/base"]
	if r.Paired != nil || !strings.Contains(r.Unpaired, "different questions: A answered 10, B 10, 0 of them the same") {
		t.Errorf("minerva/base: %+v", r)
	}
}

func TestCompareFailBelowGate(t *testing.T) {
	dir := compareFixture(t)
	// -55 pp with an interval entirely below -30 pp fails a 2 pp gate.
	out, err := statjob(t, "compare", "a", "b", "--root", dir, "--fail-below", "0.02")
	if !errors.Is(err, errRegression) {
		t.Fatalf("want a regression, got %v\n%s", err, out)
	}
	for _, want := range []string{"b is worse than a by more than 2.0 pp", "math × stat-sel: -55.0 pp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The table is printed before the gate answers; rows it cannot judge
	// are named.
	for _, want := range []string{"REGRESSION", "Gate: 1 regressions beyond -2.0 pp", "not gated by --fail-below (no paired interval): gsm8k × base, minerva × base"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A margin wider than the drop passes.
	out, err = statjob(t, "compare", "a", "b", "--root", dir, "--fail-below", "0.6")
	if err != nil || !strings.Contains(out, "Gate: no paired interval lies entirely below -60.0 pp") {
		t.Errorf("--fail-below 0.6: %v\n%s", err, out)
	}
	// Reversed, stat-sel improved: no regression at any margin.
	if _, err := statjob(t, "compare", "b", "a", "--root", dir, "--fail-below", "0"); err != nil {
		t.Errorf("b vs a: %v", err)
	}
	if _, err := statjob(t, "compare", "a", "b", "--root", dir, "--fail-below", "-1"); err == nil || !strings.Contains(err.Error(), "--fail-below -1") {
		t.Errorf("negative margin: %v", err)
	}
}

func TestCompareTextAndMarkdown(t *testing.T) {
	dir := compareFixture(t)
	out, err := statjob(t, "compare", "a", "b", "--root", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"A: run a, student models/s1",
		"B: run b, student models/s2",
		"math       stat-sel  75.0%  20.0%  -55.0 pp",
		"worse\n",
		"math       stat-syn  —      62.5%  —",
		"only in B",
		"Only in B (b): arm stat-syn, benchmark aime",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	md, err := statjob(t, "compare", "a", "b", "--root", dir, "--format", "markdown")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| BENCHMARK | ARM | A | B |", "## statjob compare: run a → run b", "| math | stat-sel | 75.0% | 20.0% | -55.0 pp | [-70.0, -40.0] pp | 40 | worse |", "- Only in B (b): arm stat-syn, benchmark aime"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if _, err := statjob(t, "compare", "a", "b", "--root", dir, "--format", "yaml"); err == nil || !strings.Contains(err.Error(), `--format "yaml"`) {
		t.Errorf("bad format: %v", err)
	}
	if _, err := statjob(t, "compare", "a", "nope", "--root", dir); err == nil || !strings.Contains(err.Error(), `no run "nope"`) {
		t.Errorf("missing run: %v", err)
	}
}
