// Package infra submits a statjob job to a cloud batch service: Cloud Batch
// or Vertex AI custom jobs on Google Cloud, AWS Batch on AWS. Every task of the submitted array runs
//
//	statjob run --config <spec URI> --run-id <run id>
//
// so all tasks join one run and share its work through leases and shards
// (package job); the shard count reaches each task as STATJOB_SHARD_COUNT
// next to the service's own index variable (BATCH_TASK_INDEX,
// AWS_BATCH_JOB_ARRAY_INDEX, Vertex's CLUSTER_SPEC). The resolved spec is uploaded once to the
// run's storage (UploadSpec) so the tasks read exactly what was submitted.
// Submitting again with the same run id and spec starts a new batch job on
// the same run, which resumes it: finished stages are skipped.
//
// Retries: a task preempted or stopped by SIGTERM (statjob exits 75) is
// restarted, up to Job.MaxRetries times; a task that fails with an error
// (exit 1, or 2 for a crash) is not, since retrying a deterministic error
// only spends machine time. Fix the cause and submit the same run again.
//
// Secrets reach the tasks as references only (Secret Manager versions on
// Google Cloud, Secrets Manager or SSM Parameter Store ARNs on AWS): the
// service resolves them on the machine that runs the task. No value is ever
// read, sent, printed or logged here.
//
// The requests are built with the providers' own SDKs
// (cloud.google.com/go/batch, aws-sdk-go-v2/service/batch); Request returns
// the body Submit would send, in the service's own JSON, for --dry-run.
package infra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/statjob/statjob/storage"
)

// Exit statuses that fail a task at once: statjob's errors (1) and a crash
// of the Go runtime (2).
var exitFailed = []int32{1, 2}

// ShardCountEnv carries the array size to every task.
const ShardCountEnv = "STATJOB_SHARD_COUNT"

// ErrSpecChanged: a run was submitted before with another spec.
var ErrSpecChanged = errors.New("the run was submitted with another spec")

// Cloud is one batch service.
type Cloud interface {
	// Request returns what Submit would send, as the service's own JSON,
	// without sending anything.
	Request(ctx context.Context, j Job) ([]byte, error)
	// Submit creates the batch job.
	Submit(ctx context.Context, j Job) (Submitted, error)
}

// Submitted names a created batch job.
type Submitted struct {
	Name string // the job's resource name (Cloud Batch) or name (AWS Batch)
	ID   string // the service's unique id (Cloud Batch uid, AWS Batch job id)
}

// Job is what every cloud submits: an array of Tasks containers running one
// statjob run side by side.
type Job struct {
	// RunID is the run every task joins.
	RunID string
	// RunPerJob leaves --run-id out of the tasks' command: each batch job
	// made from the request is then its own run, named by the service's job
	// id (BATCH_JOB_UID, AWS_BATCH_JOB_ID), which its tasks share. For
	// schedules that replay one request; RunID then only names the folder
	// of the spec.
	RunPerJob bool
	// SpecURI is where the resolved spec was uploaded (gs:// or s3://).
	SpecURI string
	// Tasks is the array size: tasks run in parallel, one shard each.
	Tasks int
	// Image is the container image (statjob as its entrypoint).
	Image string
	// Secrets become environment variables the service fills from a secret
	// store; each holds a reference, never a value.
	Secrets []Secret
	// MaxRetries bounds the restarts of a preempted or stopped task.
	MaxRetries int
	// MaxRunDuration stops a task attempt after this long (0: the
	// service's limit).
	MaxRunDuration time.Duration
}

// Secret is an environment variable whose value the batch service reads
// from a secret store.
type Secret struct {
	Env string // variable name, e.g. OPENAI_API_KEY
	Ref string // projects/P/secrets/S/versions/V, or an AWS ARN
}

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	runID    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	notLabel = regexp.MustCompile(`[^a-z0-9_-]`)
)

