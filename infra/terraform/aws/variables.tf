variable "region" {
  description = "AWS region of everything here (statjob submit --region). null: the provider's default (AWS_REGION or the profile's)."
  type        = string
  default     = null

  validation {
    condition     = var.region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region: want a region such as us-east-1, not an availability zone (us-east-1a)."
  }
}

variable "name" {
  description = "Name of the ECR repository and prefix of the roles, compute environment, job queue and schedule (NAME-exec, NAME-task, NAME-gpu, ...)."
  type        = string
  default     = "statjob"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "name: want up to 31 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket that holds statjob's storage root (no s3:// prefix)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name: want a bucket name (3-63 lowercase letters, digits, '-', '.'), without s3:// or a path."
  }
}

variable "create_bucket" {
  description = "Create the bucket (all public access blocked, object ownership BucketOwnerEnforced). false: use the existing bucket bucket_name; it is read, not changed."
  type        = bool
  default     = true
}

variable "prefix" {
  description = "Folder inside the bucket that is the storage root: s3://BUCKET/PREFIX. The job role may touch only objects under it."
  type        = string
  default     = "statjob"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix))
    error_message = "prefix: want a path such as statjob or teams/ml/statjob, without leading or trailing '/'."
  }
}

variable "image_tag" {
  description = "Tag of the statjob image in the ECR repository that the submit flags name (the Dockerfile's targets: cuda, cpu)."
  type        = string
  default     = "cuda"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag: want a Docker tag (letters, digits, '_', '.', '-'; at most 128), without the repository or a ':'."
  }
}

variable "job_definition_name" {
  description = "Job definition statjob submit registers (--job-definition-name); the schedule may submit jobs of it."
  type        = string
  default     = "statjob"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$", var.job_definition_name))
    error_message = "job_definition_name: want a job definition name (letters, digits, '-', '_'; at most 128), not an ARN or NAME:REVISION."
  }
}

variable "subnet_ids" {
  description = "Subnets the compute environment starts instances in (they need a route to ECR, S3, Secrets Manager and the teacher's API)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids: want one or more subnet IDs (subnet-...)."
  }
}

variable "security_group_ids" {
  description = "Security groups of the instances (outbound HTTPS is all statjob needs)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0 && alltrue([for s in var.security_group_ids : can(regex("^sg-[0-9a-f]+$", s))])
    error_message = "security_group_ids: want one or more security group IDs (sg-...)."
  }
}

variable "compute_type" {
  description = "EC2 (on-demand) or SPOT instances. Preempted Spot tasks are retried and resume (infra/README, Retries)."
  type        = string
  default     = "SPOT"

  validation {
    condition     = contains(["EC2", "SPOT"], var.compute_type)
    error_message = "compute_type: want EC2 or SPOT."
  }
}

variable "instance_types" {
  description = "GPU instance types or families the compute environment may start (statjob submit --gpus per task must fit one)."
  type        = list(string)
  default     = ["g6", "g5"]

  validation {
    condition     = length(var.instance_types) > 0 && alltrue([for t in var.instance_types : can(regex("^[a-z][a-z0-9-]*[0-9][a-z0-9-]*(\\.[a-z0-9]+)?$", t))])
    error_message = "instance_types: want instance types or families such as g6, g5.xlarge or p4d.24xlarge."
  }
}

variable "ami_type" {
  description = "ECS GPU AMI the compute environment's instances boot (Batch picks its newest release)."
  type        = string
  default     = "ECS_AL2023_NVIDIA"

  validation {
    condition     = contains(["ECS_AL2023_NVIDIA", "ECS_AL2_NVIDIA"], var.ami_type)
    error_message = "ami_type: want an ECS GPU AMI type, ECS_AL2023_NVIDIA or ECS_AL2_NVIDIA."
  }
}

variable "max_vcpus" {
  description = "Most vCPUs the compute environment runs at once (bounds the cost: tasks beyond it wait)."
  type        = number
  default     = 64

  validation {
    condition     = var.max_vcpus >= 1 && floor(var.max_vcpus) == var.max_vcpus
    error_message = "max_vcpus: want a whole number of at least 1."
  }
}

variable "teacher_secrets" {
  description = "Teacher API keys, as environment variable => Secrets Manager secret name (e.g. { OPENAI_API_KEY = \"statjob/openai\" }). The secrets are created without a value: add it with the command in the secret_value_commands output, so it never enters Terraform state."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.teacher_secrets) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "teacher_secrets: each key is the environment variable the spec's teacher.api_key_env names (letters, digits, '_', not starting with a digit)."
  }
  validation {
    condition     = alltrue([for v in values(var.teacher_secrets) : can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", v)) && !startswith(v, "arn:")])
    error_message = "teacher_secrets: each value is a secret name (letters, digits, /_+=.@-), not the key itself and not an ARN."
  }
}

variable "nightly_submit_file" {
  description = "Path of the SubmitJob body that `statjob submit ... --run-per-job --dry-run | jq -c .submitJob` prints. Set: an EventBridge Scheduler schedule submits it on nightly_schedule. null: no schedule."
  type        = string
  default     = null

  validation {
    condition     = var.nightly_submit_file == null || can(jsondecode(file(var.nightly_submit_file)).jobQueue)
    error_message = "nightly_submit_file: want a readable JSON file holding a SubmitJob body (the output of statjob submit ... --dry-run | jq -c .submitJob, which has jobQueue)."
  }
}

variable "nightly_schedule" {
  description = "When the nightly job runs: an EventBridge Scheduler expression in nightly_time_zone."
  type        = string
  default     = "cron(0 2 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate|at)\\(.+\\)$", var.nightly_schedule))
    error_message = "nightly_schedule: want an EventBridge Scheduler expression such as cron(0 2 * * ? *)."
  }
}

variable "nightly_time_zone" {
  description = "Time zone of nightly_schedule (a tz database name)."
  type        = string
  default     = "UTC"
}
