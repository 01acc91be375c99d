package infra_test

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
	"github.com/statjob/statjob/storage/storagetest"
)

// The spec goes up once; resubmitting the run with the same spec finds it,
// with another spec is refused (the run's spec is frozen).
func TestUploadSpec(t *testing.T) {
	ctx := context.Background()
	for _, b := range []storagetest.Backend{
		{Name: "local", Store: storagetest.Local(t)},
		{Name: "gcs-fake", Store: storagetest.Open(t, storagetest.FakeGCS(t))},
	} {
		t.Run(b.Name, func(t *testing.T) {
			spec := []byte("storage:\n  root: gs://b/p\n")
			uri, err := infra.UploadSpec(ctx, b.Store, "run-1", spec)
			if err != nil {
				t.Fatal(err)
			}
			if uri != b.Store.URI("submit/run-1/spec.yaml") {
				t.Errorf("uri %s", uri)
			}
			rc, err := b.Store.Get(ctx, infra.SpecKey("run-1"))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != string(spec) {
				t.Errorf("stored %q", got)
			}
			if again, err := infra.UploadSpec(ctx, b.Store, "run-1", spec); err != nil || again != uri {
				t.Errorf("resubmission with the same spec: %s, %v", again, err)
			}
			_, err = infra.UploadSpec(ctx, b.Store, "run-1", []byte("storage:\n  root: gs://b/other\n"))
			if !errors.Is(err, infra.ErrSpecChanged) || !strings.Contains(err.Error(), uri) {
				t.Errorf("another spec for the run: %v", err)
			}
		})
	}
	if got := infra.SpecURI("gs://b/statjob/", "r"); got != "gs://b/statjob/submit/r/spec.yaml" {
		t.Errorf("SpecURI = %s", got)
	}
}

// Job names are valid for both services whatever the run id.
func TestJobNames(t *testing.T) {
	valid := regexp.MustCompile(`^statjob-[a-z0-9]([a-z0-9-]*[a-z0-9])?-[0-9a-f]{4}$`)
	fake := infratest.FakeAWSBatch(t)
	for _, id := range []string{"20260102-150405-a1b2", "Nightly_42.b", strings.Repeat("x", 200)} {
		j := awsJob()
		j.RunID = id
		if _, err := testAWS(fake).Submit(context.Background(), j); err != nil {
			t.Fatalf("run id %q: %v", id, err)
		}
	}
	for _, s := range fake.Submits() {
		if !valid.MatchString(s.JobName) || len(s.JobName) > 63 {
			t.Errorf("job name %q", s.JobName)
		}
	}
}
