output "cluster_name" {
  description = "The cluster's name."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "The cluster's ARN."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "The Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 PEM of the cluster's certificate authority."
  value       = one(aws_eks_cluster.this.certificate_authority[*].data)
}

output "cluster_security_group_id" {
  description = "The security group EKS made for the control plane and the managed nodes (what databases admit)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider of the cluster, for IRSA trust policies."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "The cluster's OIDC issuer without https://, the prefix of the IRSA condition keys."
  value       = trimprefix(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
}

output "node_role_arn" {
  description = "The managed nodes' IAM role."
  value       = aws_iam_role.node.arn
}

output "node_group_names" {
  description = "Names of the managed node groups."
  value       = [for g in aws_eks_node_group.this : g.node_group_name]
}

output "addons" {
  description = "The managed add-ons: those installed before the nodes (network) and after them."
  value       = { network = keys(aws_eks_addon.network), workloads = keys(aws_eks_addon.workloads) }
}
