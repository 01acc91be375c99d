// Package stages holds the STAT pipeline's stages, one kind per file, in
// pipeline order: skills, label, probe, difficulty, diagnose, dataset/<s>,
// sft/<s>, evaluate/<s> and report. Each is a small job.Stage: it reads its
// settings from its own spec section, its inputs from upstream stages'
// outputs by name (records.go lists every file and its row type), and writes
// its outputs through the job.Env. A stage never calls another stage.
//
// Register adds every section to a spec; Graph lays the stages out for it.
package stages
