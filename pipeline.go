package main

import (
	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/sft"
)

// newSpec returns the job spec with every package's settings section
// registered over its defaults. A package that takes settings adds one line
// here: spec.Register("<name>", &cfg), cfg holding its Default...() values.
func newSpec() *job.Spec {
	spec := job.NewSpec() // storage:, job:
	stages.Register(spec) // pipeline:, student:, and one section per stage kind
	data := problems.DefaultConfig()
	spec.Register("data", &data)
	grade := mathgrade.DefaultConfig()
	spec.Register("grade", &grade)
	tc := teacher.DefaultConfig()
	spec.Register("teacher", &tc)
	tr := sft.DefaultConfig()
	spec.Register("sft", &tr)
	return spec
}
