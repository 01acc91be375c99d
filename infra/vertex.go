package infra

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/statjob/statjob/job"
)

// Vertex submits a Vertex AI custom job. It takes the same settings as
// Cloud Batch (the submit flags --project, --region, --machine-type,
// --gpu-type, --gpus, --service-account, --spot, --boot-disk-gb).
//
// The job's replicas are the tasks: Vertex requires the first worker pool
// to hold exactly one replica (the primary), so Tasks > 1 becomes a second
// pool of Tasks-1 replicas with the same machine and container. Each
// replica learns its place from the CLUSTER_SPEC variable Vertex sets
// (statjob run reads it: workerpool0 is shard 0, workerpool1's replica i is
// shard 1+i) and the shard count from STATJOB_SHARD_COUNT.
//
// Vertex has no secret references in a custom job's environment, so
// Job.Secrets are refused: the tasks authenticate with the job's service
// account (a Gemini teacher on Vertex needs no key).
type Vertex struct {
	GCPConfig
	// ClientOptions are passed to the Vertex AI job client after the
	// region's endpoint (so they may replace it); empty: Application Default
	// Credentials.
	ClientOptions []option.ClientOption
}

// ErrVertexSecret: Vertex custom jobs cannot fill an environment variable
// from Secret Manager.
var ErrVertexSecret = errors.New("vertex custom jobs cannot read environment variables from Secret Manager")

// vertexMaxDisplayName is the service's limit on a display name.
const vertexMaxDisplayName = 128

// vertexAccelerator maps --gpu-type (nvidia-l4, NVIDIA_TESLA_A100, ...) to
// the API's enum.
func vertexAccelerator(gpuType string) (aiplatformpb.AcceleratorType, error) {
	v, ok := aiplatformpb.AcceleratorType_value[strings.ToUpper(strings.ReplaceAll(gpuType, "-", "_"))]
	if !ok || v == 0 {
		return 0, fmt.Errorf("--gpu-type %q: not a Vertex AI accelerator type (e.g. nvidia-l4, nvidia-tesla-a100, nvidia-h100-80gb)", gpuType)
	}
	return aiplatformpb.AcceleratorType(v), nil
}

// createRequest builds the CreateCustomJob request.
func (v *Vertex) createRequest(j Job) (*aiplatformpb.CreateCustomJobRequest, error) {
	if err := v.validate("vertex"); err != nil {
		return nil, err
	}
	// Vertex has no retry count: 0 turns its restarts off, any other
	// value leaves them on (j.MaxRetries is not sent).
	if err := j.validate(1 << 20); err != nil {
		return nil, err
	}
	switch {
	case j.Image == "":
		return nil, fmt.Errorf("--image is required with --cloud vertex (the statjob image in Artifact Registry)")
	case v.MachineType == "":
		return nil, fmt.Errorf("--machine-type is required with --cloud vertex, e.g. g2-standard-8 (L4) or a2-highgpu-1g (A100)")
	case len(j.Secrets) > 0:
		return nil, fmt.Errorf("--secret %s: %w; give the job's --service-account access instead (Workload Identity / Application Default Credentials; a Gemini teacher on Vertex AI needs no key), or use --cloud gcp", j.Secrets[0].Env, ErrVertexSecret)
	case gpuMachine.MatchString(v.MachineType) && v.GPUs == 0:
		return nil, fmt.Errorf("--machine-type %s comes with GPUs, which Vertex AI wants named: add --gpu-type and --gpus (e.g. --gpu-type nvidia-l4 --gpus 1 for g2-standard-8)", v.MachineType)
	case j.RunPerJob:
		return nil, fmt.Errorf("--run-per-job is not supported with --cloud vertex: give every submission its --run-id")
	}
	machine := &aiplatformpb.MachineSpec{MachineType: v.MachineType}
	if v.GPUs > 0 {
		acc, err := vertexAccelerator(v.GPUType)
		if err != nil {
			return nil, err
		}
		machine.AcceleratorType, machine.AcceleratorCount = acc, int32(v.GPUs)
	}
	// The display name is unique per submission; it names the replicas'
	// batch tasks (job.VertexJobEnv), so a restarted replica takes over
	// its dead attempt's leases at once.
	displayName := name(j.RunID, randomSuffix())
	pool := func(replicas int) *aiplatformpb.WorkerPoolSpec {
		p := &aiplatformpb.WorkerPoolSpec{
			MachineSpec:  machine,
			ReplicaCount: int64(replicas),
			Task: &aiplatformpb.WorkerPoolSpec_ContainerSpec{ContainerSpec: &aiplatformpb.ContainerSpec{
				ImageUri: j.Image,
				// Args, not Command: the image's entrypoint is statjob.
				Args: j.Command(),
				Env: []*aiplatformpb.EnvVar{
					{Name: ShardCountEnv, Value: j.shardCount()},
					{Name: job.VertexJobEnv, Value: displayName},
				},
			}},
		}
		if v.BootDiskGB > 0 {
			p.DiskSpec = &aiplatformpb.DiskSpec{BootDiskType: "pd-ssd", BootDiskSizeGb: int32(v.BootDiskGB)}
		}
		return p
	}
	pools := []*aiplatformpb.WorkerPoolSpec{pool(1)}
	if j.Tasks > 1 {
		pools = append(pools, pool(j.Tasks-1))
	}
	sched := &aiplatformpb.Scheduling{DisableRetries: j.MaxRetries == 0}
	if v.Spot {
		sched.Strategy = aiplatformpb.Scheduling_SPOT
	}
	if j.MaxRunDuration > 0 {
		sched.Timeout = durationpb.New(j.MaxRunDuration)
	}
	return &aiplatformpb.CreateCustomJobRequest{
		Parent: "projects/" + v.Project + "/locations/" + v.Region,
		CustomJob: &aiplatformpb.CustomJob{
			DisplayName: displayName,
			JobSpec: &aiplatformpb.CustomJobSpec{
				WorkerPoolSpecs: pools,
				Scheduling:      sched,
				ServiceAccount:  v.ServiceAccount,
			},
			Labels: map[string]string{"statjob-run": label(j.RunID)},
		},
	}, nil
}

// Request returns the CreateCustomJob request as JSON ({"parent",
// "customJob"}; "customJob" is the body of the REST call
// projects.locations.customJobs.create).
func (v *Vertex) Request(_ context.Context, j Job) ([]byte, error) {
	req, err := v.createRequest(j)
	if err != nil {
		return nil, err
	}
	return indentedJSON(req)
}

// Submit creates the custom job through the region's endpoint.
func (v *Vertex) Submit(ctx context.Context, j Job) (Submitted, error) {
	req, err := v.createRequest(j)
	if err != nil {
		return Submitted{}, err
	}
	opts := append([]option.ClientOption{option.WithEndpoint(v.Region + "-aiplatform.googleapis.com:443")}, v.ClientOptions...)
	c, err := aiplatform.NewJobClient(ctx, opts...)
	if err != nil {
		return Submitted{}, fmt.Errorf("vertex ai job client: %w", err)
	}
	defer c.Close()
	created, err := c.CreateCustomJob(ctx, req)
	if err != nil {
		return Submitted{}, fmt.Errorf("create vertex ai custom job %s in %s: %w", req.CustomJob.DisplayName, req.Parent, err)
	}
	return Submitted{Name: created.GetName(), ID: path.Base(created.GetName())}, nil
}
