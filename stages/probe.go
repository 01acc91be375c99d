package stages

import (
	"context"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
)

// probeVersion is bumped when probe's output changes for the same inputs.
const probeVersion = "probe v1"

// ProbeConfig is the probe section: how the student answers the validation
// questions (MATH test's validation split, data section).
//
//	probe:
//	  samples: 5              # k answers per question
//	  pass1_temperature: 0    # sample 0: greedy
//	  sampling: {temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 2048}
//	  seed: 0
//	  limit: 0                # first N validation questions; 0: all
//	  batch: 32               # sequences decoded together
type ProbeConfig struct {
	GenerationConfig `yaml:",inline"`
}

// DefaultProbeConfig is five samples per question: the first greedy, the
// others at temperature 1.0.
func DefaultProbeConfig() ProbeConfig { return ProbeConfig{defaultGeneration(5)} }

// Validate names the first bad field.
func (c *ProbeConfig) Validate() error { return c.GenerationConfig.Validate() }

// NewProbe returns the probe stage: the student answers every validation
// question k times (ResponsesFile, Response rows in question order). It is
// sharded: shard i of n answers every n-th question from i.
func NewProbe() job.Stage { return &probeStage{} }

type probeStage struct{}

func (s *probeStage) Name() string    { return "probe" }
func (s *probeStage) Needs() []string { return nil }

func (s *probeStage) Fingerprint(spec *job.Spec, upstream map[string]string) (string, error) {
	cfg := spec.Section("probe").(*ProbeConfig)
	return sectionsOf(spec).fingerprint(probeVersion, cfg.GenerationConfig, "", upstream)
}

// Run answers this shard's validation questions.
func (s *probeStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	g, cfg := sectionsOf(env.Spec()), env.Spec().Section("probe").(*ProbeConfig)
	val, _, err := problems.SplitMATH(g.data.Dir, *g.data)
	if err != nil {
		return nil, err
	}
	i, n := env.Shard()
	mine := shardOf(cfg.limit(val), i, n)
	rs, stats, err := g.answer(ctx, env, "", cfg.GenerationConfig, map[string][]problems.Problem{"validation": mine})
	if err != nil {
		return nil, err
	}
	if err := writeRows(ctx, env, ResponsesFile, rs["validation"]); err != nil {
		return nil, err
	}
	return stats.metrics(), nil
}

// Merge writes the shards' responses in question order.
func (s *probeStage) Merge(ctx context.Context, env *job.Env) (job.Metrics, error) {
	cfg := env.Spec().Section("probe").(*ProbeConfig)
	rs, err := mergeShards[Response](ctx, env, ResponsesFile)
	if err != nil {
		return nil, err
	}
	if err := writeRows(ctx, env, ResponsesFile, rs); err != nil {
		return nil, err
	}
	m := shardStats(env).metrics()
	avg, pass1 := accuracy(rs)
	m["questions"], m["samples"], m["avg@k"], m["pass@1"] = len(rs), len(rs)*cfg.Samples, avg, pass1
	return m, nil
}
