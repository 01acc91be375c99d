package stages

import "github.com/statjob/statjob/job"

// DiagnoseConfig is the diagnose section.
type DiagnoseConfig struct{}

// DefaultDiagnoseConfig returns the diagnose section's defaults.
func DefaultDiagnoseConfig() DiagnoseConfig { return DiagnoseConfig{} }

// Validate names the first bad field.
func (c *DiagnoseConfig) Validate() error { return nil }

// NewDiagnose returns the diagnose stage.
func NewDiagnose() job.Stage { return job.NotInstalled("diagnose", "difficulty", "skills") }
