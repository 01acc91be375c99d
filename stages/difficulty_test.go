package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/prm"
	"github.com/statjob/statjob/train/prm/prmtest"
)

// probeFixture is a probe output of five samples per question, graded.
func probeFixture() []Response {
	q := func(id, subject string, samples ...Sample) Response {
		return Response{Problem: problems.Problem{ID: id, Benchmark: "math", Subject: subject, Answer: "4"}, Samples: samples}
	}
	ok := Sample{Text: `\boxed{4}`, Answer: "4", Correct: true}
	eight := Sample{Text: `\boxed{8}`, Answer: "8"}
	frac := Sample{Text: `\boxed{\frac{16}{2}}`, Answer: `\frac{16}{2}`} // equals 8
	none := Sample{Text: "no idea"}
	return []Response{
		q("easy", "algebra", ok, ok, ok, ok, ok),                                             // 1.0, agreed
		q("borderline", "algebra", eight, ok, ok, ok, frac),                                  // 0.6, agreed
		q("consistent-wrong", "geometry", eight, frac, eight, eight, ok),                     // 0.2, agreed on 8
		q("scattered", "geometry", ok, none, Sample{Answer: "7"}, Sample{Answer: "1"}, none), // 0.2, no two agree
		q("silent", "prealgebra", none, none, none, none, none),                              // 0.0, no answers
	}
}

