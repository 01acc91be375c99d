package stages

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/teacher/teachertest"
)

// difficult is a difficult question whose shown response is response.
func difficult(id, subject, response string) Difficult {
	return Difficult{
		Response: Response{
			Problem: problems.Problem{ID: id, Benchmark: "math", Subject: subject, Question: "Question " + id + "?", Answer: "42"},
			Samples: []Sample{{Text: "the right answer, 42", Answer: "42", Correct: true}, {Text: response, Answer: "7"}},
		},
		Accuracy: 0.5, Why: "accuracy 0.50 < 0.60", Shown: 1,
	}
}

// diagnoseReplies are the fake teacher's replies by the student's response
// it is shown; a reply is a list: first answer, then the answer to each
// re-ask (the last repeats).
var diagnoseReplies = map[string][]string{
	"R1": {`{"judge": "incorrect", "reason": "sign error", "missing_skills": ["factoring_skills", "inequality_skills"]}`},
	"R2": {`{"judge": "incorrect", "reason": "wrong area", "missing_skills": ["area_calculation_skills", "Triangle Geometry Skills", "pythagorean_skills"]}`},
	"R3": {
		`{"judge": "incorrect", "reason": "r", "missing_skills": ["factoring_skills", "telepathy_skills"]}`,
		`{"judge": "incorrect", "reason": "r", "missing_skills": ["factoring_skills", "exponent_and_root_skills"]}`,
	},
	"R4": {"I would rather not say."},
	"R5": {"<judge>correct</judge> <reason>fine after all</reason> <skill>modular_arithmetic</skill> <skill>base_conversion</skill>"},
	"R6": {`{"judge": "incorrect", "reason": "r", "missing_skills": ["factoring_skills", "inequality_skills", "function_skills"]}`},
}

var responseRe = regexp.MustCompile(`(?s)Student's response:\n(.*?)\n\nFirst judge`)

// diagnoseFake answers Diagnose prompts from diagnoseReplies.
func diagnoseFake(t *testing.T) *teachertest.Server {
	srv := teachertest.NewOpenAI(t)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		m := responseRe.FindStringSubmatch(c.Messages[0].Text)
		if m == nil {
			t.Errorf("no student's response in %q", c.Messages[0].Text)
			return teachertest.Answer{Text: "?"}
		}
		replies := diagnoseReplies[m[1]]
		if replies == nil {
			t.Errorf("the teacher was shown an unexpected response %q", m[1])
			return teachertest.Answer{Text: "?"}
		}
		n := min(len(c.Messages)/2, len(replies)-1) // re-asks so far
		return teachertest.Answer{Text: replies[n]}
	}
	return srv
}

var diagnoseRows = []Difficult{
	difficult("test/algebra/1.json", "algebra", "R1"),
	difficult("test/geometry/2.json", "geometry", "R2"),
	difficult("test/algebra/3.json", "algebra", "R3"),
	difficult("test/algebra/4.json", "algebra", "R4"),
	difficult("test/number_theory/5.json", "number_theory", "R5"),
	difficult("test/algebra/6.json", "algebra", "R6"),
}

func difficultyFixed(rows []Difficult) fixed {
	return fixed{name: "difficulty", files: map[string]any{DifficultFile: rows}}
}

func readDiagnoses(t *testing.T, st storage.Store) ([]Diagnosed, Profile) {
	t.Helper()
	ds := teachRows[Diagnosed](t, st, "diagnose", DiagnosesFile)
	var p Profile
	if err := json.Unmarshal(readOutput(t, st, "diagnose", ProfileFile), &p); err != nil {
		t.Fatal(err)
	}
	return ds, p
}

