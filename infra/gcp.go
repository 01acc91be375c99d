package infra

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	batch "cloud.google.com/go/batch/apiv1"
	"cloud.google.com/go/batch/apiv1/batchpb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// GCPConfig is where and on what a Cloud Batch job runs. Each field is the
// submit flag of the same name.
type GCPConfig struct {
	Project        string // --project (required)
	Region         string // --region (required), e.g. us-central1
	MachineType    string // --machine-type, e.g. a2-highgpu-1g, g2-standard-8; empty: Batch picks
	GPUType        string // --gpu-type, e.g. nvidia-l4 (must match the machine type's own GPUs)
	GPUs           int    // --gpus per task
	ServiceAccount string // --service-account email; empty: the Compute Engine default
	Spot           bool   // --spot: Spot VMs (preemptible, cheaper)
	BootDiskGB     int    // --boot-disk-gb; 0: Batch's default
}

// gcpMaxRetries is Cloud Batch's limit on max_retry_count.
const gcpMaxRetries = 10

// exitPreempted is the exit status Cloud Batch reports for a task whose
// Spot VM was preempted.
const exitPreempted = 50001

var gcpSecretRef = regexp.MustCompile(`^projects/[^/]+/secrets/[^/]+/versions/[^/]+$`)

// gpuMachine: machine families whose GPUs come with the machine type.
var gpuMachine = regexp.MustCompile(`^(a2|a3|a4|g2|g4)-`)

// GCP submits to Cloud Batch.
type GCP struct {
	GCPConfig
	// ClientOptions are passed to the Cloud Batch client (credentials,
	// endpoint); empty: Application Default Credentials, Google's endpoint.
	ClientOptions []option.ClientOption
}

// Validate names the flag of the first missing or bad field.
func (c GCPConfig) Validate() error { return c.validate("gcp") }

// validate names the flag and the --cloud (gcp or vertex) it is for.
func (c GCPConfig) validate(cloud string) error {
	switch {
	case c.Project == "":
		return fmt.Errorf("--project is required with --cloud %s", cloud)
	case c.Region == "":
		return fmt.Errorf("--region is required with --cloud %s (e.g. us-central1)", cloud)
	case c.GPUs < 0:
		return fmt.Errorf("--gpus %d: must not be negative", c.GPUs)
	case c.GPUType != "" && c.GPUs == 0:
		return fmt.Errorf("--gpu-type %s needs --gpus", c.GPUType)
	case c.BootDiskGB < 0:
		return fmt.Errorf("--boot-disk-gb %d: must not be negative", c.BootDiskGB)
	}
	return nil
}

// createRequest builds the CreateJob request.
func (g *GCP) createRequest(j Job) (*batchpb.CreateJobRequest, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if err := j.validate(gcpMaxRetries); err != nil {
		return nil, err
	}
	if j.Image == "" {
		return nil, fmt.Errorf("--image is required with --cloud gcp (the statjob image in Artifact Registry)")
	}
	env := &batchpb.Environment{Variables: map[string]string{ShardCountEnv: j.shardCount()}}
	for _, s := range j.Secrets {
		if !gcpSecretRef.MatchString(s.Ref) {
			return nil, fmt.Errorf("--secret %s: want a Secret Manager version, projects/PROJECT/secrets/NAME/versions/VERSION (never the secret itself)", s.Env)
		}
		if env.SecretVariables == nil {
			env.SecretVariables = map[string]string{}
		}
		env.SecretVariables[s.Env] = s.Ref
	}
	task := &batchpb.TaskSpec{
		Runnables: []*batchpb.Runnable{{
			Executable: &batchpb.Runnable_Container_{Container: &batchpb.Runnable_Container{
				ImageUri: j.Image,
				Commands: j.Command(),
			}},
		}},
		Environment:   env,
		MaxRetryCount: int32(j.MaxRetries),
		// Cloud Batch takes one lifecycle policy; a failure it does not
		// match is retried. So name the failures not to retry, and
		// preemption (50001) and SIGTERM (75) are retried.
		LifecyclePolicies: []*batchpb.LifecyclePolicy{{
			Action:          batchpb.LifecyclePolicy_FAIL_TASK,
			ActionCondition: &batchpb.LifecyclePolicy_ActionCondition{ExitCodes: exitFailed},
		}},
	}
	if j.MaxRunDuration > 0 {
		task.MaxRunDuration = durationpb.New(j.MaxRunDuration)
	}
	policy := &batchpb.AllocationPolicy_InstancePolicy{MachineType: g.MachineType}
	if g.GPUs > 0 {
		policy.Accelerators = []*batchpb.AllocationPolicy_Accelerator{{Type: g.GPUType, Count: int64(g.GPUs)}}
	}
	if g.Spot {
		policy.ProvisioningModel = batchpb.AllocationPolicy_SPOT
	}
	if g.BootDiskGB > 0 {
		policy.BootDisk = &batchpb.AllocationPolicy_Disk{SizeGb: int64(g.BootDiskGB)}
	}
	alloc := &batchpb.AllocationPolicy{
		Instances: []*batchpb.AllocationPolicy_InstancePolicyOrTemplate{{
			PolicyTemplate:    &batchpb.AllocationPolicy_InstancePolicyOrTemplate_Policy{Policy: policy},
			InstallGpuDrivers: g.GPUs > 0 || gpuMachine.MatchString(g.MachineType),
		}},
		Labels: map[string]string{"statjob-run": label(j.RunID)},
	}
	if g.ServiceAccount != "" {
		alloc.ServiceAccount = &batchpb.ServiceAccount{Email: g.ServiceAccount}
	}
	return &batchpb.CreateJobRequest{
		Parent: "projects/" + g.Project + "/locations/" + g.Region,
		JobId:  name(j.RunID, randomSuffix()),
		Job: &batchpb.Job{
			TaskGroups: []*batchpb.TaskGroup{{
				TaskSpec:    task,
				TaskCount:   int64(j.Tasks),
				Parallelism: int64(j.Tasks),
			}},
			AllocationPolicy: alloc,
			Labels:           map[string]string{"statjob-run": label(j.RunID)},
			LogsPolicy:       &batchpb.LogsPolicy{Destination: batchpb.LogsPolicy_CLOUD_LOGGING},
		},
	}, nil
}

// Request returns the CreateJob request as JSON ({"parent", "jobId",
// "job"}; the "job" object is what gcloud batch jobs submit --config takes).
func (g *GCP) Request(_ context.Context, j Job) ([]byte, error) {
	req, err := g.createRequest(j)
	if err != nil {
		return nil, err
	}
	return indentedJSON(req)
}

// indentedJSON is m in the API's JSON (protojson), steadily indented:
// protojson varies its spacing on purpose.
func indentedJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = json.Indent(&out, b, "", "  ")
	return out.Bytes(), err
}

// Submit creates the Cloud Batch job.
func (g *GCP) Submit(ctx context.Context, j Job) (Submitted, error) {
	req, err := g.createRequest(j)
	if err != nil {
		return Submitted{}, err
	}
	c, err := batch.NewClient(ctx, g.ClientOptions...)
	if err != nil {
		return Submitted{}, fmt.Errorf("cloud batch client: %w", err)
	}
	defer c.Close()
	created, err := c.CreateJob(ctx, req)
	if err != nil {
		return Submitted{}, fmt.Errorf("create cloud batch job %s in %s: %w", req.JobId, req.Parent, err)
	}
	return Submitted{Name: created.GetName(), ID: created.GetUid()}, nil
}

// randomSuffix tells apart the submissions of one run.
func randomSuffix() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}
