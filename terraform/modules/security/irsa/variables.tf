variable "name" {
  description = "Role name prefix: roles are `<name>-<component>` (DESIGN.md: IRSA role `cloudsec-<env>-<component>`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3 to 41 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "kubernetes_namespace" {
  description = "The namespace of the components' ServiceAccounts."
  type        = string
  default     = "cloudsec"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a valid Kubernetes namespace name."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https://."
  type        = string

  validation {
    condition     = !startswith(var.oidc_issuer, "https://") && length(var.oidc_issuer) > 0
    error_message = "oidc_issuer must be given without https://."
  }
}

variable "iam_policy_dir" {
  description = "Directory of the policy templates (`<component>.json`); null means the repository's deploy/iam."
  type        = string
  default     = null
}

variable "template_vars" {
  description = "Values of the templates' placeholders (deploy/iam/README.md lists them)."
  type        = map(string)
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
