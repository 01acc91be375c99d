package stages

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
)

// fixed is a stand-in for an upstream stage in tests: it writes the given
// outputs (a []byte as is, anything else as JSON, a slice of rows as JSONL
// when the name ends in .jsonl) and does nothing else.
type fixed struct {
	name  string
	files map[string]any
}

func (f fixed) Name() string    { return f.name }
func (f fixed) Needs() []string { return nil }
func (f fixed) Fingerprint(*job.Spec, map[string]string) (string, error) {
	return job.Hash("fixed", f.name, f.files)
}
func (f fixed) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	for name, v := range f.files {
		var b []byte
		switch v := v.(type) {
		case []byte:
			b = v
		case string:
			b = []byte(v)
		default:
			var err error
			if b, err = encodeFixed(name, v); err != nil {
				return nil, err
			}
		}
		if err := env.WriteFile(ctx, name, b); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// encodeFixed encodes v as JSONL when name ends in .jsonl and v is a slice,
// else as JSON.
func encodeFixed(name string, v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(name) < 6 || name[len(name)-6:] != ".jsonl" {
		return raw, nil
	}
	var rows []json.RawMessage
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, err
	}
	var out []byte
	for _, r := range rows {
		out = append(append(out, r...), '\n')
	}
	return out, nil
}

// testSpec is a spec with every section registered, the student set to
// model (a path) and each assignment applied ("probe.samples=2").
func testSpec(t testing.TB, model string, sets ...string) *job.Spec {
	t.Helper()
	spec := job.NewSpec()
	Register(spec)
	for _, s := range append([]string{"student.model=" + model}, sets...) {
		if err := spec.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	return spec
}

// runStages runs stages as run "r1" on the local store st with spec and
// returns the run's summary.
func runStages(t testing.TB, st storage.Store, spec *job.Spec, stages ...job.Stage) (*job.Summary, error) {
	t.Helper()
	g, err := job.NewGraph(stages...)
	if err != nil {
		t.Fatal(err)
	}
	return job.Run(context.Background(), st, spec, g, job.Options{RunID: "r1", Holder: "test", Reporter: job.NewReporter(io.Discard, false)})
}

// readOutput reads stage's output name of run r1.
func readOutput(t testing.TB, st storage.Store, stage, name string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), job.OutputKey("r1", stage, name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFixedStageFeedsRows(t *testing.T) {
	ctx := context.Background()
	st, err := storage.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows := []Example{{Source: "a"}, {Source: "b"}}
	up := fixed{name: "up", files: map[string]any{DatasetFile: rows}}
	var got []Example
	down := probeRows{name: "down", needs: "up", got: &got}
	if _, err := runStages(t, st, testSpec(t, "m"), up, down); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Source != "a" || got[1].Source != "b" {
		t.Fatalf("rows read back: %+v", got)
	}
}

// probeRows reads its upstream's DatasetFile with readRows.
type probeRows struct {
	name, needs string
	got         *[]Example
}

func (p probeRows) Name() string    { return p.name }
func (p probeRows) Needs() []string { return []string{p.needs} }
func (p probeRows) Fingerprint(_ *job.Spec, up map[string]string) (string, error) {
	return job.Hash(p.name, up)
}
func (p probeRows) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	rows, err := readRows[Example](ctx, env, p.needs, DatasetFile)
	*p.got = rows
	return nil, err
}
