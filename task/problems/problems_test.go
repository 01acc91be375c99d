package problems

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/statjob/statjob/task/mathgrade"
)

const dataDir = "../../data"

func TestLoadEverySet(t *testing.T) {
	want := map[string]int{MATH: 5000, MATH500: 500, GSM8K: 1319, AIME24: 30, AIME25: 30, AMC23: 40, Minerva: 272, OlympiadBench: 675}
	for name, n := range want {
		ps, err := LoadDir(name, dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != n {
			t.Errorf("%s: %d problems, want %d", name, len(ps), n)
		}
		ids := map[string]bool{}
		for _, p := range ps {
			if p.ID == "" || p.Question == "" || p.Answer == "" || p.Benchmark != name {
				t.Fatalf("%s: incomplete problem %+v", name, p)
			}
			if ids[p.ID] {
				t.Errorf("%s: duplicate id %s", name, p.ID)
			}
			ids[p.ID] = true
		}
	}
}

func find(t *testing.T, ps []Problem, id string) Problem {
	t.Helper()
	for _, p := range ps {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("no problem %s", id)
	return Problem{}
}

func TestLoadFields(t *testing.T) {
	m, err := LoadDir(MATH, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	p := find(t, m, "test/algebra/1.json")
	if p.Answer != "2" || p.Subject != "algebra" || p.Level != 3 {
		t.Errorf("MATH test/algebra/1.json = %+v", p)
	}
	subjects := map[string]bool{}
	for _, p := range m {
		subjects[p.Subject] = true
	}
	cat, err := LoadCatalogue(filepath.Join(dataDir, "skills/math_skills.json"))
	if err != nil {
		t.Fatal(err)
	}
	for s := range subjects {
		if _, ok := cat[s]; !ok {
			t.Errorf("MATH subject %q is not a catalogue key", s)
		}
	}
	train, err := LoadMATH(filepath.Join(dataDir, "math/train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	unknown := 0
	for _, p := range train {
		if p.Level == 0 {
			unknown++
		}
	}
	if len(train) != 7500 || unknown != 2 {
		t.Errorf("MATH train: %d problems, %d of level ?", len(train), unknown)
	}

	m5, _ := LoadDir(MATH500, dataDir)
	if p := find(t, m5, "test/precalculus/807.json"); p.Answer != `\left( 3, \frac{\pi}{2} \right)` || p.Subject != "precalculus" || p.Level != 2 {
		t.Errorf("MATH500 = %+v", p)
	}
	// MATH500's gold answers are MATH's, by value
	for _, q := range m5 {
		if !mathgrade.Equal(find(t, m, q.ID).Answer, q.Answer) {
			t.Errorf("%s: MATH500 answer %q differs from MATH's %q", q.ID, q.Answer, find(t, m, q.ID).Answer)
		}
	}

	g, _ := LoadDir(GSM8K, dataDir)
	if g[0].Answer != "18" || g[0].ID != "gsm8k/1" {
		t.Errorf("GSM8K first = %+v", g[0])
	}
	for _, p := range g {
		if strings.Contains(p.Answer, ",") {
			t.Errorf("GSM8K %s keeps a thousands separator: %q", p.ID, p.Answer)
		}
	}
	a24, _ := LoadDir(AIME24, dataDir)
	if a24[0].Answer != "204" || a24[0].ID != "aime24/60" {
		t.Errorf("AIME24 first = %+v", a24[0])
	}
	a25, _ := LoadDir(AIME25, dataDir)
	if a25[0].Answer != "70" {
		t.Errorf("AIME25 first = %+v", a25[0])
	}
	amc, _ := LoadDir(AMC23, dataDir)
	if amc[0].Answer != "27.0" || !mathgrade.Equal(amc[0].Answer, "27") {
		t.Errorf("AMC23 first = %+v", amc[0])
	}
	mv, _ := LoadDir(Minerva, dataDir)
	if mv[0].Answer != "1.6" || mv[0].ID != "minerva/0" {
		t.Errorf("Minerva first = %+v", mv[0])
	}
	ob, _ := LoadDir(OlympiadBench, dataDir)
	if p := find(t, ob, "olympiadbench/1606"); p.Answer != "2" || p.Subject != "Combinatorics" {
		t.Errorf("OlympiadBench 1606 = %+v", p)
	}
	units := 0
	for _, p := range ob {
		if p.Unit != "" {
			units++
		}
	}
	if units != 8 {
		t.Errorf("OlympiadBench: %d problems with a unit, want 8", units)
	}
	// a multiple-answer problem is graded as an unordered list
	multi := 0
	for _, p := range ob {
		if strings.Contains(p.Answer, "$, $") || strings.Contains(p.Answer, "$,$") {
			multi++
		}
	}
	if multi == 0 {
		t.Error("no joined multiple answers")
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "set.jsonl")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct {
		set, body, want string
	}{
		{MATH, `{"unique_id":"a","problem":"q","level":"Level 1","type":"Algebra","solution":"\\boxed{1}"}` + "\n{bad\n", ":2: invalid character"},
		{MATH, `{"unique_id":"a","problem":"q","level":"Level 1","type":"Algebra","solution":"no box"}`, `:1: solution of a has no \boxed{} answer`},
		{MATH, `{"unique_id":"a","problem":"q","level":"Level 9","type":"Algebra","solution":"\\boxed{1}"}`, `:1: level "Level 9"`},
		{MATH, `{"problem":"q","level":"Level 1","type":"Algebra","solution":"\\boxed{1}"}`, `:1: missing field "unique_id"`},
		{MATH500, `{"unique_id":"a","problem":"q","answer":"","level":1}`, `:1: missing field "answer"`},
		{GSM8K, "\n\n" + `{"question":"q","answer":"no hashes"}`, `:3: answer has no "####"`},
		{AIME25, `{"problem":"q","answer":null}`, `:1: missing field "answer"`},
		{AMC23, `{"problem":"q","answer":{"x":1}}`, `:1: field "answer"`},
		{Minerva, `{"problem":"q","solution":"none"}`, `:1: solution has no \boxed{}`},
		{OlympiadBench, `{"question":"q","final_answer":[]}`, `:1: missing field "final_answer"`},
		{OlympiadBench, `{"question":"q","final_answer":["1",""]}`, `:1: final_answer[1] is empty`},
	} {
		path := writeFile(t, c.body)
		_, err := Load(c.set, path)
		if err == nil || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%s %q: error %v, want %q", c.set, c.body, err, path+c.want)
		}
	}
	if _, err := Load("nope", "x"); !errors.Is(err, ErrUnknownBenchmark) {
		t.Errorf("unknown set: %v", err)
	}
	if _, err := LoadDir(MATH, t.TempDir()); err == nil || !strings.Contains(err.Error(), "math/test.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSubjectKey(t *testing.T) {
	for in, want := range map[string]string{"Counting & Probability": "counting_and_probability",
		"Intermediate Algebra": "intermediate_algebra", "Algebra": "algebra", "Number Theory": "number_theory"} {
		if got := SubjectKey(in); got != want {
			t.Errorf("SubjectKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAttachSkills(t *testing.T) {
	cat, err := LoadCatalogue(filepath.Join(dataDir, "skills/math_skills.json"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := LoadSkillMap(filepath.Join(dataDir, "skills/math_skill_map.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range cat {
		n += len(s)
	}
	if len(cat) != 7 || n != 112 || len(rows) != 11552 {
		t.Fatalf("catalogue %d subjects %d skills, map %d rows", len(cat), n, len(rows))
	}
	for _, policy := range []SkillPolicy{KeepUnknown, DropUnknown} {
		ps, _ := LoadMATH(filepath.Join(dataDir, "math/train.jsonl"))
		test, _ := LoadDir(MATH, dataDir)
		ps = append(ps, test...)
		unknown, err := AttachSkills(ps, cat, rows, policy)
		if err != nil {
			t.Fatal(err)
		}
		if len(unknown) != 170 {
			t.Errorf("%s: %d unknown skills reported, want 170 (data/README.md)", policy, len(unknown))
		}
		labelled, outside := 0, 0
		for _, p := range ps {
			if len(p.Skills) > 0 {
				labelled++
			}
			for _, s := range p.Skills {
				if !cat.Has(p.Subject, s) {
					outside++
				}
			}
		}
		if labelled+948 != len(ps) && policy == KeepUnknown {
			t.Errorf("%s: %d of %d problems labelled, want all but 948", policy, labelled, len(ps))
		}
		if policy == KeepUnknown && outside != 170 || policy == DropUnknown && outside != 0 {
			t.Errorf("%s: %d skills outside the catalogue attached", policy, outside)
		}
		u := unknown[0]
		if u.Line == 0 || u.UniqueID == "" || cat.Has(u.Subject, u.Skill) {
			t.Errorf("report %+v", u)
		}
	}
	if _, err := AttachSkills(nil, cat, rows, "maybe"); err == nil {
		t.Error("bad policy accepted")
	}
	bad := []SkillRow{{UniqueID: "x", Subject: "astrology", Skills: []string{"a"}, Line: 7}}
	if _, err := AttachSkills(nil, cat, bad, KeepUnknown); err == nil || !strings.Contains(err.Error(), "line 7") {
		t.Errorf("unknown subject: %v", err)
	}
	skill := cat["geometry"][0]
	dup := []SkillRow{{UniqueID: "x", Subject: "geometry", Skills: []string{skill}, Line: 3},
		{UniqueID: "x", Subject: "geometry", Skills: []string{skill}, Line: 9}}
	if _, err := AttachSkills(nil, cat, dup, KeepUnknown); err == nil || !strings.Contains(err.Error(), "line 9") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("duplicate row: %v", err)
	}
	other := []Problem{{ID: "x", Subject: "algebra"}}
	if _, err := AttachSkills(other, cat, dup[:1], KeepUnknown); err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "algebra") {
		t.Errorf("subject mismatch: %v", err)
	}
}

func TestSplit(t *testing.T) {
	test, err := LoadDir(MATH, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	m500, err := LoadDir(MATH500, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	val, rest, err := SplitMATH(dataDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(val) != 1000 || len(rest) != 4000 {
		t.Fatalf("split %d/%d", len(val), len(rest))
	}
	excluded := map[string]bool{}
	for _, id := range IDs(m500) {
		excluded[id] = true
	}
	inVal := map[string]bool{}
	for _, p := range val {
		if excluded[p.ID] {
			t.Errorf("MATH500 problem %s in validation", p.ID)
		}
		inVal[p.ID] = true
	}
	for _, p := range rest {
		if inVal[p.ID] {
			t.Errorf("%s in both splits", p.ID)
		}
	}
	// deterministic and independent of input order
	rev := append([]Problem(nil), test...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	val2, _, err := Split(rev, cfg, IDs(m500))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(idSet(val), idSet(val2)) {
		t.Error("validation split depends on input order")
	}
	cfg.Seed = 1
	val3, _, _ := Split(test, cfg, IDs(m500))
	if reflect.DeepEqual(idSet(val), idSet(val3)) {
		t.Error("seed does not change the split")
	}
	if _, _, err := Split(test[:10], Config{Dir: dataDir, Validation: 11, UnknownSkills: KeepUnknown}, nil); err == nil {
		t.Error("oversized validation accepted")
	}
	if _, _, err := Split(append(test[:1:1], test[0]), Config{Dir: dataDir, Validation: 1, UnknownSkills: KeepUnknown}, nil); err == nil {
		t.Error("duplicate ids accepted")
	}
	if _, _, err := SplitMATH(dataDir, Config{Dir: dataDir, Validation: 10, Exclude: []string{"math501"}, UnknownSkills: KeepUnknown}); err == nil || !strings.Contains(err.Error(), "exclude[0]") {
		t.Errorf("unknown exclude: %v", err)
	}
	// without decontamination some MATH500 problems land in validation
	plain, _, _ := Split(test, DefaultConfig(), nil)
	leaked := 0
	for _, p := range plain {
		if excluded[p.ID] {
			leaked++
		}
	}
	if leaked == 0 {
		t.Error("the exclusion test cannot fail: no MATH500 problem drawn without it")
	}
	if err := (Config{Dir: dataDir, Validation: 1, UnknownSkills: "ignore"}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "unknown_skills") {
		t.Errorf("bad policy: %v", err)
	}
	if _, _, err := Split(test, Config{Dir: dataDir, Validation: -1, UnknownSkills: KeepUnknown}, nil); err == nil || !strings.Contains(err.Error(), "validation") {
		t.Errorf("negative size: %v", err)
	}
}

func idSet(ps []Problem) map[string]bool {
	m := map[string]bool{}
	for _, p := range ps {
		m[p.ID] = true
	}
	return m
}