// ParseSecret parses NAME=REFERENCE. Errors never repeat what follows the
// "=", in case a value was passed by mistake.
func ParseSecret(s string) (Secret, error) {
	name, ref, ok := strings.Cut(s, "=")
	if !ok || !envName.MatchString(name) {
		return Secret{}, errors.New("--secret: want NAME=REFERENCE, e.g. OPENAI_API_KEY=projects/P/secrets/openai/versions/latest")
	}
	if ref == "" {
		return Secret{}, fmt.Errorf("--secret %s: empty reference", name)
	}
	return Secret{Env: name, Ref: ref}, nil
}

// Command is the statjob command line every task runs (after the image's
// entrypoint, statjob).
func (j Job) Command() []string {
	if j.RunPerJob {
		return []string{"run", "--config", j.SpecURI}
	}
	return []string{"run", "--config", j.SpecURI, "--run-id", j.RunID}
}

// validate checks what both clouds need; maxRetries is the cloud's limit.
func (j Job) validate(maxRetries int) error {
	switch {
	case !runID.MatchString(j.RunID):
		return fmt.Errorf("--run-id %q: want letters, digits, '.', '_' or '-'", j.RunID)
	case !strings.HasPrefix(j.SpecURI, "gs://") && !strings.HasPrefix(j.SpecURI, "s3://"):
		return fmt.Errorf("spec URI %q: batch tasks read the spec from gs:// or s3:// storage", j.SpecURI)
	case j.Tasks < 1 || j.Tasks > 10000:
		return fmt.Errorf("--tasks %d: want 1 to 10000", j.Tasks)
	case j.MaxRetries < 0 || j.MaxRetries > maxRetries:
		return fmt.Errorf("--max-retries %d: want 0 to %d", j.MaxRetries, maxRetries)
	case j.MaxRunDuration < 0:
		return fmt.Errorf("--max-run-duration %s: must not be negative", j.MaxRunDuration)
	}
	seen := map[string]bool{}
	for _, s := range j.Secrets {
		if seen[s.Env] {
			return fmt.Errorf("--secret %s: given twice", s.Env)
		}
		seen[s.Env] = true
	}
	if seen[ShardCountEnv] {
		return fmt.Errorf("--secret %s: statjob sets this variable itself", ShardCountEnv)
	}
	return nil
}

func (j Job) shardCount() string { return strconv.Itoa(j.Tasks) }

// name is a job name both services accept: lowercase letters, digits and
// hyphens, starting with a letter, at most 63 characters, ending in suffix
// (Cloud Batch job ids are unique per project and region, so every
// submission of a run needs its own).
func name(runID, suffix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(runID) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-")
	if max := 63 - len("statjob--") - len(suffix); len(id) > max {
		id = strings.TrimRight(id[:max], "-")
	}
	return "statjob-" + id + "-" + suffix
}

// label is v as a label value both services accept.
func label(v string) string {
	v = strings.ToLower(v)
	v = notLabel.ReplaceAllString(v, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return v
}

// SpecKey is where the spec of a submitted run is kept, relative to the
// storage root: next to the run, outside runs/ (which the runner owns).
func SpecKey(runID string) string { return "submit/" + runID + "/spec.yaml" }

// SpecURI is the URI of SpecKey under a gs:// or s3:// root.
func SpecURI(root, runID string) string {
	return strings.TrimRight(root, "/") + "/" + SpecKey(runID)
}

// UploadSpec stores the resolved spec of a run, once: a second submission of
// the run with the same spec finds it there and goes on (the new tasks
// resume the run); with another spec it fails with ErrSpecChanged, since the
// run's spec is frozen. It returns the spec's URI.
func UploadSpec(ctx context.Context, st storage.Store, runID string, spec []byte) (string, error) {
	key := SpecKey(runID)
	uri := st.URI(key)
	_, err := st.Put(ctx, key, bytes.NewReader(spec), storage.PutOptions{IfAbsent: true, ContentType: "application/yaml"})
	if err == nil {
		return uri, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return "", fmt.Errorf("upload spec to %s: %w", uri, err)
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", uri, err)
	}
	defer rc.Close()
	old, err := io.ReadAll(rc)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", uri, err)
	}
	if !bytes.Equal(old, spec) {
		return "", fmt.Errorf("run %s: %w (%s); submit it with that spec to resume it, or leave out --run-id for a new run", runID, ErrSpecChanged, uri)
	}
	return uri, nil
}
