variable "account_id" {
  description = "The account whose Terraform state this bucket keeps (one per environment account)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "environment" {
  description = "The environment of the account (dev, staging, prod)."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "region" {
  description = "Region of the state bucket and lock table (the envs' backend blocks name it)."
  type        = string
  default     = "eu-west-1"
}

variable "owner" {
  description = "The `owner` default tag."
  type        = string
  default     = "platform-team"
}
