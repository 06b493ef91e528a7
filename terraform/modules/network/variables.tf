variable "name" {
  description = "Prefix of every name in this module, `cloudsec-<environment>`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "cidr" {
  description = "The VPC's IPv4 range, a /16. Private subnets get a /19 per zone, public and intra subnets a /24 per zone."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && endswith(var.cidr, "/16")
    error_message = "cidr must be an IPv4 /16, e.g. 10.20.0.0/16."
  }
}

variable "azs" {
  description = "Exactly three availability zones of the region, e.g. [\"eu-west-1a\", \"eu-west-1b\", \"eu-west-1c\"]."
  type        = list(string)

  validation {
    condition     = length(var.azs) == 3 && length(distinct(var.azs)) == 3
    error_message = "azs must name three distinct availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (dev: cheaper, but a zone outage cuts egress) instead of one per zone."
  type        = bool
  default     = false
}

variable "cluster_name" {
  description = "The EKS cluster that will use the subnets; they are tagged for its load balancers."
  type        = string
}

variable "interface_endpoints" {
  description = "Services reached through interface VPC endpoints from the private subnets (S3 and DynamoDB always get gateway endpoints)."
  type        = list(string)
  default     = ["sqs", "sns", "ecr.api", "ecr.dkr", "sts", "kms", "logs"]

  validation {
    condition     = alltrue([for s in var.interface_endpoints : can(regex("^[a-z0-9.-]+$", s))])
    error_message = "interface_endpoints are service suffixes such as sqs or ecr.dkr."
  }
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 365, ..., 3653)."
  }
}

variable "logs_kms_key_arn" {
  description = "The logs key (module security) that encrypts the flow log group."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.logs_kms_key_arn))
    error_message = "logs_kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
