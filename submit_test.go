package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/teacher"
)

// submitKey is the teacher key's value in these tests' environment: it must
// never reach a request, an output or a log.
const submitKey = "sk-statjob-test-key-value-0123456789"

// statjobOutErr runs the command line in-process and returns stdout, stderr
// and the error.
func statjobOutErr(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// keyEnv is the variable the default spec's teacher reads its key from,
// set to submitKey for the test.
func keyEnv(t *testing.T) string {
	env := newSpec().Section("teacher").(*teacher.Config).KeyEnv()
	if env == "" {
		env = "OPENAI_API_KEY"
	}
	t.Setenv(env, submitKey)
	return env
}

func getObject(t *testing.T, st storage.Store, key string) string {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func useFakeCloudBatch(t *testing.T) *infratest.GCPBatch {
	f := infratest.FakeGCPBatch(t)
	gcpClientOptions = f.Options
	t.Cleanup(func() { gcpClientOptions = nil })
	return f
}

func TestSubmitGCP(t *testing.T) {
	env := keyEnv(t)
	gcs := storagetest.FakeGCS(t)
	cb := useFakeCloudBatch(t)
	sets := []string{"--set", "storage.root=" + gcs.Root, "--set", "storage.gcs.endpoint=" + gcs.GCS.Endpoint}
	args := append([]string{"submit", "--tasks", "4", "--image", "us-docker.pkg.dev/p/statjob/statjob:cuda",
		"--project", "p", "--region", "us-central1", "--machine-type", "g2-standard-8", "--spot",
		"--secret", env + "=projects/p/secrets/teacher/versions/latest", "--run-id", "nightly-1"}, sets...)
	out, errOut, err := statjobOutErr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "on run nightly-1") || !strings.Contains(out, "statjob status nightly-1 --root "+gcs.Root) {
		t.Errorf("submit printed:\n%s", out)
	}
	if strings.Contains(out+errOut, submitKey) || strings.Contains(errOut, "warning") {
		t.Errorf("output:\n%s\n%s", out, errOut)
	}
	created := cb.Created()
	if len(created) != 1 {
		t.Fatalf("%d jobs created", len(created))
	}
	specURI := gcs.Root + "/submit/nightly-1/spec.yaml"
	ts := created[0].Job.TaskGroups[0].TaskSpec
	wantCmd := []string{"run", "--config", specURI, "--run-id", "nightly-1"}
	if got := ts.Runnables[0].GetContainer().Commands; !slices.Equal(got, wantCmd) {
		t.Errorf("task command %q, want %q", got, wantCmd)
	}
	if ts.Environment.Variables[infra.ShardCountEnv] != "4" || ts.Environment.SecretVariables[env] != "projects/p/secrets/teacher/versions/latest" {
		t.Errorf("task environment %v", ts.Environment)
	}

	// The resolved spec is in the run's storage, and a task's
	// `statjob run --config <URI>` reads back the very same spec.
	want, err := statjob(t, append([]string{"spec"}, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	st := storagetest.Open(t, gcs)
	if got := getObject(t, st, "submit/nightly-1/spec.yaml"); got != want {
		t.Errorf("uploaded spec:\n%s\nwant:\n%s", got, want)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", gcs.GCS.Endpoint)
	if got, err := statjob(t, "spec", "--config", specURI); err != nil || got != want {
		t.Errorf("the task's spec from %s: %v\n%s", specURI, err, got)
	}

	// Submitting the run again resumes it: a new batch job, the same run.
	if _, _, err := statjobOutErr(t, args...); err != nil {
		t.Fatal(err)
	}
	if created = cb.Created(); len(created) != 2 || created[0].JobId == created[1].JobId ||
		!slices.Equal(created[1].Job.TaskGroups[0].TaskSpec.Runnables[0].GetContainer().Commands, wantCmd) {
		t.Errorf("resubmission: %d jobs", len(created))
	}
	// With another spec it is refused: the run's spec is frozen.
	_, _, err = statjobOutErr(t, append(args, "--set", "job.poll=5s")...)
	if !errors.Is(err, infra.ErrSpecChanged) || len(cb.Created()) != 2 {
		t.Errorf("resubmission with another spec: %v", err)
	}
}

func TestSubmitAWS(t *testing.T) {
	env := keyEnv(t)
	s3 := storagetest.GoFakeS3(t)
	ab := infratest.FakeAWSBatch(t)
	t.Setenv("AWS_ENDPOINT_URL_BATCH", ab.URL)
	secretARN := "arn:aws:secretsmanager:us-east-1:123456789012:secret:teacher-AbCdEf"
	out, errOut, err := statjobOutErr(t, "submit", "--tasks", "3", "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/statjob:cuda",
		"--job-queue", "gpu", "--gpus", "1", "--region", "us-east-1", "--run-id", "nightly-2",
		"--secret", env+"="+secretARN, "--execution-role-arn", "arn:aws:iam::123456789012:role/statjob-exec",
		"--set", "storage.root="+s3.Root, "--set", "storage.s3.endpoint="+s3.S3.Endpoint,
		"--set", "storage.s3.path_style=true", "--set", "storage.s3.region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	regs, subs := ab.Registers(), ab.Submits()
	if len(regs) != 1 || len(subs) != 1 {
		t.Fatalf("%d definitions, %d jobs", len(regs), len(subs))
	}
	specURI := s3.Root + "/submit/nightly-2/spec.yaml"
	s := subs[0]
	if !slices.Equal(s.ContainerOverrides.Command, []string{"run", "--config", specURI, "--run-id", "nightly-2"}) ||
		s.ArrayProperties == nil || s.ArrayProperties.Size != 3 ||
		!slices.Contains(s.ContainerOverrides.Environment, infratest.NameValue{Name: infra.ShardCountEnv, Value: "3"}) {
		t.Errorf("job %+v", s)
	}
	if sec := regs[0].ContainerProperties.Secrets; len(sec) != 1 || sec[0].Name != env || sec[0].ValueFrom != secretARN {
		t.Errorf("secrets %v", sec)
	}
	if y := getObject(t, storagetest.Open(t, s3), "submit/nightly-2/spec.yaml"); !strings.Contains(y, "root: "+s3.Root) {
		t.Errorf("uploaded spec:\n%s", y)
	}

	// For schedules: every job made from the request is its own run, named
	// by the batch job's id (the tasks' AWS_BATCH_JOB_ID).
	out2, _, err := statjobOutErr(t, "submit", "--run-per-job", "--run-id", "nightly", "--tasks", "2", "--job-queue", "gpu",
		"--image", "img", "--region", "us-east-1", "--set", "storage.root="+s3.Root, "--set", "storage.s3.endpoint="+s3.S3.Endpoint,
		"--set", "storage.s3.path_style=true", "--set", "storage.s3.region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	subs = ab.Submits()
	if cmd := subs[len(subs)-1].ContainerOverrides.Command; !slices.Equal(cmd, []string{"run", "--config", s3.Root + "/submit/nightly/spec.yaml"}) {
		t.Errorf("--run-per-job: task command %q", cmd)
	}
	if !strings.Contains(out2, "on run job-2\n") {
		t.Errorf("--run-per-job printed:\n%s", out2)
	}
	for _, b := range append(ab.Bodies(), out, errOut, out2) {
		if strings.Contains(b, submitKey) {
			t.Fatal("the key's value reached a request or the output")
		}
	}
}

func TestSubmitDryRunSendsNothing(t *testing.T) {
	env := keyEnv(t)
	gcs := storagetest.FakeGCS(t)
	cb := useFakeCloudBatch(t)
	out, errOut, err := statjobOutErr(t, "submit", "--dry-run", "--tasks", "2", "--image", "img", "--project", "p", "--region", "r",
		"--secret", env+"=projects/p/secrets/k/versions/1", "--set", "storage.root="+gcs.Root, "--set", "storage.gcs.endpoint="+gcs.GCS.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Parent string
		Job    struct{ TaskGroups []struct{ TaskCount string } }
	}
	if err := json.Unmarshal([]byte(out), &req); err != nil || req.Parent != "projects/p/locations/r" || req.Job.TaskGroups[0].TaskCount != "2" {
		t.Errorf("dry run printed (%v):\n%s", err, out)
	}
	if n := len(cb.Created()); n != 0 {
		t.Errorf("a dry run created %d jobs", n)
	}
	// Without the teacher's key among the secrets, submit says so.
	_, warn, err := statjobOutErr(t, "submit", "--dry-run", "--image", "img", "--project", "p", "--region", "r", "--set", "storage.root="+gcs.Root)
	if err != nil || !strings.Contains(warn, "warning") || !strings.Contains(warn, "--secret "+env+"=") {
		t.Errorf("no warning about the missing teacher key (%v):\n%s", err, warn)
	}
	var objects []string
	storagetest.Open(t, gcs).List(context.Background(), "", func(a storage.Attrs) error {
		objects = append(objects, a.Key)
		return nil
	})
	if len(objects) != 0 {
		t.Errorf("a dry run wrote %v", objects)
	}

	ab := infratest.FakeAWSBatch(t)
	t.Setenv("AWS_ENDPOINT_URL_BATCH", ab.URL)
	out2, errOut2, err := statjobOutErr(t, "submit", "--dry-run", "--tasks", "2", "--image", "img", "--job-queue", "q",
		"--secret", env+"=arn:aws:ssm:us-east-1:123456789012:parameter/teacher", "--execution-role-arn", "arn:aws:iam::1:role/x",
		"--set", "storage.root=s3://bucket/statjob")
	if err != nil || !strings.Contains(out2, `"submitJob"`) || !strings.Contains(out2, "arn:aws:ssm:") {
		t.Errorf("aws dry run: %v\n%s", err, out2)
	}
	if n := len(ab.Bodies()); n != 0 {
		t.Errorf("an aws dry run sent %d requests", n)
	}
	if strings.Contains(out+errOut+out2+errOut2, submitKey) {
		t.Error("the key's value reached the dry-run output")
	}
}

func TestSubmitFlagErrors(t *testing.T) {
	keyEnv(t)
	cb := useFakeCloudBatch(t)
	gs := []string{"--set", "storage.root=gs://b/statjob"}
	s3 := []string{"--set", "storage.root=s3://b/statjob"}
	gcp := append([]string{"--image", "img", "--project", "p", "--region", "r"}, gs...)
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"storage.root", []string{"--image", "img", "--project", "p", "--region", "r"}},
		{"--cloud", append([]string{"--cloud", "azure"}, gcp...)},
		{"--project", append([]string{"--image", "img", "--region", "r"}, gs...)},
		{"--region", append([]string{"--image", "img", "--project", "p"}, gs...)},
		{"--image", append([]string{"--project", "p", "--region", "r"}, gs...)},
		{"--job-queue is a --cloud aws flag", append([]string{"--job-queue", "q"}, gcp...)},
		{"--job-queue", append([]string{"--image", "img"}, s3...)},
		{"--project is a --cloud gcp flag", append([]string{"--image", "img", "--job-queue", "q", "--project", "p"}, s3...)},
		{"--tasks", append([]string{"--tasks", "0"}, gcp...)},
		{"--secret", append([]string{"--secret", submitKey}, gcp...)},
		{"--secret K", append([]string{"--secret", "K=" + submitKey}, gcp...)},
		{"--run-id", append([]string{"--run-id", "a b"}, gcp...)},
	} {
		_, errOut, err := statjobOutErr(t, append([]string{"submit"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("submit %q: want an error naming %s, got %v", tc.args, tc.want, err)
		} else if strings.Contains(err.Error()+errOut, submitKey) {
			t.Errorf("submit %q: the error repeats the secret: %v", tc.args, err)
		}
	}
	if n := len(cb.Created()); n != 0 {
		t.Errorf("%d jobs created by refused submissions", n)
	}
}

// `statjob run --config <URI>` reads the spec through storage; errors name
// the URI (and the line).
func TestRunConfigURI(t *testing.T) {
	gcs := storagetest.FakeGCS(t)
	c := gcs
	c.Root = "gs://" + storagetest.Bucket
	st := storagetest.Open(t, c)
	full, err := statjob(t, "spec")
	if err != nil || !strings.Contains(full, "poll: 15s") {
		t.Fatalf("statjob spec: %v", err)
	}
	for key, body := range map[string]string{"specs/my.yaml": strings.Replace(full, "poll: 15s", "poll: 7s", 1), "specs/bad.yaml": "job:\n  pol: 7s\n"} {
		if _, err := st.Put(context.Background(), key, strings.NewReader(body), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("STORAGE_EMULATOR_HOST", gcs.GCS.Endpoint)
	uri := c.Root + "/specs/"
	if out, err := statjob(t, "spec", "--config", uri+"my.yaml"); err != nil || !strings.Contains(out, "poll: 7s") {
		t.Errorf("spec --config %smy.yaml: %v\n%s", uri, err, out)
	}
	if _, err := statjob(t, "run", "--config", uri+"missing.yaml"); err == nil || !strings.Contains(err.Error(), uri+"missing.yaml") ||
		!errors.Is(err, storage.ErrNotExist) {
		t.Errorf("run --config of a missing object: %v", err)
	}
	if _, err := statjob(t, "run", "--config", uri+"bad.yaml"); err == nil || !strings.Contains(err.Error(), uri+"bad.yaml:2") {
		t.Errorf("run --config of a bad spec: %v", err)
	}
}
