variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "domain_name" {
  description = "The environment's public name, e.g. `cloudsec.example.com` (console and API through CloudFront); the API also answers at `api.<domain_name>`."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name."
  }
}

variable "hosted_zone_id" {
  description = "The public Route 53 hosted zone of domain_name."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{4,31}$", var.hosted_zone_id))
    error_message = "hosted_zone_id must be a Route 53 zone id (Z...)."
  }
}

variable "primary" {
  description = "Where the gateway runs in the primary region: VPC, its range and the private subnets (module network)."
  type = object({
    vpc_id     = string
    vpc_cidr   = string
    subnet_ids = list(string)
  })
}

variable "dr_api" {
  description = "The DR region's API entry (prod: ./regional_api applied in the DR region by the root, output domain_target): with it, `api.<domain>` fails over there when the primary's health check fails. Null: no failover."
  type = object({
    name    = string
    zone_id = string
  })
  default = null
}

variable "console_bucket" {
  description = "The console bucket (module data, buckets.console): name and regional domain name, read through origin access control."
  type = object({
    name                 = string
    regional_domain_name = string
  })
}

variable "console_failover_bucket" {
  description = "The console bucket's DR replica (module data, replica_buckets.console): CloudFront fails over to it for GET/HEAD. Null: no origin failover."
  type = object({
    name                 = string
    regional_domain_name = string
  })
  default = null
}

variable "gateway_port" {
  description = "The gateway pods' TLS port behind the internal load balancer."
  type        = number
  default     = 8443
}

variable "throttling" {
  description = "API Gateway stage throttling: requests per second and burst."
  type = object({
    rate_limit  = number
    burst_limit = number
  })
  default = { rate_limit = 500, burst_limit = 1000 }

  validation {
    condition     = var.throttling.rate_limit > 0 && var.throttling.burst_limit >= var.throttling.rate_limit / 10
    error_message = "throttling needs a positive rate and a burst of at least a tenth of it."
  }
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes before the WAF's rate-based rule blocks it."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be 100 to 2,000,000,000 (the WAFv2 bounds)."
  }
}

variable "shield_advanced" {
  description = "Protect the distribution and the hosted zone with Shield Advanced (the account must already subscribe; the subscription is a yearly commitment and not made here)."
  type        = bool
  default     = false
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "logs_kms_key_arn" {
  description = "The logs key (module security) for the API access logs in the primary region."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.logs_kms_key_arn))
    error_message = "logs_kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  description = "Days API, CloudFront and WAF logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts."
  }
}

variable "access_log_bucket" {
  description = "The primary region's access-log bucket (module data) for the load balancer's logs."
  type        = string
}

variable "account_id" {
  description = "The AWS account (key policy of the us-east-1 log key)."
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
