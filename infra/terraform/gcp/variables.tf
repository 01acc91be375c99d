variable "project" {
  description = "Google Cloud project ID that runs the jobs (statjob submit --project)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project: want a project ID (6-30 lowercase letters, digits and hyphens, starting with a letter), not a project name or number."
  }
}

variable "region" {
  description = "Region of the Batch jobs, the Artifact Registry repository, the bucket (when created) and the schedule (statjob submit --region)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region: want a region such as us-central1, not a zone (us-central1-a)."
  }
}

variable "bucket_name" {
  description = "Name of the Cloud Storage bucket that holds statjob's storage root (no gs:// prefix)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name: want a bucket name (3-63 lowercase letters, digits, '-', '_', '.'), without gs:// or a path."
  }
}

variable "create_bucket" {
  description = "Create the bucket (uniform bucket-level access, public access prevention enforced). false: use the existing bucket bucket_name; it is read, not changed."
  type        = bool
  default     = true
}

variable "prefix" {
  description = "Folder inside the bucket that is the storage root: gs://BUCKET/PREFIX."
  type        = string
  default     = "statjob"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix))
    error_message = "prefix: want a path such as statjob or teams/ml/statjob, without leading or trailing '/'."
  }
}

variable "repository_id" {
  description = "Artifact Registry Docker repository for the statjob image."
  type        = string
  default     = "statjob"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.repository_id))
    error_message = "repository_id: want lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "image_tag" {
  description = "Tag of the statjob image in the repository that the submit flags name (the Dockerfile's targets: cuda, cpu)."
  type        = string
  default     = "cuda"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag: want a Docker tag (letters, digits, '_', '.', '-'; at most 128), without the repository or a ':'."
  }
}

variable "service_account_id" {
  description = "Account ID (the part before @) of the service account the tasks run as (statjob submit --service-account)."
  type        = string
  default     = "statjob-batch"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id: want 6-30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "teacher_secrets" {
  description = "Teacher API keys, as environment variable => Secret Manager secret ID (e.g. { OPENAI_API_KEY = \"openai\" }). Only the secrets are created, never a version: add the key with the command in the secret_version_commands output, so it never enters Terraform state."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.teacher_secrets) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "teacher_secrets: each key is the environment variable the spec's teacher.api_key_env names (letters, digits, '_', not starting with a digit)."
  }
  validation {
    condition     = alltrue([for v in values(var.teacher_secrets) : can(regex("^[A-Za-z0-9_-]{1,255}$", v))])
    error_message = "teacher_secrets: each value is a secret ID (letters, digits, '-', '_'), not the key itself and not a projects/... path."
  }
}

variable "vertex_ai" {
  description = "Enable the Vertex AI API (statjob submit --cloud vertex runs custom jobs as the same service account)."
  type        = bool
  default     = false
}

variable "vertex_gemini_teacher" {
  description = "The spec's teacher is Gemini on Vertex AI: enable the Vertex AI API and grant the tasks' service account roles/aiplatform.user (it signs in as that account, no key)."
  type        = bool
  default     = false
}

variable "nightly_job_file" {
  description = "Path of the Cloud Batch Job JSON that `statjob submit ... --run-per-job --dry-run | jq .job` prints. Set: a Cloud Scheduler job posts it to the Batch API on nightly_schedule. null: no schedule."
  type        = string
  default     = null

  validation {
    condition     = var.nightly_job_file == null || can(jsondecode(file(var.nightly_job_file)).taskGroups)
    error_message = "nightly_job_file: want a readable JSON file holding a Batch Job (the output of statjob submit ... --dry-run | jq .job, which has taskGroups)."
  }
}

variable "nightly_schedule" {
  description = "When the nightly job runs: a unix-cron expression in nightly_time_zone."
  type        = string
  default     = "0 2 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.nightly_schedule))) == 5
    error_message = "nightly_schedule: want a unix-cron expression with five fields, such as \"0 2 * * *\"."
  }
}

variable "nightly_time_zone" {
  description = "Time zone of nightly_schedule (a tz database name)."
  type        = string
  default     = "UTC"
}

variable "scheduler_service_account_id" {
  description = "Account ID of the service account Cloud Scheduler calls the Batch API as (only with nightly_job_file)."
  type        = string
  default     = "statjob-scheduler"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.scheduler_service_account_id))
    error_message = "scheduler_service_account_id: want 6-30 lowercase letters, digits and hyphens, starting with a letter."
  }
}
