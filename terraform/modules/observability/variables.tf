variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "components" {
  description = "Components that get an application log group `/cloudsec/<name>/<component>`."
  type        = list(string)
  default     = ["auth", "documents", "audit", "gateway", "mailer", "proxy"]
}

variable "log_retention_days" {
  description = "Days application logs are kept."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts."
  }
}

variable "kms_key_arn" {
  description = "The logs key (module security): log groups and the alert topic."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "alert_emails" {
  description = "Addresses subscribed to the alert topic (each must confirm)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails must be email addresses."
  }
}

variable "api" {
  description = "The HTTP API (module edge): its id and stage, for the 5xx alarm."
  type = object({
    id    = string
    stage = optional(string, "$default")
  })
}

variable "api_5xx_threshold" {
  description = "5xx answers per 5 minutes from the API that raise the alarm."
  type        = number
  default     = 10

  validation {
    condition     = var.api_5xx_threshold >= 1
    error_message = "api_5xx_threshold must be at least 1."
  }
}

variable "rds_instance_id" {
  description = "The PostgreSQL instance identifier (module data)."
  type        = string
}

variable "queues" {
  description = "Subscriber queues by key (module messaging, output queues): the age of their oldest message and the depth of their dead-letter queue raise alarms."
  type = map(object({
    name     = string
    dlq_name = string
  }))
}

variable "queue_age_threshold_seconds" {
  description = "Age of a queue's oldest message that raises the alarm (subscribers are falling behind)."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_threshold_seconds >= 60
    error_message = "queue_age_threshold_seconds must be at least 60."
  }
}

variable "cluster_name" {
  description = "The EKS cluster (Container Insights metrics for the node alarm)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "The cluster's OIDC provider (module eks), for the ADOT collector's IRSA role."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https:// (module eks)."
  type        = string
}

variable "adot_service_account" {
  description = "Namespace and name of the ADOT collector's ServiceAccount that forwards traces to X-Ray."
  type = object({
    namespace = string
    name      = string
  })
  default = { namespace = "opentelemetry", name = "adot-collector" }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
