package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/gomlx/gomlx/backends"
	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/prm"
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
	// ByPRM: a process reward model scores every step of every sample and
	// judges it right or wrong (train/prm: wrong when the last step or the
	// mean scores below tau1, or a step after the first below tau2); a
	// question is difficult when the fraction of its samples judged right
	// is below Threshold, the same threshold the accuracy method uses. It
	// needs no gold answers.
	ByPRM = "prm"
)

// prmVersion is bumped when the prm method's output changes for the same
// inputs (it enters only that method's fingerprint).
// v2: scored in parts of part_questions questions.
const prmVersion = "difficulty prm v2"

// PRMScoresFile is difficulty's side output under the prm method: one
// PRMScored row per question, in question order, difficult or not.
const PRMScoresFile = "prm_scores.jsonl"

// PRMScored is the process reward model's reading of one question's
// samples.
type PRMScored struct {
	ID string `json:"id"`
	// Right is the fraction of the samples judged right.
	Right float64 `json:"right"`
	// Samples are the step scores and verdicts, one per probe sample.
	Samples []prm.Score `json:"samples"`
}

// DifficultyConfig is the difficulty section: which validation questions
// the student finds difficult.
//
//	difficulty:
//	  method: accuracy   # accuracy | consistency | prm
//	  threshold: 0.5     # accuracy: difficult when accuracy < threshold; prm: when the fraction judged right < threshold
//	  min_agree: 2       # consistency: difficult when the largest cluster of equal answers < min_agree
//	  prm:               # prm: the process reward model and its rule (train/prm.Config)
//	    model: gs://bucket/models/Llama3.1-8B-PRM-Mistral-Data
//	    tau1: 0.85
//	    tau2: 0.7
//	  part_questions: 64 # prm: questions scored between checkpoints
//
// The prm method computes on the student's backend (student.backend).
type DifficultyConfig struct {
	Method    string     `yaml:"method"`
	Threshold float64    `yaml:"threshold"`
	MinAgree  int        `yaml:"min_agree"`
	PRM       prm.Config `yaml:"prm"`
	// PartQuestions is, for the prm method, how many questions are scored
	// together between checkpoints: each finished part's scores are kept
	// in the stage's folder (parts/prm-<i>.jsonl), so a stage stopped
	// midway resumes after its last finished part. Every part is scored on
	// its own whether or not the stage was stopped, so the output never
	// depends on where (or whether) a run was stopped.
	PartQuestions int `yaml:"part_questions"`
}

// DefaultDifficultyConfig is ground-truth accuracy below 0.5 (fewer than
// half of the samples correct), and for the consistency method an answer
// that no two samples agree on.
func DefaultDifficultyConfig() DifficultyConfig {
	return DifficultyConfig{Method: ByAccuracy, Threshold: 0.5, MinAgree: 2, PRM: prm.DefaultConfig(), PartQuestions: 64}
}

