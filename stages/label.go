package stages

import (
	"context"
	"errors"
	"fmt"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
)

// LabelFailures is the label stage's second output: one labelFailure row per
// question the teacher could not label, with its last reply.
const LabelFailures = "failures.jsonl"

// LabelConfig is the label section: how training questions get their skills.
type LabelConfig struct {
	// Source is reference (the skill map at Map) or teacher (one LabelSkills
	// call per question, choosing from its subject's catalogue list).
	Source string `yaml:"source"`
	// Map is the reference question → skills map (JSONL: unique_id,
	// subject, skills). Skills outside the catalogue follow
	// data.unknown_skills.
	Map string `yaml:"map"`
	// MaxSkills: at most this many skills per question, the first ones
	// kept (1 to 5; the prompt asks for at most five).
	MaxSkills int `yaml:"max_skills"`
	// Limit labels only the first Limit questions of the seeded order (0:
	// all); the others stay unlabelled. For trying the teacher cheaply.
	Limit int `yaml:"limit"`
	// Seed of that order.
	Seed uint64 `yaml:"seed"`
	// MaxFailed: the stage fails when more than this fraction of the
	// questions sent to the teacher get no label (0 to 1).
	MaxFailed float64 `yaml:"max_failed"`
	// The labelling calls' max_tokens and temperature.
	TeacherCall `yaml:",inline"`
}

// DefaultLabelConfig labels with the reference map, up to five skills each.
func DefaultLabelConfig() LabelConfig {
	return LabelConfig{Source: SourceReference, Map: "skills/math_skill_map.jsonl",
		MaxSkills: 5, MaxFailed: 0.1, TeacherCall: TeacherCall{MaxTokens: 256}}
}

// Validate names the first bad field.
func (c *LabelConfig) Validate() error {
	switch c.Source {
	case SourceReference:
		if c.Map == "" {
			return errors.New("map: empty; name the reference skill map (e.g. data/skills/math_skill_map.jsonl)")
		}
	case SourceTeacher:
	default:
		return fmt.Errorf("source: %q is not %s or %s", c.Source, SourceReference, SourceTeacher)
	}
	switch {
	case c.MaxSkills < 1 || c.MaxSkills > 5:
		return fmt.Errorf("max_skills: %d; want 1 to 5", c.MaxSkills)
	case c.Limit < 0:
		return fmt.Errorf("limit: %d is negative (0 labels every question)", c.Limit)
	case c.MaxFailed < 0 || c.MaxFailed > 1:
		return fmt.Errorf("max_failed: %g; want a fraction from 0 to 1", c.MaxFailed)
	}
	return c.TeacherCall.Validate()
}

const labelVersion = "label v1"

// labelFailure is a row of LabelFailures.
type labelFailure struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Error   string `json:"error"`
	Raw     string `json:"raw,omitempty"`
}

type labelStage struct{}

// NewLabel returns the label stage.
func NewLabel() job.Stage { return &labelStage{} }

func (s *labelStage) Name() string    { return "label" }
func (s *labelStage) Needs() []string { return []string{"skills"} }

func (s *labelStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	cfg := spec.Section("label").(*LabelConfig)
	sec, err := spec.Canonical("label", "data")
	if err != nil {
		return "", err
	}
	train, err := teachFileHash(mathTrainPath(spec))
	if err != nil {
		return "", fmt.Errorf("data.dir: %w", err)
	}
	if cfg.Source == SourceReference {
		m, err := teachFileHash(dataFile(dataDir(spec), cfg.Map))
		if err != nil {
			return "", fmt.Errorf("label.map: %w", err)
		}
		return job.Hash(labelVersion, sec, up, train, m)
	}
	return job.Hash(labelVersion, sec, up, train, teachFingerprint(spec), teacher.LabelSkills.Hash())
}

