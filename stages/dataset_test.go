package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/teacher/teachertest"
)

// The training questions of the STAT tests: skill_a exists in algebra and
// in geometry (skills belong to subjects), skill_b only in algebra, and
// nothing is labelled skill_c.
var dsTrain = []problems.Problem{
	{ID: "train/algebra/1.json", Question: "Alg one?", Answer: "2", Solution: `So \boxed{2}.`, Subject: "algebra", Level: 2, Skills: []string{"skill_a"}},
	{ID: "train/algebra/2.json", Question: "Alg two?", Answer: "3", Solution: `So \boxed{3}.`, Subject: "algebra", Level: 5, Skills: []string{"skill_a", "skill_b"}},
	{ID: "train/algebra/3.json", Question: "Alg three?", Answer: "4", Solution: `So \boxed{4}.`, Subject: "algebra", Level: 4, Skills: []string{"skill_a"}},
	{ID: "train/algebra/4.json", Question: "Alg four?", Answer: "5", Solution: `So \boxed{5}.`, Subject: "algebra", Level: 1, Skills: []string{"skill_b"}},
	{ID: "train/geometry/1.json", Question: "Geo one?", Answer: "6", Solution: `So \boxed{6}.`, Subject: "geometry", Level: 3, Skills: []string{"skill_a"}},
	{ID: "train/geometry/2.json", Question: "Geo two?", Answer: "7", Solution: `So \boxed{7}.`, Subject: "geometry", Level: 4, Skills: []string{"skill_a"}},
	{ID: "train/prealgebra/1.json", Question: "Pre one?", Answer: "8", Solution: `So \boxed{8}.`, Subject: "prealgebra", Level: 1},
}

var dsDiagnoses = []Diagnosed{
	{ID: "test/geometry/3.json", Subject: "geometry", Diagnosis: teacher.Diagnosis{Missing: []string{"skill_a", "skill_c"}}},
	{ID: "test/algebra/9.json", Subject: "algebra", Diagnosis: teacher.Diagnosis{Missing: []string{"skill_a", "skill_b"}}},
	{ID: "test/algebra/1.json", Subject: "algebra", Error: "reply does not parse", Raw: "???"},
	// The teacher judged this response right: nothing is missing, whatever
	// skills it named.
	{ID: "test/algebra/4.json", Subject: "algebra", Diagnosis: teacher.Diagnosis{Correct: true, Missing: []string{"skill_b"}}},
}

// dsCands are the training questions each pair may draw from.
var dsCands = map[string][]string{
	"test/algebra/9.json skill_a":  {"Alg one?", "Alg two?", "Alg three?"},
	"test/algebra/9.json skill_b":  {"Alg two?", "Alg four?"},
	"test/geometry/3.json skill_a": {"Geo one?", "Geo two?"},
}

// dsUpstream fakes label (and diagnose, for the STAT strategies).
func dsUpstream(train []problems.Problem, diags []Diagnosed) []job.Stage {
	up := []job.Stage{fixed{name: "label", files: map[string]any{LabelledFile: train}}}
	if diags != nil {
		up = append(up, fixed{name: "diagnose", files: map[string]any{DiagnosesFile: diags}})
	}
	return up
}

// dsSpec is a test spec whose teacher is srv.
func dsSpec(t *testing.T, srv *teachertest.Server, sets ...string) *job.Spec {
	t.Helper()
	base := []string{"teacher.provider=openai", "teacher.model=gpt-4o-mini", "teacher.retry.reasks=0",
		"teacher.retry.base_delay=1ms", "teacher.retry.max_delay=2ms"}
	if srv != nil {
		base = append(base, "teacher.base_url="+srv.URL+"/v1")
	}
	return testSpec(t, "m", append(base, sets...)...)
}

func dsStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// dsRun runs the stages with opts (run r1 unless opts say otherwise).
func dsRun(t *testing.T, st storage.Store, spec *job.Spec, opts job.Options, stages ...job.Stage) error {
	t.Helper()
	g, err := job.NewGraph(stages...)
	if err != nil {
		t.Fatal(err)
	}
	if opts.RunID == "" {
		opts.RunID = "r1"
	}
	opts.Holder, opts.Reporter = "test", job.NewReporter(io.Discard, false)
	_, err = job.Run(context.Background(), st, spec, g, opts)
	return err
}

