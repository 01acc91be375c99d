package main

import (
	"fmt"
	"slices"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/sft"
)

// newSpec returns the job spec with every package's settings section
// registered over its defaults. A package that takes settings adds one line
// here: spec.Register("<name>", &cfg), cfg holding its Default...() values.
func newSpec() *job.Spec {
	spec := job.NewSpec() // storage:, job:
	p := defaultPipeline()
	spec.Register("pipeline", &p)
	data := problems.DefaultConfig()
	spec.Register("data", &data)
	grade := mathgrade.DefaultConfig()
	spec.Register("grade", &grade)
	tc := teacher.DefaultConfig()
	spec.Register("teacher", &tc)
	tr := sft.DefaultConfig()
	spec.Register("sft", &tr)
	return spec
}

// pipelineConfig is the shape of the pipeline: which training arms to run.
type pipelineConfig struct {
	// Strategies are the training sets built, each its own arm
	// (dataset/<s>, sft/<s>, evaluate/<s>): stat-sel, stat-syn, and the
	// baselines train, augment, hard, embed-sel.
	Strategies []string `yaml:"strategies"`
}

var knownStrategies = []string{"stat-sel", "stat-syn", "train", "augment", "hard", "embed-sel"}

func defaultPipeline() pipelineConfig {
	return pipelineConfig{Strategies: []string{"stat-sel", "stat-syn"}}
}

// Validate checks the strategies.
func (c *pipelineConfig) Validate() error {
	if len(c.Strategies) == 0 {
		return fmt.Errorf("strategies: name at least one of %v", knownStrategies)
	}
	seen := map[string]bool{}
	for i, s := range c.Strategies {
		if !slices.Contains(knownStrategies, s) {
			return fmt.Errorf("strategies[%d]: %q is not one of %v", i, s, knownStrategies)
		}
		if seen[s] {
			return fmt.Errorf("strategies[%d]: %q appears twice", i, s)
		}
		seen[s] = true
	}
	return nil
}

// buildGraph lays out the STAT pipeline for the spec. Each stage that this
// build does not have yet stands as job.NotInstalled; a stage package
// replaces its placeholder with the real instance.
func buildGraph(spec *job.Spec) (*job.Graph, error) {
	p := spec.Section("pipeline").(*pipelineConfig)
	stages := []job.Stage{
		job.NotInstalled("skills"),
		job.NotInstalled("label", "skills"),
		job.NotInstalled("probe"),
		job.NotInstalled("difficulty", "probe"),
		job.NotInstalled("diagnose", "difficulty", "skills"),
	}
	report := []string{"evaluate/base"}
	stages = append(stages, job.NotInstalled("evaluate/base"))
	for _, s := range p.Strategies {
		stages = append(stages,
			job.NotInstalled("dataset/"+s, "diagnose", "label"),
			job.NotInstalled("sft/"+s, "dataset/"+s),
			job.NotInstalled("evaluate/"+s, "sft/"+s),
		)
		report = append(report, "evaluate/"+s)
	}
	stages = append(stages, job.NotInstalled("report", report...))
	return job.NewGraph(stages...)
}