func (s *labelStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	spec := env.Spec()
	cfg := spec.Section("label").(*LabelConfig)
	data := spec.Section("data").(*problems.Config)
	cat, err := readCatalogue(ctx, env, "skills")
	if err != nil {
		return nil, err
	}
	train, err := problems.LoadMATH(mathTrainPath(env.Spec()))
	if err != nil {
		return nil, err
	}
	// The questions to label: all, or the first Limit of the seeded order.
	chosen := map[string]bool{}
	order := teachOrder(train, cfg.Seed)
	if cfg.Limit > 0 && cfg.Limit < len(order) {
		order = order[:cfg.Limit]
	}
	for _, p := range order {
		chosen[p.ID] = true
	}
	metrics := job.Metrics{"source": cfg.Source, "questions": len(train), "attempted": len(order)}
	var failures []labelFailure
	if cfg.Source == SourceReference {
		err = labelReference(cfg, data, cat, train, chosen, metrics)
	} else {
		failures, err = s.labelTeacher(ctx, env, cfg, cat, train, chosen, metrics)
	}
	if err != nil {
		return nil, err
	}
	labelled := 0
	for i := range train {
		if len(train[i].Skills) > cfg.MaxSkills {
			train[i].Skills = train[i].Skills[:cfg.MaxSkills]
		}
		if len(train[i].Skills) > 0 {
			labelled++
		}
	}
	metrics["labelled"], metrics["unlabelled"] = labelled, len(train)-labelled
	if err := writeRows(ctx, env, LabelledFile, train); err != nil {
		return nil, err
	}
	if err := writeRows(ctx, env, LabelFailures, failures); err != nil {
		return nil, err
	}
	return metrics, nil
}

// labelReference attaches the reference map's skills to the chosen
// questions.
func labelReference(cfg *LabelConfig, data *problems.Config, cat problems.Catalogue, train []problems.Problem, chosen map[string]bool, metrics job.Metrics) error {
	rows, err := problems.LoadSkillMap(dataFile(data.Dir, cfg.Map))
	if err != nil {
		return fmt.Errorf("label.map: %w", err)
	}
	// The map covers MATH test too: keep the rows of the questions chosen.
	var mine []problems.SkillRow
	for _, r := range rows {
		if chosen[r.UniqueID] {
			mine = append(mine, r)
		}
	}
	unknown, err := problems.AttachSkills(train, cat, mine, data.UnknownSkills)
	if err != nil {
		return fmt.Errorf("label.map %s: %w", cfg.Map, err)
	}
	metrics["failed"], metrics["unknown_skills"] = 0, len(unknown)
	return nil
}

// labelTeacher asks the teacher for the chosen questions' skills, each from
// its subject's list. A question whose reply never parses, or whose call
// fails, stays unlabelled and is returned as a failure.
func (s *labelStage) labelTeacher(ctx context.Context, env *job.Env, cfg *LabelConfig, cat problems.Catalogue,
	train []problems.Problem, chosen map[string]bool, metrics job.Metrics) ([]labelFailure, error) {
	var (
		idx      []int // train index of each request
		reqs     []*teacher.Request
		subjects []string
	)
	params := cfg.Params()
	t, err := teachNew(ctx, env)
	if err != nil {
		return nil, err
	}
	for i, p := range train {
		if !chosen[p.ID] {
			continue
		}
		skills, ok := cat[p.Subject]
		if !ok {
			return nil, fmt.Errorf("label: question %s: subject %q is not in the skills catalogue", p.ID, p.Subject)
		}
		req, err := t.Request(teacher.LabelSkills, map[string]any{"Subject": p.Subject, "Question": p.Question, "Skills": skills}, params, 0)
		if err != nil {
			return nil, err
		}
		idx, reqs, subjects = append(idx, i), append(reqs, req), append(subjects, p.Subject)
	}
	results := teachBySubject(ctx, t, "label", subjects, reqs, func(subj string) teacher.ParseFunc[[]string] {
		return teacher.ParseLabel(cat[subj])
	})
	if err := teachAbort(ctx, results); err != nil {
		return nil, err
	}
	var failures []labelFailure
	var firstErr error
	malformed := 0
	for k, r := range results {
		p := &train[idx[k]]
		if r.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", p.ID, r.Err)
			}
			if errors.Is(r.Err, teacher.ErrMalformed) || errors.Is(r.Err, teacher.ErrTruncated) {
				malformed++
			}
			failures = append(failures, labelFailure{ID: p.ID, Subject: p.Subject, Error: r.Err.Error(), Raw: r.Raw})
			continue
		}
		p.Skills = r.Value
	}
	metrics["failed"], metrics["malformed"], metrics["unknown_skills"] = len(failures), malformed, 0
	metrics["teacher"] = t.Stats()
	if err := teachTooMany("label", len(failures), len(reqs), cfg.MaxFailed, firstErr); err != nil {
		return nil, err
	}
	return failures, nil
}
