package stages

import "github.com/statjob/statjob/job"

// NewReport returns the report stage over the named evaluate stages.
func NewReport(evals ...string) job.Stage {
	return job.NotInstalled("report", evals...)
}
