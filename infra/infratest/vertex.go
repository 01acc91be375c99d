package infratest

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"unicode/utf8"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// VertexJobs is a Vertex AI JobService server on loopback (custom jobs
// only).
type VertexJobs struct {
	aiplatformpb.UnimplementedJobServiceServer
	// Options point the real client at this server.
	Options []option.ClientOption

	mu      sync.Mutex
	created []*aiplatformpb.CreateCustomJobRequest
}

// FakeVertex starts a Vertex AI JobService gRPC server for the length of t.
func FakeVertex(t testing.TB) *VertexJobs {
	t.Helper()
	f := &VertexJobs{}
	f.Options = serveGRPC(t, func(s *grpc.Server) { aiplatformpb.RegisterJobServiceServer(s, f) })
	return f
}

// CreateCustomJob records the request and answers with the job as created.
func (f *VertexJobs) CreateCustomJob(_ context.Context, req *aiplatformpb.CreateCustomJobRequest) (*aiplatformpb.CustomJob, error) {
	if err := checkCustomJob(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, proto.Clone(req).(*aiplatformpb.CreateCustomJobRequest))
	job := proto.Clone(req.CustomJob).(*aiplatformpb.CustomJob)
	job.Name = fmt.Sprintf("%s/customJobs/%d", req.Parent, 1000+len(f.created))
	job.State = aiplatformpb.JobState_JOB_STATE_QUEUED
	return job, nil
}

// Created returns the CreateCustomJob requests received so far.
func (f *VertexJobs) Created() []*aiplatformpb.CreateCustomJobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*aiplatformpb.CreateCustomJobRequest(nil), f.created...)
}

// gpuMachine: machine families that come with GPUs, which a custom job
// must name.
var gpuMachine = regexp.MustCompile(`^(a2|a3|a4|g2|g4)-`)

// checkCustomJob applies the service's documented rules to the fields
// statjob sets.
func checkCustomJob(req *aiplatformpb.CreateCustomJobRequest) error {
	j := req.GetCustomJob()
	switch {
	case !gcpParent.MatchString(req.Parent):
		return fmt.Errorf("parent %q", req.Parent)
	case j.GetDisplayName() == "" || !utf8.ValidString(j.DisplayName) || utf8.RuneCountInString(j.DisplayName) > 128:
		return fmt.Errorf("display_name %q: want 1 to 128 UTF-8 characters", j.GetDisplayName())
	case len(j.GetJobSpec().GetWorkerPoolSpecs()) == 0:
		return fmt.Errorf("job_spec.worker_pool_specs is required")
	case j.JobSpec.WorkerPoolSpecs[0].ReplicaCount != 1:
		return fmt.Errorf("worker_pool_specs[0].replica_count %d: the primary pool has exactly 1 replica", j.JobSpec.WorkerPoolSpecs[0].ReplicaCount)
	}
	for i, p := range j.JobSpec.WorkerPoolSpecs {
		m := p.GetMachineSpec()
		switch {
		case p.ReplicaCount < 1:
			return fmt.Errorf("worker_pool_specs[%d].replica_count %d: want at least 1", i, p.ReplicaCount)
		case m.GetMachineType() == "":
			return fmt.Errorf("worker_pool_specs[%d].machine_spec.machine_type is required", i)
		case (m.AcceleratorType == aiplatformpb.AcceleratorType_ACCELERATOR_TYPE_UNSPECIFIED) != (m.AcceleratorCount == 0):
			return fmt.Errorf("worker_pool_specs[%d].machine_spec: accelerator_type and accelerator_count go together", i)
		case gpuMachine.MatchString(m.MachineType) && m.AcceleratorCount == 0:
			return fmt.Errorf("worker_pool_specs[%d].machine_spec: machine type %s needs its accelerator_type and accelerator_count", i, m.MachineType)
		case p.GetContainerSpec().GetImageUri() == "":
			return fmt.Errorf("worker_pool_specs[%d].container_spec.image_uri is required", i)
		}
	}
	if t := j.JobSpec.GetScheduling().GetTimeout(); t != nil && t.AsDuration() <= 0 {
		return fmt.Errorf("scheduling.timeout must be positive")
	}
	return nil
}