func TestDiagnose(t *testing.T) {
	srv := diagnoseFake(t)
	st := storagetest.Local(t)
	spec := teachSpec(t, srv, "diagnose.max_failed=0.2")
	if _, err := runStages(t, st, spec, NewSkills(), difficultyFixed(diagnoseRows), NewDiagnose()); err != nil {
		t.Fatal(err)
	}
	ds, prof := readDiagnoses(t, st)
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	var want []string
	for _, r := range diagnoseRows {
		want = append(want, r.ID)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("diagnoses in order %v, want the input's %v", ids, want)
	}
	// R2's skill is spelt as in the list; R3 was re-asked; R4 never parsed;
	// R5 came as tagged text.
	checks := map[string][]string{
		"test/algebra/1.json":       {"factoring_skills", "inequality_skills"},
		"test/geometry/2.json":      {"area_calculation_skills", "triangle_geometry_skills", "pythagorean_skills"},
		"test/algebra/3.json":       {"factoring_skills", "exponent_and_root_skills"},
		"test/number_theory/5.json": {"modular_arithmetic", "base_conversion"},
		"test/algebra/6.json":       {"factoring_skills", "inequality_skills", "function_skills"},
	}
	for _, d := range ds {
		if d.ID == "test/algebra/4.json" {
			if d.Error == "" || d.Raw != "I would rather not say." || d.Diagnosis.Missing != nil {
				t.Errorf("unparseable diagnosis recorded as %+v; want its error and raw reply", d)
			}
			continue
		}
		if d.Error != "" || !slices.Equal(d.Diagnosis.Missing, checks[d.ID]) {
			t.Errorf("%s: %+v, want missing %v", d.ID, d, checks[d.ID])
		}
	}
	if ds[4].Diagnosis.Correct != true || ds[0].Diagnosis.Correct || ds[0].Diagnosis.Reason != "sign error" {
		t.Errorf("judges and reasons: %+v, %+v", ds[0].Diagnosis, ds[4].Diagnosis)
	}
	// R5 was judged correct: diagnosed, its skills not counted.
	wantProf := Profile{Questions: 6, Failed: 1, JudgedCorrect: 1, Skills: []SkillCount{
		{"algebra", "factoring_skills", 3},
		{"algebra", "inequality_skills", 2},
		{"algebra", "exponent_and_root_skills", 1},
		{"algebra", "function_skills", 1},
		{"geometry", "area_calculation_skills", 1},
		{"geometry", "pythagorean_skills", 1},
		{"geometry", "triangle_geometry_skills", 1},
	}}
	if prof.Questions != wantProf.Questions || prof.Failed != wantProf.Failed || prof.JudgedCorrect != wantProf.JudgedCorrect ||
		!slices.Equal(prof.Skills, wantProf.Skills) {
		t.Fatalf("profile %+v\nwant    %+v", prof, wantProf)
	}
	// The teacher read the shown sample, never the other one.
	for _, c := range srv.Seen() {
		if strings.Contains(c.Messages[0].Text, "the right answer") {
			t.Fatalf("the teacher was shown a sample other than Shown: %q", c.Messages[0].Text)
		}
	}
	m := teachMetrics(t, st, "diagnose")
	// Re-asks: R3 once, R4 twice (then failed).
	if teachNum(t, m, "diagnosed") != 5 || teachNum(t, m, "failed") != 1 || teachNum(t, m, "judged_correct") != 1 ||
		teachNum(t, m, "teacher.reasks") != 3 || teachNum(t, m, "teacher.malformed") != 1 {
		t.Fatalf("metrics %v", m)
	}
}

// TestDiagnoseNarrowedSkills: with max_skills 2 a three-skill reply is
// re-asked, then recorded as failed.
func TestDiagnoseNarrowedSkills(t *testing.T) {
	srv := diagnoseFake(t)
	st := storagetest.Local(t)
	rows := []Difficult{diagnoseRows[0], diagnoseRows[5]}
	if _, err := runStages(t, st, teachSpec(t, srv, "diagnose.max_skills=2", "diagnose.max_failed=0.5"),
		NewSkills(), difficultyFixed(rows), NewDiagnose()); err != nil {
		t.Fatal(err)
	}
	ds, prof := readDiagnoses(t, st)
	if ds[0].Error != "" || ds[1].Error == "" || !strings.Contains(ds[1].Error, "want 2 to 2") || prof.Failed != 1 {
		t.Fatalf("diagnoses %+v, profile %+v", ds, prof)
	}
}

