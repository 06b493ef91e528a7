output "kms_key_arns" {
  description = "ARN of each purpose's key in the primary region (auth, backup, cache, cicd, documents, dynamodb, eks, events, logs, rds, secrets, audit_signing). The console key is apart (console_kms_key_arn): it waits for the CloudFront distribution."
  value       = merge({ for k, v in aws_kms_key.this : k => v.arn }, { audit_signing = aws_kms_key.audit_signing.arn })
}

output "console_kms_key_arn" {
  description = "ARN of the console bucket's key (its policy admits the CloudFront distribution)."
  value       = aws_kms_key.console.arn
}

output "kms_alias_names" {
  description = "Alias of each purpose's key, `alias/<name>-<purpose>`."
  value       = merge({ for k, v in aws_kms_alias.this : k => v.name }, { console = aws_kms_alias.console.name, audit_signing = aws_kms_alias.audit_signing.name })
}

output "dr_kms_key_arns" {
  description = "ARN of each purpose's replica key in the DR region (same key id, other region; console apart); empty without a DR region."
  value = merge(
    { for k, v in aws_kms_replica_key.this : k => v.arn },
    { for k in aws_kms_replica_key.audit_signing : "audit_signing" => k.arn },
  )
}

output "dr_console_kms_key_arn" {
  description = "ARN of the console key's replica in the DR region, or null."
  value       = one(aws_kms_replica_key.console[*].arn)
}

output "role_arns" {
  description = "IRSA role ARN per component (auth, documents, audit, gateway, mailer), for the ServiceAccount annotation eks.amazonaws.com/role-arn."
  value       = module.irsa.role_arns
}

output "role_names" {
  description = "IRSA role name per component, `<name>-<component>`."
  value       = module.irsa.role_names
}

output "policies" {
  description = "The rendered inline policy of each component role (JSON), as read from deploy/iam/<component>.json."
  value       = module.irsa.policies
}

output "trust_policies" {
  description = "The trust policy of each component role (JSON): only its ServiceAccount through the cluster's OIDC provider."
  value       = module.irsa.trust_policies
}

output "template_vars" {
  description = "The values the policy templates were rendered with (deploy/iam/README.md), e.g. for rendering the same documents elsewhere."
  value       = local.template_vars
}

output "cognito" {
  description = "Cognito mode: user_pool_id, client_id and issuer, or null when disabled."
  value = var.cognito.enabled ? {
    user_pool_id = aws_cognito_user_pool.this[0].id
    client_id    = aws_cognito_user_pool_client.this[0].id
    issuer       = "https://cognito-idp.${local.region}.amazonaws.com/${aws_cognito_user_pool.this[0].id}"
  } : null
}
