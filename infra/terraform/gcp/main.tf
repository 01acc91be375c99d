# The one-time setup infra/README.md's "Google Cloud Batch" section lists as
# gcloud commands: APIs, bucket, image repository, the tasks' service account
# and its roles, and the teacher secrets (containers only).

locals {
  vertex = var.vertex_ai || var.vertex_gemini_teacher
  services = concat(
    ["batch", "compute", "logging", "secretmanager", "artifactregistry"],
    var.nightly_job_file != null ? ["cloudscheduler"] : [],
    local.vertex ? ["aiplatform"] : [],
  )
  # The tasks' project-wide roles; the bucket, repository and secret roles
  # are granted on those resources alone.
  project_roles = concat(
    ["roles/batch.agentReporter", "roles/logging.logWriter"],
    var.vertex_gemini_teacher ? ["roles/aiplatform.user"] : [],
  )
  bucket = var.create_bucket ? google_storage_bucket.root[0].name : data.google_storage_bucket.root[0].name
  tasks  = "serviceAccount:${google_service_account.tasks.email}"
}

resource "google_project_service" "api" {
  for_each = toset(local.services)

  service            = "${each.key}.googleapis.com"
  disable_on_destroy = false
}

resource "google_storage_bucket" "root" {
  count = var.create_bucket ? 1 : 0

  name                        = var.bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

data "google_storage_bucket" "root" {
  count = var.create_bucket ? 0 : 1

  name = var.bucket_name
}

resource "google_artifact_registry_repository" "images" {
  repository_id = var.repository_id
  location      = var.region
  format        = "DOCKER"
  description   = "statjob images"

  depends_on = [google_project_service.api]
}

resource "google_service_account" "tasks" {
  account_id   = var.service_account_id
  display_name = "statjob tasks"
}

resource "google_project_iam_member" "tasks" {
  for_each = toset(local.project_roles)

  project = var.project
  role    = each.key
  member  = local.tasks
}

resource "google_artifact_registry_repository_iam_member" "tasks" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.repository_id
  role       = "roles/artifactregistry.reader"
  member     = local.tasks
}

# statjob overwrites objects with generation preconditions, which needs
# delete as well as create: objectUser, not objectCreator.
resource "google_storage_bucket_iam_member" "tasks" {
  bucket = local.bucket
  role   = "roles/storage.objectUser"
  member = local.tasks
}

# Secret containers only: a google_secret_manager_secret_version would put
# the key into the state. The secret_version_commands output adds it.
resource "google_secret_manager_secret" "teacher" {
  for_each = var.teacher_secrets

  secret_id = each.value
  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "tasks" {
  for_each = var.teacher_secrets

  secret_id = google_secret_manager_secret.teacher[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.tasks
}
