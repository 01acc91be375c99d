package skillsworld

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/teacher"
)

// newOracleTeacher serves an Oracle on loopback and returns the real
// teacher client (provider openai) pointed at it.
func newOracleTeacher(t *testing.T, structured string) (*teacher.Teacher, *Oracle) {
	t.Helper()
	o, err := NewOracle(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	cfg := teacher.DefaultConfig()
	cfg.Provider, cfg.Model, cfg.BaseURL, cfg.Structured = teacher.ProviderOpenAI, "oracle", srv.URL+"/v1", structured
	cfg.Cache, cfg.Retry.Reasks = false, 0
	tc, err := teacher.New(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tc, o
}

func generate[T any](t *testing.T, tc *teacher.Teacher, p *teacher.Prompt, data any, sample int, parse teacher.ParseFunc[T]) (T, error) {
	t.Helper()
	seed := int64(7)
	req, err := tc.Request(p, data, teacher.Params{MaxTokens: 256, Seed: &seed}, sample)
	if err != nil {
		t.Fatal(err)
	}
	r := teacher.Generate(context.Background(), tc, req, parse)
	return r.Value, r.Err
}

// Every STAT prompt, rendered by package teacher and sent through its
// OpenAI client, gets a correct answer its parser accepts, in both reply
// formats.
func TestOracleAnswersEveryPrompt(t *testing.T) {
	for _, mode := range []string{teacher.StructuredSchema, teacher.StructuredTags} {
		t.Run(mode, func(t *testing.T) {
			tc, o := newOracleTeacher(t, mode)
			cat := Catalogue()
			train, test, err := Split(DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			for _, subj := range World {
				var qs []string
				for _, it := range train {
					if it.Skill.Subject == subj && len(qs) < 20 {
						qs = append(qs, it.Question)
					}
				}
				skills, err := generate(t, tc, teacher.ProposeSkills, map[string]any{"Subject": subj.Key, "Questions": qs}, 0, teacher.ParseSkills)
				if err != nil || !slices.Equal(skills, cat[subj.Key]) {
					t.Fatalf("propose %s: %v %v, want %v", subj.Key, skills, err, cat[subj.Key])
				}
			}
			for _, k := range Skills() {
				list := cat[k.Subject.Key]
				it := test[slices.IndexFunc(test, func(it Item) bool { return it.Skill == k })]
				data := map[string]any{"Subject": k.Subject.Key, "Question": it.Question, "Skills": list}
				label, err := generate(t, tc, teacher.LabelSkills, data, 0, teacher.ParseLabel(list))
				if err != nil || !slices.Equal(label, []string{k.Name}) {
					t.Errorf("label %q: %v %v, want [%s]", it.Question, label, err, k.Name)
				}

				for _, resp := range []string{"I think it is \\boxed{42}.", it.Solution} {
					data := map[string]any{"Subject": k.Subject.Key, "Question": it.Question, "Reference": it.Answer,
						"Response": resp, "Skills": list}
					d, err := generate(t, tc, teacher.Diagnose, data, 0, teacher.ParseDiagnosis(list))
					if err != nil {
						t.Fatalf("diagnose %q: %v", it.Question, err)
					}
					right := resp == it.Solution
					if d.Correct != right || !slices.Equal(d.Missing, []string{k.Name, k.Related}) || d.Reason == "" {
						t.Errorf("diagnose %q answered %q: %+v, want correct=%v missing [%s %s]", it.Question, resp, d, right, k.Name, k.Related)
					}
				}

				var questions []string
				for sample := range 3 {
					data := map[string]any{"Subject": k.Subject.Key, "Skill": k.Name, "Examples": []string{it.Question}}
					q, err := generate(t, tc, teacher.WriteQuestion, data, sample, teacher.ParseQuestion)
					if err != nil {
						t.Fatalf("write a %s question: %v", k.Name, err)
					}
					if got, ok := Parse(q); !ok || got.Skill != k {
						t.Errorf("wrote %q for skill %s", q, k.Name)
					}
					if slices.ContainsFunc(test, func(it Item) bool { return it.Question == q }) {
						t.Errorf("wrote %q, a question of the test split", q)
					}
					questions = append(questions, q)
				}
				again, _ := generate(t, tc, teacher.WriteQuestion, map[string]any{"Subject": k.Subject.Key, "Skill": k.Name,
					"Examples": []string{it.Question}}, 0, teacher.ParseQuestion)
				if again != questions[0] {
					t.Errorf("the same request wrote %q, then %q", questions[0], again)
				}

				sol, err := generate(t, tc, teacher.Solve, map[string]any{"Question": it.Question}, 0, teacher.Text)
				if err != nil {
					t.Fatal(err)
				}
				ans, err := teacher.Boxed(sol)
				if err != nil || !mathgrade.Equal(ans, it.Answer) {
					t.Errorf("solve %q: %q (%v), want \\boxed{%s}", it.Question, sol, err, it.Answer)
				}
			}
			if o.Calls() == 0 {
				t.Fatal("the oracle counted no calls")
			}
		})
	}
}

// What the oracle cannot answer it refuses: a question from outside the
// world is not solved, an unknown prompt is rejected (HTTP 400), and only
// chat completions are served.
func TestOracleRefuses(t *testing.T) {
	tc, _ := newOracleTeacher(t, teacher.StructuredSchema)
	sol, err := generate(t, tc, teacher.Solve, map[string]any{"Question": "Is 91 prime?"}, 0, teacher.Text)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := teacher.Boxed(sol); err == nil {
		t.Errorf("solved a question outside the world: %q", sol)
	}
	other := &teacher.Prompt{Name: "other", Version: 1, System: "You are a poet.", User: "Write about {{.X}}."}
	if _, err := generate(t, tc, other, map[string]any{"X": "rain"}, 0, teacher.Text); !errors.Is(err, teacher.ErrRejected) {
		t.Errorf("unknown prompt: %v, want rejected", err)
	}
	data := map[string]any{"Subject": "arithmetic", "Question": "Is 91 prime?", "Skills": []string{"addition"}}
	if _, err := generate(t, tc, teacher.LabelSkills, data, 0, teacher.ParseLabel([]string{"addition"})); !errors.Is(err, teacher.ErrRejected) {
		t.Errorf("label of a question outside the world: %v, want rejected", err)
	}

	o, err := NewOracle(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/models: %s, want 404", resp.Status)
	}
}
