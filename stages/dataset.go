package stages

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/tokenizer"
)

// datasetVersion is bumped whenever the dataset stage's output changes for
// the same inputs and settings.
const datasetVersion = "dataset v2"

// DatasetConfig is the dataset section: how each strategy builds its
// training set (DESIGN.md, "The method", step 6).
type DatasetConfig struct {
	// Size is N, the number of examples every strategy draws (paper: 9,500).
	// A strategy whose pool is smaller keeps its whole pool, or repeats it
	// up to Size when Repeat is set.
	Size int `yaml:"size"`
	// Seed seeds every draw and is sent as the teacher's sampling seed.
	// Each draw is keyed by the item it picks (question, skill, index), so
	// resumed, concurrent and uninterrupted runs draw the same.
	Seed uint64 `yaml:"seed"`
	// Repeat fills a pool smaller than Size up to Size by repeating it in
	// a seeded order, so every arm trains on the same number of examples.
	Repeat bool `yaml:"repeat"`
	// MaxTokens caps each teacher-written solution.
	MaxTokens int `yaml:"max_tokens"`
	// Temperature of the teacher's solutions and questions.
	Temperature float64 `yaml:"temperature"`

	Sel     DatasetSelConfig     `yaml:"sel"`
	Syn     DatasetSynConfig     `yaml:"syn"`
	Augment DatasetAugmentConfig `yaml:"augment"`
	Embed   DatasetEmbedConfig   `yaml:"embed"`
}

// DatasetSelConfig is STAT-Sel: training questions that need a missing skill,
// answered by the teacher.
type DatasetSelConfig struct {
	// PerPair training questions labelled with the skill are drawn for
	// every (difficult question, missing skill) pair, with replacement.
	PerPair int `yaml:"per_pair"`
	// Answers the teacher writes for each drawn question (sample 0..n-1).
	Answers int `yaml:"answers"`
	// FilterCorrect keeps only answers whose \boxed{} final answer the
	// grader finds equal to the question's gold answer. An answer without
	// a \boxed{} final answer is dropped either way (after the teacher's
	// re-asks, teacher.retry.reasks).
	FilterCorrect bool `yaml:"filter_correct"`
}

// DatasetSynConfig is STAT-Syn: new questions the teacher writes for a
// missing skill, kept when its solutions agree.
type DatasetSynConfig struct {
	// Examples: training questions labelled with the skill shown to the
	// teacher as examples (fewer when fewer exist).
	Examples int `yaml:"examples"`
	// Questions the teacher writes per (difficult question, missing skill).
	Questions int `yaml:"questions"`
	// Solutions the teacher writes per new question.
	Solutions int `yaml:"solutions"`
	// MinAgree: a question is kept when at least this many of its
	// solutions reach the same final answer; the agreeing ones are the
	// training examples.
	MinAgree int `yaml:"min_agree"`
	// QuestionMaxTokens caps each written question.
	QuestionMaxTokens int `yaml:"question_max_tokens"`
}

// DatasetAugmentConfig is the augment baseline: teacher answers to every
// training question.
type DatasetAugmentConfig struct {
	// Answers the teacher writes for each training question.
	Answers int `yaml:"answers"`
	// FilterCorrect: as in DatasetSelConfig.
	FilterCorrect bool `yaml:"filter_correct"`
}

// DefaultDatasetConfig returns the paper's settings.
func DefaultDatasetConfig() DatasetConfig {
	return DatasetConfig{
		Size: 9500, MaxTokens: 2048, Temperature: 1,
		Sel:     DatasetSelConfig{PerPair: 5, Answers: 3, FilterCorrect: true},
		Syn:     DatasetSynConfig{Examples: 3, Questions: 2, Solutions: 3, MinAgree: 2, QuestionMaxTokens: 1024},
		Augment: DatasetAugmentConfig{Answers: 3, FilterCorrect: true},
		Embed:   DefaultDatasetEmbedConfig(),
	}
}

