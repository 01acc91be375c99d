# The nightly schedule of infra/README.md's "Nightly (Cloud Scheduler ->
# Batch)": Cloud Scheduler posts the Job that submit --dry-run printed to the
# Batch API, as its own service account.

locals {
  nightly = var.nightly_job_file != null
}

resource "google_service_account" "scheduler" {
  count = local.nightly ? 1 : 0

  account_id   = var.scheduler_service_account_id
  display_name = "statjob nightly schedule"
}

resource "google_project_iam_member" "scheduler_batch" {
  count = local.nightly ? 1 : 0

  project = var.project
  role    = "roles/batch.jobsEditor"
  member  = "serviceAccount:${google_service_account.scheduler[0].email}"
}

# The posted job runs as the tasks' account, which the scheduler must be
# allowed to act as.
resource "google_service_account_iam_member" "scheduler_acts_as_tasks" {
  count = local.nightly ? 1 : 0

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scheduler[0].email}"
}

resource "google_cloud_scheduler_job" "nightly" {
  count = local.nightly ? 1 : 0

  name      = "statjob-nightly"
  region    = var.region
  schedule  = var.nightly_schedule
  time_zone = var.nightly_time_zone

  http_target {
    uri         = "https://batch.googleapis.com/v1/projects/${var.project}/locations/${var.region}/jobs"
    http_method = "POST"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(file(var.nightly_job_file))

    oauth_token {
      service_account_email = google_service_account.scheduler[0].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  lifecycle {
    precondition {
      condition     = try(jsondecode(file(var.nightly_job_file)).allocationPolicy.serviceAccount.email, "") == google_service_account.tasks.email
      error_message = "nightly_job_file: the job must run as the tasks' service account; make it with statjob submit --service-account set to this module's service_account_email output."
    }
  }

  depends_on = [google_project_service.api, google_project_iam_member.scheduler_batch, google_service_account_iam_member.scheduler_acts_as_tasks]
}
