package infra_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
	"github.com/statjob/statjob/job"
)

// keyValue is what a test puts in the teacher key's variable: it must
// never reach a request or an output.
const keyValue = "sk-statjob-test-key-value-0123456789"

func testJob() infra.Job {
	return infra.Job{
		RunID:          "20260102-150405-a1b2",
		SpecURI:        "gs://bucket/statjob/submit/20260102-150405-a1b2/spec.yaml",
		Tasks:          4,
		Image:          "us-docker.pkg.dev/p/statjob/statjob:cuda",
		Secrets:        []infra.Secret{{Env: "OPENAI_API_KEY", Ref: "projects/p/secrets/openai/versions/latest"}},
		MaxRetries:     3,
		MaxRunDuration: 6 * time.Hour,
	}
}

func testGCP(f *infratest.GCPBatch) *infra.GCP {
	return &infra.GCP{GCPConfig: infra.GCPConfig{
		Project: "p", Region: "us-central1", MachineType: "a2-highgpu-1g",
		GPUType: "nvidia-tesla-a100", GPUs: 1, ServiceAccount: "statjob@p.iam.gserviceaccount.com", Spot: true,
	}, ClientOptions: f.Options}
}

func TestGCPSubmit(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", keyValue)
	ctx := context.Background()
	fake := infratest.FakeGCPBatch(t)
	g, j := testGCP(fake), testJob()

	dry, err := g.Request(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Created()); n != 0 {
		t.Fatalf("Request sent %d jobs; a dry run sends nothing", n)
	}
	sub, err := g.Submit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	created := fake.Created()
	if len(created) != 1 {
		t.Fatalf("%d jobs created, want 1", len(created))
	}
	req := created[0]
	if sub.Name != req.Parent+"/jobs/"+req.JobId || sub.ID == "" {
		t.Errorf("Submitted = %+v for job %s", sub, req.JobId)
	}
	if req.Parent != "projects/p/locations/us-central1" || !strings.HasPrefix(req.JobId, "statjob-20260102-150405-a1b2-") {
		t.Errorf("parent %q, job id %q", req.Parent, req.JobId)
	}
	tg := req.Job.TaskGroups[0]
	if tg.TaskCount != 4 || tg.Parallelism != 4 {
		t.Errorf("task_count %d, parallelism %d; want 4 tasks side by side", tg.TaskCount, tg.Parallelism)
	}
	c := tg.TaskSpec.Runnables[0].GetContainer()
	wantCmd := []string{"run", "--config", j.SpecURI, "--run-id", j.RunID}
	if c.GetImageUri() != j.Image || !slices.Equal(c.GetCommands(), wantCmd) {
		t.Errorf("container %s %q, want %s %q", c.GetImageUri(), c.GetCommands(), j.Image, wantCmd)
	}
	env := tg.TaskSpec.Environment
	if env.Variables[infra.ShardCountEnv] != "4" {
		t.Errorf("env %v: want %s=4", env.Variables, infra.ShardCountEnv)
	}
	if env.SecretVariables["OPENAI_API_KEY"] != "projects/p/secrets/openai/versions/latest" || env.Variables["OPENAI_API_KEY"] != "" {
		t.Errorf("the key must be a Secret Manager reference: variables %v, secret variables %v", env.Variables, env.SecretVariables)
	}
	// Retries: preemption (50001) and SIGTERM (75) are retried, errors fail.
	ts := tg.TaskSpec
	if ts.MaxRetryCount != 3 || len(ts.LifecyclePolicies) != 1 {
		t.Fatalf("max_retry_count %d, lifecycle policies %v", ts.MaxRetryCount, ts.LifecyclePolicies)
	}
	lp := ts.LifecyclePolicies[0]
	codes := lp.ActionCondition.ExitCodes
	if lp.Action != batchpb.LifecyclePolicy_FAIL_TASK || !slices.Contains(codes, 1) || slices.Contains(codes, int32(job.ExitInterrupted)) || slices.Contains(codes, 50001) {
		t.Errorf("lifecycle policy %v: want FAIL_TASK on statjob's error exits only, so exit 75 and preemption are retried", lp)
	}
	if ts.MaxRunDuration.AsDuration() != 6*time.Hour {
		t.Errorf("max_run_duration %v", ts.MaxRunDuration.AsDuration())
	}
	inst := req.Job.AllocationPolicy.Instances[0]
	pol := inst.GetPolicy()
	if pol.MachineType != "a2-highgpu-1g" || len(pol.Accelerators) != 1 || pol.Accelerators[0].Type != "nvidia-tesla-a100" ||
		pol.Accelerators[0].Count != 1 || !inst.InstallGpuDrivers || pol.ProvisioningModel != batchpb.AllocationPolicy_SPOT {
		t.Errorf("instance policy %v, install drivers %v", pol, inst.InstallGpuDrivers)
	}
	if req.Job.AllocationPolicy.ServiceAccount.GetEmail() != "statjob@p.iam.gserviceaccount.com" {
		t.Errorf("service account %v", req.Job.AllocationPolicy.ServiceAccount)
	}

	// The dry run printed the request Submit sent (but for the job id,
	// new for every submission).
	var printed batchpb.CreateJobRequest
	if err := protojson.Unmarshal(dry, &printed); err != nil {
		t.Fatalf("dry-run output is not a CreateJobRequest: %v\n%s", err, dry)
	}
	sent := proto.Clone(req).(*batchpb.CreateJobRequest)
	printed.JobId, sent.JobId = "", ""
	if !proto.Equal(&printed, sent) {
		t.Errorf("dry run printed\n%s\nbut Submit sent\n%s", protojson.Format(&printed), protojson.Format(sent))
	}
	wire, _ := proto.Marshal(req)
	if strings.Contains(string(wire), keyValue) || strings.Contains(string(dry), keyValue) {
		t.Error("the key's value reached the request")
	}
}

