package jobtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/job/jobtest"
	"github.com/statjob/statjob/storage/storagetest"
)

// upper is a stage under test: it reads "in.txt" of stage src.
type upper struct{}

func (upper) Name() string    { return "upper" }
func (upper) Needs() []string { return []string{"src"} }
func (upper) Fingerprint(_ *job.Spec, up map[string]string) (string, error) {
	return job.Hash("upper v1", up)
}
func (upper) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	b, err := env.ReadFile(ctx, "src", "in.txt")
	if err != nil {
		return nil, err
	}
	return nil, env.WriteFile(ctx, "out.txt", []byte(strings.ToUpper(string(b))))
}

func TestRunAStageOnFixedInputs(t *testing.T) {
	st := storagetest.Local(t)
	sum := jobtest.Run(t, st, job.NewSpec(), jobtest.Files("src", map[string]string{"in.txt": "skill"}), upper{})
	if got := string(jobtest.Output(t, st, sum.RunID, "upper", "out.txt")); got != "SKILL" {
		t.Fatalf("out.txt = %q", got)
	}
	m, err := job.ReadManifest(context.Background(), st, sum.RunID, "upper")
	if err != nil || len(m.Inputs) != 1 || m.Inputs[0].Stage != "src" || len(m.Outputs) != 1 || m.Outputs[0].Bytes != 5 {
		t.Fatalf("manifest %+v %v", m, err)
	}
}
