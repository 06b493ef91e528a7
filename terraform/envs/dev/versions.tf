terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State: one bucket and lock table per account (terraform/bootstrap makes
  # them), one key per environment, encrypted with the state key.
  backend "s3" {
    bucket         = "cloudsec-tfstate-111111111111"
    key            = "cloudsec/dev/terraform.tfstate"
    region         = "eu-west-1"
    dynamodb_table = "cloudsec-tfstate-lock"
    encrypt        = true
    kms_key_id     = "alias/cloudsec-tfstate"
  }
}
