// Package infratest runs fakes of the Cloud Batch, AWS Batch and Vertex AI
// job APIs on loopback for tests: none has an emulator, so each fake speaks
// the real wire format (gRPC for Cloud Batch and Vertex AI, REST-JSON with
// SigV4 for AWS Batch) to the real SDK client, records what it received, and refuses
// requests the real service would refuse for the fields statjob sets.
package infratest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/batch/apiv1/batchpb"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// GCPBatch is a Cloud Batch server on loopback.
type GCPBatch struct {
	batchpb.UnimplementedBatchServiceServer
	// Options point the real client at this server.
	Options []option.ClientOption

	mu      sync.Mutex
	created []*batchpb.CreateJobRequest
}

// FakeGCPBatch starts a Cloud Batch gRPC server for the length of t.
func FakeGCPBatch(t testing.TB) *GCPBatch {
	t.Helper()
	f := &GCPBatch{}
	f.Options = serveGRPC(t, func(s *grpc.Server) { batchpb.RegisterBatchServiceServer(s, f) })
	return f
}

// serveGRPC serves what register adds on loopback for the length of t and
// returns the options that point a Google Cloud client at it.
func serveGRPC(t testing.TB, register func(*grpc.Server)) []option.ClientOption {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return []option.ClientOption{
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

var (
	gcpJobID  = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	gcpParent = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+$`)
)

// CreateJob records the request and answers with the job as created.
func (f *GCPBatch) CreateJob(_ context.Context, req *batchpb.CreateJobRequest) (*batchpb.Job, error) {
	if err := checkCreate(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, proto.Clone(req).(*batchpb.CreateJobRequest))
	job := proto.Clone(req.Job).(*batchpb.Job)
	job.Name = req.Parent + "/jobs/" + req.JobId
	job.Uid = fmt.Sprintf("%s-uid-%d", req.JobId, len(f.created))
	return job, nil
}

// Created returns the CreateJob requests received so far.
func (f *GCPBatch) Created() []*batchpb.CreateJobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*batchpb.CreateJobRequest(nil), f.created...)
}

// checkCreate applies the service's documented limits to the fields
// statjob sets.
func checkCreate(req *batchpb.CreateJobRequest) error {
	switch {
	case !gcpParent.MatchString(req.Parent):
		return fmt.Errorf("parent %q", req.Parent)
	case !gcpJobID.MatchString(req.JobId):
		return fmt.Errorf("job_id %q does not match %s", req.JobId, gcpJobID)
	case req.Job == nil || len(req.Job.TaskGroups) != 1:
		return fmt.Errorf("a job has exactly one task group")
	}
	tg := req.Job.TaskGroups[0]
	ts := tg.TaskSpec
	switch {
	case tg.TaskCount < 1 || tg.Parallelism > tg.TaskCount:
		return fmt.Errorf("task_count %d, parallelism %d", tg.TaskCount, tg.Parallelism)
	case ts == nil || len(ts.Runnables) == 0:
		return fmt.Errorf("task_spec.runnables is required")
	case ts.MaxRetryCount < 0 || ts.MaxRetryCount > 10:
		return fmt.Errorf("max_retry_count %d: want 0 to 10", ts.MaxRetryCount)
	case len(ts.LifecyclePolicies) > 1:
		return fmt.Errorf("only one lifecycle policy is supported")
	}
	if len(req.Job.AllocationPolicy.GetInstances()) > 1 {
		return fmt.Errorf("only instances[0] is supported")
	}
	return nil
}

// AWSBatch is an AWS Batch REST-JSON server on loopback.
type AWSBatch struct {
	// URL is the endpoint (the client's BaseEndpoint).
	URL string

	mu        sync.Mutex
	submits   []SubmitJob
	registers []RegisterJobDefinition
	bodies    []string
}

// SubmitJob is the body of a SubmitJob request, as far as statjob sets it.
type SubmitJob struct {
	JobName, JobQueue, JobDefinition string
	ArrayProperties                  *struct{ Size int }
	ContainerOverrides               struct {
		Command              []string
		Environment          []NameValue
		ResourceRequirements []TypeValue
	}
	RetryStrategy *RetryStrategy
	Timeout       *struct{ AttemptDurationSeconds int }
	Tags          map[string]string
	PropagateTags bool
}

// RegisterJobDefinition is the body of a RegisterJobDefinition request.
type RegisterJobDefinition struct {
	JobDefinitionName, Type string
	PlatformCapabilities    []string
	ContainerProperties     struct {
		Image                        string
		Command                      []string
		ResourceRequirements         []TypeValue
		Secrets                      []struct{ Name, ValueFrom string }
		Environment                  []NameValue
		ExecutionRoleArn, JobRoleArn string
	}
	RetryStrategy *RetryStrategy
	Timeout       *struct{ AttemptDurationSeconds int }
}

// RetryStrategy is AWS Batch's retry strategy.
type RetryStrategy struct {
	Attempts       int
	EvaluateOnExit []struct{ Action, OnExitCode, OnReason, OnStatusReason string }
}

// NameValue is an environment variable.
type NameValue struct{ Name, Value string }

// TypeValue is a resource requirement.
type TypeValue struct{ Type, Value string }

// FakeAWSBatch starts an AWS Batch server for the length of t.
func FakeAWSBatch(t testing.TB) *AWSBatch {
	t.Helper()
	f := &AWSBatch{}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// ClientOptions point the real client at the server with static
// credentials.
func (f *AWSBatch) ClientOptions() []func(*batch.Options) {
	return []func(*batch.Options){func(o *batch.Options) {
		o.BaseEndpoint = aws.String(f.URL)
		o.Region = "us-east-1"
		o.Credentials = credentials.NewStaticCredentialsProvider("AKIDSTATJOBTEST", "statjob-test-secret-key", "")
	}}
}

var awsJobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

func (f *AWSBatch) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		w.Header().Set("X-Amzn-Errortype", "ClientException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"__type": "ClientException", "message": fmt.Sprintf(format, args...)})
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		fail("want a SigV4-signed POST")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail("read body: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, string(body))
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/submitjob":
		var in SubmitJob
		if err := json.Unmarshal(body, &in); err != nil {
			fail("decode: %v", err)
			return
		}
		switch {
		case !awsJobName.MatchString(in.JobName):
			fail("jobName %q", in.JobName)
			return
		case in.JobQueue == "" || in.JobDefinition == "":
			fail("jobQueue and jobDefinition are required")
			return
		case in.ArrayProperties != nil && (in.ArrayProperties.Size < 2 || in.ArrayProperties.Size > 10000):
			fail("arrayProperties.size %d: want 2 to 10000", in.ArrayProperties.Size)
			return
		case in.RetryStrategy != nil && (in.RetryStrategy.Attempts < 1 || in.RetryStrategy.Attempts > 10 || len(in.RetryStrategy.EvaluateOnExit) > 5):
			fail("retryStrategy: attempts 1 to 10, at most 5 evaluateOnExit")
			return
		case in.Timeout != nil && in.Timeout.AttemptDurationSeconds < 60:
			fail("timeout.attemptDurationSeconds is at least 60")
			return
		}
		f.submits = append(f.submits, in)
		id := fmt.Sprintf("job-%d", len(f.submits))
		json.NewEncoder(w).Encode(map[string]string{
			"jobArn": "arn:aws:batch:us-east-1:123456789012:job/" + id, "jobName": in.JobName, "jobId": id,
		})
	case "/v1/registerjobdefinition":
		var in RegisterJobDefinition
		if err := json.Unmarshal(body, &in); err != nil {
			fail("decode: %v", err)
			return
		}
		if in.JobDefinitionName == "" || in.Type != "container" || in.ContainerProperties.Image == "" {
			fail("jobDefinitionName, type container and containerProperties.image are required")
			return
		}
		f.registers = append(f.registers, in)
		rev := len(f.registers)
		json.NewEncoder(w).Encode(map[string]any{
			"jobDefinitionName": in.JobDefinitionName, "revision": rev,
			"jobDefinitionArn": fmt.Sprintf("arn:aws:batch:us-east-1:123456789012:job-definition/%s:%d", in.JobDefinitionName, rev),
		})
	default:
		fail("unknown operation %s", r.URL.Path)
	}
}

// Submits returns the SubmitJob requests received so far.
func (f *AWSBatch) Submits() []SubmitJob {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SubmitJob(nil), f.submits...)
}

// Registers returns the RegisterJobDefinition requests received so far.
func (f *AWSBatch) Registers() []RegisterJobDefinition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RegisterJobDefinition(nil), f.registers...)
}

// Bodies returns every request body received, raw.
func (f *AWSBatch) Bodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}
