package stages

import "github.com/statjob/statjob/job"

// LabelConfig is the label section.
type LabelConfig struct{}

// DefaultLabelConfig returns the label section's defaults.
func DefaultLabelConfig() LabelConfig { return LabelConfig{} }

// Validate names the first bad field.
func (c *LabelConfig) Validate() error { return nil }

// NewLabel returns the label stage.
func NewLabel() job.Stage { return job.NotInstalled("label", "skills") }
