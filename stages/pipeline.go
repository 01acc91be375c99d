package stages

import (
	"fmt"
	"slices"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/sft"
)

// Strategies are the training sets a pipeline can build, each its own arm
// (dataset/<s>, sft/<s>, evaluate/<s>).
var Strategies = []string{"stat-sel", "stat-syn", "train", "augment", "hard", "embed-sel"}

// PipelineConfig is the pipeline section: which training arms to run.
type PipelineConfig struct {
	// Strategies are the arms, each one of Strategies: the STAT sets
	// stat-sel and stat-syn, and the baselines train, augment, hard and
	// embed-sel.
	Strategies []string `yaml:"strategies"`
	// GRPO lists the arms that get the optional RL step after SFT: "base"
	// (GRPO on the base student) or one of Strategies. Each adds
	// grpo/<arm> and its evaluation, evaluate/grpo/<arm>.
	GRPO []string `yaml:"grpo,omitempty"`
}

// DefaultPipelineConfig runs both STAT arms.
func DefaultPipelineConfig() PipelineConfig {
	return PipelineConfig{Strategies: []string{"stat-sel", "stat-syn"}}
}

// Validate checks the strategies.
func (c *PipelineConfig) Validate() error {
	if len(c.Strategies) == 0 {
		return fmt.Errorf("strategies: name at least one of %v", Strategies)
	}
	seen := map[string]bool{}
	for i, s := range c.Strategies {
		if !slices.Contains(Strategies, s) {
			return fmt.Errorf("strategies[%d]: %q is not one of %v", i, s, Strategies)
		}
		if seen[s] {
			return fmt.Errorf("strategies[%d]: %q appears twice", i, s)
		}
		seen[s] = true
	}
	for i, a := range c.GRPO {
		if a != "base" && !seen[a] {
			return fmt.Errorf("grpo[%d]: %q is neither \"base\" nor one of strategies %v", i, a, c.Strategies)
		}
		if slices.Index(c.GRPO, a) != i {
			return fmt.Errorf("grpo[%d]: %q appears twice", i, a)
		}
	}
	return nil
}

// Register adds every section the stages read to spec, over their
// defaults: the stages' own and those of the packages they use (data,
// grade, teacher, sft, grpo).
func Register(spec *job.Spec) {
	data := problems.DefaultConfig()
	spec.Register("data", &data)
	grade := mathgrade.DefaultConfig()
	spec.Register("grade", &grade)
	tc := teacher.DefaultConfig()
	spec.Register("teacher", &tc)
	tr := sft.DefaultConfig()
	spec.Register("sft", &tr)
	rl := grpo.DefaultConfig()
	spec.Register("grpo", &rl)
	p := DefaultPipelineConfig()
	spec.Register("pipeline", &p)
	st := DefaultStudentConfig()
	spec.Register("student", &st)
	sk := DefaultSkillsConfig()
	spec.Register("skills", &sk)
	lb := DefaultLabelConfig()
	spec.Register("label", &lb)
	pr := DefaultProbeConfig()
	spec.Register("probe", &pr)
	df := DefaultDifficultyConfig()
	spec.Register("difficulty", &df)
	dg := DefaultDiagnoseConfig()
	spec.Register("diagnose", &dg)
	ds := DefaultDatasetConfig()
	spec.Register("dataset", &ds)
	ev := DefaultEvaluateConfig()
	spec.Register("evaluate", &ev)
}

// Graph lays out the STAT pipeline for spec: the shared stages, one arm per
// strategy, the base model's evaluation and the report.
func Graph(spec *job.Spec) (*job.Graph, error) {
	p := spec.Section("pipeline").(*PipelineConfig)
	stages := []job.Stage{
		NewSkills(),
		NewLabel(),
		NewProbe(),
		NewDifficulty(),
		NewDiagnose(),
		NewEvaluate("base", ""),
	}
	evals := []string{"evaluate/base"}
	for _, s := range p.Strategies {
		stages = append(stages,
			NewDataset(s),
			NewSFT(s),
			NewEvaluate(s, "sft/"+s),
		)
		evals = append(evals, "evaluate/"+s)
	}
	for _, a := range p.GRPO {
		stages = append(stages, NewGRPO(a), NewEvaluate(GRPOArm(a), GRPOArm(a)))
		evals = append(evals, "evaluate/"+GRPOArm(a))
	}
	stages = append(stages, NewReport(evals...))
	return job.NewGraph(stages...)
}
