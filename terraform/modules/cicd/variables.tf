variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "environment" {
  description = "The environment this instance serves (dev, staging, prod): the deploy project renders values-<environment>.yaml."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "account_id" {
  description = "This account's id (bucket names, ECR registry id)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "kms_key_arn" {
  description = "The cicd key (module security): ECR images, CodeBuild output and pipeline artifacts."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "logs_kms_key_arn" {
  description = "The logs key (module security) for the CodeBuild log group."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.logs_kms_key_arn))
    error_message = "logs_kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  description = "Days build logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts."
  }
}

variable "ecr" {
  description = "The image repository (one, in the pipeline's account): name, images kept, accounts that may pull (the other environments) and regions it replicates to (DR)."
  type = object({
    enabled             = bool
    repository_name     = optional(string, "cloudsec")
    keep_images         = optional(number, 200)
    pull_account_ids    = optional(list(string), [])
    replication_regions = optional(list(string), [])
  })
  default = { enabled = false }

  validation {
    condition     = can(regex("^[a-z0-9]+([._/-][a-z0-9]+)*$", var.ecr.repository_name)) && var.ecr.keep_images >= 10
    error_message = "ecr.repository_name must be a valid repository name and keep_images at least 10."
  }

  validation {
    condition     = alltrue([for a in var.ecr.pull_account_ids : can(regex("^[0-9]{12}$", a))])
    error_message = "ecr.pull_account_ids must be 12-digit account ids."
  }
}

variable "pipeline" {
  description = "The delivery pipeline (in prod's account): source (GitHub through a CodeStar connection) -> test -> image -> staging (a CodeBuild project in the staging account, through its action role) -> manual approval -> production (this account's deploy project)."
  type = object({
    enabled           = bool
    repository        = optional(string, "")
    branch            = optional(string, "main")
    access_log_bucket = optional(string, "")
    staging = optional(object({
      account_id      = string
      action_role_arn = string
      project_name    = string
    }))
  })
  default = { enabled = false }

  validation {
    condition     = !var.pipeline.enabled || (can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.pipeline.repository)) && var.pipeline.staging != null && var.pipeline.access_log_bucket != "")
    error_message = "an enabled pipeline needs repository (owner/name), the staging target and access_log_bucket."
  }
}

variable "deploy" {
  description = "The deploy project of this environment: runs in the VPC (the Kubernetes API is private), reads the Terraform outputs from the state, renders values-<environment>.yaml with scripts/tf-to-values and runs helm upgrade. pipeline_role_arn, when set, is the pipeline (another account) allowed to start it through an action role."
  type = object({
    enabled             = bool
    vpc_id              = optional(string, "")
    subnet_ids          = optional(list(string), [])
    cluster_name        = optional(string, "")
    namespace           = optional(string, "cloudsec")
    state_bucket        = optional(string, "")
    state_key           = optional(string, "")
    state_kms_key_alias = optional(string, "alias/cloudsec-tfstate")
    helm_version        = optional(string, "v3.16.3")
    pipeline_role_arn   = optional(string)
    artifact_bucket_arn = optional(string)
    artifact_key_arn    = optional(string)
  })
  default = { enabled = false }

  validation {
    condition     = !var.deploy.enabled || (var.deploy.vpc_id != "" && length(var.deploy.subnet_ids) > 0 && var.deploy.cluster_name != "" && var.deploy.state_bucket != "" && var.deploy.state_key != "" && startswith(var.deploy.state_kms_key_alias, "alias/"))
    error_message = "an enabled deploy project needs vpc_id, subnet_ids, cluster_name, state_bucket, state_key and the state key's alias (alias/...)."
  }

  validation {
    condition     = can(regex("^v3\\.[0-9]+\\.[0-9]+$", var.deploy.helm_version))
    error_message = "deploy.helm_version must be a Helm 3 release such as v3.16.3."
  }

  validation {
    condition     = var.deploy.pipeline_role_arn == null || (var.deploy.artifact_bucket_arn != null && var.deploy.artifact_key_arn != null)
    error_message = "a deploy project started by another account's pipeline needs that pipeline's artifact_bucket_arn and artifact_key_arn."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
