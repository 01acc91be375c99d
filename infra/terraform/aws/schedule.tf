# The nightly schedule of infra/README.md's "Nightly (EventBridge Scheduler ->
# Batch)": the universal target calls SubmitJob with the body submit
# --dry-run printed.

locals {
  nightly = var.nightly_submit_file != null
  job_definition_arn = join(":", [local.arn_prefix, "batch", data.aws_region.current.region,
  data.aws_caller_identity.current.account_id, "job-definition/${var.job_definition_name}"])
}

resource "aws_iam_role" "scheduler" {
  count = local.nightly ? 1 : 0

  name               = "${var.name}-scheduler"
  assume_role_policy = local.trust["scheduler"]
}

resource "aws_iam_role_policy" "scheduler_submit" {
  count = local.nightly ? 1 : 0

  name = "submit-nightly"
  role = aws_iam_role.scheduler[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["batch:SubmitJob", "batch:TagResource"]
      Resource = [aws_batch_job_queue.gpu.arn, local.job_definition_arn, "${local.job_definition_arn}:*"]
    }]
  })
}

resource "aws_scheduler_schedule" "nightly" {
  count = local.nightly ? 1 : 0

  name                         = "${var.name}-nightly"
  schedule_expression          = var.nightly_schedule
  schedule_expression_timezone = var.nightly_time_zone

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:aws:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.scheduler[0].arn
    input    = file(var.nightly_submit_file)
  }

  lifecycle {
    precondition {
      condition     = contains([aws_batch_job_queue.gpu.name, aws_batch_job_queue.gpu.arn], try(jsondecode(file(var.nightly_submit_file)).jobQueue, ""))
      error_message = "nightly_submit_file: the job must go to this module's queue; make it with statjob submit --job-queue set to the job_queue output."
    }
  }
}
