# Plan-only runs against a mocked google provider: nothing reaches Google
# Cloud. They assert what statjob submit relies on: who gets which role on
# what, the bucket's settings, the secrets without versions, the schedule's
# request and the outputs' flags.

mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      email = "statjob-batch@my-project.iam.gserviceaccount.com"
      name  = "projects/my-project/serviceAccounts/statjob-batch@my-project.iam.gserviceaccount.com"
    }
  }
  mock_resource "google_secret_manager_secret" {
    defaults = {
      id = "projects/my-project/secrets/openai"
    }
  }
}

variables {
  project         = "my-project"
  region          = "us-central1"
  bucket_name     = "my-bucket"
  teacher_secrets = { OPENAI_API_KEY = "openai" }
}

run "bucket_and_roles" {
  command = plan

  assert {
    condition     = google_storage_bucket.root[0].uniform_bucket_level_access && google_storage_bucket.root[0].public_access_prevention == "enforced"
    error_message = "the bucket must have uniform bucket-level access and public access prevention enforced"
  }
  assert {
    condition     = google_storage_bucket.root[0].name == "my-bucket" && google_storage_bucket.root[0].location == "us-central1"
    error_message = "the bucket is named bucket_name, in the region"
  }
  assert {
    condition     = toset(keys(google_project_service.api)) == toset(["batch", "compute", "logging", "secretmanager", "artifactregistry"])
    error_message = "without a schedule or Vertex AI, exactly the five APIs of infra/README are enabled"
  }
  assert {
    condition     = toset([for m in google_project_iam_member.tasks : m.role]) == toset(["roles/batch.agentReporter", "roles/logging.logWriter"])
    error_message = "the tasks' project roles are exactly batch.agentReporter and logging.logWriter"
  }
  assert {
    condition     = alltrue([for m in google_project_iam_member.tasks : m.member == "serviceAccount:statjob-batch@my-project.iam.gserviceaccount.com" && m.project == "my-project"])
    error_message = "the project roles go to the tasks' service account"
  }
  assert {
    condition     = google_artifact_registry_repository_iam_member.tasks.role == "roles/artifactregistry.reader" && google_artifact_registry_repository_iam_member.tasks.repository == "statjob" && google_artifact_registry_repository_iam_member.tasks.member == "serviceAccount:statjob-batch@my-project.iam.gserviceaccount.com"
    error_message = "the tasks' account reads the image repository"
  }
  assert {
    condition     = google_artifact_registry_repository.images.format == "DOCKER"
    error_message = "the image repository is a Docker repository"
  }
  assert {
    condition     = google_storage_bucket_iam_member.tasks.bucket == "my-bucket" && google_storage_bucket_iam_member.tasks.role == "roles/storage.objectUser" && google_storage_bucket_iam_member.tasks.member == "serviceAccount:statjob-batch@my-project.iam.gserviceaccount.com"
    error_message = "the tasks' account is objectUser on the bucket"
  }
  assert {
    condition     = google_secret_manager_secret.teacher["OPENAI_API_KEY"].secret_id == "openai" && google_secret_manager_secret_iam_member.tasks["OPENAI_API_KEY"].role == "roles/secretmanager.secretAccessor" && google_secret_manager_secret_iam_member.tasks["OPENAI_API_KEY"].member == "serviceAccount:statjob-batch@my-project.iam.gserviceaccount.com" && google_secret_manager_secret_iam_member.tasks["OPENAI_API_KEY"].secret_id == "projects/my-project/secrets/openai"
    error_message = "each teacher secret is created, and the tasks' account can read it and nothing else"
  }
  assert {
    condition     = length(google_cloud_scheduler_job.nightly) == 0 && length(google_service_account.scheduler) == 0
    error_message = "no schedule without nightly_job_file"
  }
}

run "outputs" {
  command = plan

  assert {
    condition     = output.storage_root == "gs://my-bucket/statjob"
    error_message = "storage root is gs://BUCKET/PREFIX"
  }
  assert {
    condition     = output.image_repository == "us-central1-docker.pkg.dev/my-project/statjob"
    error_message = "image repository path"
  }
  assert {
    condition     = output.secrets == ["OPENAI_API_KEY=projects/my-project/secrets/openai/versions/latest"]
    error_message = "secret references in statjob submit's --secret form"
  }
  assert {
    condition     = output.secret_version_commands["OPENAI_API_KEY"] == "printf %s \"$OPENAI_API_KEY\" | gcloud secrets versions add openai --project my-project --data-file=-"
    error_message = "the command that adds the key reads it from the environment"
  }
  assert {
    condition = output.submit_flags == [
      "--set", "storage.root=gs://my-bucket/statjob",
      "--image", "us-central1-docker.pkg.dev/my-project/statjob/statjob:cuda",
      "--project", "my-project", "--region", "us-central1",
      "--service-account", "statjob-batch@my-project.iam.gserviceaccount.com",
      "--secret", "OPENAI_API_KEY=projects/my-project/secrets/openai/versions/latest",
    ]
    error_message = "submit flags"
  }
}

