locals {
  storage_root = "s3://${local.bucket}/${var.prefix}"
  image        = "${aws_ecr_repository.images.repository_url}:${var.image_tag}"
  secrets      = [for env, s in aws_secretsmanager_secret.teacher : "${env}=${s.arn}"]
}

output "storage_root" {
  description = "statjob's storage.root (statjob submit --set storage.root=...)."
  value       = local.storage_root
}

output "execution_role_arn" {
  description = "statjob submit --execution-role-arn."
  value       = aws_iam_role.execution.arn
}

output "job_role_arn" {
  description = "statjob submit --job-role-arn."
  value       = aws_iam_role.job.arn
}

output "job_queue" {
  description = "statjob submit --job-queue."
  value       = aws_batch_job_queue.gpu.name
}

output "ecr_repository_url" {
  description = "ECR repository to tag and push the statjob image under (docker build -t ECR_REPOSITORY_URL:cuda)."
  value       = aws_ecr_repository.images.repository_url
}

output "secret_arns" {
  description = "Teacher secrets' ARNs, by environment variable."
  value       = { for env, s in aws_secretsmanager_secret.teacher : env => s.arn }
}

output "secrets" {
  description = "Teacher secrets as statjob submit --secret values, NAME=ARN."
  value       = local.secrets
}

output "secret_value_commands" {
  description = "The command that stores each teacher key in its secret (run once per key; the key stays out of Terraform state)."
  value       = { for env, s in aws_secretsmanager_secret.teacher : env => format("aws secretsmanager put-secret-value --secret-id %s --secret-string \"$%s\"", s.arn, env) }
}

output "submit_flags" {
  description = "statjob submit flags for this setup (add --config, --tasks, --gpus, ...): tofu output -json submit_flags | jq -r '.[]'."
  value = concat(
    ["--set", "storage.root=${local.storage_root}"],
    ["--image", local.image],
    ["--region", data.aws_region.current.region, "--job-queue", aws_batch_job_queue.gpu.name],
    ["--job-definition-name", var.job_definition_name],
    ["--execution-role-arn", aws_iam_role.execution.arn, "--job-role-arn", aws_iam_role.job.arn],
    flatten([for s in local.secrets : ["--secret", s]]),
  )
}

output "nightly_schedule_arn" {
  description = "The EventBridge Scheduler schedule that submits the nightly job (null without nightly_submit_file)."
  value       = local.nightly ? aws_scheduler_schedule.nightly[0].arn : null
}
