package stages

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher/teachertest"
)

// Paths of the repository's data, from the package directory.
const (
	teachDataDir   = "../data"
	teachCatalogue = "../data/skills/math_skills.json"
	teachSkillMap  = "../data/skills/math_skill_map.jsonl"
)

// teachSpec is a spec reading the repository's data, with the teacher
// pointed at srv (when not nil) and fast retries, and sets applied.
func teachSpec(t *testing.T, srv *teachertest.Server, sets ...string) *job.Spec {
	t.Helper()
	base := []string{"data.dir=" + teachDataDir}
	if srv != nil {
		base = append(base, "teacher.provider=openai", "teacher.model=test-model", "teacher.base_url="+srv.URL+"/v1",
			"teacher.timeout=5s", "teacher.retry.base_delay=1ms", "teacher.retry.max_delay=5ms",
			"teacher.limits.concurrency=8")
	}
	return testSpec(t, "m", append(base, sets...)...)
}

// teachMetrics reads a finished stage's metrics of run r1, through JSON as
// a reader of the manifest sees them.
func teachMetrics(t *testing.T, st storage.Store, stage string) map[string]any {
	t.Helper()
	m, err := job.ReadManifest(context.Background(), st, "r1", stage)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m.Metrics)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// teachNum reads a number from metrics by a dotted path ("teacher.reasks").
func teachNum(t *testing.T, m map[string]any, path string) int {
	t.Helper()
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("metrics: %s: %v is not an object", path, v)
		}
		v = mm[k]
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("metrics: %s = %v, want a number (metrics %v)", path, v, m)
	}
	return int(f)
}

