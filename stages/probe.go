package stages

import "github.com/statjob/statjob/job"

// ProbeConfig is the probe section.
type ProbeConfig struct{}

// DefaultProbeConfig returns the probe section's defaults.
func DefaultProbeConfig() ProbeConfig { return ProbeConfig{} }

// Validate names the first bad field.
func (c *ProbeConfig) Validate() error { return nil }

// NewProbe returns the probe stage.
func NewProbe() job.Stage { return job.NotInstalled("probe") }
