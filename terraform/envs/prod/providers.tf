locals {
  default_tags = {
    environment = local.environment
    service     = "cloudsec"
    owner       = var.owner
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = local.default_tags
  }
}

# The disaster-recovery region.
provider "aws" {
  alias               = "dr"
  region              = var.dr_region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = merge(local.default_tags, { dr = "standby" })
  }
}

# CloudFront's certificate, its WAF and their logs live in us-east-1.
provider "aws" {
  alias               = "us_east_1"
  region              = "us-east-1"
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = local.default_tags
  }
}
