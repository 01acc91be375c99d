package infra_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/infra/infratest"
)

const testSecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-AbCdEf"

func testAWS(f *infratest.AWSBatch) *infra.AWS {
	return &infra.AWS{AWSConfig: infra.AWSConfig{
		Region: "us-east-1", JobQueue: "gpu-queue", GPUs: 1,
		ExecutionRoleARN: "arn:aws:iam::123456789012:role/statjob-exec",
		JobRoleARN:       "arn:aws:iam::123456789012:role/statjob-task",
	}, ClientOptions: f.ClientOptions()}
}

func awsJob() infra.Job {
	j := testJob()
	j.Tasks, j.MaxRetries, j.MaxRunDuration = 3, 2, 2*time.Hour
	j.SpecURI = "s3://bucket/statjob/submit/20260102-150405-a1b2/spec.yaml"
	j.Image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/statjob:cuda"
	j.Secrets = []infra.Secret{{Env: "OPENAI_API_KEY", Ref: testSecretARN}}
	return j
}

func TestAWSSubmitRegistersDefinition(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", keyValue)
	ctx := context.Background()
	fake := infratest.FakeAWSBatch(t)
	a, j := testAWS(fake), awsJob()

	dry, err := a.Request(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Bodies()); n != 0 {
		t.Fatalf("Request sent %d requests; a dry run sends nothing", n)
	}
	sub, err := a.Submit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	regs, subs := fake.Registers(), fake.Submits()
	if len(regs) != 1 || len(subs) != 1 {
		t.Fatalf("%d definitions registered, %d jobs submitted; want 1 and 1", len(regs), len(subs))
	}
	reg, s := regs[0], subs[0]
	if sub.ID != "job-1" || sub.Name != s.JobName || !strings.HasPrefix(s.JobName, "statjob-20260102-150405-a1b2-") {
		t.Errorf("Submitted %+v, job name %q", sub, s.JobName)
	}

	// The definition: image, resources, the key as a reference, the roles.
	cp := reg.ContainerProperties
	if reg.JobDefinitionName != "statjob" || cp.Image != j.Image || !slices.Equal(reg.PlatformCapabilities, []string{"EC2"}) {
		t.Errorf("definition %s image %s on %v", reg.JobDefinitionName, cp.Image, reg.PlatformCapabilities)
	}
	wantRes := []infratest.TypeValue{{Type: "VCPU", Value: "4"}, {Type: "MEMORY", Value: "14336"}, {Type: "GPU", Value: "1"}}
	if !slices.Equal(cp.ResourceRequirements, wantRes) {
		t.Errorf("resources %v, want %v", cp.ResourceRequirements, wantRes)
	}
	if len(cp.Secrets) != 1 || cp.Secrets[0].Name != "OPENAI_API_KEY" || cp.Secrets[0].ValueFrom != testSecretARN {
		t.Errorf("secrets %v: want OPENAI_API_KEY from %s", cp.Secrets, testSecretARN)
	}
	if cp.ExecutionRoleArn != a.ExecutionRoleARN || cp.JobRoleArn != a.JobRoleARN {
		t.Errorf("roles %s, %s", cp.ExecutionRoleArn, cp.JobRoleArn)
	}

	// The job: the revision just registered, an array of 3, the command,
	// the shard count, retries on exit 75 and on Spot reclaims only.
	if s.JobDefinition != "arn:aws:batch:us-east-1:123456789012:job-definition/statjob:1" || s.JobQueue != "gpu-queue" {
		t.Errorf("job definition %s, queue %s", s.JobDefinition, s.JobQueue)
	}
	if s.ArrayProperties == nil || s.ArrayProperties.Size != 3 {
		t.Errorf("arrayProperties %v, want size 3", s.ArrayProperties)
	}
	wantCmd := []string{"run", "--config", j.SpecURI, "--run-id", j.RunID}
	if !slices.Equal(s.ContainerOverrides.Command, wantCmd) {
		t.Errorf("command %q, want %q", s.ContainerOverrides.Command, wantCmd)
	}
	if !slices.Contains(s.ContainerOverrides.Environment, infratest.NameValue{Name: infra.ShardCountEnv, Value: "3"}) {
		t.Errorf("environment %v: want %s=3", s.ContainerOverrides.Environment, infra.ShardCountEnv)
	}
	rs := s.RetryStrategy
	if rs == nil || rs.Attempts != 3 || len(rs.EvaluateOnExit) != 3 ||
		rs.EvaluateOnExit[0].OnExitCode != "75" || rs.EvaluateOnExit[0].Action != "RETRY" ||
		rs.EvaluateOnExit[2].OnReason != "*" || rs.EvaluateOnExit[2].Action != "EXIT" {
		t.Errorf("retry strategy %+v: want 3 attempts, RETRY on exit 75 first, EXIT on anything else last", rs)
	}
	if s.Timeout == nil || s.Timeout.AttemptDurationSeconds != 7200 || s.Tags["statjob-run"] != j.RunID {
		t.Errorf("timeout %v, tags %v", s.Timeout, s.Tags)
	}

	// The dry run printed the same bodies (but for the job's name and the
	// definition, which is named until registered).
	var printed struct {
		RegisterJobDefinition infratest.RegisterJobDefinition
		SubmitJob             infratest.SubmitJob
	}
	if err := json.Unmarshal(dry, &printed); err != nil {
		t.Fatalf("dry-run output: %v\n%s", err, dry)
	}
	ps := printed.SubmitJob
	if ps.JobDefinition != "statjob" || !slices.Equal(ps.ContainerOverrides.Command, wantCmd) || ps.ArrayProperties.Size != 3 ||
		printed.RegisterJobDefinition.ContainerProperties.Secrets[0].ValueFrom != testSecretARN {
		t.Errorf("dry run printed\n%s", dry)
	}
	ps.JobName, ps.JobDefinition, s.JobName, s.JobDefinition = "", "", "", ""
	a1, _ := json.Marshal(ps)
	a2, _ := json.Marshal(s)
	if string(a1) != string(a2) {
		t.Errorf("dry run printed %s\nSubmit sent %s", a1, a2)
	}
	for _, b := range append(fake.Bodies(), string(dry)) {
		if strings.Contains(b, keyValue) {
			t.Fatal("the key's value reached a request")
		}
	}
}

