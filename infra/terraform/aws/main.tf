# The one-time setup infra/README.md's "AWS Batch" section lists: bucket,
# image repository, the execution and job roles, a GPU compute environment
# and job queue, and the teacher secrets (without values).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}"
  bucket     = var.create_bucket ? aws_s3_bucket.root[0].bucket : data.aws_s3_bucket.root[0].bucket
  bucket_arn = "${local.arn_prefix}:s3:::${local.bucket}"
  # Policies as jsonencode rather than aws_iam_policy_document, so that the
  # tests read them.
  trust = { for service in ["ecs-tasks", "ec2", "scheduler"] : service => jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "${service}.amazonaws.com" } }]
  }) }
}

resource "aws_s3_bucket" "root" {
  count = var.create_bucket ? 1 : 0

  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "root" {
  count = var.create_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.root[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "root" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.root[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_s3_bucket" "root" {
  count = var.create_bucket ? 0 : 1

  bucket = var.bucket_name
}

resource "aws_ecr_repository" "images" {
  name                 = var.name
  image_tag_mutability = "MUTABLE"
}

# Execution role (statjob submit --execution-role-arn): the ECS agent pulls
# the image, writes logs and reads the --secret values with it.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-exec"
  assume_role_policy = local.trust["ecs-tasks"]
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.teacher_secrets) > 0 ? 1 : 0

  name = "read-teacher-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = [for s in aws_secretsmanager_secret.teacher : s.arn] }]
  })
}

# Job role (statjob submit --job-role-arn): the tasks read and write the
# storage root and nothing else. Conditional writes need nothing more.
resource "aws_iam_role" "job" {
  name               = "${var.name}-task"
  assume_role_policy = local.trust["ecs-tasks"]
}

resource "aws_iam_role_policy" "job_storage" {
  name = "storage-root"
  role = aws_iam_role.job.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource = "${local.bucket_arn}/${var.prefix}/*" },
      { Effect = "Allow", Action = "s3:ListBucket", Resource = local.bucket_arn },
    ]
  })
}

# The compute environment's instances join ECS with this role.
resource "aws_iam_role" "instance" {
  name               = "${var.name}-ecs-instance"
  assume_role_policy = local.trust["ec2"]
}

resource "aws_iam_role_policy_attachment" "instance" {
  role       = aws_iam_role.instance.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-ecs-instance"
  role = aws_iam_role.instance.name
}

# Managed GPU compute environment. No service_role: Batch uses its
# service-linked role (AWSServiceRoleForBatch), creating it on first use.
resource "aws_batch_compute_environment" "gpu" {
  name = "${var.name}-gpu"
  type = "MANAGED"

  compute_resources {
    type                = var.compute_type
    allocation_strategy = var.compute_type == "SPOT" ? "SPOT_PRICE_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE"
    instance_type       = var.instance_types
    instance_role       = aws_iam_instance_profile.instance.arn
    min_vcpus           = 0
    max_vcpus           = var.max_vcpus
    subnets             = var.subnet_ids
    security_group_ids  = var.security_group_ids

    ec2_configuration {
      image_type = var.ami_type
    }
  }

  depends_on = [aws_iam_role_policy_attachment.instance]
}

resource "aws_batch_job_queue" "gpu" {
  name     = "${var.name}-gpu"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.gpu.arn
  }
}

# Secrets without a value: an aws_secretsmanager_secret_version would put
# the key into the state. The secret_value_commands output adds it.
resource "aws_secretsmanager_secret" "teacher" {
  for_each = var.teacher_secrets

  name        = each.value
  description = "statjob teacher key (${each.key})"
}