// dsOutput reads a dataset stage's examples and metrics from run.
func dsOutput(t *testing.T, st storage.Store, run, stage string) ([]byte, []Example, map[string]any) {
	t.Helper()
	ctx := context.Background()
	rc, err := st.Get(ctx, job.OutputKey(run, stage, DatasetFile))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var exs []Example
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ex Example
		if err := json.Unmarshal(line, &ex); err != nil {
			t.Fatal(err)
		}
		exs = append(exs, ex)
	}
	m, err := job.ReadManifest(ctx, st, run, stage)
	if err != nil {
		t.Fatal(err)
	}
	return raw, exs, m.Metrics
}

// metric reads a count metric.
func metric(t *testing.T, m map[string]any, name string) int {
	t.Helper()
	v, ok := m[name].(float64)
	if !ok {
		t.Fatalf("metric %s missing or not a number: %v (metrics %v)", name, m[name], m)
	}
	return int(v)
}

// question is the question of an example's user turn, checked to be in
// the student's prompt.
func question(t *testing.T, ex Example) string {
	t.Helper()
	if len(ex.Messages) != 2 || ex.Messages[0].Role != "user" || ex.Messages[1].Role != "assistant" {
		t.Fatalf("example messages: %+v", ex.Messages)
	}
	q, ok := strings.CutSuffix(ex.Messages[0].Content, "\n\nPlease reason step by step, and put your final answer within \\boxed{}.")
	if !ok {
		t.Fatalf("user turn is not the student's prompt: %q", ex.Messages[0].Content)
	}
	return q
}

var solveQuestion = regexp.MustCompile(`(?s)^(.*)\nPlease reason step by step`)

// isSolve returns the question of a Solve call and its sample index (the
// seed the call carried, dataset.seed being 0).
func isSolve(t *testing.T, c teachertest.Call) (string, int, bool) {
	m := solveQuestion.FindStringSubmatch(c.Last())
	if m == nil || c.System != "" {
		return "", 0, false
	}
	if c.Seed == nil {
		t.Errorf("solve call without a seed: %q", c.Last())
		return m[1], 0, true
	}
	return m[1], int(*c.Seed), true
}

// selTeacher answers Solve for dsTrain: "Alg one?" is always answered
// right; any other question right in sample 0, wrong in sample 1, and
// without a \boxed{} answer in sample 2.
func selTeacher(t *testing.T) *teachertest.Server {
	gold := map[string]string{}
	for _, p := range dsTrain {
		gold[p.Question] = p.Answer
	}
	srv := teachertest.NewOpenAI(t)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		q, k, ok := isSolve(t, c)
		if !ok || gold[q] == "" {
			t.Errorf("unexpected call: %q", c.Last())
			return teachertest.Answer{Text: "?"}
		}
		switch {
		case q == "Alg one?" || k == 0:
			return teachertest.Answer{Text: fmt.Sprintf(`Working on %q, sample %d. So \boxed{%s}.`, q, k, gold[q])}
		case k == 1:
			return teachertest.Answer{Text: fmt.Sprintf(`Working on %q. So \boxed{%s0}.`, q, gold[q])}
		}
		return teachertest.Answer{Text: "I am not sure."}
	}
	return srv
}

// solveSeen counts the Solve calls the server answered by (question, sample).
func solveSeen(t *testing.T, srv *teachertest.Server) map[string]int {
	seen := map[string]int{}
	for _, c := range srv.Seen() {
		if q, k, ok := isSolve(t, c); ok {
			seen[fmt.Sprintf("%s#%d", q, k)]++
		}
	}
	return seen
}

