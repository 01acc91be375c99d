package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/api/option"

	"github.com/statjob/statjob/infra"
	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher"
)

// gcpClientOptions reach the Cloud Batch client, vertexClientOptions the
// Vertex AI job client (tests point them at fakes).
var gcpClientOptions, vertexClientOptions []option.ClientOption

// Flags that belong to one cloud only.
var (
	gcpOnlyFlags = []string{"project", "machine-type", "gpu-type", "service-account", "spot", "boot-disk-gb"}
	awsOnlyFlags = []string{"job-queue", "job-definition", "job-definition-name", "vcpus", "memory", "execution-role-arn", "job-role-arn"}
)

func newSubmitCmd() *cobra.Command {
	var (
		f       specFlags
		cloud   string
		dryRun  bool
		secrets []string
		j       infra.Job
		gcp     infra.GCPConfig
		aws     infra.AWSConfig
		region  string
		gpus    int
	)
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Run the job on Cloud Batch, AWS Batch or Vertex AI: an array of tasks sharing one run",
		Long: `Submit the job as a cloud batch job. The resolved spec is uploaded to
<storage.root>/submit/<run-id>/spec.yaml and every task of the array runs
"statjob run --config <that URI> --run-id <run-id>", so the tasks work on one
run side by side (leases; one shard each, STATJOB_SHARD_COUNT = --tasks).

A task that is preempted or stopped (exit 75) is retried up to --max-retries
times; a task that fails with an error is not. Submitting again with the
same --run-id and spec resumes the run: finished stages are skipped.

Secrets are passed by reference only: --secret NAME=REFERENCE makes the
service set $NAME from Secret Manager (gcp: projects/P/secrets/S/versions/V)
or Secrets Manager / SSM (aws: an ARN). Name the variable the spec's
teacher.api_key_env reads. --dry-run prints the request and sends nothing.

--cloud vertex submits a Vertex AI custom job instead of a Cloud Batch job
(the same gcp flags; --machine-type is required): its replicas are the tasks.
Vertex cannot fill a variable from Secret Manager, so --secret is refused
there: the replicas run as --service-account (a Gemini teacher on Vertex AI
needs no key). --max-retries 0 turns Vertex's restarts off; Vertex takes no
count.`,
		Example: `  # 4 tasks on Cloud Batch, one L4 GPU each, the teacher key from Secret Manager
  statjob submit --config my.yaml --set storage.root=gs://my-bucket/statjob \
    --tasks 4 --image us-docker.pkg.dev/my-project/statjob/statjob:cuda \
    --project my-project --region us-central1 --machine-type g2-standard-8 \
    --secret OPENAI_API_KEY=projects/my-project/secrets/openai/versions/latest

  # AWS Batch: statjob registers a job definition from the image
  statjob submit --config my.yaml --set storage.root=s3://my-bucket/statjob \
    --tasks 4 --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/statjob:cuda \
    --job-queue gpu --gpus 1 --region us-east-1 \
    --execution-role-arn arn:aws:iam::123456789012:role/statjob-exec \
    --job-role-arn arn:aws:iam::123456789012:role/statjob-task \
    --secret OPENAI_API_KEY=arn:aws:secretsmanager:us-east-1:123456789012:secret:openai

  # Vertex AI custom job: 4 replicas with one L4 each, Spot
  statjob submit --config my.yaml --set storage.root=gs://my-bucket/statjob \
    --cloud vertex --tasks 4 --image us-docker.pkg.dev/my-project/statjob/statjob:cuda \
    --project my-project --region us-central1 --machine-type g2-standard-8 \
    --gpu-type nvidia-l4 --gpus 1 --spot --service-account statjob@my-project.iam.gserviceaccount.com

  # See the request without sending it; resume a run by submitting it again
  statjob submit ... --dry-run | jq .
  statjob submit ... --run-id 20260102-150405-a1b2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			spec, err := f.load()
			if err != nil {
				return err
			}
			root := spec.Storage().Root
			if !strings.HasPrefix(root, "gs://") && !strings.HasPrefix(root, "s3://") {
				return fmt.Errorf("storage.root %q: the tasks of a batch job share the run through gs:// or s3:// storage (--set storage.root=gs://bucket/statjob)", root)
			}
			if cloud == "" {
				cloud = map[string]string{"gs": "gcp", "s3": "aws"}[root[:2]]
			}
			var c infra.Cloud
			switch cloud {
			case "gcp":
				if err := onlyFor(cmd, "aws", awsOnlyFlags); err != nil {
					return err
				}
				gcp.Region, gcp.GPUs = region, gpus
				c = &infra.GCP{GCPConfig: gcp, ClientOptions: gcpClientOptions}
			case "aws":
				if err := onlyFor(cmd, "gcp", gcpOnlyFlags); err != nil {
					return err
				}
				aws.Region, aws.GPUs = region, gpus
				c = &infra.AWS{AWSConfig: aws}
			case "vertex":
				if err := onlyFor(cmd, "aws", awsOnlyFlags); err != nil {
					return err
				}
				gcp.Region, gcp.GPUs = region, gpus
				c = &infra.Vertex{GCPConfig: gcp, ClientOptions: vertexClientOptions}
			default:
				return fmt.Errorf("--cloud %q: want gcp, aws or vertex", cloud)
			}
			if j.RunID == "" {
				j.RunID = job.NewRunID(time.Now())
			}
			for _, s := range secrets {
				sec, err := infra.ParseSecret(s)
				if err != nil {
					return err
				}
				j.Secrets = append(j.Secrets, sec)
			}
			j.SpecURI = infra.SpecURI(root, j.RunID)
			// Built (and checked) before anything is uploaded.
			request, err := c.Request(ctx, j)
			if err != nil {
				return err
			}
			warnTeacherKey(cmd.ErrOrStderr(), spec, cloud, j.Secrets)
			if dryRun {
				fmt.Fprintf(cmd.ErrOrStderr(), "dry run: nothing uploaded or sent; the spec would go to %s\n", j.SpecURI)
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", request)
				return err
			}
			y, err := spec.YAML()
			if err != nil {
				return err
			}
			st, err := spec.Storage().Open(ctx)
			if err != nil {
				return fmt.Errorf("open storage: %w", err)
			}
			defer st.Close()
			if j.SpecURI, err = infra.UploadSpec(ctx, st, j.RunID, y); err != nil {
				return err
			}
			sub, err := c.Submit(ctx, j)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			run := j.RunID
			if j.RunPerJob {
				run = sub.ID // the tasks' BATCH_JOB_UID / AWS_BATCH_JOB_ID
			}
			fmt.Fprintf(out, "submitted %s: %d task(s) on run %s\n", sub.Name, j.Tasks, run)
			fmt.Fprintf(out, "spec: %s\n", j.SpecURI)
			fmt.Fprintf(out, "follow it: statjob status %s --root %s\n", run, root)
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&cloud, "cloud", "", "gcp (Cloud Batch), aws (AWS Batch) or vertex (Vertex AI custom job) (default: from storage.root, gcp for gs://, aws for s3://)")
	fl.BoolVar(&dryRun, "dry-run", false, "print the request as JSON; upload and send nothing")
	fl.StringVar(&j.RunID, "run-id", "", "run every task joins (default: a new id); an earlier run's id resumes it")
	fl.BoolVar(&j.RunPerJob, "run-per-job", false, "leave --run-id out of the tasks' command: every job made from this request is its own run, named by the batch job's id (for schedules)")
	fl.IntVar(&j.Tasks, "tasks", 1, "tasks in the array, side by side; also the shard count")
	fl.StringVar(&j.Image, "image", "", "container image with statjob as its entrypoint (see the Dockerfile)")
	fl.StringArrayVar(&secrets, "secret", nil, "NAME=REFERENCE: set $NAME from a secret store (repeatable); never a value")
	fl.IntVar(&j.MaxRetries, "max-retries", 3, "restarts of a preempted or stopped task (gcp up to 10, aws up to 9; vertex: 0 turns its restarts off, another value leaves them on)")
	fl.DurationVar(&j.MaxRunDuration, "max-run-duration", 0, "stop a task attempt after this long (vertex: the whole job), e.g. 12h (default: the service's limit)")
	fl.StringVar(&region, "region", "", "gcp, vertex: the region (required); aws: the region (default: AWS_REGION or the profile's)")
	fl.IntVar(&gpus, "gpus", 0, "GPUs per task")
	fl.StringVar(&gcp.Project, "project", "", "gcp, vertex: project id (required)")
	fl.StringVar(&gcp.MachineType, "machine-type", "", "gcp, vertex: machine type, e.g. g2-standard-8 (L4), a2-highgpu-1g (A100) (gcp default: Batch picks; required with vertex)")
	fl.StringVar(&gcp.GPUType, "gpu-type", "", "gcp, vertex: accelerator type with --gpus, e.g. nvidia-l4 (must match the machine type's)")
	fl.StringVar(&gcp.ServiceAccount, "service-account", "", "gcp, vertex: the tasks' service account email (default: Compute Engine's; on vertex, Vertex AI's custom code service agent)")
	fl.BoolVar(&gcp.Spot, "spot", false, "gcp, vertex: Spot VMs (preemptible; a preempted task is retried)")
	fl.IntVar(&gcp.BootDiskGB, "boot-disk-gb", 0, "gcp, vertex: boot disk size in GB (default: the service's)")
	fl.StringVar(&aws.JobQueue, "job-queue", "", "aws: job queue (required)")
	fl.StringVar(&aws.JobDefinition, "job-definition", "", "aws: your job definition (default: statjob registers one from --image)")
	fl.StringVar(&aws.DefinitionName, "job-definition-name", "", "aws: name of the job definition statjob registers (default statjob)")
	fl.IntVar(&aws.VCPUs, "vcpus", 0, "aws: vCPUs per task (default 4 in the registered definition)")
	fl.IntVar(&aws.MemoryMiB, "memory", 0, "aws: memory per task in MiB (default 14336 in the registered definition)")
	fl.StringVar(&aws.ExecutionRoleARN, "execution-role-arn", "", "aws: role the ECS agent uses to read --secret values")
	fl.StringVar(&aws.JobRoleARN, "job-role-arn", "", "aws: role the tasks run as (access to the storage bucket)")
	return cmd
}

// onlyFor refuses the other cloud's flags.
func onlyFor(cmd *cobra.Command, other string, flags []string) error {
	for _, name := range flags {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s is a --cloud %s flag", name, other)
		}
	}
	return nil
}

// warnTeacherKey says when the variable the teacher reads its key from is
// not among the secrets the tasks get.
func warnTeacherKey(w io.Writer, spec *job.Spec, cloud string, secrets []infra.Secret) {
	tc, ok := spec.Section("teacher").(*teacher.Config)
	if !ok {
		return
	}
	env := tc.KeyEnv()
	if env == "" {
		return
	}
	for _, s := range secrets {
		if s.Env == env {
			return
		}
	}
	if cloud == "vertex" {
		fmt.Fprintf(w, "warning: the teacher reads its key from $%s, which a Vertex AI custom job cannot fill from Secret Manager; stages that call the teacher will fail (use a teacher that signs in as the service account, e.g. Gemini on Vertex AI, or --cloud gcp)\n", env)
		return
	}
	fmt.Fprintf(w, "warning: the teacher reads its key from $%s, which no --secret %s=REFERENCE gives the tasks; stages that call the teacher will fail\n", env, env)
}

// readURI reads the object a gs://, s3:// or file:// URI names, through the
// store over its parent.
func readURI(uri string) ([]byte, error) {
	ctx := context.Background()
	dir, name := path.Split(uri)
	if name == "" || strings.HasSuffix(dir, "://") {
		return nil, fmt.Errorf("%s: not the URI of an object", uri)
	}
	st, err := storage.Open(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	defer st.Close()
	return storage.ReadAll(ctx, st, name)
}
