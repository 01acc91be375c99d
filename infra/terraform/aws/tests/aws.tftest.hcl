# Plan-only runs against a mocked aws provider: nothing reaches AWS. They
# assert what statjob submit relies on: what each role may do and who may
# assume it, the bucket's settings, the GPU compute environment, the secrets
# without values, the schedule's request and the outputs' flags.

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { region = "us-east-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = { repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/statjob" }
  }
  mock_resource "aws_batch_job_queue" {
    defaults = { arn = "arn:aws:batch:us-east-1:123456789012:job-queue/statjob-gpu" }
  }
  mock_resource "aws_batch_compute_environment" {
    defaults = { arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/statjob-gpu" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/statjob-ecs-instance" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:statjob/openai-AbCdEf" }
  }
}

override_resource {
  target = aws_iam_role.execution
  values = { arn = "arn:aws:iam::123456789012:role/statjob-exec", id = "statjob-exec" }
}

override_resource {
  target = aws_iam_role.job
  values = { arn = "arn:aws:iam::123456789012:role/statjob-task", id = "statjob-task" }
}

override_resource {
  target = aws_iam_role.scheduler
  values = { arn = "arn:aws:iam::123456789012:role/statjob-scheduler", id = "statjob-scheduler" }
}

variables {
  bucket_name        = "my-bucket"
  subnet_ids         = ["subnet-0abc"]
  security_group_ids = ["sg-0abc"]
  teacher_secrets    = { OPENAI_API_KEY = "statjob/openai" }
}

run "bucket" {
  command = plan

  assert {
    condition     = aws_s3_bucket.root[0].bucket == "my-bucket"
    error_message = "the bucket is named bucket_name"
  }
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.root[0].block_public_acls,
      aws_s3_bucket_public_access_block.root[0].block_public_policy,
      aws_s3_bucket_public_access_block.root[0].ignore_public_acls,
      aws_s3_bucket_public_access_block.root[0].restrict_public_buckets,
    ])
    error_message = "all public access is blocked"
  }
  assert {
    condition     = aws_s3_bucket_ownership_controls.root[0].rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "object ownership is BucketOwnerEnforced (ACLs off)"
  }
}

