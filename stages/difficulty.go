package stages

import "github.com/statjob/statjob/job"

// DifficultyConfig is the difficulty section.
type DifficultyConfig struct{}

// DefaultDifficultyConfig returns the difficulty section's defaults.
func DefaultDifficultyConfig() DifficultyConfig { return DifficultyConfig{} }

// Validate names the first bad field.
func (c *DifficultyConfig) Validate() error { return nil }

// NewDifficulty returns the difficulty stage.
func NewDifficulty() job.Stage { return job.NotInstalled("difficulty", "probe") }
