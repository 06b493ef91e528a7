variable "name" {
  description = "The cluster's name, `cloudsec-<environment>`; also the prefix of its roles."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and node groups."
  type        = string
  default     = "1.31"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be a supported EKS minor version such as 1.31."
  }
}

variable "vpc_id" {
  description = "The VPC of the cluster (module network)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane's network interfaces and the nodes, at least two zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two zones."
  }
}

variable "endpoint_public_access" {
  description = "Whether the Kubernetes API is also reachable from the internet (from public_access_cidrs). Off: only from inside the VPC."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "Ranges allowed to the public API endpoint when endpoint_public_access is on; never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "public_access_cidrs must be IPv4 ranges other than 0.0.0.0/0."
  }
}

variable "secrets_kms_key_arn" {
  description = "The eks key (module security) that encrypts Kubernetes secrets."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.secrets_kms_key_arn))
    error_message = "secrets_kms_key_arn must be a KMS key ARN."
  }
}

variable "logs_kms_key_arn" {
  description = "The logs key (module security) that encrypts the control-plane log group."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.logs_kms_key_arn))
    error_message = "logs_kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  description = "Days the control-plane logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts."
  }
}

variable "node_groups" {
  description = "Managed node groups by name: instance types, ON_DEMAND or SPOT, sizes, root volume size in GiB and Kubernetes labels."
  type = map(object({
    instance_types = list(string)
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size      = optional(number, 50)
    labels         = optional(map(string), {})
  }))

  validation {
    condition     = length(var.node_groups) > 0
    error_message = "at least one node group."
  }

  validation {
    condition     = alltrue([for g in values(var.node_groups) : g.min_size <= g.desired_size && g.desired_size <= g.max_size && g.min_size >= 0 && g.max_size >= 1])
    error_message = "each node group needs 0 <= min_size <= desired_size <= max_size and max_size >= 1."
  }

  validation {
    condition     = alltrue([for g in values(var.node_groups) : contains(["ON_DEMAND", "SPOT"], g.capacity_type)])
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }

  validation {
    condition     = alltrue([for g in values(var.node_groups) : g.disk_size >= 20])
    error_message = "disk_size must be at least 20 GiB."
  }
}

variable "access_entries" {
  description = "Cluster access through EKS access entries (the aws-auth ConfigMap is not used): principal ARN, an EKS access policy name (e.g. AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy) and the namespaces it is limited to (empty: the whole cluster)."
  type = map(object({
    principal_arn = string
    policy        = string
    namespaces    = optional(list(string), [])
  }))
  default = {}

  validation {
    condition     = alltrue([for e in values(var.access_entries) : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", e.principal_arn))])
    error_message = "principal_arn must be an IAM role or user ARN."
  }

  validation {
    condition     = alltrue([for e in values(var.access_entries) : contains(["AmazonEKSClusterAdminPolicy", "AmazonEKSAdminPolicy", "AmazonEKSEditPolicy", "AmazonEKSViewPolicy"], e.policy)])
    error_message = "policy must be AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy, AmazonEKSEditPolicy or AmazonEKSViewPolicy."
  }
}

variable "addons" {
  description = "EKS add-ons by name with an optional pinned version (latest for the cluster version when null). amazon-cloudwatch-observability feeds Container Insights (the node alarms) and gets an IRSA role."
  type = map(object({
    version = optional(string)
  }))
  default = {
    "vpc-cni"                         = {}
    "coredns"                         = {}
    "kube-proxy"                      = {}
    "eks-pod-identity-agent"          = {}
    "amazon-cloudwatch-observability" = {}
  }

  validation {
    condition     = alltrue([for a in ["vpc-cni", "coredns", "kube-proxy"] : contains(keys(var.addons), a)])
    error_message = "the core add-ons vpc-cni, coredns and kube-proxy are required."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