// With the user's job definition nothing is registered; one task is a
// plain job (AWS arrays have at least 2 children).
func TestAWSOwnDefinition(t *testing.T) {
	fake := infratest.FakeAWSBatch(t)
	a, j := testAWS(fake), awsJob()
	a.JobDefinition, a.GPUs, a.VCPUs = "my-statjob:7", 2, 8
	j.Image, j.Secrets, j.Tasks = "", nil, 1
	if _, err := a.Submit(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Registers()); n != 0 {
		t.Errorf("%d definitions registered with --job-definition", n)
	}
	s := fake.Submits()[0]
	want := []infratest.TypeValue{{Type: "VCPU", Value: "8"}, {Type: "GPU", Value: "2"}}
	if s.JobDefinition != "my-statjob:7" || s.ArrayProperties != nil || !slices.Equal(s.ContainerOverrides.ResourceRequirements, want) {
		t.Errorf("job definition %s, array %v, resource overrides %v", s.JobDefinition, s.ArrayProperties, s.ContainerOverrides.ResourceRequirements)
	}
}

func TestAWSErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		want string
		edit func(*infra.AWS, *infra.Job)
	}{
		{"--job-queue", func(a *infra.AWS, _ *infra.Job) { a.JobQueue = "" }},
		{"--image or --job-definition", func(_ *infra.AWS, j *infra.Job) { j.Image = "" }},
		{"--execution-role-arn", func(a *infra.AWS, _ *infra.Job) { a.ExecutionRoleARN = "" }},
		{"--secret OPENAI_API_KEY", func(_ *infra.AWS, j *infra.Job) { j.Secrets[0].Ref = keyValue }},
		{"--max-retries", func(_ *infra.AWS, j *infra.Job) { j.MaxRetries = 10 }},
		{"--max-run-duration", func(_ *infra.AWS, j *infra.Job) { j.MaxRunDuration = 30 * time.Second }},
		{"--image", func(a *infra.AWS, _ *infra.Job) { a.JobDefinition = "mine" }},
		{"--secret", func(a *infra.AWS, j *infra.Job) { a.JobDefinition, j.Image = "mine", "" }},
	} {
		fake := infratest.FakeAWSBatch(t)
		a, j := testAWS(fake), awsJob()
		tc.edit(a, &j)
		_, err := a.Submit(context.Background(), j)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), keyValue) {
			t.Errorf("want an error naming %s (and no secret), got %v", tc.want, err)
		}
		if n := len(fake.Bodies()); n != 0 {
			t.Errorf("%s: %d requests sent for a refused job", tc.want, n)
		}
	}
}