// Validate names the first bad field.
func (c *DifficultyConfig) Validate() error {
	switch c.Method {
	case ByAccuracy, ByPRM:
		if !(c.Threshold > 0 && c.Threshold <= 1) || math.IsNaN(c.Threshold) {
			return fmt.Errorf("threshold: %g is not in (0, 1]", c.Threshold)
		}
		if c.Method == ByPRM {
			if err := c.PRM.Validate(); err != nil {
				return fmt.Errorf("prm.%w", err)
			}
			if c.PartQuestions < 1 {
				return fmt.Errorf("part_questions: %d, want at least 1", c.PartQuestions)
			}
		}
	case ByConsistency:
		if c.MinAgree < 2 {
			return fmt.Errorf("min_agree: %d, want at least 2", c.MinAgree)
		}
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
	cfg := spec.Section("difficulty").(*DifficultyConfig)
	// The prm block and part_questions matter only to the prm method: the
	// other methods hash as they did before they existed, and batch_tokens
	// changes no score. part_questions stays in: which conversations share
	// a forward pass may change the last bits of a score on some backends.
	var doc map[string]map[string]any
	if err := json.Unmarshal(c, &doc); err != nil {
		return "", fmt.Errorf("difficulty fingerprint: %w", err)
	}
	if cfg.Method != ByPRM {
		delete(doc["difficulty"], "prm")
		delete(doc["difficulty"], "part_questions")
		return job.Hash(difficultyVersion, doc, upstream)
	}
	if block, ok := doc["difficulty"]["prm"].(map[string]any); ok {
		delete(block, "batch_tokens")
	}
	files, err := studentHash(context.Background(), &StudentConfig{Model: cfg.PRM.Model}) // any HF directory's files
	if err != nil {
		return "", fmt.Errorf("difficulty.prm.model: %w", err)
	}
	return job.Hash(difficultyVersion, doc, upstream, prmVersion, files)
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
	metrics := job.Metrics{}
	var judged []PRMScored
	if cfg.Method == ByPRM {
		be, err := backend.New(env.Spec().Section("student").(*StudentConfig).Backend)
		if err != nil {
			return nil, fmt.Errorf("student.backend: %w", err)
		}
		if judged, err = prmJudge(ctx, env, be, cfg, rs, metrics); err != nil {
			return nil, err
		}
		if err := writeRows(ctx, env, PRMScoresFile, judged); err != nil {
			return nil, err
		}
	}
	hard, err := classify(rs, cfg, g, judged)
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
	metrics["questions"], metrics["difficult"], metrics["fraction"], metrics["by_subject"] = len(rs), len(hard), frac, bySubject
	return metrics, nil
}

// prmJudge scores every sample of rs with the PRM of c (on backend be),
// c.PartQuestions questions at a time, and adds the prm_* counts to
// metrics. Each finished part is kept as parts/prm-<i>.jsonl in the
// stage's folder; a part an earlier, stopped attempt finished is read
// back instead of scored again, and the PRM is not even loaded when every
// part is done.
func prmJudge(ctx context.Context, env *job.Env, be backends.Backend, c *DifficultyConfig, rs []Response, metrics job.Metrics) ([]PRMScored, error) {
	var p *prm.PRM
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	prog := env.Progress("questions", int64(len(rs)))
	out := make([]PRMScored, 0, len(rs))
	kept, scored := 0, 0
	step := c.PartQuestions
	for i := 0; i*step < len(rs); i++ {
		part := rs[i*step : min((i+1)*step, len(rs))]
		key := fmt.Sprintf("parts/prm-%05d.jsonl", i)
		if done, err := readRows[PRMScored](ctx, env, env.Name(), key); err == nil && prmSamePart(done, part) {
			out = append(out, done...)
			kept += len(part)
			prog.Add(int64(len(part)))
			continue
		} else if err != nil && !errors.Is(err, storage.ErrNotExist) {
			env.Log().Warn("unreadable part, scoring again", "part", key, "err", err)
		}
		if p == nil {
			var err error
			if p, err = prm.Open(ctx, be, c.PRM); err != nil {
				return nil, fmt.Errorf("difficulty.prm: %w", err)
			}
		}
		rows, err := prmScorePart(ctx, p, part)
		if err != nil {
			return nil, fmt.Errorf("difficulty.prm: %w", err)
		}
		if err := writeRows(ctx, env, key, rows); err != nil {
			return nil, err
		}
		env.Log().Info("prm part scored", "part", key, "questions", len(part))
		out = append(out, rows...)
		scored += len(part)
		prog.Add(int64(len(part)))
	}
	right, samples, notScored := 0, 0, 0
	for _, row := range out {
		for _, s := range row.Samples {
			samples++
			if s.Right {
				right++
			}
			if !s.Scored {
				notScored++
			}
		}
	}
	if samples > 0 {
		metrics["prm_right"] = float64(right) / float64(samples)
	}
	metrics["prm_not_scored"] = notScored
	metrics["prm_questions_scored"], metrics["prm_questions_kept"] = scored, kept
	return out, nil
}

// prmScorePart scores every sample of the questions rs in one call.
func prmScorePart(ctx context.Context, p *prm.PRM, rs []Response) ([]PRMScored, error) {
	var items []prm.Item
	for _, r := range rs {
		for _, s := range r.Samples {
			items = append(items, prm.Item{Question: r.Question, Response: s.Text})
		}
	}
	scores, err := p.Score(ctx, items)
	if err != nil {
		return nil, err
	}
	out := make([]PRMScored, len(rs))
	for i, r := range rs {
		row := PRMScored{ID: r.ID, Samples: scores[:len(r.Samples):len(r.Samples)]}
		scores = scores[len(r.Samples):]
		n := 0
		for _, s := range row.Samples {
			if s.Right {
				n++
			}
		}
		if len(row.Samples) > 0 {
			row.Right = float64(n) / float64(len(row.Samples))
		}
		out[i] = row
	}
	return out, nil
}

// prmSamePart reports whether rows score exactly the questions of part,
// every sample of each.
func prmSamePart(rows []PRMScored, part []Response) bool {
	if len(rows) != len(part) {
		return false
	}
	for i := range rows {
		if rows[i].ID != part[i].ID || len(rows[i].Samples) != len(part[i].Samples) {
			return false
		}
	}
	return true
}

// classify returns the difficult responses among rs, in their order;
// judged holds the PRM's verdicts (method prm), row for row.
func classify(rs []Response, c *DifficultyConfig, g *mathgrade.Grader, judged []PRMScored) ([]Difficult, error) {
	out := []Difficult{}
	for q, r := range rs {
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
		case ByPRM:
			// The teacher reads the first sample the PRM judged wrong.
			right, firstWrong := 0, -1
			for i, s := range judged[q].Samples {
				if s.Right {
					right++
				} else if firstWrong < 0 {
					firstWrong = i
				}
			}
			if judged[q].Right < c.Threshold {
				why = fmt.Sprintf("PRM judged %d of %d right (%.2f < %.2f)", right, k, judged[q].Right, c.Threshold)
				shown = firstWrong
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
