package teacher_test

import (
	"context"
	"fmt"
	"os"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/teacher/teachertest"
)

// A stage labels questions with skills: build the Teacher from the spec's
// Config and the run's Store, render a prompt per item, fan out, and put the
// prompt hash in the fingerprint and the counters in the manifest.
func Example() {
	srv := teachertest.NewOpenAI(nil) // stands in for the provider
	defer srv.Close()
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		return teachertest.Answer{Text: `{"skills": ["factoring_skills"]}`}
	}
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, _ := storage.Open(ctx, dir)
	cfg := teacher.DefaultConfig()
	cfg.Provider, cfg.Model, cfg.BaseURL, cfg.APIKeyEnv = teacher.ProviderOpenAI, "gpt-4o-mini", srv.URL+"/v1", ""
	t, err := teacher.New(ctx, cfg, store, nil)
	if err != nil {
		panic(err)
	}

	skills := []string{"factoring_skills", "inequality_skills"}
	var reqs []*teacher.Request
	for _, q := range []string{"Factor $x^2-1$.", "Factor $x^2-4$."} {
		req, err := t.Request(teacher.LabelSkills, map[string]any{"Subject": "algebra", "Question": q, "Skills": skills},
			teacher.Params{MaxTokens: 200}, 0)
		if err != nil {
			panic(err)
		}
		reqs = append(reqs, req)
	}
	for i, r := range teacher.Map(ctx, t, reqs, teacher.ParseLabel(skills)) {
		fmt.Println(i, r.Value, r.Err)
	}
	fmt.Println(teacher.LabelSkills.ID(), len(teacher.LabelSkills.Hash()))
	st := t.Stats()
	fmt.Println("misses", st.CacheMisses, "hits", st.CacheHits)
	// Output:
	// 0 [factoring_skills] <nil>
	// 1 [factoring_skills] <nil>
	// label_skills@1 64
	// misses 2 hits 0
}