func runDifficulty(t *testing.T, sets ...string) ([]Difficult, job.Metrics) {
	t.Helper()
	st := storagetest.Local(t)
	up := fixed{name: "probe", files: map[string]any{ResponsesFile: probeFixture()}}
	if _, err := runStages(t, st, testSpec(t, "unused", sets...), up, NewDifficulty()); err != nil {
		t.Fatal(err)
	}
	rows, err := decodeRows[Difficult](strings.NewReader(string(readOutput(t, st, "difficulty", DifficultFile))), DifficultFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := job.ReadManifest(context.Background(), st, "r1", "difficulty")
	if err != nil {
		t.Fatal(err)
	}
	return rows, m.Metrics
}

func TestDifficultyByAccuracy(t *testing.T) {
	rows, m := runDifficulty(t) // default: accuracy < 0.5
	want := []struct {
		id    string
		acc   float64
		shown int
	}{{"consistent-wrong", 0.2, 0}, {"scattered", 0.2, 1}, {"silent", 0, 0}}
	if len(rows) != len(want) {
		t.Fatalf("difficult: %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.ID != w.id || r.Accuracy != w.acc || r.Shown != w.shown || len(r.Samples) != 5 || r.Answer != "4" {
			t.Errorf("row %d: %s accuracy %v shown %d, want %s %v %d", i, r.ID, r.Accuracy, r.Shown, w.id, w.acc, w.shown)
		}
		if r.Samples[r.Shown].Correct {
			t.Errorf("%s: shown sample %d is a correct one", r.ID, r.Shown)
		}
	}
	if rows[0].Why != "accuracy 0.20 < 0.50" {
		t.Errorf("why: %q", rows[0].Why)
	}
	bySubject := m["by_subject"].(map[string]any)
	if m["questions"] != 5.0 || m["difficult"] != 3.0 || m["fraction"] != 0.6 || bySubject["geometry"] != 2.0 || bySubject["prealgebra"] != 1.0 || bySubject["algebra"] != nil {
		t.Errorf("metrics %v", m)
	}

	// A higher threshold takes the borderline question too.
	rows, _ = runDifficulty(t, "difficulty.threshold=0.7")
	if len(rows) != 4 || rows[0].ID != "borderline" || rows[0].Shown != 0 {
		t.Errorf("threshold 0.7: %+v", rows)
	}
}

// TestDifficultyByConsistency: without looking at correctness, a question
// is difficult when no answer is given at least min_agree times; equal
// answers written differently (8 and 16/2) agree.
func TestDifficultyByConsistency(t *testing.T) {
	rows, _ := runDifficulty(t, "difficulty.method=consistency")
	if len(rows) != 2 || rows[0].ID != "scattered" || rows[1].ID != "silent" {
		t.Fatalf("consistency: %+v", rows)
	}
	if rows[0].Why != "most common answer given 1 of 5 times < 2" || rows[0].Accuracy != 0.2 || rows[0].Shown != 1 {
		t.Errorf("scattered: why %q accuracy %v shown %d", rows[0].Why, rows[0].Accuracy, rows[0].Shown)
	}
	// Requiring four agreeing answers takes "borderline" (4 and 8 split 3–2) too.
	rows, _ = runDifficulty(t, "difficulty.method=consistency", "difficulty.min_agree=4")
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "borderline,scattered,silent" {
		t.Errorf("min_agree 4: %v", ids)
	}
}

// prmFixture is probeFixture with questions and some multi-step answers,
// for the process reward model to read.
func prmFixture() []Response {
	rs := probeFixture()
	for i := range rs {
		rs[i].Question = fmt.Sprintf("Question %d: what is $2 \\cdot 2$?", i)
	}
	rs[1].Samples[1].Text = "Two times two is four.\n\nSo the answer is $\\boxed{4}$."
	rs[2].Samples[0].Text = "Doubling 2 gives 8.\n\nCheck: $2+2=8$.\n\n$\\boxed{8}$"
	return rs
}

// TestDifficultyByPRM runs difficulty with method prm through the job
// runner on a tiny PRM: every sample is scored as train/prm scores it, the
// scores are written per question (PRMScoresFile), and a question is
// difficult when the fraction of its samples judged right is below the
// threshold, showing the first sample judged wrong.
func TestDifficultyByPRM(t *testing.T) {
	ctx := context.Background()
	dir := prmtest.Write(t, t.TempDir(), prmtest.Llama, 11)
	rs := prmFixture()

	// The tiny PRM's scores, straight from train/prm, set tau1 so that
	// some samples pass and some do not.
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	pc := prm.DefaultConfig()
	pc.Model = dir
	p, err := prm.Open(ctx, b, pc)
	if err != nil {
		t.Fatal(err)
	}
	var items []prm.Item
	for _, r := range rs {
		for _, s := range r.Samples {
			items = append(items, prm.Item{Question: r.Question, Response: s.Text})
		}
	}
	probe, err := p.Score(ctx, items)
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	var last []float64
	for _, s := range probe {
		if s.Scored {
			last = append(last, s.Steps[len(s.Steps)-1])
		}
	}
	slices.Sort(last)
	pc.Tau1, pc.Tau2 = last[len(last)/2], 0.05
	want := map[string]int{} // question → samples judged right
	for i, s := range probe {
		if ok, _ := pc.Judge(s.Steps); ok && s.Scored {
			want[rs[i/5].ID]++
		}
	}

	st := storagetest.Local(t)
	spec := testSpec(t, "unused", "difficulty.method=prm", "difficulty.prm.model="+dir,
		fmt.Sprintf("difficulty.prm.tau1=%v", pc.Tau1), fmt.Sprintf("difficulty.prm.tau2=%v", pc.Tau2))
	up := fixed{name: "probe", files: map[string]any{ResponsesFile: rs}}
	if _, err := runStages(t, st, spec, up, NewDifficulty()); err != nil {
		t.Fatal(err)
	}
	scored, err := decodeRows[PRMScored](strings.NewReader(string(readOutput(t, st, "difficulty", PRMScoresFile))), PRMScoresFile)
	if err != nil {
		t.Fatal(err)
	}
	hard, err := decodeRows[Difficult](strings.NewReader(string(readOutput(t, st, "difficulty", DifficultFile))), DifficultFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(scored) != len(rs) {
		t.Fatalf("%d scored rows for %d questions", len(scored), len(rs))
	}
	var wantHard []string
	rightSamples := 0
	for q, row := range scored {
		r := rs[q]
		if row.ID != r.ID || len(row.Samples) != 5 || row.Right != float64(want[r.ID])/5 {
			t.Errorf("question %s: scored row %s, %d samples, right %v; want %d of 5 right", r.ID, row.ID, len(row.Samples), row.Right, want[r.ID])
		}
		for k, s := range row.Samples {
			direct := probe[q*5+k]
			ok, why := pc.Judge(direct.Steps)
			if !slices.Equal(s.Steps, direct.Steps) || s.Scored != direct.Scored || (s.Scored && (s.Right != ok || s.Why != why)) {
				t.Errorf("%s sample %d: stage %+v, train/prm %+v", r.ID, k, s, direct)
			}
		}
		rightSamples += want[r.ID]
		if want[r.ID] < 3 { // threshold 0.5 of 5 samples
			wantHard = append(wantHard, r.ID)
		}
	}
	if len(wantHard) == 0 || len(wantHard) == len(rs) {
		t.Fatalf("tau1 %.3f makes every question or none difficult (%v): the test says little", pc.Tau1, wantHard)
	}
	var gotHard []string
	for _, d := range hard {
		gotHard = append(gotHard, d.ID)
		row := scored[slices.IndexFunc(scored, func(s PRMScored) bool { return s.ID == d.ID })]
		first := slices.IndexFunc(row.Samples, func(s prm.Score) bool { return !s.Right })
		wantWhy := fmt.Sprintf("PRM judged %d of 5 right (%.2f < 0.50)", want[d.ID], row.Right)
		if d.Shown != first || d.Why != wantWhy {
			t.Errorf("%s: shown %d why %q, want %d %q", d.ID, d.Shown, d.Why, first, wantWhy)
		}
	}
	if !slices.Equal(gotHard, wantHard) {
		t.Errorf("difficult %v, want %v", gotHard, wantHard)
	}
	m, err := job.ReadManifest(ctx, st, "r1", "difficulty")
	if err != nil {
		t.Fatal(err)
	}
	// scattered's two samples with no text are not scored
	if m.Metrics["prm_not_scored"] != 2.0 || m.Metrics["prm_right"] != float64(rightSamples)/25 || m.Metrics["difficult"] != float64(len(wantHard)) {
		t.Errorf("metrics %v", m.Metrics)
	}
}

// prmCancelAt cancels a run once the log shows needle, and counts the
// lines that show count.
type prmCancelAt struct {
	needle, count string
	cancel        context.CancelFunc
	seen          *int
}

func (w prmCancelAt) Write(p []byte) (int, error) {
	if w.needle != "" && strings.Contains(string(p), w.needle) {
		w.cancel()
	}
	if strings.Contains(string(p), w.count) {
		*w.seen++
	}
	return len(p), nil
}

// TestDifficultyPRMResumes stops the prm method after its first part of
// questions, as a preempted task stops, and resumes it through the job
// runner: the resumed stage reads the finished part back instead of
// scoring it again, scores only the rest, and writes the same bytes as a
// run that was never stopped.
func TestDifficultyPRMResumes(t *testing.T) {
	ctx := context.Background()
	dir := prmtest.Write(t, t.TempDir(), prmtest.Llama, 11)
	rs := prmFixture()
	// tau1 0.4 splits the tiny PRM's scores: some questions are difficult,
	// some not.
	sets := []string{"difficulty.method=prm", "difficulty.prm.model=" + dir, "difficulty.prm.tau1=0.4", "difficulty.prm.tau2=0.05",
		"difficulty.part_questions=2", "job.grace=0s"}
	g, err := job.NewGraph(fixed{name: "probe", files: map[string]any{ResponsesFile: rs}}, NewDifficulty())
	if err != nil {
		t.Fatal(err)
	}
	run := func(st storage.Store, runCtx context.Context, w prmCancelAt, resume bool) error {
		_, err := job.Run(runCtx, st, testSpec(t, "unused", sets...), g, job.Options{RunID: "r1", Resume: resume, Holder: "test",
			Reporter: job.NewReporter(w, false)})
		return err
	}
	const scoredLine = `"message":"prm part scored"`

	// A run that is never stopped: three parts (2, 2 and 1 questions).
	whole := storagetest.Local(t)
	n := 0
	if err := run(whole, ctx, prmCancelAt{count: scoredLine, seen: &n}, false); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("uninterrupted run scored %d parts, want 3", n)
	}

	// Stopped once the first part is kept.
	st := storagetest.Local(t)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	n = 0
	if err := run(st, runCtx, prmCancelAt{needle: "parts/prm-00000.jsonl", count: scoredLine, cancel: cancel, seen: &n}, false); err == nil {
		t.Fatal("the stopped run reports success")
	}
	if _, err := job.ReadManifest(ctx, st, "r1", "difficulty"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("the stopped stage has a manifest (err %v)", err)
	}
	if n != 1 {
		t.Fatalf("the stopped run scored %d parts, want 1", n)
	}
	first := readOutput(t, st, "difficulty", "parts/prm-00000.jsonl")

	n = 0
	if err := run(st, ctx, prmCancelAt{count: scoredLine, seen: &n}, true); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("the resumed run scored %d parts, want the 2 left", n)
	}
	for _, name := range []string{PRMScoresFile, DifficultFile} {
		if got, want := readOutput(t, st, "difficulty", name), readOutput(t, whole, "difficulty", name); !bytes.Equal(got, want) {
			t.Errorf("%s of the resumed run differs from the uninterrupted run's:\n%s\nvs\n%s", name, got, want)
		}
	}
	if !bytes.Equal(readOutput(t, st, "difficulty", "parts/prm-00000.jsonl"), first) {
		t.Error("the kept part was rewritten")
	}
	m, err := job.ReadManifest(ctx, st, "r1", "difficulty")
	if err != nil {
		t.Fatal(err)
	}
	if m.Metrics["prm_questions_kept"] != 2.0 || m.Metrics["prm_questions_scored"] != 3.0 {
		t.Errorf("resumed metrics %v: want 2 questions kept, 3 scored", m.Metrics)
	}
	// The resumed attempt wrote parts 1 and 2 only.
	if _, ok := m.Output("parts/prm-00000.jsonl"); ok {
		t.Error("the resumed attempt wrote the kept part again")
	}
	if _, ok := m.Output("parts/prm-00002.jsonl"); !ok {
		t.Errorf("the resumed attempt did not write the last part: outputs %v", m.Outputs)
	}
	u, err := job.ReadManifest(ctx, whole, "r1", "difficulty")
	if err != nil {
		t.Fatal(err)
	}
	if u.Metrics["prm_questions_kept"] != 0.0 || u.Metrics["prm_questions_scored"] != 5.0 || u.Metrics["prm_right"] != m.Metrics["prm_right"] {
		t.Errorf("uninterrupted metrics %v vs resumed %v", u.Metrics, m.Metrics)
	}
	if d := u.Metrics["difficult"]; d == 0.0 || d == 5.0 {
		t.Errorf("%v of 5 questions difficult: the comparison says little", d)
	}
}

