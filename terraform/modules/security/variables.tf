variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`; IRSA roles are `<name>-<component>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "account_id" {
  description = "The AWS account the keys live in; key policies grant it administration through IAM."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "dr_region" {
  description = "The disaster-recovery region (prod), or null. When set, the keys whose data is replicated (documents, console, dynamodb, rds, backup, logs) are multi-Region keys with a replica there (through the aws.dr provider)."
  type        = string
  default     = null

  validation {
    condition     = var.dr_region == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.dr_region))
    error_message = "dr_region must be an AWS region name such as eu-central-1, or null."
  }
}

variable "key_deletion_window_days" {
  description = "Waiting period before a scheduled key deletion takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.key_deletion_window_days >= 7 && var.key_deletion_window_days <= 30
    error_message = "key_deletion_window_days must be between 7 and 30."
  }
}

variable "kubernetes_namespace" {
  description = "The namespace the chart installs into; IRSA roles trust `system:serviceaccount:<namespace>:<component>` only."
  type        = string
  default     = "cloudsec"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a valid Kubernetes namespace name."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (module eks, output oidc_provider_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without the scheme, e.g. `oidc.eks.eu-west-1.amazonaws.com/id/ABC` (module eks, output oidc_issuer)."
  type        = string

  validation {
    condition     = !startswith(var.oidc_issuer, "https://") && length(var.oidc_issuer) > 0
    error_message = "oidc_issuer must be given without https://."
  }
}

variable "iam_policy_dir" {
  description = "Directory of the per-component policy templates (`<component>.json`); null means the repository's deploy/iam."
  type        = string
  default     = null
}

variable "resources" {
  description = "ARNs the component policies are scoped to (placeholders of deploy/iam/*.json; see deploy/iam/README.md)."
  type = object({
    documents_bucket_arn  = string
    events_topic_arn      = string
    events_fifo_topic_arn = string
    event_bus_arn         = string
    audit_queue_arn       = string
    audit_dlq_arn         = string
    mailer_queue_arn      = string
    mailer_dlq_arn        = string
    audit_table_arn       = string
    inbox_table_arn       = string
  })

  validation {
    condition     = alltrue([for k, v in var.resources : can(regex("^arn:aws[a-z-]*:", v))])
    error_message = "every entry of resources must be an ARN."
  }

  validation {
    condition     = alltrue([for k, v in var.resources : !strcontains(v, "*")])
    error_message = "resources must name exact ARNs, without wildcards."
  }
}

variable "console_distribution_arn" {
  description = "The CloudFront distribution that reads the console bucket; the console key lets only it decrypt (origin access control). Null before the distribution exists."
  type        = string
  default     = null
}

variable "pipeline_account_ids" {
  description = "Other accounts that use the cicd key: where the pipeline deploys (its artifacts) and where the image is pulled (ECR layers encrypted with it)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.pipeline_account_ids : can(regex("^[0-9]{12}$", a))])
    error_message = "pipeline_account_ids must be 12-digit account ids."
  }
}

variable "cognito" {
  description = "Cognito mode (docs/auth.md): a user pool and an app client whose access tokens the gateway and services accept. Disabled by default."
  type = object({
    enabled             = bool
    callback_urls       = optional(list(string), [])
    logout_urls         = optional(list(string), [])
    deletion_protection = optional(bool, true)
    mfa                 = optional(string, "OPTIONAL")
  })
  default = { enabled = false }

  validation {
    condition     = contains(["OFF", "OPTIONAL", "ON"], var.cognito.mfa)
    error_message = "cognito.mfa must be OFF, OPTIONAL or ON."
  }

  validation {
    condition     = alltrue([for u in concat(var.cognito.callback_urls, var.cognito.logout_urls) : startswith(u, "https://")])
    error_message = "cognito callback and logout URLs must be https."
  }
}
