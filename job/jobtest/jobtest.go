// Package jobtest helps test a stage on its own: Files stands in for its
// upstream stages with fixed outputs, Run runs a small graph on a store and
// Output reads what a stage wrote.
//
//	spec := job.NewSpec()
//	cfg := label.DefaultConfig()
//	spec.Register("label", &cfg)
//	sum := jobtest.Run(t, storagetest.Local(t), spec,
//		jobtest.Files("skills", map[string]string{"skills.json": `[...]`}),
//		label.New(&cfg))
//	got := jobtest.Output(t, store, sum.RunID, "label", "labels.jsonl")
package jobtest

import (
	"context"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
)

type files struct {
	name  string
	files map[string]string
}

// Files returns a stage named name that writes the given outputs (name →
// content): upstream data for the stage under test.
func Files(name string, outputs map[string]string) job.Stage {
	return &files{name: name, files: outputs}
}

func (f *files) Name() string    { return f.name }
func (f *files) Needs() []string { return nil }
func (f *files) Fingerprint(*job.Spec, map[string]string) (string, error) {
	return job.Hash("jobtest.Files", f.name, f.files)
}
func (f *files) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	for _, k := range slices.Sorted(maps.Keys(f.files)) {
		if err := env.WriteFile(ctx, k, []byte(f.files[k])); err != nil {
			return nil, err
		}
	}
	return job.Metrics{"files": len(f.files)}, nil
}

// Run runs the stages as one new run on store, failing t on error.
// Progress and logs go to t.Log.
func Run(t testing.TB, store storage.Store, spec *job.Spec, stages ...job.Stage) *job.Summary {
	t.Helper()
	g, err := job.NewGraph(stages...)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := job.Run(context.Background(), store, spec, g, job.Options{
		Holder: t.Name(), Reporter: job.NewReporter(logWriter{t}, false),
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sum
}

// Output reads a stage's output in a run, failing t if it is absent.
func Output(t testing.TB, store storage.Store, runID, stage, name string) []byte {
	t.Helper()
	rc, err := store.Get(context.Background(), job.OutputKey(runID, stage, name))
	if err != nil {
		t.Fatalf("output %s of stage %s: %v", name, stage, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("output %s of stage %s: %v", name, stage, err)
	}
	return b
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
