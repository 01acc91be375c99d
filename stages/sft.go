package stages

import "github.com/statjob/statjob/job"

// NewSFT returns the sft/<strategy> stage: it fine-tunes the student on
// dataset/<strategy> with the sft section's recipe.
func NewSFT(strategy string) job.Stage {
	return job.NotInstalled("sft/"+strategy, "dataset/"+strategy)
}
