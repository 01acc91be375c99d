output "storage_root" {
  description = "statjob's storage.root (statjob submit --set storage.root=...)."
  value       = "gs://${local.bucket}/${var.prefix}"
}

output "service_account_email" {
  description = "The tasks' service account (statjob submit --service-account)."
  value       = google_service_account.tasks.email
}

output "image_repository" {
  description = "Artifact Registry path to tag and push the statjob image under (docker build -t IMAGE_REPOSITORY/statjob:cuda)."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "image" {
  description = "The image the submit flags name (statjob submit --image)."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}/statjob:${var.image_tag}"
}

output "secrets" {
  description = "Teacher secrets as statjob submit --secret values, NAME=projects/P/secrets/S/versions/latest."
  value       = [for env, s in google_secret_manager_secret.teacher : "${env}=projects/${var.project}/secrets/${s.secret_id}/versions/latest"]
}

output "secret_version_commands" {
  description = "The command that adds each teacher key as a secret version (run once per key; the key stays out of Terraform state)."
  value       = { for env, s in google_secret_manager_secret.teacher : env => format("printf %%s \"$%s\" | gcloud secrets versions add %s --project %s --data-file=-", env, s.secret_id, var.project) }
}

output "submit_flags" {
  description = "statjob submit flags for this setup (add --config, --tasks, --machine-type, ...): tofu output -json submit_flags | jq -r '.[]'."
  value = concat(
    ["--set", "storage.root=gs://${local.bucket}/${var.prefix}"],
    ["--image", "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}/statjob:${var.image_tag}"],
    ["--project", var.project, "--region", var.region],
    ["--service-account", google_service_account.tasks.email],
    flatten([for env, s in google_secret_manager_secret.teacher : ["--secret", "${env}=projects/${var.project}/secrets/${s.secret_id}/versions/latest"]]),
  )
}

output "nightly_scheduler_job" {
  description = "The Cloud Scheduler job that posts the nightly Batch job (null without nightly_job_file)."
  value       = local.nightly ? google_cloud_scheduler_job.nightly[0].id : null
}
