variable "account_id" {
  description = "This environment's AWS account; the providers refuse any other."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "region" {
  description = "The primary region."
  type        = string
  default     = "eu-west-1"
}

variable "azs" {
  description = "Three availability zones of the region."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "cidr" {
  description = "The VPC's /16."
  type        = string
}

variable "owner" {
  description = "Who answers for this environment (the `owner` default tag)."
  type        = string

  validation {
    condition     = length(var.owner) > 0
    error_message = "owner must not be empty."
  }
}

variable "domain_name" {
  description = "The environment's public name (console and API)."
  type        = string
}

variable "hosted_zone_id" {
  description = "The Route 53 public zone of domain_name."
  type        = string
}

variable "admin_role_arn" {
  description = "The role operators assume for cluster administration (EKS access entry, cluster admin)."
  type        = string
}

variable "pipeline_account_id" {
  description = "The account whose delivery pipeline deploys here and whose ECR repository serves the image (prod's)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.pipeline_account_id))
    error_message = "pipeline_account_id must be 12 digits."
  }
}

variable "image_repository" {
  description = "The ECR repository URL the chart pulls the image from (the pipeline account's)."
  type        = string
}

variable "alert_emails" {
  description = "Addresses that receive the alarms."
  type        = list(string)
  default     = []
}

variable "cognito_enabled" {
  description = "Create the Cognito user pool and app client of Cognito mode."
  type        = bool
  default     = false
}

variable "pipeline_artifact_key_arn" {
  description = "The pipeline account's cicd key (prod's kms_key_arns.cicd), which encrypts the artifacts the staging deploy reads."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.pipeline_artifact_key_arn))
    error_message = "pipeline_artifact_key_arn must be a KMS key ARN."
  }
}
