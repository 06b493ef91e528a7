variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "account_id" {
  description = "The AWS account; bucket names end in it so that they are globally unique."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "vpc_id" {
  description = "The VPC (module network)."
  type        = string
}

variable "database_subnet_ids" {
  description = "Subnets without a route out of the VPC (module network, intra_subnet_ids) for RDS and ElastiCache."
  type        = list(string)

  validation {
    condition     = length(var.database_subnet_ids) >= 2
    error_message = "RDS and ElastiCache need subnets in at least two zones."
  }
}

variable "client_security_group_ids" {
  description = "Security groups allowed to reach PostgreSQL (5432) and Redis (6379): the EKS cluster's (module eks, cluster_security_group_id)."
  type        = list(string)

  validation {
    condition     = length(var.client_security_group_ids) > 0
    error_message = "at least one client security group."
  }
}

variable "kms_key_arns" {
  description = "Keys of module security (kms_key_arns): rds, cache, dynamodb, documents, secrets and logs."
  type = object({
    rds       = string
    cache     = string
    dynamodb  = string
    documents = string
    secrets   = string
    logs      = string
  })

  validation {
    condition     = alltrue([for k, v in var.kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:", v))])
    error_message = "every entry of kms_key_arns must be a KMS key ARN."
  }
}

variable "console_kms_key_arn" {
  description = "The console key (module security, console_kms_key_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.console_kms_key_arn))
    error_message = "console_kms_key_arn must be a KMS key ARN."
  }
}

variable "dr_region" {
  description = "Disaster recovery (prod): the DR region. RDS backups, both buckets and the DynamoDB tables are replicated there. Null: no replication."
  type        = string
  default     = null

  validation {
    condition     = var.dr_region == null || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.dr_region))
    error_message = "dr_region must be an AWS region name."
  }

}

variable "dr_kms_key_arns" {
  description = "The replica keys in the DR region (module security, dr_kms_key_arns and dr_console_kms_key_arn): rds, dynamodb, documents, console. Required with dr_region."
  type = object({
    rds       = string
    dynamodb  = string
    documents = string
    console   = string
  })
  default = null

  validation {
    condition     = var.dr_kms_key_arns == null || alltrue([for k, v in coalesce(var.dr_kms_key_arns, { rds = "arn:aws:kms:", dynamodb = "arn:aws:kms:", documents = "arn:aws:kms:", console = "arn:aws:kms:" }) : can(regex("^arn:aws[a-z-]*:kms:", v))])
    error_message = "every entry of dr_kms_key_arns must be a KMS key ARN."
  }
}

variable "postgres" {
  description = "The RDS PostgreSQL instance: version, class, storage in GiB, Multi-AZ, backup retention in days, deletion protection and the databases the components use (created by deploy/ansible's bootstrap, not by RDS)."
  type = object({
    engine_version        = optional(string, "16.4")
    instance_class        = string
    allocated_storage     = number
    max_allocated_storage = number
    multi_az              = bool
    backup_retention_days = optional(number, 14)
    deletion_protection   = optional(bool, true)
    databases             = optional(list(string), ["auth", "documents", "audit"])
  })

  validation {
    condition     = can(regex("^1[4-7](\\.[0-9]+)?$", var.postgres.engine_version))
    error_message = "postgres.engine_version must be PostgreSQL 14 to 17."
  }

  validation {
    condition     = var.postgres.backup_retention_days >= 7 && var.postgres.backup_retention_days <= 35
    error_message = "postgres.backup_retention_days must be 7 to 35 (point-in-time recovery needs backups)."
  }

  validation {
    condition     = var.postgres.allocated_storage >= 20 && var.postgres.max_allocated_storage >= var.postgres.allocated_storage
    error_message = "postgres storage must be at least 20 GiB and max_allocated_storage at least allocated_storage."
  }

  validation {
    condition     = startswith(var.postgres.instance_class, "db.")
    error_message = "postgres.instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "redis" {
  description = "The ElastiCache Redis replication group: engine version, node type and number of nodes (2 or more makes it Multi-AZ with automatic failover)."
  type = object({
    engine_version     = optional(string, "7.1")
    node_type          = string
    num_cache_clusters = number
  })

  validation {
    condition     = var.redis.num_cache_clusters >= 1 && var.redis.num_cache_clusters <= 6
    error_message = "redis.num_cache_clusters must be 1 to 6."
  }

  validation {
    condition     = startswith(var.redis.node_type, "cache.")
    error_message = "redis.node_type must be an ElastiCache node type such as cache.t4g.small."
  }
}

variable "dynamodb_deletion_protection" {
  description = "Deletion protection of the DynamoDB tables (on in prod)."
  type        = bool
  default     = true
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept (also how long a shredded document's old key object survives; docs/aws.md)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 365
    error_message = "noncurrent_version_days must be 1 to 365."
  }
}

variable "access_log_days" {
  description = "Days S3 and load balancer access logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_days >= 30
    error_message = "access_log_days must be at least 30."
  }
}

variable "log_retention_days" {
  description = "Days the RDS and Redis log groups are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts."
  }
}

variable "console_distribution_arn" {
  description = "The CloudFront distribution allowed to read the console bucket (origin access control); null before it exists."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