// TestDifficultyPRMFingerprint: the PRM's files and rule enter the prm
// method's fingerprint, batch_tokens does not, and the prm block does not
// touch the other methods' fingerprints.
func TestDifficultyPRMFingerprint(t *testing.T) {
	a := prmtest.Write(t, t.TempDir(), prmtest.Llama, 1)
	b := prmtest.Write(t, t.TempDir(), prmtest.Llama, 2)
	fp := func(sets ...string) string {
		t.Helper()
		f, err := NewDifficulty().Fingerprint(testSpec(t, "m", sets...), map[string]string{"probe": "p"})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := fp("difficulty.method=prm", "difficulty.prm.model="+a)
	for _, tc := range []struct {
		sets []string
		same bool
	}{
		{[]string{"difficulty.method=prm", "difficulty.prm.model=" + a, "difficulty.prm.batch_tokens=64"}, true},
		{[]string{"difficulty.method=prm", "difficulty.prm.model=" + b}, false},
		{[]string{"difficulty.method=prm", "difficulty.prm.model=" + a, "difficulty.prm.tau1=0.9"}, false},
		{[]string{"difficulty.method=prm", "difficulty.prm.model=" + a, "difficulty.threshold=0.6"}, false},
		{[]string{"difficulty.method=prm", "difficulty.prm.model=" + a, "difficulty.part_questions=8"}, false},
	} {
		if got := fp(tc.sets...); (got == base) != tc.same {
			t.Errorf("%v: same fingerprint %v, want %v", tc.sets, got == base, tc.same)
		}
	}
	if fp() != fp("difficulty.prm.tau1=0.5", "difficulty.prm.model="+a, "difficulty.part_questions=3") {
		t.Error("the prm block or part_questions changed the accuracy method's fingerprint")
	}
}

func TestDifficultyPRMValidate(t *testing.T) {
	for set, want := range map[string]string{
		`difficulty.prm.model=""`:      "difficulty.prm.model: no process reward model named",
		"difficulty.prm.tau1=1.5":      "difficulty.prm.tau1: 1.5 is not in [0, 1]",
		`difficulty.prm.good_token=""`: "difficulty.prm.good_token: empty",
		"difficulty.threshold=0":       "difficulty.threshold: 0 is not in (0, 1]",
		"difficulty.part_questions=0":  "difficulty.part_questions: 0, want at least 1",
	} {
		spec := testSpec(t, "m", "difficulty.method=prm", "difficulty.prm.model=models/prm", set)
		if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", set, err, want)
		}
	}
	if err := testSpec(t, "m", "difficulty.method=prm", "difficulty.prm.model=models/prm").Validate(); err != nil {
		t.Errorf("prm with a model: %v", err)
	}
	// The prm block is read only by the prm method.
	if err := testSpec(t, "m", "difficulty.prm.tau1=7").Validate(); err != nil {
		t.Errorf("accuracy with a bad prm block: %v", err)
	}
}