// Validate names the first bad field.
func (c *DatasetConfig) Validate() error {
	atLeast := func(field string, v, lo int) error {
		if v < lo {
			return fmt.Errorf("%s: %d is below %d", field, v, lo)
		}
		return nil
	}
	for _, f := range []struct {
		name  string
		v, lo int
	}{
		{"size", c.Size, 1}, {"max_tokens", c.MaxTokens, 1},
		{"sel.per_pair", c.Sel.PerPair, 1}, {"sel.answers", c.Sel.Answers, 1},
		{"syn.examples", c.Syn.Examples, 1}, {"syn.questions", c.Syn.Questions, 1},
		{"syn.solutions", c.Syn.Solutions, 1}, {"syn.min_agree", c.Syn.MinAgree, 1},
		{"syn.question_max_tokens", c.Syn.QuestionMaxTokens, 1},
		{"augment.answers", c.Augment.Answers, 1},
	} {
		if err := atLeast(f.name, f.v, f.lo); err != nil {
			return err
		}
	}
	if c.Syn.MinAgree > c.Syn.Solutions {
		return fmt.Errorf("syn.min_agree: %d is more than syn.solutions (%d)", c.Syn.MinAgree, c.Syn.Solutions)
	}
	if !(c.Temperature >= 0 && c.Temperature <= 2) {
		return fmt.Errorf("temperature: %v is not in [0, 2]", c.Temperature)
	}
	return c.Embed.Validate()
}

// NewDataset returns the dataset/<strategy> stage. The STAT strategies
// read diagnose's diagnoses and label's labelled training questions;
// embed-sel reads difficulty's difficult questions and the training
// questions; the other baselines read only the training questions.
func NewDataset(strategy string) job.Stage {
	return &datasetStage{strategy: strategy}
}

type datasetStage struct {
	strategy string
}

func (d *datasetStage) Name() string { return "dataset/" + d.strategy }

func (d *datasetStage) Needs() []string {
	if d.stat() {
		return []string{"diagnose", "label"}
	}
	if d.strategy == "embed-sel" {
		return []string{"difficulty", "label"}
	}
	return []string{"label"}
}

func (d *datasetStage) stat() bool { return d.strategy == "stat-sel" || d.strategy == "stat-syn" }

// usesTeacher says whether the strategy asks the teacher (and grades its
// answers).
func (d *datasetStage) usesTeacher() bool {
	return d.stat() || d.strategy == "augment" || d.strategy == "embed-sel"
}

// Fingerprint covers only what shapes this strategy's set: the shared draw
// settings, its own subsection, and for teacher strategies the teacher's
// identity, the prompts, the sampling settings and the grader.
func (d *datasetStage) Fingerprint(spec *job.Spec, upstream map[string]string) (string, error) {
	c := spec.Section("dataset").(*DatasetConfig)
	settings := map[string]any{"size": c.Size, "seed": c.Seed, "repeat": c.Repeat}
	var prompts []string
	switch d.strategy {
	case "stat-sel":
		settings["sel"] = c.Sel
		prompts = []string{teacher.Solve.Hash()}
	case "stat-syn":
		settings["syn"] = c.Syn
		prompts = []string{teacher.WriteQuestion.Hash(), teacher.Solve.Hash()}
	case "augment":
		settings["augment"] = c.Augment
		prompts = []string{teacher.Solve.Hash()}
	case "embed-sel":
		id, err := embedID(context.Background(), spec)
		if err != nil {
			return "", err
		}
		settings["embed"] = map[string]any{"k": c.Embed.K, "embedder": id}
		settings["answers"], settings["filter_correct"] = c.Sel.Answers, c.Sel.FilterCorrect
		prompts = []string{teacher.Solve.Hash()}
	}
	var tid, grade any
	if d.usesTeacher() {
		settings["max_tokens"], settings["temperature"] = c.MaxTokens, c.Temperature
		tid = teachFingerprint(spec)
		grade = spec.Section("grade")
	}
	return job.Hash(datasetVersion, d.strategy, settings, tid, prompts, grade, QuestionPrompt, upstream)
}

