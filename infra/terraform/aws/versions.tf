terraform {
  # OpenTofu 1.10 and Terraform 1.10 or later (the tests use mock_provider).
  required_version = "~> 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.48"
    }
  }
}

# Region and credentials: AWS_REGION / AWS_PROFILE, or region below.
provider "aws" {
  region = var.region
}
