variable "name" {
  description = "Prefix of every name, `cloudsec-<environment>` (with `-dr` for the DR copy)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,34}$", var.name))
    error_message = "name must be 3 to 35 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "api_domain_name" {
  description = "The API's public name (`api.<domain>`), a custom domain of the HTTP API; Route 53 points it here (or fails over between regions)."
  type        = string
}

variable "internal_domain_name" {
  description = "The internal load balancer's name (`gateway.<region>.internal.<domain>`): the VPC link's TLS name, verified by API Gateway."
  type        = string
}

variable "hosted_zone_id" {
  description = "The public Route 53 zone of the domain (certificate validation, the internal name)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of the gateway Service."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's range: the load balancer sends to pod IPs in it."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the VPC link and the internal load balancer."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "at least two subnets."
  }
}

variable "gateway_port" {
  description = "The gateway pods' TLS port (`[gateway] listen` with `listen_tls`), registered in the target group by the chart's TargetGroupBinding."
  type        = number
  default     = 8443

  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535
    error_message = "gateway_port must be an unprivileged port."
  }
}

variable "health_check_path" {
  description = "A path the gateway answers 200 on without credentials (its OpenAPI document)."
  type        = string
  default     = "/openapi.json"
}

variable "throttling" {
  description = "Default route throttling of the API stage: steady requests per second and burst."
  type = object({
    rate_limit  = number
    burst_limit = number
  })

  validation {
    condition     = var.throttling.rate_limit > 0 && var.throttling.burst_limit > 0
    error_message = "throttling limits must be positive."
  }
}

variable "logs_kms_key_arn" {
  description = "The logs key of this region (module security; its replica in the DR region)."
  type        = string
}

variable "log_retention_days" {
  description = "Days the API access logs are kept."
  type        = number
  default     = 365
}

variable "access_log_bucket" {
  description = "Bucket for the load balancer's access logs (prefix lb/), or null where the region has none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