func TestDiagnoseFailsBeyondMaxFailed(t *testing.T) {
	srv := diagnoseFake(t)
	_, err := runStages(t, storagetest.Local(t), teachSpec(t, srv), NewSkills(), difficultyFixed(diagnoseRows), NewDiagnose())
	if err == nil || !strings.Contains(err.Error(), "diagnose.max_failed") || !strings.Contains(err.Error(), "test/algebra/4.json") {
		t.Fatalf("err %v, want one naming diagnose.max_failed and the failed question", err)
	}
}

func TestDiagnoseUnknownSubject(t *testing.T) {
	srv := diagnoseFake(t)
	rows := []Difficult{diagnoseRows[0], difficult("test/astrology/9.json", "astrology", "R1")}
	_, err := runStages(t, storagetest.Local(t), teachSpec(t, srv), NewSkills(), difficultyFixed(rows), NewDiagnose())
	if err == nil || !strings.Contains(err.Error(), "test/astrology/9.json") || !strings.Contains(err.Error(), "astrology") {
		t.Fatalf("err %v, want one naming the question and its subject", err)
	}
	if srv.Calls() != 0 {
		t.Fatalf("%d teacher calls before the bad row was found", srv.Calls())
	}
}

// TestDiagnoseResume: a run that failed part-way resumes from the reply
// cache, calling the teacher only for what is missing, and a new run that
// recomputes the stage calls nothing.
func TestDiagnoseResume(t *testing.T) {
	srv := diagnoseFake(t)
	st := storagetest.Local(t)
	rows := []Difficult{diagnoseRows[0], diagnoseRows[1], diagnoseRows[4]}
	spec := teachSpec(t, srv, "diagnose.max_failed=0", "teacher.retry.attempts=1")
	stages := func() []job.Stage { return []job.Stage{NewSkills(), difficultyFixed(rows), NewDiagnose()} }
	srv.Fail(teachertest.Fault{Status: 400})
	if _, err := runStages(t, st, spec, stages()...); err == nil || !strings.Contains(err.Error(), "max_failed") {
		t.Fatalf("first run: err %v, want the refused call to fail the stage", err)
	}
	if srv.Calls() != 3 {
		t.Fatalf("first run made %d calls, want 3", srv.Calls())
	}
	if _, err := runStages(t, st, spec, stages()...); err != nil {
		t.Fatal(err)
	}
	if srv.Calls() != 4 {
		t.Fatalf("after resuming, %d calls in all; want 4 (only the refused one again)", srv.Calls())
	}
	m := teachMetrics(t, st, "diagnose")
	if teachNum(t, m, "teacher.cache_hits") != 2 || teachNum(t, m, "diagnosed") != 3 {
		t.Fatalf("resumed metrics %v", m)
	}
	g, err := job.NewGraph(stages()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background(), st, spec, g, job.Options{RunID: "r2", From: "diagnose", Holder: "test",
		Reporter: job.NewReporter(io.Discard, false)}); err != nil {
		t.Fatal(err)
	}
	if srv.Calls() != 4 {
		t.Fatalf("recomputing diagnose made %d calls in all; want 4 (every reply from the cache)", srv.Calls())
	}
	for _, name := range []string{DiagnosesFile, ProfileFile} {
		var sums []string
		for _, run := range []string{"r1", "r2"} {
			m, err := job.ReadManifest(context.Background(), st, run, "diagnose")
			if err != nil {
				t.Fatal(err)
			}
			o, _ := m.Output(name)
			sums = append(sums, o.SHA256)
		}
		if sums[0] == "" || sums[0] != sums[1] {
			t.Fatalf("%s of the recomputed stage differs: sha256 %q", name, sums)
		}
	}
}

func TestDiagnoseConfigValidate(t *testing.T) {
	teachValidate(t, "diagnose", func() job.Section { c := DefaultDiagnoseConfig(); return &c },
		"min_skills=1", "max_skills=4", "max_failed=-0.1", "max_tokens=0", "temperature=-1")
}