func (d *datasetStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	if !slices.Contains(Strategies, d.strategy) {
		return nil, fmt.Errorf("strategy %q is not one of %v", d.strategy, Strategies)
	}
	spec := env.Spec()
	cfg := *spec.Section("dataset").(*DatasetConfig)
	b := &datasetBuild{cfg: &cfg, name: d.Name(), m: job.Metrics{}}
	train, err := datasetTrain(ctx, env)
	if err != nil {
		return nil, err
	}
	if d.usesTeacher() {
		if b.t, err = teachNew(ctx, env); err != nil {
			return nil, err
		}
		if b.g, err = mathgrade.New(*spec.Section("grade").(*mathgrade.Config)); err != nil {
			return nil, err
		}
	}
	var pool []datasetItem
	switch d.strategy {
	case "train":
		pool = b.reference(train, 0)
	case "hard":
		pool = b.reference(train, 4)
	case "augment":
		pool, err = b.augment(ctx, train)
	case "embed-sel":
		pool, err = b.embedSel(ctx, env, train)
	case "stat-sel", "stat-syn":
		var diags []Diagnosed
		if diags, err = readRows[Diagnosed](ctx, env, "diagnose", DiagnosesFile); err != nil {
			return nil, err
		}
		pairs := b.pairs(diags, train)
		if d.strategy == "stat-sel" {
			pool, err = b.sel(ctx, pairs, train)
		} else {
			pool, err = b.syn(ctx, pairs, train)
		}
	}
	if b.t != nil {
		b.m["teacher_calls"] = b.t.Stats().Attempts
		b.m["teacher"] = b.t.Stats()
	}
	if err != nil {
		return b.m, err
	}
	if len(pool) == 0 {
		return b.m, fmt.Errorf("no training examples: %s", b.summary())
	}
	out := datasetDraw(cfg.Seed, pool, cfg.Size, cfg.Repeat)
	if err := writeRows(ctx, env, DatasetFile, out); err != nil {
		return b.m, err
	}
	b.m["candidates"], b.m["examples"] = len(pool), len(out)
	perSubject, perSkill := map[string]int{}, map[string]int{}
	for _, ex := range out {
		perSubject[ex.Subject]++
		if ex.Skill != "" {
			perSkill[ex.Subject+"/"+ex.Skill]++
		}
	}
	b.m["per_subject"] = perSubject
	if d.stat() {
		b.m["per_skill"] = perSkill
	}
	env.Log().Info("training set drawn", "strategy", d.strategy, "examples", len(out), "counts", b.summary())
	return b.m, nil
}

// datasetTrain reads label's training questions, sorted by ID so that
// nothing depends on the file's order.
func datasetTrain(ctx context.Context, env *job.Env) ([]problems.Problem, error) {
	train, err := readRows[problems.Problem](ctx, env, "label", LabelledFile)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(train, func(i, j int) bool { return train[i].ID < train[j].ID })
	return train, nil
}

// datasetItem is one candidate training example with its unique key.
type datasetItem struct {
	key string
	ex  Example
}

// datasetDraw draws n items by their seeded numbers, in the drawn order. A
// pool smaller than n is kept whole, or with repeat filled up to n by more
// rounds, each in its own seeded order.
func datasetDraw(seed uint64, pool []datasetItem, n int, repeat bool) []Example {
	var out []Example
	for round := 0; len(out) < n && len(pool) > 0; round++ {
		type keyed struct {
			r uint64
			i int
		}
		order := make([]keyed, len(pool))
		for i, it := range pool {
			order[i] = keyed{itemRand(seed, "draw", strconv.Itoa(round), it.key), i}
		}
		sort.Slice(order, func(a, b int) bool {
			if order[a].r != order[b].r {
				return order[a].r < order[b].r
			}
			return pool[order[a].i].key < pool[order[b].i].key
		})
		for _, k := range order {
			if len(out) == n {
				break
			}
			out = append(out, pool[k.i].ex)
		}
		if !repeat {
			break
		}
	}
	return out
}

// datasetMessages are a training example's turns: the question in the
// student's prompt, and a solution.
func datasetMessages(question, solution string) []tokenizer.Message {
	return []tokenizer.Message{
		{Role: "user", Content: fmt.Sprintf(QuestionPrompt, question)},
		{Role: "assistant", Content: solution},
	}
}