func TestDatasetSelPairsAnswersAndFilter(t *testing.T) {
	srv := selTeacher(t)
	st := dsStore(t)
	spec := dsSpec(t, srv)
	stage := NewDataset("stat-sel")
	if err := dsRun(t, st, spec, job.Options{}, append(dsUpstream(dsTrain, dsDiagnoses), stage)...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/stat-sel")

	for name, want := range map[string]int{"diagnoses": 4, "diagnoses_failed": 1, "diagnoses_judged_correct": 1, "pairs": 4,
		"pairs_without_candidates": 1, "picks": 15, "examples": len(exs), "candidates": len(exs)} {
		if got := metric(t, m, name); got != want {
			t.Errorf("metric %s = %d, want %d", name, got, want)
		}
	}
	// Three answers are three calls, one per sample, and a question drawn
	// for several pairs (or several times) is asked once.
	seen := solveSeen(t, srv)
	questions := metric(t, m, "questions")
	if metric(t, m, "solutions_requested") != 3*questions || len(seen) != 3*questions || questions > 6 {
		t.Errorf("questions %d, requests %d, calls seen %v", questions, metric(t, m, "solutions_requested"), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s asked %d times", k, n)
		}
	}
	others := questions
	if seen["Alg one?#0"] == 1 {
		others--
	}
	if metric(t, m, "solutions_wrong") != others || metric(t, m, "solutions_malformed") != others {
		t.Errorf("wrong %d, malformed %d, want %d each", metric(t, m, "solutions_wrong"), metric(t, m, "solutions_malformed"), others)
	}

	perPair := map[string]int{}
	algOne := 0
	for _, ex := range exs {
		key := ex.For + " " + ex.Skill
		perPair[key]++
		q := question(t, ex)
		if !contains(dsCands[key], q) {
			t.Errorf("example for %s uses %q, not a training question of the pair's subject and skill", key, q)
		}
		var src problems.Problem
		for _, p := range dsTrain {
			if p.ID == ex.Source {
				src = p
			}
		}
		if src.Question != q || ex.Subject != src.Subject {
			t.Errorf("example source %s (%s) does not match its question %q", ex.Source, ex.Subject, q)
		}
		if !strings.Contains(ex.Messages[1].Content, `\boxed{`+src.Answer+`}`) {
			t.Errorf("kept a wrong answer: %q (gold %s)", ex.Messages[1].Content, src.Answer)
		}
		if key == "test/algebra/9.json skill_a" && q == "Alg one?" {
			algOne++
		}
	}
	// Five draws per pair; each keeps one answer, except "Alg one?", which
	// keeps all three.
	if algOne%3 != 0 || perPair["test/algebra/9.json skill_a"] != 5+2*algOne/3 ||
		perPair["test/algebra/9.json skill_b"] != 5 || perPair["test/geometry/3.json skill_a"] != 5 || len(perPair) != 3 {
		t.Errorf("examples per pair %v (Alg one? %d)", perPair, algOne)
	}
	ps, _ := m["per_skill"].(map[string]any)
	if ps["algebra/skill_b"] != 5.0 || ps["geometry/skill_a"] != 5.0 {
		t.Errorf("per_skill %v", ps)
	}

	// The same spec again in a new run recomputes the stage from the
	// teacher's cache: no call is paid twice, and the set is the same.
	calls := srv.Calls()
	raw1, _, _ := dsOutput(t, st, "r1", "dataset/stat-sel")
	if err := dsRun(t, st, spec, job.Options{RunID: "r2", From: "dataset/stat-sel"}, append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-sel"))...); err != nil {
		t.Fatal(err)
	}
	raw2, _, m2 := dsOutput(t, st, "r2", "dataset/stat-sel")
	if srv.Calls() != calls {
		t.Errorf("rerun made %d teacher calls, want 0 (all cached)", srv.Calls()-calls)
	}
	if !bytes.Equal(raw1, raw2) {
		t.Error("rerun from the cache wrote another training set")
	}
	if metric(t, m2, "teacher_calls") != 0 {
		t.Errorf("rerun reports %d teacher calls", metric(t, m2, "teacher_calls"))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDatasetSelDrawIsSeededCappedAndIndependentOfConcurrency(t *testing.T) {
	run := func(sets ...string) ([]byte, []Example) {
		st := dsStore(t)
		srv := selTeacher(t)
		if err := dsRun(t, st, dsSpec(t, srv, sets...), job.Options{}, append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-sel"))...); err != nil {
			t.Fatal(err)
		}
		raw, exs, _ := dsOutput(t, st, "r1", "dataset/stat-sel")
		return raw, exs
	}
	all, _ := run()
	capped, exs := run("dataset.size=7", "teacher.limits.concurrency=1")
	again, _ := run("dataset.size=7", "teacher.limits.concurrency=16")
	if len(exs) != 7 {
		t.Fatalf("size 7 drew %d examples", len(exs))
	}
	if !bytes.Equal(capped, again) {
		t.Error("the draw depends on the teacher's concurrency")
	}
	for _, line := range bytes.Split(bytes.TrimSpace(capped), []byte("\n")) {
		if !bytes.Contains(all, line) {
			t.Errorf("drawn example is not a candidate: %s", line)
		}
	}
	other, _ := run("dataset.size=7", "dataset.seed=5")
	if bytes.Equal(capped, other) {
		t.Error("another seed drew the same set")
	}
}

// synQuestion is what the fake teacher writes for a WriteQuestion call: a
// kind that decides how its solutions agree.
var synKinds = map[string]string{
	"algebra skill_a 0": "agree3", "algebra skill_a 1": "agree2",
	"algebra skill_b 0": "agree3", "algebra skill_b 1": "none",
	"geometry skill_a 0": "agree3", "geometry skill_a 1": "malformed",
}

var writeFields = regexp.MustCompile(`Subject: (\S+)\nSkill: (\S+)`)

// synTeacher writes questions "Synthetic <subject> <skill> <sample> [kind]"
// and solves them: agree3 → three equal answers (7, 7.0, 14/2); agree2 →
// 7, no \boxed{}, 14/2; none → 1, 2, 3.
func synTeacher(t *testing.T, prompts *sync.Map) *teachertest.Server {
	srv := teachertest.NewOpenAI(t)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		if strings.Contains(c.System, "new, self-contained math questions") {
			f := writeFields.FindStringSubmatch(c.Last())
			key := fmt.Sprintf("%s %s %d", f[1], f[2], *c.Seed)
			if prompts != nil {
				prompts.Store(key, c.Last())
			}
			kind := synKinds[key]
			if kind == "malformed" {
				return teachertest.Answer{Text: `{"question": ""}`}
			}
			return teachertest.Answer{Text: fmt.Sprintf(`{"question": "Synthetic %s [%s]"}`, key, kind)}
		}
		q, k, ok := isSolve(t, c)
		if !ok {
			t.Errorf("unexpected call: %q", c.Last())
			return teachertest.Answer{Text: "?"}
		}
		answers := map[string][]string{
			"agree3": {`\boxed{7}`, `\boxed{7.0}`, `\boxed{\frac{14}{2}}`},
			"agree2": {`\boxed{7}`, `no box, 7`, `\boxed{\frac{14}{2}}`},
			"none":   {`\boxed{1}`, `\boxed{2}`, `\boxed{3}`},
		}
		for kind, as := range answers {
			if strings.HasSuffix(q, "["+kind+"]") {
				return teachertest.Answer{Text: "Solution: " + as[k]}
			}
		}
		t.Errorf("solve of an unknown question %q", q)
		return teachertest.Answer{Text: "?"}
	}
	return srv
}

func TestDatasetSynAgreement(t *testing.T) {
	var prompts sync.Map
	srv := synTeacher(t, &prompts)
	st := dsStore(t)
	if err := dsRun(t, st, dsSpec(t, srv), job.Options{}, append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-syn"))...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/stat-syn")
	for name, want := range map[string]int{"pairs": 4, "pairs_without_candidates": 1, "questions_requested": 6,
		"questions_malformed": 1, "questions_kept": 4, "questions_disagree": 1, "solutions_requested": 15,
		"solutions_malformed": 1, "solutions_disagree": 3, "examples": 11} {
		if got := metric(t, m, name); got != want {
			t.Errorf("metric %s = %d, want %d", name, got, want)
		}
	}
	// The examples shown for a pair are its subject's questions with the
	// skill, as many as exist up to syn.examples (3).
	wantExamples := map[string]int{"algebra skill_a": 3, "algebra skill_b": 2, "geometry skill_a": 2}
	for key, n := range wantExamples {
		for s := range 2 {
			p, ok := prompts.Load(fmt.Sprintf("%s %d", key, s))
			if !ok {
				t.Fatalf("no WriteQuestion call for %s sample %d", key, s)
			}
			got := regexp.MustCompile(`Example \d+: (.*)`).FindAllStringSubmatch(p.(string), -1)
			if len(got) != n {
				t.Errorf("%s: %d examples shown, want %d", key, len(got), n)
			}
			for _, g := range got {
				found := false
				for _, c := range dsCands {
					found = found || contains(c, g[1]) && strings.HasPrefix(g[1], strings.ToUpper(key[:1])+key[1:3])
				}
				if !found {
					t.Errorf("%s: example %q is not a training question with the skill", key, g[1])
				}
			}
		}
	}
	perPair := map[string]int{}
	for _, ex := range exs {
		perPair[ex.For+" "+ex.Skill]++
		q := question(t, ex)
		if ex.Source != "synthetic" || !strings.HasPrefix(q, "Synthetic "+ex.Subject+" "+ex.Skill) {
			t.Errorf("example %+v", ex)
		}
		if strings.HasSuffix(q, "[none]") || strings.Contains(ex.Messages[1].Content, "no box") {
			t.Errorf("kept a solution that does not agree: %q → %q", q, ex.Messages[1].Content)
		}
	}
	if perPair["test/algebra/9.json skill_a"] != 5 || perPair["test/algebra/9.json skill_b"] != 3 || perPair["test/geometry/3.json skill_a"] != 3 {
		t.Errorf("examples per pair %v", perPair)
	}
	// Three solutions are three calls.
	seen := solveSeen(t, srv)
	if len(seen) != 15 {
		t.Errorf("%d distinct solve calls, want 15: %v", len(seen), seen)
	}
}

func TestDatasetSynResumeReusesTeacherCache(t *testing.T) {
	srv := synTeacher(t, nil)
	var writes atomic.Int64
	answer := srv.Answer
	// The first attempt: every solve call is refused (the stage fails);
	// the questions were written and cached.
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		a := answer(c)
		if strings.Contains(c.System, "new, self-contained") {
			if writes.Add(1) == 6 {
				for range 15 {
					srv.Fail(teachertest.Fault{Status: 400})
				}
			}
		}
		return a
	}
	st := dsStore(t)
	spec := dsSpec(t, srv, "teacher.limits.concurrency=1")
	stages := append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-syn"))
	err := dsRun(t, st, spec, job.Options{}, stages...)
	if err == nil || !strings.Contains(err.Error(), "every one of 15 teacher calls for solutions failed") {
		t.Fatalf("first attempt: %v", err)
	}
	if err := dsRun(t, st, spec, job.Options{Resume: true}, append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-syn"))...); err != nil {
		t.Fatal(err)
	}
	if writes.Load() != 6 {
		t.Errorf("questions written %d times over both attempts, want 6 (the resumed run reads the cache)", writes.Load())
	}
	if _, exs, _ := dsOutput(t, st, "r1", "dataset/stat-syn"); len(exs) != 11 {
		t.Errorf("resumed run wrote %d examples, want 11", len(exs))
	}
}

func TestDatasetAugment(t *testing.T) {
	srv := selTeacher(t)
	st := dsStore(t)
	if err := dsRun(t, st, dsSpec(t, srv), job.Options{}, append(dsUpstream(dsTrain, nil), NewDataset("augment"))...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/augment")
	// Seven questions, three answers each; "Alg one?" keeps three, the
	// others one.
	if len(exs) != 9 || metric(t, m, "solutions_requested") != 21 || metric(t, m, "solutions_wrong") != 6 {
		t.Errorf("%d examples, metrics %v", len(exs), m)
	}
	if len(solveSeen(t, srv)) != 21 {
		t.Errorf("solve calls %v", solveSeen(t, srv))
	}
}

// mathTrain is MATH train labelled with the reference skill map, as label
// writes it.
func mathTrain(t *testing.T) []problems.Problem {
	t.Helper()
	train, err := problems.LoadMATH("../data/math/train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := problems.LoadCatalogue("../data/skills/math_skills.json")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := problems.LoadSkillMap("../data/skills/math_skill_map.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := problems.AttachSkills(train, cat, rows, problems.KeepUnknown); err != nil {
		t.Fatal(err)
	}
	return train
}

func TestDatasetBaselinesOnMATHTrain(t *testing.T) {
	train := mathTrain(t)
	byID := map[string]problems.Problem{}
	hard := 0
	for _, p := range train {
		byID[p.ID] = p
		if p.Level >= 4 {
			hard++
		}
	}
	st := dsStore(t)
	run := func(id, strategy string, sets ...string) ([]Example, map[string]any) {
		t.Helper()
		if err := dsRun(t, st, dsSpec(t, nil, sets...), job.Options{RunID: id}, append(dsUpstream(train, nil), NewDataset(strategy))...); err != nil {
			t.Fatal(err)
		}
		_, exs, m := dsOutput(t, st, id, "dataset/"+strategy)
		return exs, m
	}
	check := func(name string, exs []Example) map[string]int {
		t.Helper()
		count := map[string]int{}
		for _, ex := range exs {
			p, ok := byID[ex.Source]
			if !ok || question(t, ex) != p.Question || ex.Messages[1].Content != p.Solution || ex.Subject != p.Subject {
				t.Fatalf("%s: example %s is not its training question with the reference solution", name, ex.Source)
			}
			count[ex.Source]++
		}
		return count
	}

	exs, _ := run("train", "train")
	if c := check("train", exs); len(exs) != len(train) || len(c) != len(train) {
		t.Errorf("train: %d examples of %d questions, want each of the %d once", len(exs), len(c), len(train))
	}
	exs, m := run("hard", "hard")
	for id := range check("hard", exs) {
		if byID[id].Level < 4 {
			t.Errorf("hard: %s is level %d", id, byID[id].Level)
		}
	}
	if len(exs) != hard || metric(t, m, "candidates") != hard {
		t.Errorf("hard: %d examples, want the %d questions of levels 4-5", len(exs), hard)
	}
	exs, _ = run("hard-cap", "hard", "dataset.size=300")
	if c := check("hard-cap", exs); len(exs) != 300 || len(c) != 300 {
		t.Errorf("hard capped at 300: %d examples of %d questions", len(exs), len(c))
	}
	exs, _ = run("train-repeat", "train", "dataset.size=9500", "dataset.repeat=true")
	c := check("train-repeat", exs)
	twice := 0
	for _, n := range c {
		if n > 2 {
			t.Fatalf("train repeated to 9500 uses a question %d times", n)
		}
		if n == 2 {
			twice++
		}
	}
	if len(exs) != 9500 || len(c) != len(train) || twice != 9500-len(train) {
		t.Errorf("train repeated to 9500: %d examples, %d questions, %d twice", len(exs), len(c), twice)
	}
}

// On MATH train, STAT-Sel draws from the questions of the difficult
// question's subject that the skill map labels with the missing skill.
func TestDatasetSelOnMATHTrain(t *testing.T) {
	train := mathTrain(t)
	byQ := map[string]problems.Problem{}
	for _, p := range train {
		byQ[p.Question] = p
	}
	srv := teachertest.NewOpenAI(t)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		q, _, ok := isSolve(t, c)
		if !ok || byQ[q].ID == "" {
			t.Errorf("unexpected call %q", c.Last())
		}
		return teachertest.Answer{Text: `The answer is \boxed{` + byQ[q].Answer + `}.`}
	}
	diags := []Diagnosed{
		{ID: "test/number_theory/5.json", Subject: "number_theory", Diagnosis: teacher.Diagnosis{Missing: []string{"prime_number_theory", "modular_arithmetic"}}},
		{ID: "test/counting_and_probability/7.json", Subject: "counting_and_probability", Diagnosis: teacher.Diagnosis{Missing: []string{"probability_concepts_and_calculations", "combinatorics_knowledge"}}},
	}
	st := dsStore(t)
	if err := dsRun(t, st, dsSpec(t, srv), job.Options{}, append(dsUpstream(train, diags), NewDataset("stat-sel"))...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/stat-sel")
	if metric(t, m, "pairs_without_candidates") != 0 || len(exs) != 4*5*3 {
		t.Fatalf("%d examples, metrics %v", len(exs), m)
	}
	for _, ex := range exs {
		p := byQ[question(t, ex)]
		if p.ID != ex.Source || p.Subject != ex.Subject || !contains(p.Skills, ex.Skill) {
			t.Errorf("example for %s/%s uses %s (%s, skills %v)", ex.Subject, ex.Skill, p.ID, p.Subject, p.Skills)
		}
	}
}

func TestDatasetBudgetStopFailsTheStage(t *testing.T) {
	srv := selTeacher(t)
	st := dsStore(t)
	spec := dsSpec(t, srv, "teacher.budget.tokens=3000", "teacher.limits.concurrency=1")
	err := dsRun(t, st, spec, job.Options{}, append(dsUpstream(dsTrain, dsDiagnoses), NewDataset("stat-sel"))...)
	if err == nil || !strings.Contains(err.Error(), teacher.ErrBudget.Error()) {
		t.Fatalf("a budget stop must fail the stage (so a resumed run finishes it), got %v", err)
	}
	if _, err := job.ReadManifest(context.Background(), st, "r1", "dataset/stat-sel"); err == nil {
		t.Error("the stage was marked done with a partial set")
	}
}

func TestDatasetNeeds(t *testing.T) {
	for s, want := range map[string]string{"stat-sel": "diagnose label", "stat-syn": "diagnose label",
		"train": "label", "augment": "label", "hard": "label", "embed-sel": "difficulty label"} {
		st := NewDataset(s)
		if st.Name() != "dataset/"+s || strings.Join(st.Needs(), " ") != want {
			t.Errorf("%s: name %s, needs %v, want %s", s, st.Name(), st.Needs(), want)
		}
	}
}

// A strategy's fingerprint changes with what shapes its set and with
// nothing else, so changing one arm's settings does not retrain another.
func TestDatasetFingerprintScope(t *testing.T) {
	up := map[string]string{"label": "L", "diagnose": "D"}
	fp := func(strategy string, sets ...string) string {
		t.Helper()
		s, err := NewDataset(strategy).Fingerprint(dsSpec(t, nil, sets...), up)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct {
		set     string
		changes []string // the strategies whose fingerprint it changes
	}{
		{"dataset.size=100", []string{"stat-sel", "stat-syn", "train", "augment", "hard"}},
		{"dataset.seed=3", []string{"stat-sel", "stat-syn", "train", "augment", "hard"}},
		{"dataset.sel.per_pair=4", []string{"stat-sel"}},
		{"dataset.syn.min_agree=3", []string{"stat-syn"}},
		{"dataset.augment.answers=2", []string{"augment"}},
		{"dataset.max_tokens=1000", []string{"stat-sel", "stat-syn", "augment"}},
		{"teacher.model=gpt-4o", []string{"stat-sel", "stat-syn", "augment"}},
		{"grade.rel_tol=0.001", []string{"stat-sel", "stat-syn", "augment"}},
		{"teacher.limits.concurrency=3", nil},
	} {
		for _, s := range []string{"stat-sel", "stat-syn", "train", "augment", "hard"} {
			if changed := fp(s) != fp(s, c.set); changed != contains(c.changes, s) {
				t.Errorf("%s: fingerprint of %s changed %v", c.set, s, changed)
			}
		}
	}
	up2 := map[string]string{"label": "L2", "diagnose": "D"}
	if a, _ := NewDataset("train").Fingerprint(dsSpec(t, nil), up2); a == fp("train") {
		t.Error("the fingerprint ignores the upstream fingerprints")
	}
}

func TestDatasetConfigValidate(t *testing.T) {
	for set, field := range map[string]string{
		"size=0": "size", "max_tokens=0": "max_tokens", "sel.per_pair=0": "sel.per_pair",
		"sel.answers=0": "sel.answers", "syn.examples=0": "syn.examples", "syn.questions=0": "syn.questions",
		"syn.min_agree=4": "syn.min_agree", "syn.question_max_tokens=0": "syn.question_max_tokens",
		"augment.answers=0": "augment.answers", "temperature=3": "temperature",
	} {
		spec := dsSpec(t, nil, "dataset."+set)
		err := spec.Validate()
		if err == nil || !strings.Contains(err.Error(), "dataset."+field+":") {
			t.Errorf("dataset.%s: %v", set, err)
		}
	}
	c := DefaultDatasetConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestDatasetAugmentThroughBatchAPI(t *testing.T) {
	srv := selTeacher(t)
	st := dsStore(t)
	spec := dsSpec(t, srv, "teacher.batch.enabled=true", "teacher.batch.min_items=1", "teacher.batch.poll_interval=1ms")
	if err := dsRun(t, st, spec, job.Options{}, append(dsUpstream(dsTrain, nil), NewDataset("augment"))...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/augment")
	if srv.Batches() != 1 || len(exs) != 9 || metric(t, m, "teacher_calls") != 0 {
		t.Errorf("batches %d, examples %d, online calls %d; want 1, 9, 0", srv.Batches(), len(exs), metric(t, m, "teacher_calls"))
	}
}
