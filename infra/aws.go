package infra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/statjob/statjob/job"
)

// AWSConfig is where and on what an AWS Batch job runs. Each field is the
// submit flag of the same name.
type AWSConfig struct {
	Region        string // --region; empty: AWS_REGION or the shared config
	JobQueue      string // --job-queue (required)
	JobDefinition string // --job-definition; empty: statjob registers one from --image
	// The job definition statjob registers (with --image):
	DefinitionName   string // --job-definition-name; empty: "statjob"
	VCPUs            int    // --vcpus; 0: 4
	MemoryMiB        int    // --memory (MiB); 0: 14336
	GPUs             int    // --gpus per task
	ExecutionRoleARN string // --execution-role-arn: lets the ECS agent read --secret values
	JobRoleARN       string // --job-role-arn: what the task may do (its S3 bucket)
}

// Defaults of the registered job definition.
const (
	awsDefinitionName = "statjob"
	awsVCPUs          = 4
	awsMemoryMiB      = 14336 // fits a 16 GiB instance after the ECS agent's share
	// AWS Batch allows 10 attempts: 9 retries.
	awsMaxRetries = 9
)

// AWS submits to AWS Batch.
type AWS struct {
	AWSConfig
	// ClientOptions adjust the AWS Batch client (endpoint, credentials);
	// the client starts from the default AWS configuration chain.
	ClientOptions []func(*batch.Options)
}

// Validate names the flag of the first missing or bad field.
func (c AWSConfig) Validate() error {
	switch {
	case c.JobQueue == "":
		return errors.New("--job-queue is required with --cloud aws")
	case c.VCPUs < 0 || c.MemoryMiB < 0 || c.GPUs < 0:
		return errors.New("--vcpus, --memory and --gpus must not be negative")
	}
	return nil
}

// awsRequests are the calls Submit makes: an optional job definition, then
// the job.
type awsRequests struct {
	Register *batch.RegisterJobDefinitionInput
	Submit   *batch.SubmitJobInput
}

func (a *AWS) requests(j Job) (*awsRequests, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if err := j.validate(awsMaxRetries); err != nil {
		return nil, err
	}
	for _, s := range j.Secrets {
		if !strings.HasPrefix(s.Ref, "arn:") {
			return nil, fmt.Errorf("--secret %s: want the ARN of a Secrets Manager secret or SSM parameter (never the secret itself)", s.Env)
		}
	}
	retry := &types.RetryStrategy{
		Attempts: aws.Int32(int32(j.MaxRetries + 1)),
		EvaluateOnExit: []types.EvaluateOnExit{
			{OnExitCode: aws.String(strconv.Itoa(job.ExitInterrupted)), Action: types.RetryActionRetry},
			// A reclaimed Spot instance ends its tasks with this reason.
			{OnStatusReason: aws.String("Host EC2*"), Action: types.RetryActionRetry},
			{OnReason: aws.String("*"), Action: types.RetryActionExit},
		},
	}
	var timeout *types.JobTimeout
	if j.MaxRunDuration > 0 {
		secs := int32(j.MaxRunDuration.Seconds())
		if secs < 60 {
			return nil, fmt.Errorf("--max-run-duration %s: AWS Batch wants at least 60s", j.MaxRunDuration)
		}
		timeout = &types.JobTimeout{AttemptDurationSeconds: aws.Int32(secs)}
	}
	tags := map[string]string{"statjob-run": j.RunID}
	r := &awsRequests{Submit: &batch.SubmitJobInput{
		JobName:       aws.String(name(j.RunID, randomSuffix())),
		JobQueue:      aws.String(a.JobQueue),
		JobDefinition: aws.String(a.JobDefinition),
		ContainerOverrides: &types.ContainerOverrides{
			Command:     j.Command(),
			Environment: []types.KeyValuePair{{Name: aws.String(ShardCountEnv), Value: aws.String(j.shardCount())}},
		},
		RetryStrategy: retry,
		Timeout:       timeout,
		Tags:          tags,
		PropagateTags: aws.Bool(true),
	}}
	// An array job needs at least 2 children; one task is a plain job.
	if j.Tasks > 1 {
		r.Submit.ArrayProperties = &types.ArrayProperties{Size: aws.Int32(int32(j.Tasks))}
	}
	if a.JobDefinition != "" {
		switch {
		case j.Image != "":
			return nil, errors.New("--image: AWS Batch takes the image from the job definition; give --image (statjob registers a job definition) or --job-definition, not both")
		case len(j.Secrets) > 0:
			return nil, errors.New("--secret: AWS Batch takes secrets from the job definition; leave out --job-definition so statjob registers one with them, or add them to yours")
		}
		r.Submit.ContainerOverrides.ResourceRequirements = resources(a.VCPUs, a.MemoryMiB, a.GPUs)
		return r, nil
	}
	if j.Image == "" {
		return nil, errors.New("--image or --job-definition is required with --cloud aws")
	}
	if len(j.Secrets) > 0 && a.ExecutionRoleARN == "" {
		return nil, errors.New("--execution-role-arn is required with --secret on AWS: the ECS agent reads the secrets with that role")
	}
	def := a.DefinitionName
	if def == "" {
		def = awsDefinitionName
	}
	vcpus, mem := a.VCPUs, a.MemoryMiB
	if vcpus == 0 {
		vcpus = awsVCPUs
	}
	if mem == 0 {
		mem = awsMemoryMiB
	}
	props := &types.ContainerProperties{
		Image:                aws.String(j.Image),
		Command:              []string{"run"},
		ResourceRequirements: resources(vcpus, mem, a.GPUs),
	}
	for _, s := range j.Secrets {
		props.Secrets = append(props.Secrets, types.Secret{Name: aws.String(s.Env), ValueFrom: aws.String(s.Ref)})
	}
	if a.ExecutionRoleARN != "" {
		props.ExecutionRoleArn = aws.String(a.ExecutionRoleARN)
	}
	if a.JobRoleARN != "" {
		props.JobRoleArn = aws.String(a.JobRoleARN)
	}
	r.Register = &batch.RegisterJobDefinitionInput{
		JobDefinitionName:    aws.String(def),
		Type:                 types.JobDefinitionTypeContainer,
		PlatformCapabilities: []types.PlatformCapability{types.PlatformCapabilityEc2},
		ContainerProperties:  props,
		RetryStrategy:        retry,
		Timeout:              timeout,
		PropagateTags:        aws.Bool(true),
	}
	// Until registered, the definition is named; Submit uses the ARN of the
	// revision it registered.
	r.Submit.JobDefinition = aws.String(def)
	return r, nil
}