// A CPU job names no GPUs and installs no drivers; one task is a job of one.
func TestGCPCPUJob(t *testing.T) {
	fake := infratest.FakeGCPBatch(t)
	j := testJob()
	j.Tasks, j.Secrets, j.MaxRunDuration = 1, nil, 0
	g := &infra.GCP{GCPConfig: infra.GCPConfig{Project: "p", Region: "europe-west4", MachineType: "n2-standard-8"}, ClientOptions: fake.Options}
	if _, err := g.Submit(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	req := fake.Created()[0]
	inst := req.Job.AllocationPolicy.Instances[0]
	if inst.InstallGpuDrivers || len(inst.GetPolicy().Accelerators) != 0 || req.Job.TaskGroups[0].TaskCount != 1 ||
		req.Job.TaskGroups[0].TaskSpec.MaxRunDuration != nil || req.Job.AllocationPolicy.ServiceAccount != nil {
		t.Errorf("CPU job: %v", protojson.Format(req))
	}
}

func TestGCPErrorsNameTheFlag(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", keyValue)
	for _, tc := range []struct {
		want string
		edit func(*infra.GCP, *infra.Job)
	}{
		{"--project", func(g *infra.GCP, _ *infra.Job) { g.Project = "" }},
		{"--region", func(g *infra.GCP, _ *infra.Job) { g.Region = "" }},
		{"--image", func(_ *infra.GCP, j *infra.Job) { j.Image = "" }},
		{"--tasks", func(_ *infra.GCP, j *infra.Job) { j.Tasks = 0 }},
		{"--max-retries", func(_ *infra.GCP, j *infra.Job) { j.MaxRetries = 11 }},
		{"--gpu-type", func(g *infra.GCP, _ *infra.Job) { g.GPUs = 0 }},
		{"--run-id", func(_ *infra.GCP, j *infra.Job) { j.RunID = "a/b" }},
		{"--secret OPENAI_API_KEY", func(_ *infra.GCP, j *infra.Job) { j.Secrets[0].Ref = keyValue }},
		{"--secret OPENAI_API_KEY: given twice", func(_ *infra.GCP, j *infra.Job) { j.Secrets = append(j.Secrets, j.Secrets[0]) }},
	} {
		fake := infratest.FakeGCPBatch(t)
		g, j := testGCP(fake), testJob()
		tc.edit(g, &j)
		_, err := g.Submit(context.Background(), j)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
			continue
		}
		if strings.Contains(err.Error(), keyValue) {
			t.Errorf("the error repeats the secret: %v", err)
		}
		if n := len(fake.Created()); n != 0 {
			t.Errorf("%s: a refused job was sent", tc.want)
		}
	}
}

func TestParseSecret(t *testing.T) {
	s, err := infra.ParseSecret("OPENAI_API_KEY=projects/p/secrets/openai/versions/3")
	if err != nil || s.Env != "OPENAI_API_KEY" || s.Ref != "projects/p/secrets/openai/versions/3" {
		t.Errorf("ParseSecret = %+v, %v", s, err)
	}
	for _, bad := range []string{keyValue, "=" + keyValue, "1X=" + keyValue, "X="} {
		_, err := infra.ParseSecret(bad)
		if err == nil || !strings.Contains(err.Error(), "--secret") || strings.Contains(err.Error(), keyValue) {
			t.Errorf("ParseSecret(%q): %v", bad, err)
		}
	}
}
