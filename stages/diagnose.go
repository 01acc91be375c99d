package stages

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/teacher"
)

// DiagnoseConfig is the diagnose section: the teacher's reading of each
// difficult question.
type DiagnoseConfig struct {
	// MinSkills and MaxSkills bound the missing skills a diagnosis names.
	// The prompt asks for two or three (the paper's range), and every
	// reply is checked against that; these narrow it further (e.g. exactly
	// two), with a re-ask when a reply falls outside.
	MinSkills int `yaml:"min_skills"`
	MaxSkills int `yaml:"max_skills"`
	// MaxFailed: the stage fails when more than this fraction of the
	// difficult questions get no diagnosis (0 to 1).
	MaxFailed float64 `yaml:"max_failed"`
	// The diagnosis calls' max_tokens and temperature.
	TeacherCall `yaml:",inline"`
}

// DefaultDiagnoseConfig asks for two or three missing skills.
func DefaultDiagnoseConfig() DiagnoseConfig {
	return DiagnoseConfig{MinSkills: 2, MaxSkills: 3, MaxFailed: 0.1, TeacherCall: TeacherCall{MaxTokens: 1024}}
}

// Validate names the first bad field.
func (c *DiagnoseConfig) Validate() error {
	switch {
	case c.MinSkills < 2 || c.MinSkills > 3:
		return fmt.Errorf("min_skills: %d; want 2 or 3 (the diagnose prompt asks for two or three)", c.MinSkills)
	case c.MaxSkills < c.MinSkills || c.MaxSkills > 3:
		return fmt.Errorf("max_skills: %d; want min_skills (%d) to 3", c.MaxSkills, c.MinSkills)
	case c.MaxFailed < 0 || c.MaxFailed > 1:
		return fmt.Errorf("max_failed: %g; want a fraction from 0 to 1", c.MaxFailed)
	}
	return c.TeacherCall.Validate()
}

// diagnoseVersion v2: responses the teacher judges correct no longer count
// in the profile.
const diagnoseVersion = "diagnose v2"

type diagnoseStage struct{}

// NewDiagnose returns the diagnose stage.
func NewDiagnose() job.Stage { return &diagnoseStage{} }

func (s *diagnoseStage) Name() string    { return "diagnose" }
func (s *diagnoseStage) Needs() []string { return []string{"difficulty", "skills"} }

func (s *diagnoseStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	sec, err := spec.Canonical("diagnose")
	if err != nil {
		return "", err
	}
	return job.Hash(diagnoseVersion, sec, up, teachFingerprint(spec), teacher.Diagnose.Hash())
}

func (s *diagnoseStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	spec := env.Spec()
	cfg := spec.Section("diagnose").(*DiagnoseConfig)
	cat, err := readCatalogue(ctx, env, "skills")
	if err != nil {
		return nil, err
	}
	rows, err := readRows[Difficult](ctx, env, "difficulty", DifficultFile)
	if err != nil {
		return nil, err
	}
	out := make([]Diagnosed, len(rows))
	var (
		reqs     []*teacher.Request
		subjects []string
	)
	var t *teacher.Teacher
	if len(rows) > 0 {
		if t, err = teachNew(ctx, env); err != nil {
			return nil, err
		}
	}
	params := cfg.Params()
	for i, d := range rows {
		skills, ok := cat[d.Subject]
		if !ok {
			return nil, fmt.Errorf("diagnose: difficult question %s: subject %q is not in the skills catalogue", d.ID, d.Subject)
		}
		if d.Shown < 0 || d.Shown >= len(d.Samples) {
			return nil, fmt.Errorf("diagnose: difficult question %s: shown %d is not one of its %d samples", d.ID, d.Shown, len(d.Samples))
		}
		req, err := t.Request(teacher.Diagnose, map[string]any{"Subject": d.Subject, "Question": d.Question,
			"Reference": d.Answer, "Response": d.Samples[d.Shown].Text, "Skills": skills}, params, 0)
		if err != nil {
			return nil, err
		}
		reqs, subjects = append(reqs, req), append(subjects, d.Subject)
		out[i] = Diagnosed{ID: d.ID, Subject: d.Subject}
	}
	results := teachBySubject(ctx, t, "diagnose", subjects, reqs, func(subj string) teacher.ParseFunc[teacher.Diagnosis] {
		return diagnoseParser(cat[subj], cfg.MinSkills, cfg.MaxSkills)
	})
	if err := teachAbort(ctx, results); err != nil {
		return nil, err
	}
	prof := Profile{Questions: len(rows)}
	counts := map[[2]string]int{}
	var firstErr error
	for i, r := range results {
		if r.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", out[i].ID, r.Err)
			}
			out[i].Error, out[i].Raw = r.Err.Error(), r.Raw
			prof.Failed++
			continue
		}
		out[i].Diagnosis = r.Value
		if r.Value.Correct {
			// The student's response was right after all (a grader's
			// miss, or a lucky wrong sample): it shows no missing skill.
			// The row keeps what the teacher named.
			prof.JudgedCorrect++
			continue
		}
		for _, sk := range r.Value.Missing {
			counts[[2]string{out[i].Subject, sk}]++
		}
	}
	if err := teachTooMany("diagnose", prof.Failed, len(rows), cfg.MaxFailed, firstErr); err != nil {
		return nil, err
	}
	prof.Skills = make([]SkillCount, 0, len(counts))
	for k, n := range counts {
		prof.Skills = append(prof.Skills, SkillCount{Subject: k[0], Skill: k[1], Count: n})
	}
	slices.SortFunc(prof.Skills, func(a, b SkillCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Skill, b.Skill))
	})
	if err := writeRows(ctx, env, DiagnosesFile, out); err != nil {
		return nil, err
	}
	if err := writeJSON(ctx, env, ProfileFile, prof); err != nil {
		return nil, err
	}
	metrics := job.Metrics{"questions": len(rows), "diagnosed": len(rows) - prof.Failed, "failed": prof.Failed,
		"judged_correct": prof.JudgedCorrect, "skills": len(prof.Skills)}
	if t != nil {
		metrics["teacher"] = t.Stats()
	}
	return metrics, nil
}

// diagnoseParser is teacher.ParseDiagnosis over the subject's skills,
// narrowed to [minN, maxN] missing skills.
func diagnoseParser(skills []string, minN, maxN int) teacher.ParseFunc[teacher.Diagnosis] {
	parse := teacher.ParseDiagnosis(skills)
	return func(text string) (teacher.Diagnosis, error) {
		d, err := parse(text)
		if err == nil && (len(d.Missing) < minN || len(d.Missing) > maxN) {
			return d, fmt.Errorf("got %d missing skills, want %d to %d", len(d.Missing), minN, maxN)
		}
		return d, err
	}
}
