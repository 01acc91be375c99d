package stages

import (
	"context"
	"fmt"
	"slices"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
)

// evaluateVersion is bumped when evaluate's output changes for the same
// inputs.
const evaluateVersion = "evaluate v1"

// EvaluateConfig is the evaluate section, shared by every evaluate/<arm>.
//
//	evaluate:
//	  benchmarks: [math, math500, gsm8k, aime24, aime25, amc23, minerva, olympiadbench]
//	  samples: 1              # k; sample 0 is the pass@1 sample
//	  pass1_temperature: 0    # greedy (the paper: greedy or 0.1)
//	  sampling: {temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 2048}
//	  seed: 0
//	  limit: 0                # first N questions of each benchmark; 0: all
//	  batch: 32
//	  skill_map: skills/math_skill_map.jsonl   # per-skill scores; "" for none
//	  catalogue: skills/math_skills.json
//	  bootstrap: {resamples: 10000, level: 0.95, seed: 0}
//
// "math" is MATH test without the validation split the probe answers (data
// section); the other names are problems.Benchmarks keys.
type EvaluateConfig struct {
	Benchmarks       []string `yaml:"benchmarks"`
	GenerationConfig `yaml:",inline"`
	// SkillMap and Catalogue (paths relative to data.dir, or absolute) give
	// MATH questions their reference skills, for per-skill scores.
	SkillMap  string                    `yaml:"skill_map"`
	Catalogue string                    `yaml:"catalogue"`
	Bootstrap mathgrade.BootstrapConfig `yaml:"bootstrap"`
}

// DefaultEvaluateConfig is every benchmark, one greedy sample per question.
func DefaultEvaluateConfig() EvaluateConfig {
	return EvaluateConfig{
		Benchmarks: []string{problems.MATH, problems.MATH500, problems.GSM8K, problems.AIME24, problems.AIME25,
			problems.AMC23, problems.Minerva, problems.OlympiadBench},
		GenerationConfig: defaultGeneration(1),
		SkillMap:         "skills/math_skill_map.jsonl",
		Catalogue:        "skills/math_skills.json",
		Bootstrap:        mathgrade.DefaultBootstrapConfig(),
	}
}

// Validate names the first bad field.
func (c *EvaluateConfig) Validate() error {
	if len(c.Benchmarks) == 0 {
		return fmt.Errorf("benchmarks: empty; name some of %v", benchmarkNames())
	}
	for i, b := range c.Benchmarks {
		if _, ok := problems.Benchmarks[b]; !ok {
			return fmt.Errorf("benchmarks[%d]: %q is not one of %v", i, b, benchmarkNames())
		}
		if slices.Index(c.Benchmarks, b) != i {
			return fmt.Errorf("benchmarks[%d]: %q appears twice", i, b)
		}
	}
	if (c.SkillMap == "") != (c.Catalogue == "") {
		return fmt.Errorf("skill_map and catalogue: set both (per-skill scores) or neither")
	}
	if err := c.Bootstrap.Validate(); err != nil {
		return fmt.Errorf("bootstrap.%w", err)
	}
	return c.GenerationConfig.Validate()
}

