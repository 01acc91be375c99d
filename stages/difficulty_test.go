package stages

import (
	"context"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/problems"
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

func TestDifficultyPRMRefused(t *testing.T) {
	spec := testSpec(t, "m", "difficulty.method=prm")
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "process reward model") {
		t.Fatalf("prm: %v", err)
	}
}
