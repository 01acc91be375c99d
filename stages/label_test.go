package stages

import (
	"encoding/json"
	"hash/fnv"
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

func readLabelled(t *testing.T, st storage.Store) map[string]problems.Problem {
	t.Helper()
	out := map[string]problems.Problem{}
	for _, p := range teachRows[problems.Problem](t, st, "label", LabelledFile) {
		out[p.ID] = p
	}
	return out
}

// TestLabelReference joins the reference map to MATH train: 6,552 of the
// 7,500 questions have a row, 162 of which name a skill outside their
// subject's list (kept or dropped by data.unknown_skills).
func TestLabelReference(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		labelled int
	}{{"keep", 6552}, {"drop", 6552 - 162}} {
		t.Run(tc.policy, func(t *testing.T) {
			st := storagetest.Local(t)
			if _, err := runStages(t, st, teachSpec(t, nil, "data.unknown_skills="+tc.policy), NewSkills(), NewLabel()); err != nil {
				t.Fatal(err)
			}
			got := readLabelled(t, st)
			cat := readCatalogueOutput(t, st)
			labelled, outside := 0, 0
			for _, p := range got {
				if len(p.Skills) > 0 {
					labelled++
				}
				for _, s := range p.Skills {
					if !cat.Has(p.Subject, s) {
						outside++
					}
				}
			}
			if len(got) != 7500 || labelled != tc.labelled {
				t.Fatalf("%d questions, %d labelled; want 7500 and %d", len(got), labelled, tc.labelled)
			}
			if tc.policy == "drop" && outside != 0 || tc.policy == "keep" && outside != 162 {
				t.Fatalf("%d skills outside the catalogue under policy %s", outside, tc.policy)
			}
			if p := got["train/algebra/0.json"]; !slices.Equal(p.Skills, []string{"combinatorial_operations_and_basic_arithmetic"}) ||
				p.Subject != "algebra" || p.Answer == "" {
				t.Fatalf("train/algebra/0.json: %+v", p)
			}
			m := teachMetrics(t, st, "label")
			if teachNum(t, m, "labelled") != tc.labelled || teachNum(t, m, "unlabelled") != 7500-tc.labelled ||
				teachNum(t, m, "unknown_skills") != 162 || teachNum(t, m, "failed") != 0 {
				t.Fatalf("metrics %v", m)
			}
		})
	}
}

func TestLabelReferenceLimit(t *testing.T) {
	st := storagetest.Local(t)
	if _, err := runStages(t, st, teachSpec(t, nil, "label.limit=100", "label.seed=7"), NewSkills(), NewLabel()); err != nil {
		t.Fatal(err)
	}
	labelled := 0
	for _, p := range readLabelled(t, st) {
		if len(p.Skills) > 0 {
			labelled++
		}
	}
	// About 87% of train has a map row.
	if labelled < 70 || labelled > 100 {
		t.Fatalf("%d labelled with limit 100", labelled)
	}
}

// labelFake answers LabelSkills prompts by the question's hash: bucket 0
// never parses, bucket 1 first names a skill outside the list (re-asked),
// the rest name the first three skills of the list.
func labelFake(t *testing.T) (srv *teachertest.Server, bucket func(question string) uint32) {
	srv = teachertest.NewOpenAI(t)
	bucket = func(q string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(q))
		return h.Sum32() % 8
	}
	qRe := regexp.MustCompile(`(?s)\nQuestion: (.*?)\n\nChoose the skills`)
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		prompt := c.Messages[0].Text
		q := qRe.FindStringSubmatch(prompt)[1]
		skills := promptSkills(prompt)
		switch b := bucket(q); {
		case b == 0:
			return teachertest.Answer{Text: "This question needs algebra."}
		case b == 1 && !reasked(c):
			return teachertest.Answer{Text: `{"skills": ["telepathy_skills"]}`}
		}
		out, _ := json.Marshal(map[string]any{"skills": skills[:3]})
		return teachertest.Answer{Text: string(out)}
	}
	return srv, bucket
}

// TestLabelTeacher labels a seeded 40 of MATH train with the teacher:
// replies that never parse leave their question unlabelled and go to the
// failures file; a skill outside the list is re-asked; max_skills cuts.
func TestLabelTeacher(t *testing.T) {
	srv, bucket := labelFake(t)
	st := storagetest.Local(t)
	spec := teachSpec(t, srv, "label.source=teacher", "label.limit=40", "label.max_skills=2", "label.max_failed=0.5")
	if _, err := runStages(t, st, spec, NewSkills(), NewLabel()); err != nil {
		t.Fatal(err)
	}
	cat := readCatalogueOutput(t, st)
	got := readLabelled(t, st)
	failures := teachRows[labelFailure](t, st, "label", LabelFailures)
	failed := map[string]bool{}
	for _, f := range failures {
		failed[f.ID] = true
		if f.Raw != "This question needs algebra." || !strings.Contains(f.Error, "does not parse") {
			t.Errorf("failure %+v: want the raw reply and the parse error", f)
		}
	}
	labelled, reaskBucket := 0, 0
	for id, p := range got {
		switch {
		case failed[id]:
			if bucket(p.Question) != 0 || len(p.Skills) != 0 {
				t.Errorf("%s failed (bucket %d) with skills %v", id, bucket(p.Question), p.Skills)
			}
		case len(p.Skills) > 0:
			labelled++
			if bucket(p.Question) == 1 {
				reaskBucket++
			}
			if want := cat[p.Subject][:2]; !slices.Equal(p.Skills, want) {
				t.Errorf("%s: skills %v, want %v (the first two the teacher named)", id, p.Skills, want)
			}
		}
	}
	if len(got) != 7500 || labelled+len(failed) != 40 || len(failed) == 0 || reaskBucket == 0 {
		t.Fatalf("%d questions, %d labelled, %d failed, %d labelled after a re-ask; want 7500, 40 attempted, some of each",
			len(got), labelled, len(failed), reaskBucket)
	}
	m := teachMetrics(t, st, "label")
	if teachNum(t, m, "labelled") != labelled || teachNum(t, m, "unlabelled") != 7500-labelled ||
		teachNum(t, m, "failed") != len(failed) || teachNum(t, m, "malformed") != len(failed) ||
		teachNum(t, m, "attempted") != 40 || teachNum(t, m, "teacher.reasks") != 2*len(failed)+reaskBucket {
		t.Fatalf("metrics %v", m)
	}

	// Over max_failed, the stage fails, saying why.
	spec = teachSpec(t, srv, "label.source=teacher", "label.limit=40", "label.max_failed=0")
	_, err := runStages(t, storagetest.Local(t), spec, NewSkills(), NewLabel())
	if err == nil || !strings.Contains(err.Error(), "label.max_failed") {
		t.Fatalf("err %v, want one naming label.max_failed", err)
	}
}

func TestLabelConfigValidate(t *testing.T) {
	teachValidate(t, "label", func() job.Section { c := DefaultLabelConfig(); return &c },
		"source=book", `map=""`, "max_skills=6", "max_skills=0", "limit=-1", "max_failed=1.5", "max_tokens=0")
}
