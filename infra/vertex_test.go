package infra_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
	"github.com/statjob/statjob/job"
)

func testVertex(f *infratest.VertexJobs) *infra.Vertex {
	return &infra.Vertex{GCPConfig: infra.GCPConfig{
		Project: "p", Region: "us-central1", MachineType: "a2-highgpu-1g",
		GPUType: "nvidia-tesla-a100", GPUs: 1, ServiceAccount: "statjob@p.iam.gserviceaccount.com", Spot: true,
		BootDiskGB: 200,
	}, ClientOptions: f.Options}
}

func vertexJob() infra.Job {
	j := testJob()
	j.Secrets = nil
	return j
}

func TestVertexSubmit(t *testing.T) {
	f := infratest.FakeVertex(t)
	v := testVertex(f)
	j := vertexJob()
	sub, err := v.Submit(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	created := f.Created()
	if len(created) != 1 {
		t.Fatalf("%d jobs created", len(created))
	}
	req := created[0]
	if sub.Name != "projects/p/locations/us-central1/customJobs/1001" || sub.ID != "1001" {
		t.Errorf("submitted %+v", sub)
	}
	if req.Parent != "projects/p/locations/us-central1" || !strings.HasPrefix(req.CustomJob.DisplayName, "statjob-20260102-150405-a1b2-") {
		t.Errorf("parent %q, display name %q", req.Parent, req.CustomJob.DisplayName)
	}
	spec := req.CustomJob.JobSpec
	// Four tasks: the primary pool of one replica, then three more.
	if len(spec.WorkerPoolSpecs) != 2 || spec.WorkerPoolSpecs[0].ReplicaCount != 1 || spec.WorkerPoolSpecs[1].ReplicaCount != 3 {
		t.Fatalf("worker pools %v", spec.WorkerPoolSpecs)
	}
	for i, p := range spec.WorkerPoolSpecs {
		c := p.GetContainerSpec()
		if c.ImageUri != j.Image || len(c.Command) != 0 || !slices.Equal(c.Args, j.Command()) {
			t.Errorf("pool %d container %v: want the image's entrypoint with args %q", i, c, j.Command())
		}
		// The shard count, and the job's name for the replicas' batch tasks.
		if len(c.Env) != 2 || c.Env[0].Name != infra.ShardCountEnv || c.Env[0].Value != "4" ||
			c.Env[1].Name != job.VertexJobEnv || c.Env[1].Value != req.CustomJob.DisplayName {
			t.Errorf("pool %d env %v", i, c.Env)
		}
		m := p.MachineSpec
		if m.MachineType != "a2-highgpu-1g" || m.AcceleratorType != aiplatformpb.AcceleratorType_NVIDIA_TESLA_A100 || m.AcceleratorCount != 1 {
			t.Errorf("pool %d machine %v", i, m)
		}
		if p.DiskSpec.GetBootDiskSizeGb() != 200 {
			t.Errorf("pool %d disk %v", i, p.DiskSpec)
		}
	}
	s := spec.Scheduling
	if s.Strategy != aiplatformpb.Scheduling_SPOT || s.DisableRetries || s.RestartJobOnWorkerRestart || s.Timeout.AsDuration() != 6*time.Hour {
		t.Errorf("scheduling %v", s)
	}
	if spec.ServiceAccount != "statjob@p.iam.gserviceaccount.com" || req.CustomJob.Labels["statjob-run"] != "20260102-150405-a1b2" {
		t.Errorf("service account %q, labels %v", spec.ServiceAccount, req.CustomJob.Labels)
	}

	// The dry run prints what Submit sent, in the API's JSON.
	out, err := v.Request(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	var printed aiplatformpb.CreateCustomJobRequest
	if err := protojson.Unmarshal(out, &printed); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// A new suffix per request, in the name and in the replicas' variable.
	printed.CustomJob.DisplayName = req.CustomJob.DisplayName
	for _, p := range printed.CustomJob.JobSpec.WorkerPoolSpecs {
		p.GetContainerSpec().Env[1].Value = req.CustomJob.DisplayName
	}
	if !proto.Equal(&printed, req) {
		t.Errorf("dry run:\n%s\nsent:\n%v", out, req)
	}
	var raw map[string]any
	if json.Unmarshal(out, &raw) != nil || raw["customJob"] == nil || !strings.Contains(string(out), `"strategy": "SPOT"`) {
		t.Errorf("dry run is not the API's JSON:\n%s", out)
	}
}

// One task is the primary pool alone; no GPUs, no retries.
func TestVertexOneCPUTask(t *testing.T) {
	f := infratest.FakeVertex(t)
	v := &infra.Vertex{GCPConfig: infra.GCPConfig{Project: "p", Region: "europe-west4", MachineType: "n2-standard-8"}, ClientOptions: f.Options}
	j := vertexJob()
	j.Tasks, j.MaxRetries, j.MaxRunDuration = 1, 0, 0
	if _, err := v.Submit(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	spec := f.Created()[0].CustomJob.JobSpec
	m := spec.WorkerPoolSpecs[0].MachineSpec
	if len(spec.WorkerPoolSpecs) != 1 || m.AcceleratorCount != 0 || m.AcceleratorType != 0 {
		t.Errorf("pools %v", spec.WorkerPoolSpecs)
	}
	if s := spec.Scheduling; !s.DisableRetries || s.Strategy != 0 || s.Timeout != nil {
		t.Errorf("scheduling %v", s)
	}
}

// The fake refuses what the service refuses, so the fields statjob sets
// are checked against those rules.
func TestFakeVertexRefuses(t *testing.T) {
	f := infratest.FakeVertex(t)
	v := testVertex(f)
	good, err := v.Request(context.Background(), vertexJob())
	if err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(*aiplatformpb.CreateCustomJobRequest){
		"display_name":  func(r *aiplatformpb.CreateCustomJobRequest) { r.CustomJob.DisplayName = strings.Repeat("x", 129) },
		"replica_count": func(r *aiplatformpb.CreateCustomJobRequest) { r.CustomJob.JobSpec.WorkerPoolSpecs[0].ReplicaCount = 4 },
		"accelerator_count": func(r *aiplatformpb.CreateCustomJobRequest) {
			r.CustomJob.JobSpec.WorkerPoolSpecs[0].MachineSpec.AcceleratorCount = 0
			r.CustomJob.JobSpec.WorkerPoolSpecs[0].MachineSpec.AcceleratorType = 0
		},
		"machine_type": func(r *aiplatformpb.CreateCustomJobRequest) {
			r.CustomJob.JobSpec.WorkerPoolSpecs[1].MachineSpec.MachineType = ""
		},
	} {
		var req aiplatformpb.CreateCustomJobRequest
		if err := protojson.Unmarshal(good, &req); err != nil {
			t.Fatal(err)
		}
		spoil(&req)
		if _, err := f.CreateCustomJob(context.Background(), &req); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("spoiled %s: %v", name, err)
		}
	}
}

func TestVertexErrorsNameTheFlag(t *testing.T) {
	f := infratest.FakeVertex(t)
	for _, tc := range []struct {
		want string
		edit func(*infra.Vertex, *infra.Job)
	}{
		{"--project", func(v *infra.Vertex, _ *infra.Job) { v.Project = "" }},
		{"--region", func(v *infra.Vertex, _ *infra.Job) { v.Region = "" }},
		{"--machine-type", func(v *infra.Vertex, _ *infra.Job) { v.MachineType = "" }},
		{"--gpu-type", func(v *infra.Vertex, _ *infra.Job) { v.GPUType = "nvidia-l5" }},
		{"--image", func(_ *infra.Vertex, j *infra.Job) { j.Image = "" }},
		{"--gpu-type and --gpus", func(v *infra.Vertex, _ *infra.Job) { v.GPUs, v.GPUType = 0, "" }},
		{"--tasks", func(_ *infra.Vertex, j *infra.Job) { j.Tasks = 0 }},
		{"--run-per-job", func(_ *infra.Vertex, j *infra.Job) { j.RunPerJob = true }},
		{"--secret OPENAI_API_KEY", func(_ *infra.Vertex, j *infra.Job) { *j = testJob() }},
	} {
		v, j := testVertex(f), vertexJob()
		tc.edit(v, &j)
		_, err := v.Submit(context.Background(), j)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
		if tc.want == "--secret OPENAI_API_KEY" && (!errors.Is(err, infra.ErrVertexSecret) || strings.Contains(err.Error(), "projects/p/secrets")) {
			t.Errorf("secret refused as %v", err)
		}
	}
	if n := len(f.Created()); n != 0 {
		t.Errorf("%d jobs created by refused submissions", n)
	}
}