// teachRows reads run r1's JSONL output name of stage into rows of T.
func teachRows[T any](t *testing.T, st storage.Store, stage, name string) []T {
	t.Helper()
	var rows []T
	for i, line := range strings.Split(strings.TrimSpace(string(readOutput(t, st, stage, name))), "\n") {
		var r T
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s/%s line %d: %v", stage, name, i+1, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// promptSkills are the "- skill" lines of a prompt.
func promptSkills(prompt string) []string {
	var out []string
	for _, line := range strings.Split(prompt, "\n") {
		if s, ok := strings.CutPrefix(line, "- "); ok {
			out = append(out, s)
		}
	}
	return out
}

// promptSubject is the subject a STAT prompt names.
func promptSubject(prompt string) string {
	if m := regexp.MustCompile(`(?m)^Subject: (\S+)$`).FindStringSubmatch(prompt); m != nil {
		return m[1]
	}
	if m := regexp.MustCompile(`questions from the subject "([^"]+)"`).FindStringSubmatch(prompt); m != nil {
		return m[1]
	}
	return ""
}

// reasked reports whether a call is a re-ask after an unreadable reply.
func reasked(c teachertest.Call) bool { return strings.Contains(c.Last(), "could not be read") }

func readCatalogueOutput(t *testing.T, st storage.Store) problems.Catalogue {
	t.Helper()
	var doc catalogueDoc
	if err := json.Unmarshal(readOutput(t, st, "skills", CatalogueFile), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Subjects
}

func TestSkillsReference(t *testing.T) {
	st := storagetest.Local(t)
	if _, err := runStages(t, st, teachSpec(t, nil), NewSkills()); err != nil {
		t.Fatal(err)
	}
	cat := readCatalogueOutput(t, st)
	n := 0
	for _, l := range cat {
		n += len(l)
	}
	if len(cat) != 7 || n != 112 {
		t.Fatalf("catalogue: %d subjects, %d skills; want the reference's 7 and 112", len(cat), n)
	}
	if !cat.Has("algebra", "factoring_skills") || !cat.Has("number_theory", "modular_arithmetic") {
		t.Fatalf("catalogue lacks known skills: %v", cat)
	}
	m := teachMetrics(t, st, "skills")
	if teachNum(t, m, "subjects") != 7 || teachNum(t, m, "skills") != 112 || m["source"] != "reference" {
		t.Fatalf("metrics %v", m)
	}
}

func TestSkillsReferenceFingerprintFollowsFile(t *testing.T) {
	b, err := os.ReadFile(teachCatalogue)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "skills.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := teachSpec(t, nil, "skills.path="+path)
	before, err := NewSkills().Fingerprint(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "factoring_skills", "factoring", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := NewSkills().Fingerprint(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if before == after {
		t.Fatal("fingerprint did not change when the catalogue file changed")
	}
	if _, err := NewSkills().Fingerprint(teachSpec(t, nil, "skills.path="+path+".missing"), nil); err == nil ||
		!strings.Contains(err.Error(), "skills.path") {
		t.Fatalf("missing catalogue: err %v, want one naming skills.path", err)
	}
}

// TestSkillsTeacher: each subject is proposed twice over different
// questions; names are normalised and merged by vote; an unreadable reply
// is re-asked.
func TestSkillsTeacher(t *testing.T) {
	train, err := problems.LoadMATH(filepath.Join(teachDataDir, "math", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	subjectOf := map[string]string{} // question text → subject
	for _, p := range train {
		subjectOf[p.Question] = p.Subject
	}
	srv := teachertest.NewOpenAI(t)
	qRe := regexp.MustCompile(`(?s)\nQuestion \d+: (.*?)\n\n?(?:Question \d+: |List the distinct)`)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		subj := promptSubject(c.Messages[0].Text)
		if subj == "geometry" && !reasked(c) {
			return teachertest.Answer{Text: "Geometry needs many skills."}
		}
		// One name only this proposal gives (its first question), and two
		// every proposal of the subject gives, spelt differently.
		first := qRe.FindStringSubmatch(c.Messages[0].Text)[1]
		only := "only " + snakeSkill(first)[:min(12, len(snakeSkill(first)))]
		b, _ := json.Marshal(map[string]any{"skills": []string{"Core Skill of " + subj, "core-skill-of-" + subj, "shared_skill", only}})
		return teachertest.Answer{Text: string(b)}
	}
	st := storagetest.Local(t)
	spec := teachSpec(t, srv, "skills.source=teacher", "skills.questions=5", "skills.samples=2", "skills.min_votes=2")
	if _, err := runStages(t, st, spec, NewSkills()); err != nil {
		t.Fatal(err)
	}
	cat := readCatalogueOutput(t, st)
	if len(cat) != 7 {
		t.Fatalf("catalogue has %d subjects, want MATH's 7: %v", len(cat), cat)
	}
	for subj, list := range cat {
		want := []string{"core_skill_of_" + subj, "shared_skill"}
		if !slices.Equal(list, want) {
			t.Errorf("%s: skills %v, want %v (merged by vote, normalised, deduplicated)", subj, list, want)
		}
	}
	// What the teacher was shown: 5 questions of the subject per proposal,
	// different questions in the two proposals of a subject.
	shown := map[string][]string{}
	for _, c := range srv.Seen() {
		if reasked(c) {
			continue
		}
		subj := promptSubject(c.Messages[0].Text)
		n := strings.Count(c.Messages[0].Text, "\nQuestion ")
		if n != 5 {
			t.Errorf("%s proposal shows %d questions, want 5", subj, n)
		}
		first := qRe.FindStringSubmatch(c.Messages[0].Text)[1]
		if subjectOf[first] != subj {
			t.Errorf("%s proposal shows a question of %q: %.60q", subj, subjectOf[first], first)
		}
		shown[subj] = append(shown[subj], first)
	}
	for subj, firsts := range shown {
		if len(firsts) != 2 || firsts[0] == firsts[1] {
			t.Errorf("%s: proposals start with %q; want two different windows", subj, firsts)
		}
	}
	m := teachMetrics(t, st, "skills")
	if teachNum(t, m, "proposals") != 14 || teachNum(t, m, "proposals_failed") != 0 || teachNum(t, m, "teacher.reasks") != 2 ||
		teachNum(t, m, "skills") != 14 || teachNum(t, m, "teacher.input_tokens") == 0 {
		t.Fatalf("metrics %v", m)
	}
}

func TestSkillsTeacherSubjectWithoutProposals(t *testing.T) {
	srv := teachertest.NewOpenAI(t)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		if promptSubject(c.Messages[0].Text) == "precalculus" {
			return teachertest.Answer{Text: "no list today"}
		}
		return teachertest.Answer{Text: `<skill>a skill</skill>`}
	}
	_, err := runStages(t, storagetest.Local(t), teachSpec(t, srv, "skills.source=teacher", "skills.questions=2", "skills.samples=1"), NewSkills())
	if err == nil || !strings.Contains(err.Error(), "subject precalculus") {
		t.Fatalf("err %v, want one naming subject precalculus", err)
	}
}

// teachValidate checks that section's defaults (fresh returns them) are
// valid, and that each bad assignment ("field=value") makes Validate name
// its field.
func teachValidate(t *testing.T, section string, fresh func() job.Section, bad ...string) {
	t.Helper()
	if err := fresh().Validate(); err != nil {
		t.Fatalf("%s defaults: %v", section, err)
	}
	for _, set := range bad {
		c := fresh()
		spec := job.NewSpec()
		spec.Register(section, c)
		if err := spec.Set(section + "." + set); err != nil {
			t.Fatal(err)
		}
		field, _, _ := strings.Cut(set, "=")
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s.%s: err %v, want one naming %s", section, set, err, field)
		}
	}
}

func TestSkillsConfigValidate(t *testing.T) {
	teachValidate(t, "skills", func() job.Section { c := DefaultSkillsConfig(); return &c },
		"source=book", `path=""`, "questions=0", "samples=0", "min_votes=4", "max_skills=-1", "max_tokens=0", "temperature=3")
}
