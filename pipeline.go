package main

import (
	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
)

// newSpec returns the job spec with every section registered over its
// defaults: storage and job (the runner's), and the stages' sections.
func newSpec() *job.Spec {
	spec := job.NewSpec()
	stages.Register(spec)
	return spec
}
