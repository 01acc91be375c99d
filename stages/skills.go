package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
)

// Sources of the skills catalogue and of the labels.
const (
	SourceReference = "reference" // a file shipped with the data
	SourceTeacher   = "teacher"   // asked of the teacher model
)

// SkillsConfig is the skills section: where the skill catalogue comes from.
type SkillsConfig struct {
	// Source is reference (load Path) or teacher (the teacher proposes each
	// subject's skills from a sample of its training questions).
	Source string `yaml:"source"`
	// Path of the reference catalogue, {"subjects": {subject: [skill, ...]}}
	// (source reference).
	Path string `yaml:"path"`
	// Questions: how many training questions of a subject one proposal
	// shows the teacher (source teacher).
	Questions int `yaml:"questions"`
	// Samples: proposals per subject, each over its own window of the
	// seeded question order; they are merged by vote.
	Samples int `yaml:"samples"`
	// MinVotes: a skill is kept when at least this many of a subject's
	// proposals name it.
	MinVotes int `yaml:"min_votes"`
	// MaxSkills caps a subject's list (the most-voted kept; 0: no cap).
	MaxSkills int `yaml:"max_skills"`
	// Seed orders the training questions a proposal shows.
	Seed uint64 `yaml:"seed"`
	// The proposal calls' max_tokens and temperature.
	TeacherCall `yaml:",inline"`
}

// TeacherCall are the sampling settings of a stage's teacher calls.
type TeacherCall struct {
	MaxTokens   int     `yaml:"max_tokens"`
	Temperature float64 `yaml:"temperature"`
}

// Validate names the first bad field.
func (c *TeacherCall) Validate() error {
	switch {
	case c.MaxTokens < 1:
		return fmt.Errorf("max_tokens: %d; want at least 1", c.MaxTokens)
	case c.Temperature < 0 || c.Temperature > 2:
		return fmt.Errorf("temperature: %g; want 0 to 2", c.Temperature)
	}
	return nil
}

// Params are the calls' teacher parameters.
func (c *TeacherCall) Params() teacher.Params {
	temp := c.Temperature
	return teacher.Params{MaxTokens: c.MaxTokens, Temperature: &temp}
}

// DefaultSkillsConfig loads the reference catalogue shipped in data/.
func DefaultSkillsConfig() SkillsConfig {
	return SkillsConfig{Source: SourceReference, Path: "skills/math_skills.json",
		Questions: 40, Samples: 3, MinVotes: 1, MaxSkills: 30, TeacherCall: TeacherCall{MaxTokens: 2048, Temperature: 0.7}}
}

// Validate names the first bad field.
func (c *SkillsConfig) Validate() error {
	switch c.Source {
	case SourceReference:
		if c.Path == "" {
			return errors.New("path: empty; name the reference catalogue (e.g. data/skills/math_skills.json)")
		}
	case SourceTeacher:
	default:
		return fmt.Errorf("source: %q is not %s or %s", c.Source, SourceReference, SourceTeacher)
	}
	switch {
	case c.Questions < 1:
		return fmt.Errorf("questions: %d; show at least 1 question per proposal", c.Questions)
	case c.Samples < 1:
		return fmt.Errorf("samples: %d; ask for at least 1 proposal per subject", c.Samples)
	case c.MinVotes < 1 || c.MinVotes > c.Samples:
		return fmt.Errorf("min_votes: %d; want 1 to samples (%d)", c.MinVotes, c.Samples)
	case c.MaxSkills < 0:
		return fmt.Errorf("max_skills: %d is negative", c.MaxSkills)
	}
	return c.TeacherCall.Validate()
}

// skillsVersion changes when the skills stage's output changes for the same
// inputs.
const skillsVersion = "skills v1"

// skillsStage writes the skill catalogue.
type skillsStage struct{}

// NewSkills returns the skills stage.
func NewSkills() job.Stage { return &skillsStage{} }

func (s *skillsStage) Name() string    { return "skills" }
func (s *skillsStage) Needs() []string { return nil }

func (s *skillsStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	cfg := spec.Section("skills").(*SkillsConfig)
	if cfg.Source == SourceReference {
		sec, err := spec.Canonical("skills")
		if err != nil {
			return "", err
		}
		file, err := teachFileHash(dataFile(dataDir(spec), cfg.Path))
		if err != nil {
			return "", fmt.Errorf("skills.path: %w", err)
		}
		return job.Hash(skillsVersion, sec, file)
	}
	sec, err := spec.Canonical("skills", "data")
	if err != nil {
		return "", err
	}
	train, err := teachFileHash(mathTrainPath(spec))
	if err != nil {
		return "", fmt.Errorf("data.dir: %w", err)
	}
	return job.Hash(skillsVersion, sec, teachFingerprint(spec), teacher.ProposeSkills.Hash(), train)
}

func (s *skillsStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	spec := env.Spec()
	cfg := spec.Section("skills").(*SkillsConfig)
	var (
		cat     problems.Catalogue
		metrics = job.Metrics{"source": cfg.Source}
		err     error
	)
	if cfg.Source == SourceReference {
		cat, err = problems.LoadCatalogue(dataFile(dataDir(spec), cfg.Path))
	} else {
		cat, err = s.propose(ctx, env, cfg, metrics)
	}
	if err != nil {
		return nil, err
	}
	if err := writeJSON(ctx, env, CatalogueFile, catalogueDoc{Subjects: cat}); err != nil {
		return nil, err
	}
	n := 0
	for _, list := range cat {
		n += len(list)
	}
	metrics["subjects"], metrics["skills"] = len(cat), n
	return metrics, nil
}