func resources(vcpus, memMiB, gpus int) []types.ResourceRequirement {
	var rs []types.ResourceRequirement
	add := func(t types.ResourceType, n int) {
		if n > 0 {
			rs = append(rs, types.ResourceRequirement{Type: t, Value: aws.String(strconv.Itoa(n))})
		}
	}
	add(types.ResourceTypeVcpu, vcpus)
	add(types.ResourceTypeMemory, memMiB)
	add(types.ResourceTypeGpu, gpus)
	return rs
}

// errCaptured stops a dry-run call after the SDK has serialized it.
var errCaptured = errors.New("request captured, not sent")

// captureBody makes a client stop every call just after serializing it,
// keeping the body: the exact JSON the service would receive. Nothing is
// signed or sent, so no credentials are needed.
func captureBody(dst *json.RawMessage) func(*batch.Options) {
	return func(o *batch.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Build.Add(middleware.BuildMiddlewareFunc("statjobDryRun",
				func(ctx context.Context, in middleware.BuildInput, _ middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
					req, ok := in.Request.(*smithyhttp.Request)
					if !ok {
						return middleware.BuildOutput{}, middleware.Metadata{}, fmt.Errorf("dry run: unexpected request type %T", in.Request)
					}
					body, err := io.ReadAll(req.GetStream())
					if err != nil {
						return middleware.BuildOutput{}, middleware.Metadata{}, err
					}
					*dst = body
					return middleware.BuildOutput{}, middleware.Metadata{}, errCaptured
				}), middleware.After)
		})
	}
}

// Request returns {"registerJobDefinition": …, "submitJob": …} (the first
// only when statjob registers the definition), each the REST-JSON body AWS
// Batch would receive, usable with aws batch … --cli-input-json.
func (a *AWS) Request(ctx context.Context, j Job) ([]byte, error) {
	r, err := a.requests(j)
	if err != nil {
		return nil, err
	}
	region := a.Region
	if region == "" {
		region = "us-east-1" // only the body is kept; the endpoint is never reached
	}
	out := map[string]json.RawMessage{}
	var body json.RawMessage
	c := batch.New(batch.Options{Region: region}, captureBody(&body))
	if r.Register != nil {
		if _, err := c.RegisterJobDefinition(ctx, r.Register); !errors.Is(err, errCaptured) {
			return nil, fmt.Errorf("dry run: register job definition: %w", err)
		}
		out["registerJobDefinition"] = body
	}
	if _, err := c.SubmitJob(ctx, r.Submit); !errors.Is(err, errCaptured) {
		return nil, fmt.Errorf("dry run: submit job: %w", err)
	}
	out["submitJob"] = body
	return json.MarshalIndent(out, "", "  ")
}

// Submit registers the job definition (when statjob makes it) and submits
// the job.
func (a *AWS) Submit(ctx context.Context, j Job) (Submitted, error) {
	r, err := a.requests(j)
	if err != nil {
		return Submitted{}, err
	}
	var opts []func(*config.LoadOptions) error
	if a.Region != "" {
		opts = append(opts, config.WithRegion(a.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return Submitted{}, fmt.Errorf("aws configuration: %w", err)
	}
	c := batch.NewFromConfig(cfg, a.ClientOptions...)
	if r.Register != nil {
		reg, err := c.RegisterJobDefinition(ctx, r.Register)
		if err != nil {
			return Submitted{}, fmt.Errorf("register aws batch job definition %s: %w", aws.ToString(r.Register.JobDefinitionName), err)
		}
		r.Submit.JobDefinition = reg.JobDefinitionArn
	}
	out, err := c.SubmitJob(ctx, r.Submit)
	if err != nil {
		return Submitted{}, fmt.Errorf("submit aws batch job %s to queue %s: %w", aws.ToString(r.Submit.JobName), a.JobQueue, err)
	}
	return Submitted{Name: aws.ToString(out.JobName), ID: aws.ToString(out.JobId)}, nil
}
