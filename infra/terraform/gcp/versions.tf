terraform {
  # OpenTofu 1.10 and Terraform 1.10 or later (the tests use mock_provider).
  required_version = "~> 1.10"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
