terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Local state, on purpose: this root makes the bucket every other state
  # lives in. Keep terraform.tfstate from its one apply somewhere safe, or
  # import the three resources again (docs/aws.md, "Bootstrap").
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      environment = var.environment
      service     = "cloudsec"
      owner       = var.owner
    }
  }
}
