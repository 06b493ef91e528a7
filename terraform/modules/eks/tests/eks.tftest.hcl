# Access entries instead of aws-auth, encrypted secrets, every control-plane
# log, private API, IMDSv2-only encrypted nodes, the core add-ons, IRSA.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_eks_cluster" {
    defaults = {
      arn      = "arn:aws:eks:eu-west-1:111111111111:cluster/cloudsec-test"
      identity = [{ oidc = [{ issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE" }] }]
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
  mock_resource "aws_iam_openid_connect_provider" {
    defaults = { arn = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE" }
  }
}

variables {
  name                = "cloudsec-test"
  vpc_id              = "vpc-1"
  subnet_ids          = ["subnet-a", "subnet-b", "subnet-c"]
  secrets_kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/eks"
  logs_kms_key_arn    = "arn:aws:kms:eu-west-1:111111111111:key/logs"
  node_groups = {
    general = { instance_types = ["m6i.large"], min_size = 2, max_size = 6, desired_size = 3 }
  }
  access_entries = {
    admins = { principal_arn = "arn:aws:iam::111111111111:role/platform-admins", policy = "AmazonEKSClusterAdminPolicy" }
    deploy = { principal_arn = "arn:aws:iam::111111111111:role/cloudsec-test-deploy", policy = "AmazonEKSAdminPolicy", namespaces = ["cloudsec"] }
  }
}

run "secure_cluster" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.access_config[0].authentication_mode == "API" && !aws_eks_cluster.this.access_config[0].bootstrap_cluster_creator_admin_permissions
    error_message = "access entries only (no aws-auth ConfigMap), and the creator gets no hidden admin rights"
  }

  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].provider[0].key_arn == var.secrets_kms_key_arn && aws_eks_cluster.this.encryption_config[0].resources == toset(["secrets"])
    error_message = "Kubernetes secrets are encrypted with the eks key"
  }

  assert {
    condition     = aws_eks_cluster.this.enabled_cluster_log_types == toset(["api", "audit", "authenticator", "controllerManager", "scheduler"]) && aws_cloudwatch_log_group.cluster.kms_key_id == var.logs_kms_key_arn
    error_message = "every control-plane log type goes to an encrypted group"
  }

  assert {
    condition     = !aws_eks_cluster.this.vpc_config[0].endpoint_public_access && aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    error_message = "the API is private by default"
  }

  assert {
    condition     = aws_launch_template.node["general"].metadata_options[0].http_tokens == "required" && aws_launch_template.node["general"].metadata_options[0].http_put_response_hop_limit == 1 && aws_launch_template.node["general"].block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "nodes require IMDSv2 with one hop and encrypt their volumes"
  }

  assert {
    condition     = aws_eks_access_policy_association.this["deploy"].access_scope[0].type == "namespace" && aws_eks_access_policy_association.this["deploy"].access_scope[0].namespaces == toset(["cloudsec"]) && aws_eks_access_policy_association.this["admins"].access_scope[0].type == "cluster"
    error_message = "access policies are scoped as asked"
  }

  assert {
    condition     = aws_eks_access_policy_association.this["admins"].policy_arn == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    error_message = "access policy ARNs are EKS's"
  }

  assert {
    condition     = toset(keys(aws_eks_addon.network)) == toset(["vpc-cni", "kube-proxy", "eks-pod-identity-agent"]) && toset(keys(aws_eks_addon.workloads)) == toset(["coredns", "amazon-cloudwatch-observability"])
    error_message = "the core add-ons are managed, the network ones before the nodes"
  }

  assert {
    condition     = aws_iam_openid_connect_provider.this.client_id_list == toset(["sts.amazonaws.com"]) && output.oidc_issuer == "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
    error_message = "the OIDC provider serves IRSA (audience sts.amazonaws.com)"
  }
}

run "public_endpoint_needs_cidrs" {
  command = plan

  variables {
    endpoint_public_access = true
    public_access_cidrs    = ["203.0.113.0/24"]
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["203.0.113.0/24"])
    error_message = "the public endpoint is limited to the given ranges"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    name                = "Bad Name"
    kubernetes_version  = "1.12"
    subnet_ids          = ["subnet-a"]
    public_access_cidrs = ["0.0.0.0/0"]
    secrets_kms_key_arn = "alias/eks"
    log_retention_days  = 11
    node_groups = {
      general = { instance_types = ["m6i.large"], min_size = 3, max_size = 2, desired_size = 1, capacity_type = "CHEAP", disk_size = 8 }
    }
    access_entries = {
      x = { principal_arn = "arn:aws:iam::111111111111:group/admins", policy = "AdministratorAccess" }
    }
    addons = { coredns = {} }
  }

  expect_failures = [var.name, var.kubernetes_version, var.subnet_ids, var.public_access_cidrs, var.secrets_kms_key_arn, var.log_retention_days, var.node_groups, var.access_entries, var.addons]
}
