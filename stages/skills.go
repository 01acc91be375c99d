package stages

import "github.com/statjob/statjob/job"

// SkillsConfig is the skills section.
type SkillsConfig struct{}

// DefaultSkillsConfig returns the skills section's defaults.
func DefaultSkillsConfig() SkillsConfig { return SkillsConfig{} }

// Validate names the first bad field.
func (c *SkillsConfig) Validate() error { return nil }

// NewSkills returns the skills stage.
func NewSkills() job.Stage { return job.NotInstalled("skills") }