// TestDiagnoseBatch: with batch mode on, the calls go through the
// provider's batch API and nothing is asked online.
func TestDiagnoseBatch(t *testing.T) {
	srv := diagnoseFake(t)
	st := storagetest.Local(t)
	rows := []Difficult{diagnoseRows[0], diagnoseRows[1], diagnoseRows[4], diagnoseRows[5]}
	spec := teachSpec(t, srv, "teacher.batch.enabled=true", "teacher.batch.min_items=1", "teacher.batch.poll_interval=1ms")
	if _, err := runStages(t, st, spec, NewSkills(), difficultyFixed(rows), NewDiagnose()); err != nil {
		t.Fatal(err)
	}
	ds, prof := readDiagnoses(t, st)
	if len(ds) != 4 || prof.Failed != 0 || ds[3].ID != rows[3].ID || len(ds[3].Diagnosis.Missing) != 3 {
		t.Fatalf("diagnoses %+v, profile %+v", ds, prof)
	}
	m := teachMetrics(t, st, "diagnose")
	if srv.Batches() == 0 || teachNum(t, m, "teacher.batch_items") != 4 || teachNum(t, m, "teacher.attempts") != 0 {
		t.Fatalf("%d batch jobs, metrics %v; want every call in a batch", srv.Batches(), m)
	}
}

// TestDiagnoseBudgetStops: calls the budget refuses are not failures of
// the teacher: the stage stops, saying so, instead of finishing without
// them.
func TestDiagnoseBudgetStops(t *testing.T) {
	srv := diagnoseFake(t)
	spec := teachSpec(t, srv, "teacher.budget.tokens=10", "diagnose.max_failed=1")
	_, err := runStages(t, storagetest.Local(t), spec, NewSkills(), difficultyFixed(diagnoseRows[:2]), NewDiagnose())
	if err == nil || !strings.Contains(err.Error(), "teacher.budget") {
		t.Fatalf("err %v, want the stage stopped by the budget", err)
	}
	if srv.Calls() != 0 {
		t.Fatalf("%d calls past the budget", srv.Calls())
	}
}

// TestDiagnoseBudgetHoldsAcrossRestarts: a stage stopped by its budget and
// started again counts what it paid for before: it gets its cached replies
// and no new call the budget cannot take. A new run pays only its own calls.
func TestDiagnoseBudgetHoldsAcrossRestarts(t *testing.T) {
	srv := diagnoseFake(t)
	answer := srv.Answer
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		a := answer(c)
		a.Output = 40000 // billed tokens per reply, below max_tokens
		return a
	}
	st := storagetest.Local(t)
	// One subject after another: algebra, geometry, number_theory. The
	// budget takes two replies (40k tokens and their input each) and the
	// third call's reservation (100k max_tokens and its input) on top of
	// one, not of two.
	rows := []Difficult{diagnoseRows[0], diagnoseRows[1], diagnoseRows[4]}
	spec := teachSpec(t, srv, "teacher.budget.tokens=170000", "diagnose.max_tokens=100000")
	stages := func() []job.Stage { return []job.Stage{NewSkills(), difficultyFixed(rows), NewDiagnose()} }
	for attempt := range 2 {
		_, err := runStages(t, st, spec, stages()...)
		if err == nil || !strings.Contains(err.Error(), "teacher.budget") {
			t.Fatalf("attempt %d: err %v, want the stage stopped by the budget", attempt, err)
		}
		if srv.Calls() != 2 {
			t.Fatalf("attempt %d: %d calls in all, want 2 (the restart may not spend the budget again)", attempt, srv.Calls())
		}
	}
	// A new run (e.g. with a raised budget) reads r1's replies for free.
	g, err := job.NewGraph(stages()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background(), st, spec, g, job.Options{RunID: "r2", Holder: "test",
		Reporter: job.NewReporter(io.Discard, false)}); err != nil {
		t.Fatal(err)
	}
	m, err := job.ReadManifest(context.Background(), st, "r2", "diagnose")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m.Metrics)
	var got struct {
		Teacher teacher.Stats `json:"teacher"`
	}
	json.Unmarshal(b, &got)
	if srv.Calls() != 3 || got.Teacher.CacheHits != 2 || got.Teacher.Carried != 0 || got.Teacher.Budget.SpentTokens >= 80000 {
		t.Fatalf("new run: %d calls in all, stats %+v", srv.Calls(), got.Teacher)
	}
}
