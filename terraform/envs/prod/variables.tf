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
  description = "The account whose delivery pipeline deploys here and whose ECR repository serves the image: prod's own."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.pipeline_account_id))
    error_message = "pipeline_account_id must be 12 digits."
  }
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

variable "dr_region" {
  description = "The disaster-recovery region (second aliased provider): replica keys, buckets, tables, backups, a standby network, cluster and API entry, and the event bus under the same names."
  type        = string
  default     = "eu-central-1"
}

variable "dr_azs" {
  description = "Three availability zones of the DR region."
  type        = list(string)
  default     = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
}

variable "dr_cidr" {
  description = "The DR VPC's /16 (distinct from the primary's, so that they can be peered)."
  type        = string
}

variable "shield_advanced" {
  description = "Protect CloudFront and the zone with Shield Advanced (needs the account's subscription)."
  type        = bool
  default     = false
}

variable "staging" {
  description = "The staging account and its deploy project, which the pipeline's Staging stage runs through the action role."
  type = object({
    account_id      = string
    action_role_arn = string
    project_name    = string
  })
}

variable "repository" {
  description = "The GitHub repository the pipeline builds (owner/name)."
  type        = string
}

variable "pull_account_ids" {
  description = "Accounts that pull the image from this account's ECR (dev, staging)."
  type        = list(string)
  default     = []
}