func benchmarkNames() []string {
	var out []string
	for b := range problems.Benchmarks {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

// NewEvaluate returns the evaluate/<arm> stage; model names the stage whose
// student it evaluates ("sft/<arm>"), or "" for the base student. It writes
// "<benchmark>.jsonl" (Response rows) per benchmark and EvaluationFile. It
// is sharded like the probe: shard i of n answers every n-th question of
// each benchmark.
func NewEvaluate(arm, model string) job.Stage { return &evaluateStage{arm: arm, model: model} }

type evaluateStage struct {
	arm, model string
}

func (s *evaluateStage) Name() string { return "evaluate/" + s.arm }

func (s *evaluateStage) Needs() []string {
	if s.model == "" {
		return nil
	}
	return []string{s.model}
}

func (s *evaluateStage) Fingerprint(spec *job.Spec, upstream map[string]string) (string, error) {
	cfg := spec.Section("evaluate").(*EvaluateConfig)
	return sectionsOf(spec).fingerprint(evaluateVersion, cfg.GenerationConfig, s.model, upstream,
		s.Name(), cfg.Benchmarks, cfg.SkillMap, cfg.Catalogue, cfg.Bootstrap)
}

// benchFile is the responses file of one benchmark.
func benchFile(b string) string { return b + ".jsonl" }

// Run answers this shard's questions of every benchmark.
func (s *evaluateStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	g, cfg := sectionsOf(env.Spec()), env.Spec().Section("evaluate").(*EvaluateConfig)
	sets, err := benchmarks(cfg, g.data)
	if err != nil {
		return nil, err
	}
	i, n := env.Shard()
	for b, ps := range sets {
		sets[b] = shardOf(ps, i, n)
	}
	rs, stats, err := g.answer(ctx, env, s.model, cfg.GenerationConfig, sets)
	if err != nil {
		return nil, err
	}
	for _, b := range cfg.Benchmarks {
		if err := writeRows(ctx, env, benchFile(b), rs[b]); err != nil {
			return nil, err
		}
	}
	return stats.metrics(), nil
}

// benchmarks loads the configured benchmarks, each cut to the limit, with
// reference skills attached when a skill map is set.
func benchmarks(cfg *EvaluateConfig, data *problems.Config) (map[string][]problems.Problem, error) {
	sets := map[string][]problems.Problem{}
	for _, b := range cfg.Benchmarks {
		var ps []problems.Problem
		var err error
		if b == problems.MATH {
			_, ps, err = problems.SplitMATH(data.Dir, *data)
		} else {
			ps, err = problems.LoadDir(b, data.Dir)
		}
		if err != nil {
			return nil, fmt.Errorf("benchmark %s: %w", b, err)
		}
		sets[b] = cfg.limit(ps)
	}
	if cfg.SkillMap == "" {
		return sets, nil
	}
	cat, err := problems.LoadCatalogue(dataFile(data.Dir, cfg.Catalogue))
	if err != nil {
		return nil, fmt.Errorf("evaluate.catalogue: %w", err)
	}
	rows, err := problems.LoadSkillMap(dataFile(data.Dir, cfg.SkillMap))
	if err != nil {
		return nil, fmt.Errorf("evaluate.skill_map: %w", err)
	}
	for b, ps := range sets {
		if _, err := problems.AttachSkills(ps, cat, rows, data.UnknownSkills); err != nil {
			return nil, fmt.Errorf("evaluate.skill_map on %s: %w", b, err)
		}
	}
	return sets, nil
}

// Merge writes each benchmark's responses in question order and the scores.
func (s *evaluateStage) Merge(ctx context.Context, env *job.Env) (job.Metrics, error) {
	cfg, sec := env.Spec().Section("evaluate").(*EvaluateConfig), sectionsOf(env.Spec())
	g, err := mathgrade.New(*sec.grade)
	if err != nil {
		return nil, fmt.Errorf("grade: %w", err)
	}
	where, err := studentWhere(ctx, env, sec.student, s.model)
	if err != nil {
		return nil, err
	}
	ev := Evaluation{Stage: s.Name(), Model: where, Benchmarks: map[string]BenchmarkResult{}}
	m := shardStats(env).metrics()
	for _, b := range cfg.Benchmarks {
		rs, err := mergeShards[Response](ctx, env, benchFile(b))
		if err != nil {
			return nil, err
		}
		if err := writeRows(ctx, env, benchFile(b), rs); err != nil {
			return nil, err
		}
		res, err := score(g, rs, cfg.Samples, cfg.Bootstrap)
		if err != nil {
			return nil, fmt.Errorf("benchmark %s: %w", b, err)
		}
		ev.Benchmarks[b] = res
		m[b+"/pass@1"], m[b+"/questions"] = res.Pass1, res.Problems
		if cfg.Samples > 1 {
			m[b+"/avg@k"], m[b+"/pass@k"] = res.AvgK, res.PassK
		}
	}
	if err := writeJSON(ctx, env, EvaluationFile, ev); err != nil {
		return nil, err
	}
	return m, nil
}

// score summarises one benchmark's responses: accuracy with pass@k at k,
// the bootstrap interval of pass@1, and breakdowns by subject, skill and
// level where the questions carry them.
func score(g *mathgrade.Grader, rs []Response, k int, bc mathgrade.BootstrapConfig) (BenchmarkResult, error) {
	recs := make([]mathgrade.Record, len(rs))
	first := make([]float64, len(rs))
	var subjects, skills, levels bool
	for i, r := range rs {
		rec := mathgrade.Record{ProblemID: r.ID, Benchmark: r.Benchmark, Subject: r.Subject, Level: r.Level,
			Skills: r.Skills, Correct: make([]bool, len(r.Samples)), Answers: make([]string, len(r.Samples))}
		for j, smp := range r.Samples {
			rec.Correct[j], rec.Answers[j] = smp.Correct, smp.Answer
		}
		if len(r.Samples) > 0 && r.Samples[0].Correct {
			first[i] = 1
		}
		subjects = subjects || r.Subject != ""
		skills = skills || len(r.Skills) > 0
		levels = levels || r.Level > 0
		recs[i] = rec
	}
	var res BenchmarkResult
	var err error
	if res.Summary, err = g.Summarize(recs, k); err != nil {
		return res, err
	}
	if len(rs) == 0 {
		return res, nil
	}
	if _, res.Interval, err = mathgrade.Bootstrap(first, bc); err != nil {
		return res, err
	}
	for _, b := range []struct {
		on  bool
		by  mathgrade.Grouping
		out *map[string]mathgrade.Summary
	}{{subjects, mathgrade.BySubject, &res.BySubject}, {skills, mathgrade.BySkill, &res.BySkill}, {levels, mathgrade.ByLevel, &res.ByLevel}} {
		if b.on {
			if *b.out, err = g.Breakdown(recs, k, b.by); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// studentWhere is the location of the student that stage from exported, or
// of the base student when from is "" (as openStudent reports it).
func studentWhere(ctx context.Context, env *job.Env, cfg *StudentConfig, from string) (string, error) {
	if from != "" {
		return env.Store().URI(job.OutputKey(env.RunID(), from, StudentDir)), nil
	}
	st, err := storage.Open(ctx, cfg.Model)
	if err != nil {
		return "", fmt.Errorf("student.model: %w", err)
	}
	defer st.Close()
	return st.URI(""), nil
}