// catalogueDoc is the CatalogueFile's shape.
type catalogueDoc struct {
	Subjects problems.Catalogue `json:"subjects"`
}

// readCatalogue reads the skills stage's catalogue (stage is its instance
// name, normally "skills").
func readCatalogue(ctx context.Context, env *job.Env, stage string) (problems.Catalogue, error) {
	var doc catalogueDoc
	if err := readJSON(ctx, env, stage, CatalogueFile, &doc); err != nil {
		return nil, err
	}
	if len(doc.Subjects) == 0 {
		return nil, fmt.Errorf("%s/%s: no subjects", stage, CatalogueFile)
	}
	return doc.Subjects, nil
}

// proposal is one ProposeSkills call: its subject and sample index.
type proposal struct {
	subject string
	sample  int
}

// propose asks the teacher for each subject's skills, cfg.Samples times
// over disjoint windows of the subject's seeded question order, and merges
// the proposals by vote.
func (s *skillsStage) propose(ctx context.Context, env *job.Env, cfg *SkillsConfig, metrics job.Metrics) (problems.Catalogue, error) {
	train, err := problems.LoadMATH(mathTrainPath(env.Spec()))
	if err != nil {
		return nil, err
	}
	bySubject := map[string][]problems.Problem{}
	for _, p := range teachOrder(train, cfg.Seed) {
		bySubject[p.Subject] = append(bySubject[p.Subject], p)
	}
	subjects := make([]string, 0, len(bySubject))
	for subj := range bySubject {
		subjects = append(subjects, subj)
	}
	sort.Strings(subjects)

	t, err := teachNew(ctx, env)
	if err != nil {
		return nil, err
	}
	params := cfg.Params()
	var (
		reqs  []*teacher.Request
		items []proposal
	)
	for _, subj := range subjects {
		ps := bySubject[subj]
		for j := range cfg.Samples {
			shown := make([]string, 0, cfg.Questions)
			for k := range min(cfg.Questions, len(ps)) {
				shown = append(shown, ps[(j*cfg.Questions+k)%len(ps)].Question)
			}
			req, err := t.Request(teacher.ProposeSkills, map[string]any{"Subject": subj, "Questions": shown}, params, j)
			if err != nil {
				return nil, err
			}
			reqs = append(reqs, req)
			items = append(items, proposal{subj, j})
		}
	}
	results := teacher.Run(ctx, t, "skills", reqs, teacher.ParseSkills)
	if err := teachAbort(ctx, results); err != nil {
		return nil, err
	}
	votes := map[string][][]string{} // subject → the parsed proposals
	firstErr := map[string]error{}
	failed := 0
	for i, r := range results {
		subj := items[i].subject
		if r.Err != nil {
			failed++
			env.Log().Warn("skill proposal failed", "subject", subj, "sample", items[i].sample, "err", r.Err)
			if firstErr[subj] == nil {
				firstErr[subj] = r.Err
			}
			continue
		}
		votes[subj] = append(votes[subj], r.Value)
	}
	cat := problems.Catalogue{}
	for _, subj := range subjects {
		if len(votes[subj]) == 0 {
			return nil, fmt.Errorf("skills: subject %s: none of its %d proposals parsed: %w", subj, cfg.Samples, firstErr[subj])
		}
		list := mergeSkills(votes[subj], cfg.MinVotes, cfg.MaxSkills)
		if len(list) == 0 {
			return nil, fmt.Errorf("skills: subject %s: no skill is named by %d proposals (skills.min_votes); %d of %d proposals parsed",
				subj, cfg.MinVotes, len(votes[subj]), cfg.Samples)
		}
		cat[subj] = list
	}
	metrics["proposals"], metrics["proposals_failed"] = len(reqs), failed
	metrics["teacher"] = t.Stats()
	return cat, nil
}

// mergeSkills merges proposals: names are normalised to snake_case, counted
// once per proposal, kept when named by at least minVotes proposals, the
// most-voted first (then in order of first appearance) up to maxSkills (0:
// all), and returned sorted by name.
func mergeSkills(proposals [][]string, minVotes, maxSkills int) []string {
	type tally struct {
		name         string
		votes, first int
	}
	byName := map[string]*tally{}
	pos := 0
	for _, names := range proposals {
		seen := map[string]bool{}
		for _, n := range names {
			k := snakeSkill(n)
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			if byName[k] == nil {
				byName[k] = &tally{name: k, first: pos}
				pos++
			}
			byName[k].votes++
		}
	}
	var kept []*tally
	for _, t := range byName {
		if t.votes >= minVotes {
			kept = append(kept, t)
		}
	}
	slices.SortFunc(kept, func(a, b *tally) int {
		return cmp.Or(cmp.Compare(b.votes, a.votes), cmp.Compare(a.first, b.first))
	})
	if maxSkills > 0 && len(kept) > maxSkills {
		kept = kept[:maxSkills]
	}
	out := make([]string, len(kept))
	for i, t := range kept {
		out[i] = t.name
	}
	sort.Strings(out)
	return out
}

// snakeSkill writes a skill name as lowercase words joined by underscores
// ("Solving Linear-Equations" → "solving_linear_equations").
func snakeSkill(s string) string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	return strings.Join(words, "_")
}

// mathTrainPath is MATH train under the data section's directory.
func mathTrainPath(spec *job.Spec) string { return filepath.Join(dataDir(spec), "math", "train.jsonl") }

// dataDir is the data section's directory.
func dataDir(spec *job.Spec) string { return spec.Section("data").(*problems.Config).Dir }
