package stages

import "github.com/statjob/statjob/job"

// DatasetConfig is the dataset section.
type DatasetConfig struct{}

// DefaultDatasetConfig returns the dataset section's defaults.
func DefaultDatasetConfig() DatasetConfig { return DatasetConfig{} }

// Validate names the first bad field.
func (c *DatasetConfig) Validate() error { return nil }

// NewDataset returns the dataset/<strategy> stage.
func NewDataset(strategy string) job.Stage {
	return job.NotInstalled("dataset/"+strategy, "diagnose", "label")
}