run "existing_bucket" {
  command = plan

  variables {
    create_bucket   = false
    prefix          = "teams/ml/statjob"
    teacher_secrets = {}
  }

  assert {
    condition     = length(google_storage_bucket.root) == 0 && length(data.google_storage_bucket.root) == 1
    error_message = "create_bucket = false reads the bucket and creates none"
  }
  assert {
    condition     = google_storage_bucket_iam_member.tasks.bucket == "my-bucket" && output.storage_root == "gs://my-bucket/teams/ml/statjob"
    error_message = "the role and the storage root are on the existing bucket"
  }
  assert {
    condition     = length(google_secret_manager_secret.teacher) == 0 && length([for f in output.submit_flags : f if f == "--secret"]) == 0
    error_message = "no secrets, no --secret flags"
  }
}

run "vertex_gemini_teacher" {
  command = plan

  variables {
    vertex_gemini_teacher = true
  }

  assert {
    condition     = contains(keys(google_project_service.api), "aiplatform")
    error_message = "a Vertex AI teacher enables the Vertex AI API"
  }
  assert {
    condition     = toset([for m in google_project_iam_member.tasks : m.role]) == toset(["roles/batch.agentReporter", "roles/logging.logWriter", "roles/aiplatform.user"])
    error_message = "a Vertex AI teacher adds roles/aiplatform.user, and only that"
  }
}

run "vertex_jobs_without_gemini" {
  command = plan

  variables {
    vertex_ai = true
  }

  assert {
    condition     = contains(keys(google_project_service.api), "aiplatform") && !contains([for m in google_project_iam_member.tasks : m.role], "roles/aiplatform.user")
    error_message = "Vertex AI custom jobs enable the API but grant no aiplatform role"
  }
}

run "nightly" {
  command = plan

  variables {
    nightly_job_file = "tests/nightly-job.json"
  }

  assert {
    condition     = base64decode(google_cloud_scheduler_job.nightly[0].http_target[0].body) == file("tests/nightly-job.json")
    error_message = "the schedule posts the job file as it is"
  }
  assert {
    condition     = google_cloud_scheduler_job.nightly[0].http_target[0].uri == "https://batch.googleapis.com/v1/projects/my-project/locations/us-central1/jobs" && google_cloud_scheduler_job.nightly[0].http_target[0].http_method == "POST" && google_cloud_scheduler_job.nightly[0].http_target[0].headers["Content-Type"] == "application/json"
    error_message = "the schedule POSTs JSON to the Batch API's jobs collection in the region"
  }
  assert {
    condition     = google_cloud_scheduler_job.nightly[0].schedule == "0 2 * * *" && google_cloud_scheduler_job.nightly[0].time_zone == "UTC" && google_cloud_scheduler_job.nightly[0].region == "us-central1"
    error_message = "schedule defaults: 02:00 UTC"
  }
  assert {
    condition     = google_cloud_scheduler_job.nightly[0].http_target[0].oauth_token[0].service_account_email == google_service_account.scheduler[0].email
    error_message = "the schedule calls Batch as the scheduler's own account"
  }
  assert {
    condition     = google_service_account.scheduler[0].account_id == "statjob-scheduler" && google_project_iam_member.scheduler_batch[0].role == "roles/batch.jobsEditor" && google_project_iam_member.scheduler_batch[0].member == "serviceAccount:${google_service_account.scheduler[0].email}"
    error_message = "the scheduler's account is batch.jobsEditor on the project"
  }
  assert {
    condition     = google_service_account_iam_member.scheduler_acts_as_tasks[0].role == "roles/iam.serviceAccountUser" && google_service_account_iam_member.scheduler_acts_as_tasks[0].service_account_id == google_service_account.tasks.name && google_service_account_iam_member.scheduler_acts_as_tasks[0].member == "serviceAccount:${google_service_account.scheduler[0].email}"
    error_message = "the scheduler's account may act as the tasks' account, and only that one"
  }
  assert {
    condition     = contains(keys(google_project_service.api), "cloudscheduler")
    error_message = "a schedule enables the Cloud Scheduler API"
  }
}

run "nightly_job_runs_as_another_account" {
  command = plan

  variables {
    nightly_job_file = "tests/other-account-job.json"
  }

  expect_failures = [google_cloud_scheduler_job.nightly]
}

run "rejects_whole_dry_run_output" {
  command = plan

  variables {
    nightly_job_file = "tests/not-a-job.json"
  }

  expect_failures = [var.nightly_job_file]
}

run "rejects_missing_job_file" {
  command = plan

  variables {
    nightly_job_file = "tests/no-such-file.json"
  }

  expect_failures = [var.nightly_job_file]
}

run "rejects_secret_value_and_bad_names" {
  command = plan

  variables {
    teacher_secrets = { "OPENAI-KEY" = "sk-proj-abc/def" }
  }

  expect_failures = [var.teacher_secrets]
}

run "rejects_bucket_uri" {
  command = plan

  variables {
    bucket_name = "gs://my-bucket"
  }

  expect_failures = [var.bucket_name]
}

run "rejects_zone_and_prefix_slash" {
  command = plan

  variables {
    region    = "us-central1-a"
    prefix    = "/statjob/"
    image_tag = "statjob:cuda"
  }

  expect_failures = [var.region, var.prefix, var.image_tag]
}
