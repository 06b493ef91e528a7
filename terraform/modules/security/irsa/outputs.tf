output "role_arns" {
  description = "Role ARN per component (auth, documents, audit, gateway, mailer), for the ServiceAccount annotation eks.amazonaws.com/role-arn."
  value       = { for k, v in aws_iam_role.component : k => v.arn }
}

output "role_names" {
  description = "Role name per component, `<name>-<component>`."
  value       = { for k, v in aws_iam_role.component : k => v.name }
}

output "policies" {
  description = "The rendered inline policy of each component (JSON)."
  value       = { for k, v in aws_iam_role_policy.component : k => v.policy }
}

output "trust_policies" {
  description = "The trust policy of each component's role (JSON)."
  value       = { for k, v in aws_iam_role.component : k => v.assume_role_policy }
}
