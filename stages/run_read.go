package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
)

// FinishedRun reads a run's stage outputs back from storage after the fact,
// for the commands that look at a run without running anything (statjob
// report, statjob compare). A stage counts when its MANIFEST.json exists;
// what it can open is what that manifest records.
type FinishedRun struct {
	store storage.Store
	rec   *job.RunRecord
	spec  *job.Spec
	done  map[string]*job.Manifest
}

// OpenRun reads run runID's run.json, its frozen spec and the manifest of
// every finished stage.
func OpenRun(ctx context.Context, st storage.Store, runID string) (*FinishedRun, error) {
	rec, err := job.ReadRun(ctx, st, runID)
	if err != nil {
		return nil, err
	}
	spec := job.NewSpec()
	Register(spec)
	if err := spec.Load("run.json of run "+rec.ID, rec.Spec); err != nil {
		return nil, err
	}
	r := &FinishedRun{store: st, rec: rec, spec: spec, done: map[string]*job.Manifest{}}
	for _, name := range rec.Stages {
		m, err := job.ReadManifest(ctx, st, rec.ID, name)
		switch {
		case err == nil:
			r.done[name] = m
		case !errors.Is(err, storage.ErrNotExist):
			return nil, fmt.Errorf("run %s: stage %s: %w", rec.ID, name, err)
		}
	}
	return r, nil
}

// RunID is the run's id.
func (r *FinishedRun) RunID() string { return r.rec.ID }

// Record is the run's run.json.
func (r *FinishedRun) Record() *job.RunRecord { return r.rec }

// Spec is the run's frozen spec.
func (r *FinishedRun) Spec() *job.Spec { return r.spec }

// Store is the store the run lives in.
func (r *FinishedRun) Store() storage.Store { return r.store }

// Done reports whether the stage finished.
func (r *FinishedRun) Done(stage string) bool { return r.done[stage] != nil }

// Stages are the run's stages in its order, finished or not.
func (r *FinishedRun) Stages() []string { return slices.Clone(r.rec.Stages) }

// Upstream returns a finished stage's manifest.
func (r *FinishedRun) Upstream(stage string) (*job.Manifest, error) {
	if m := r.done[stage]; m != nil {
		return m, nil
	}
	if !slices.Contains(r.rec.Stages, stage) {
		return nil, fmt.Errorf("run %s has no stage %q (stages: %s)", r.rec.ID, stage, strings.Join(r.rec.Stages, ", "))
	}
	return nil, fmt.Errorf("stage %s of run %s is not done (statjob resume %s finishes it)", stage, r.rec.ID, r.rec.ID)
}

// Has reports whether a finished stage wrote output name.
func (r *FinishedRun) Has(stage, name string) bool {
	m := r.done[stage]
	if m == nil {
		return false
	}
	_, ok := m.Output(name)
	return ok
}

// Open reads a finished stage's output name.
func (r *FinishedRun) Open(ctx context.Context, stage, name string) (io.ReadCloser, error) {
	m, err := r.Upstream(stage)
	if err != nil {
		return nil, err
	}
	if _, ok := m.Output(name); !ok {
		return nil, fmt.Errorf("stage %s of run %s has no output %q", stage, r.rec.ID, name)
	}
	key := job.OutputKey(r.rec.ID, stage, name)
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.store.URI(key), err)
	}
	return rc, nil
}

// Evaluation reads an evaluate stage's scores.
func (r *FinishedRun) Evaluation(ctx context.Context, stage string) (*Evaluation, error) {
	var ev Evaluation
	if err := readJSON(ctx, r, stage, EvaluationFile, &ev); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.rec.ID, err)
	}
	return &ev, nil
}

// Responses reads an evaluate stage's per-question responses on one
// benchmark ("<benchmark>.jsonl").
func (r *FinishedRun) Responses(ctx context.Context, stage, benchmark string) ([]Response, error) {
	rows, err := readRows[Response](ctx, r, stage, benchmark+".jsonl")
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", r.rec.ID, err)
	}
	return rows, nil
}

// ReportCost is the teacher cost in US dollars the run's report recorded
// (summary.json's teacher_cost_total), false when the report stage is not
// done or recorded none.
func (r *FinishedRun) ReportCost(ctx context.Context) (float64, bool, error) {
	if !r.Has("report", ReportSummary) {
		return 0, false, nil
	}
	var s reportSummary
	if err := readJSON(ctx, r, "report", ReportSummary, &s); err != nil {
		return 0, false, fmt.Errorf("run %s: %w", r.rec.ID, err)
	}
	if s.CostTotal == nil {
		return 0, false, nil
	}
	return s.CostTotal.USD, true, nil
}