run "roles" {
  command = plan

  assert {
    condition     = jsondecode(aws_iam_role.execution.assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com" && jsondecode(aws_iam_role.job.assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com"
    error_message = "ECS tasks assume the execution and job roles"
  }
  assert {
    condition     = aws_iam_role_policy_attachment.execution.policy_arn == "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" && aws_iam_role_policy_attachment.execution.role == "statjob-exec"
    error_message = "the execution role has AmazonECSTaskExecutionRolePolicy"
  }
  assert {
    condition = jsondecode(aws_iam_role_policy.execution_secrets[0].policy).Statement == [{
      Effect   = "Allow"
      Action   = "secretsmanager:GetSecretValue"
      Resource = ["arn:aws:secretsmanager:us-east-1:123456789012:secret:statjob/openai-AbCdEf"]
    }] && aws_iam_role_policy.execution_secrets[0].role == "statjob-exec"
    error_message = "the execution role reads the teacher secrets and nothing else"
  }
  assert {
    condition = jsondecode(aws_iam_role_policy.job_storage.policy).Statement == [
      { Effect = "Allow", Action = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource = "arn:aws:s3:::my-bucket/statjob/*" },
      { Effect = "Allow", Action = "s3:ListBucket", Resource = "arn:aws:s3:::my-bucket" },
    ] && aws_iam_role_policy.job_storage.role == "statjob-task"
    error_message = "the job role reads, writes and deletes objects under the storage root and lists the bucket, nothing else"
  }
  assert {
    condition     = jsondecode(aws_iam_role.instance.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com" && aws_iam_role_policy_attachment.instance.policy_arn == "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role" && aws_iam_instance_profile.instance.role == aws_iam_role.instance.name
    error_message = "the instances' role joins ECS, through an instance profile"
  }
  assert {
    condition     = length(aws_iam_role.scheduler) == 0 && length(aws_scheduler_schedule.nightly) == 0
    error_message = "no schedule without nightly_submit_file"
  }
}

run "compute" {
  command = plan

  assert {
    condition     = aws_batch_compute_environment.gpu.type == "MANAGED" && aws_batch_compute_environment.gpu.compute_resources[0].type == "SPOT" && aws_batch_compute_environment.gpu.compute_resources[0].allocation_strategy == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    error_message = "a managed Spot compute environment by default"
  }
  assert {
    condition     = aws_batch_compute_environment.gpu.compute_resources[0].ec2_configuration[0].image_type == "ECS_AL2023_NVIDIA" && aws_batch_compute_environment.gpu.compute_resources[0].instance_type == toset(["g6", "g5"])
    error_message = "GPU instances on the ECS GPU AMI"
  }
  assert {
    condition     = aws_batch_compute_environment.gpu.compute_resources[0].subnets == toset(["subnet-0abc"]) && aws_batch_compute_environment.gpu.compute_resources[0].security_group_ids == toset(["sg-0abc"]) && aws_batch_compute_environment.gpu.compute_resources[0].min_vcpus == 0 && aws_batch_compute_environment.gpu.compute_resources[0].instance_role == "arn:aws:iam::123456789012:instance-profile/statjob-ecs-instance"
    error_message = "the compute environment uses the given network, scales to zero, and its instances join ECS"
  }
  assert {
    condition     = aws_batch_job_queue.gpu.name == "statjob-gpu" && aws_batch_job_queue.gpu.state == "ENABLED" && aws_batch_job_queue.gpu.compute_environment_order[0].compute_environment == aws_batch_compute_environment.gpu.arn
    error_message = "the job queue runs on the compute environment"
  }
  assert {
    condition     = aws_secretsmanager_secret.teacher["OPENAI_API_KEY"].name == "statjob/openai"
    error_message = "each teacher secret is created"
  }
}

run "on_demand" {
  command = plan

  variables {
    compute_type   = "EC2"
    instance_types = ["p4d.24xlarge"]
  }

  assert {
    condition     = aws_batch_compute_environment.gpu.compute_resources[0].type == "EC2" && aws_batch_compute_environment.gpu.compute_resources[0].allocation_strategy == "BEST_FIT_PROGRESSIVE"
    error_message = "EC2 compute type is on-demand"
  }
}

run "outputs" {
  command = plan

  assert {
    condition     = output.storage_root == "s3://my-bucket/statjob" && output.job_queue == "statjob-gpu"
    error_message = "storage root and queue"
  }
  assert {
    condition     = output.secret_arns == { OPENAI_API_KEY = "arn:aws:secretsmanager:us-east-1:123456789012:secret:statjob/openai-AbCdEf" }
    error_message = "secret ARNs by variable"
  }
  assert {
    condition     = output.secret_value_commands["OPENAI_API_KEY"] == "aws secretsmanager put-secret-value --secret-id arn:aws:secretsmanager:us-east-1:123456789012:secret:statjob/openai-AbCdEf --secret-string \"$OPENAI_API_KEY\""
    error_message = "the command that stores the key reads it from the environment"
  }
  assert {
    condition = output.submit_flags == [
      "--set", "storage.root=s3://my-bucket/statjob",
      "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/statjob:cuda",
      "--region", "us-east-1", "--job-queue", "statjob-gpu",
      "--job-definition-name", "statjob",
      "--execution-role-arn", "arn:aws:iam::123456789012:role/statjob-exec",
      "--job-role-arn", "arn:aws:iam::123456789012:role/statjob-task",
      "--secret", "OPENAI_API_KEY=arn:aws:secretsmanager:us-east-1:123456789012:secret:statjob/openai-AbCdEf",
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
    condition     = length(aws_s3_bucket.root) == 0 && length(aws_s3_bucket_public_access_block.root) == 0 && length(data.aws_s3_bucket.root) == 1
    error_message = "create_bucket = false reads the bucket and creates or changes nothing on it"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.job_storage.policy).Statement[0].Resource == "arn:aws:s3:::my-bucket/teams/ml/statjob/*" && output.storage_root == "s3://my-bucket/teams/ml/statjob"
    error_message = "the job role and the storage root are on the existing bucket's prefix"
  }
  assert {
    condition     = length(aws_iam_role_policy.execution_secrets) == 0 && length([for f in output.submit_flags : f if f == "--secret"]) == 0
    error_message = "no secrets: no secret policy, no --secret flags"
  }
}

run "nightly" {
  command = plan

  variables {
    nightly_submit_file = "tests/nightly-submit.json"
  }

  assert {
    condition     = aws_scheduler_schedule.nightly[0].target[0].input == file("tests/nightly-submit.json")
    error_message = "the schedule submits the body file as it is"
  }
  assert {
    condition     = aws_scheduler_schedule.nightly[0].target[0].arn == "arn:aws:scheduler:::aws-sdk:batch:submitJob" && aws_scheduler_schedule.nightly[0].target[0].role_arn == aws_iam_role.scheduler[0].arn
    error_message = "the schedule calls SubmitJob through the universal target, as its role"
  }
  assert {
    condition     = aws_scheduler_schedule.nightly[0].schedule_expression == "cron(0 2 * * ? *)" && aws_scheduler_schedule.nightly[0].schedule_expression_timezone == "UTC" && aws_scheduler_schedule.nightly[0].flexible_time_window[0].mode == "OFF"
    error_message = "schedule defaults: 02:00 UTC, no flexible window"
  }
  assert {
    condition     = jsondecode(aws_iam_role.scheduler[0].assume_role_policy).Statement[0].Principal.Service == "scheduler.amazonaws.com"
    error_message = "EventBridge Scheduler assumes the scheduler role"
  }
  assert {
    condition = jsondecode(aws_iam_role_policy.scheduler_submit[0].policy).Statement == [{
      Effect   = "Allow"
      Action   = ["batch:SubmitJob", "batch:TagResource"]
      Resource = ["arn:aws:batch:us-east-1:123456789012:job-queue/statjob-gpu", "arn:aws:batch:us-east-1:123456789012:job-definition/statjob", "arn:aws:batch:us-east-1:123456789012:job-definition/statjob:*"]
    }]
    error_message = "the scheduler role submits and tags jobs on the queue and the statjob definition, nothing else"
  }
}

run "nightly_to_another_queue" {
  command = plan

  variables {
    nightly_submit_file = "tests/other-queue-submit.json"
  }

  expect_failures = [aws_scheduler_schedule.nightly]
}

run "rejects_whole_dry_run_output" {
  command = plan

  variables {
    nightly_submit_file = "tests/not-a-submit.json"
  }

  expect_failures = [var.nightly_submit_file]
}

run "rejects_secret_value" {
  command = plan

  variables {
    teacher_secrets = { OPENAI_API_KEY = "sk proj abc" }
  }

  expect_failures = [var.teacher_secrets]
}

run "rejects_bad_network_and_compute" {
  command = plan

  variables {
    subnet_ids         = []
    security_group_ids = ["default"]
    compute_type       = "FARGATE"
    ami_type           = "AL2"
    max_vcpus          = 0
  }

  expect_failures = [var.subnet_ids, var.security_group_ids, var.compute_type, var.ami_type, var.max_vcpus]
}

run "rejects_bucket_uri_and_zone" {
  command = plan

  variables {
    bucket_name         = "s3://my-bucket"
    region              = "us-east-1a"
    image_tag           = "statjob:cuda"
    job_definition_name = "statjob:3"
  }

  expect_failures = [var.bucket_name, var.region, var.image_tag, var.job_definition_name]
}
