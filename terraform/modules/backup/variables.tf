variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "kms_key_arn" {
  description = "The backup key (module security) that encrypts the vault."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "resource_arns" {
  description = "What the plan protects: the PostgreSQL instance and the DynamoDB tables (module data, backup_resource_arns)."
  type        = list(string)

  validation {
    condition     = length(var.resource_arns) > 0 && alltrue([for a in var.resource_arns : can(regex("^arn:aws[a-z-]*:", a))])
    error_message = "resource_arns must be a non-empty list of ARNs."
  }
}

variable "schedule" {
  description = "When the daily backup starts (AWS Backup cron, UTC)."
  type        = string
  default     = "cron(0 3 * * ? *)"

  validation {
    condition     = can(regex("^cron\\(.+\\)$", var.schedule))
    error_message = "schedule must be a cron(...) expression."
  }
}

variable "retention_days" {
  description = "Days recovery points are kept in the primary vault."
  type        = number
  default     = 35

  validation {
    condition     = var.retention_days >= 7
    error_message = "retention_days must be at least 7."
  }
}

variable "dr" {
  description = "Copy every recovery point to a vault in the DR region (prod): the region's replica of the backup key (module security, dr_kms_key_arns.backup) and how long copies are kept. Null: no copies."
  type = object({
    kms_key_arn    = string
    retention_days = optional(number, 35)
  })
  default = null

  validation {
    condition     = var.dr == null || can(regex("^arn:aws[a-z-]*:kms:", var.dr.kms_key_arn))
    error_message = "dr.kms_key_arn must be a KMS key ARN."
  }
}

variable "vault_lock" {
  description = "AWS Backup Vault Lock on the primary vault (prod): recovery points cannot be deleted before min_retention_days, even by an administrator, once changeable_for_days has passed. Null: no lock."
  type = object({
    min_retention_days  = number
    max_retention_days  = number
    changeable_for_days = optional(number, 3)
  })
  default = null

  validation {
    condition     = var.vault_lock == null || (try(var.vault_lock.min_retention_days >= 1 && var.vault_lock.max_retention_days >= var.vault_lock.min_retention_days && var.vault_lock.changeable_for_days >= 3, false))
    error_message = "vault_lock needs 1 <= min_retention_days <= max_retention_days and changeable_for_days >= 3."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
