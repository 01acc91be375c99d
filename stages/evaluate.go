package stages

import "github.com/statjob/statjob/job"

// EvaluateConfig is the evaluate section.
type EvaluateConfig struct{}

// DefaultEvaluateConfig returns the evaluate section's defaults.
func DefaultEvaluateConfig() EvaluateConfig { return EvaluateConfig{} }

// Validate names the first bad field.
func (c *EvaluateConfig) Validate() error { return nil }

// NewEvaluate returns the evaluate/<arm> stage; model names the stage whose
// student it evaluates ("sft/<arm>"), or "" for the base student.
func NewEvaluate(arm, model string) job.Stage {
	if model == "" {
		return job.NotInstalled("evaluate/" + arm)
	}
	return job.NotInstalled("evaluate/"+arm, model)
}
