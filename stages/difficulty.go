package stages

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
)

// difficultyVersion is bumped when difficulty's output changes for the same
// inputs.
const difficultyVersion = "difficulty v1"

// Difficulty methods.
const (
	// ByAccuracy: a question is difficult when the fraction of its samples
	// graded correct against the gold answer is below Threshold.
	ByAccuracy = "accuracy"
	// ByConsistency: difficult when the most common answer (equal answers
	// clustered by the grader) appears fewer than MinAgree times. It needs
	// no gold answers.
	ByConsistency = "consistency"
	// ByPRM: a process reward model scores each step. Not in this build.
	ByPRM = "prm"
)

// DifficultyConfig is the difficulty section: which validation questions
// the student finds difficult.
//
//	difficulty:
//	  method: accuracy   # accuracy | consistency | prm
//	  threshold: 0.5     # accuracy: difficult when accuracy < threshold
//	  min_agree: 2       # consistency: difficult when the largest cluster of equal answers < min_agree
type DifficultyConfig struct {
	Method    string  `yaml:"method"`
	Threshold float64 `yaml:"threshold"`
	MinAgree  int     `yaml:"min_agree"`
}

// DefaultDifficultyConfig is ground-truth accuracy below 0.5 (fewer than
// half of the samples correct), and for the consistency method an answer
// that no two samples agree on.
func DefaultDifficultyConfig() DifficultyConfig {
	return DifficultyConfig{Method: ByAccuracy, Threshold: 0.5, MinAgree: 2}
}

// ErrNoPRM: the prm method needs a process reward model, which this build
// does not run.
var ErrNoPRM = errors.New("the prm method needs a process reward model (e.g. RLHFlow/Llama3.1-8B-PRM-Mistral-Data), which this build does not run; use accuracy or consistency")

// Validate names the first bad field.
func (c *DifficultyConfig) Validate() error {
	switch c.Method {
	case ByAccuracy:
		if !(c.Threshold > 0 && c.Threshold <= 1) || math.IsNaN(c.Threshold) {
			return fmt.Errorf("threshold: %g is not in (0, 1]", c.Threshold)
		}
	case ByConsistency:
		if c.MinAgree < 2 {
			return fmt.Errorf("min_agree: %d, want at least 2", c.MinAgree)
		}
	case ByPRM:
		return fmt.Errorf("method: %w", ErrNoPRM)
	default:
		return fmt.Errorf("method: %q is not %q, %q or %q", c.Method, ByAccuracy, ByConsistency, ByPRM)
	}
	return nil
}

// NewDifficulty returns the difficulty stage: it reads probe's responses
// and writes the difficult ones (DifficultFile, Difficult rows in question
// order).
func NewDifficulty() job.Stage { return &difficultyStage{} }

type difficultyStage struct{}

func (s *difficultyStage) Name() string    { return "difficulty" }
func (s *difficultyStage) Needs() []string { return []string{"probe"} }

func (s *difficultyStage) Fingerprint(spec *job.Spec, upstream map[string]string) (string, error) {
	c, err := spec.Canonical("difficulty", "grade")
	if err != nil {
		return "", err
	}
	return job.Hash(difficultyVersion, c, upstream)
}

func (s *difficultyStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	cfg := env.Spec().Section("difficulty").(*DifficultyConfig)
	rs, err := readRows[Response](ctx, env, "probe", ResponsesFile)
	if err != nil {
		return nil, err
	}
	g, err := mathgrade.New(*env.Spec().Section("grade").(*mathgrade.Config))
	if err != nil {
		return nil, fmt.Errorf("grade: %w", err)
	}
	hard, err := classify(rs, cfg, g)
	if err != nil {
		return nil, err
	}
	if err := writeRows(ctx, env, DifficultFile, hard); err != nil {
		return nil, err
	}
	bySubject := map[string]int{}
	for _, d := range hard {
		bySubject[d.Subject]++
	}
	frac := 0.0
	if len(rs) > 0 {
		frac = float64(len(hard)) / float64(len(rs))
	}
	return job.Metrics{"questions": len(rs), "difficult": len(hard), "fraction": frac, "by_subject": bySubject}, nil
}

// classify returns the difficult responses among rs, in their order.
func classify(rs []Response, c *DifficultyConfig, g *mathgrade.Grader) ([]Difficult, error) {
	out := []Difficult{}
	for _, r := range rs {
		k := len(r.Samples)
		if k == 0 {
			return nil, fmt.Errorf("probe/%s: question %s has no samples", ResponsesFile, r.ID)
		}
		correct, shown := 0, -1
		answers := make([]string, k)
		for i, s := range r.Samples {
			answers[i] = s.Answer
			if s.Correct {
				correct++
			} else if shown < 0 {
				shown = i
			}
		}
		acc := float64(correct) / float64(k)
		var why string
		switch c.Method {
		case ByAccuracy:
			if acc < c.Threshold {
				why = fmt.Sprintf("accuracy %.2f < %.2f", acc, c.Threshold)
			}
		case ByConsistency:
			if _, size := g.Majority(answers); size < c.MinAgree {
				why = fmt.Sprintf("most common answer given %d of %d times < %d", size, k, c.MinAgree)
			}
		default:
			return nil, c.Validate()
		}
		if why == "" {
			continue
		}
		out = append(out, Difficult{Response: r, Accuracy: acc, Why: why, Shown: max(shown, 0)})
	}
	return out, nil
}
