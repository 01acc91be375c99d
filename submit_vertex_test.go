package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

func useFakeVertex(t *testing.T) *infratest.VertexJobs {
	f := infratest.FakeVertex(t)
	vertexClientOptions = f.Options
	t.Cleanup(func() { vertexClientOptions = nil })
	return f
}

// clusterSpec is the CLUSTER_SPEC Vertex gives replica index of pool in a
// job with these pools.
func clusterSpec(t *testing.T, pools []*aiplatformpb.WorkerPoolSpec, pool, index int) string {
	cluster := map[string][]string{}
	for p, spec := range pools {
		for r := 0; r < int(spec.ReplicaCount); r++ {
			key := fmt.Sprintf("workerpool%d", p)
			cluster[key] = append(cluster[key], fmt.Sprintf("cmle-training-%s-0-%d:2222", key, r))
		}
	}
	b, err := json.Marshal(map[string]any{
		"cluster": cluster, "environment": "cloud", "job": `{"python_module":"","package_uris":[]}`,
		"task": map[string]any{"type": fmt.Sprintf("workerpool%d", pool), "index": index},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSubmitVertex(t *testing.T) {
	keyEnv(t)
	gcs := storagetest.FakeGCS(t)
	vx := useFakeVertex(t)
	cb := useFakeCloudBatch(t)
	sets := []string{"--set", "storage.root=" + gcs.Root, "--set", "storage.gcs.endpoint=" + gcs.GCS.Endpoint}
	args := append([]string{"submit", "--cloud", "vertex", "--tasks", "3", "--image", "us-docker.pkg.dev/p/statjob/statjob:cuda",
		"--project", "p", "--region", "us-central1", "--machine-type", "g2-standard-8", "--gpu-type", "nvidia-l4", "--gpus", "1",
		"--spot", "--service-account", "statjob@p.iam.gserviceaccount.com", "--max-run-duration", "12h", "--run-id", "nightly-1"}, sets...)
	out, errOut, err := statjobOutErr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "submitted projects/p/locations/us-central1/customJobs/1001: 3 task(s) on run nightly-1") ||
		!strings.Contains(out, "statjob status nightly-1 --root "+gcs.Root) {
		t.Errorf("submit printed:\n%s", out)
	}
	if strings.Contains(out+errOut, submitKey) {
		t.Errorf("the key reached the output:\n%s\n%s", out, errOut)
	}
	created := vx.Created()
	if len(created) != 1 || len(cb.Created()) != 0 {
		t.Fatalf("%d vertex jobs, %d cloud batch jobs", len(created), len(cb.Created()))
	}
	specURI := gcs.Root + "/submit/nightly-1/spec.yaml"
	wantArgs := []string{"run", "--config", specURI, "--run-id", "nightly-1"}
	js := created[0].CustomJob.JobSpec
	replicas := 0
	for _, p := range js.WorkerPoolSpecs {
		c := p.GetContainerSpec()
		if !slices.Equal(c.Args, wantArgs) || c.ImageUri != "us-docker.pkg.dev/p/statjob/statjob:cuda" {
			t.Errorf("container %v, want args %q", c, wantArgs)
		}
		if p.MachineSpec.AcceleratorType != aiplatformpb.AcceleratorType_NVIDIA_L4 || p.MachineSpec.AcceleratorCount != 1 {
			t.Errorf("machine %v", p.MachineSpec)
		}
		replicas += int(p.ReplicaCount)
	}
	if replicas != 3 || js.Scheduling.Strategy != aiplatformpb.Scheduling_SPOT || js.Scheduling.Timeout.AsDuration().Hours() != 12 ||
		js.ServiceAccount != "statjob@p.iam.gserviceaccount.com" {
		t.Errorf("job spec %v", js)
	}
	// The uploaded spec is the one the replicas read.
	want, err := statjob(t, append([]string{"spec"}, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, storagetest.Open(t, gcs), "submit/nightly-1/spec.yaml"); got != want {
		t.Errorf("uploaded spec:\n%s\nwant:\n%s", got, want)
	}

	// Every replica runs its own shard: CLUSTER_SPEC, as Vertex sets it
	// for each replica of the submitted pools, gives shards 0, 1, 2.
	for _, v := range []string{"BATCH_TASK_INDEX", "BATCH_TASK_COUNT", "AWS_BATCH_JOB_ARRAY_INDEX"} {
		t.Setenv(v, "")
	}
	t.Setenv(infra.ShardCountEnv, "3")
	// Each replica is its own batch task, named by the job (the variable
	// submit set) and its place, so a restarted replica takes over its
	// dead attempt's leases.
	for _, v := range []string{"BATCH_JOB_UID", "AWS_BATCH_JOB_ID"} {
		t.Setenv(v, "")
	}
	var shards []int
	var tasks []string
	for p, pool := range js.WorkerPoolSpecs {
		for r := 0; r < int(pool.ReplicaCount); r++ {
			t.Setenv("CLUSTER_SPEC", clusterSpec(t, js.WorkerPoolSpecs, p, r))
			for _, e := range pool.GetContainerSpec().GetEnv() {
				t.Setenv(e.Name, e.Value)
			}
			var o job.Options
			if err := shardOptions(&o, ""); err != nil || o.Shards != 3 {
				t.Fatalf("workerpool%d replica %d: %+v %v", p, r, o, err)
			}
			shards = append(shards, o.Shard)
			tasks = append(tasks, job.BatchTask())
		}
	}
	if !slices.Equal(shards, []int{0, 1, 2}) {
		t.Errorf("replicas run shards %v, want 0, 1, 2", shards)
	}
	jobName := created[0].CustomJob.DisplayName
	if want := []string{jobName + "/0", jobName + "/1", jobName + "/2"}; !slices.Equal(tasks, want) {
		t.Errorf("replicas' batch tasks %q, want %q", tasks, want)
	}
	for _, bad := range []string{`{"task":{"type":"workerpool1","index":5},"cluster":{"workerpool1":["a"]}}`, `{"task":{"type":"chief"}}`, `not json`} {
		t.Setenv("CLUSTER_SPEC", bad)
		if err := shardOptions(&job.Options{}, ""); err == nil || !strings.Contains(err.Error(), "CLUSTER_SPEC") {
			t.Errorf("CLUSTER_SPEC %s: %v", bad, err)
		}
	}
}

func TestSubmitVertexDryRunAndErrors(t *testing.T) {
	env := keyEnv(t)
	gcs := storagetest.FakeGCS(t)
	vx := useFakeVertex(t)
	root := []string{"--set", "storage.root=" + gcs.Root, "--set", "storage.gcs.endpoint=" + gcs.GCS.Endpoint}
	vertex := append([]string{"--cloud", "vertex", "--image", "img", "--project", "p", "--region", "europe-west4", "--machine-type", "n2-standard-8"}, root...)
	out, warn, err := statjobOutErr(t, append([]string{"submit", "--dry-run", "--tasks", "2"}, vertex...)...)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Parent    string
		CustomJob struct {
			JobSpec struct {
				WorkerPoolSpecs []struct {
					ReplicaCount  string
					ContainerSpec struct{ Args []string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &req); err != nil || req.Parent != "projects/p/locations/europe-west4" ||
		len(req.CustomJob.JobSpec.WorkerPoolSpecs) != 2 || req.CustomJob.JobSpec.WorkerPoolSpecs[1].ReplicaCount != "1" ||
		req.CustomJob.JobSpec.WorkerPoolSpecs[0].ContainerSpec.Args[0] != "run" {
		t.Errorf("dry run printed (%v):\n%s", err, out)
	}
	// The teacher's key cannot reach a Vertex job: submit says so.
	if !strings.Contains(warn, "$"+env) || !strings.Contains(warn, "Vertex AI custom job cannot fill from Secret Manager") {
		t.Errorf("no warning about the teacher key:\n%s", warn)
	}
	var objects []string
	storagetest.Open(t, gcs).List(context.Background(), "", func(a storage.Attrs) error {
		objects = append(objects, a.Key)
		return nil
	})
	if len(objects) != 0 || len(vx.Created()) != 0 {
		t.Errorf("a dry run wrote %v, created %d jobs", objects, len(vx.Created()))
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{"--machine-type is required with --cloud vertex", append([]string{"--cloud", "vertex", "--image", "img", "--project", "p", "--region", "r"}, root...)},
		{"--project is required with --cloud vertex", append([]string{"--cloud", "vertex", "--image", "img", "--region", "r", "--machine-type", "m"}, root...)},
		{"--gpu-type", append([]string{"--gpus", "1", "--gpu-type", "nvidia-l5"}, vertex...)},
		{"--job-queue is a --cloud aws flag", append([]string{"--job-queue", "q"}, vertex...)},
		{"--secret " + env, append([]string{"--secret", env + "=projects/p/secrets/k/versions/1"}, vertex...)},
		{"--run-per-job", append([]string{"--run-per-job"}, vertex...)},
		{"--cloud", append([]string{"--cloud", "vertex-ai"}, vertex[2:]...)},
	} {
		_, errOut, err := statjobOutErr(t, append([]string{"submit"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("submit %q: want an error naming %s, got %v", tc.args, tc.want, err)
		} else if strings.Contains(err.Error()+errOut, submitKey) || strings.Contains(err.Error(), "projects/p/secrets") {
			t.Errorf("submit %q: the error repeats the secret: %v", tc.args, err)
		}
		if tc.want == "--secret "+env && !errors.Is(err, infra.ErrVertexSecret) {
			t.Errorf("--secret refused as %v", err)
		}
	}
	if n := len(vx.Created()); n != 0 {
		t.Errorf("%d jobs created by refused submissions", n)
	}
}
