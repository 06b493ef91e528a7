# Keys per purpose, one IRSA role per platform component whose inline
# policy is the component's template in deploy/iam, and optionally the
# Cognito user pool of Cognito mode.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  root_arn  = "arn:${local.partition}:iam::${var.account_id}:root"

  # Symmetric keys, one per purpose. The audit chain-head signing key is
  # asymmetric and declared on its own below.
  key_purposes = {
    auth      = "auth: seals the token-signing keys kept in its database (envelope encryption)"
    backup    = "AWS Backup vault"
    cache     = "ElastiCache Redis at rest"
    cicd      = "ECR images, CodeBuild and CodePipeline artifacts"
    documents = "documents: content bucket and per-document envelope encryption"
    dynamodb  = "DynamoDB tables (audit log, subscriber inbox)"
    eks       = "EKS Kubernetes secrets"
    events    = "SNS topics and SQS queues of the event bus"
    logs      = "CloudWatch log groups and the alarm topic"
    mailer    = "confirmation and reset codes sealed by auth for the mailer (auth.confirmation.mailer_key)"
    rds       = "RDS PostgreSQL storage, Performance Insights and replicated backups"
    secrets   = "Secrets Manager secrets (Redis auth token, RDS master password)"
  }

  dr_enabled = var.dr_region != null

  # Placeholders of deploy/iam/*.json (deploy/iam/README.md).
  template_vars = merge(var.resources, {
    region                = local.region
    auth_key_arn          = aws_kms_key.this["auth"].arn
    documents_key_arn     = aws_kms_key.this["documents"].arn
    dynamodb_key_arn      = aws_kms_key.this["dynamodb"].arn
    events_key_arn        = aws_kms_key.this["events"].arn
    mailer_key_arn        = aws_kms_key.this["mailer"].arn
    audit_signing_key_arn = aws_kms_key.audit_signing.arn
  })

}

# ---------------------------------------------------------------- KMS

locals {
  # Every key: the account administers it through IAM (the AWS default key
  # policy); "Resource": "*" in a key policy means the key itself.
  admin_statement = {
    Sid       = "AccountAdministersThroughIam"
    Effect    = "Allow"
    Principal = { AWS = local.root_arn }
    Action    = "kms:*"
    Resource  = "*"
  }

  key_statements = {
    logs = [
      {
        Sid       = "CloudWatchLogsEncryptsItsGroups"
        Effect    = "Allow"
        Principal = { Service = ["logs.amazonaws.com", "logs.${local.region}.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
        Resource  = "*"
        Condition = { ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:*:${var.account_id}:log-group:*" } }
      },
      {
        Sid       = "AlarmsPublishToTheEncryptedAlertTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
    ]
    events = [
      {
        Sid       = "SnsAndEventBridgeDeliverToEncryptedQueues"
        Effect    = "Allow"
        Principal = { Service = ["events.amazonaws.com", "sns.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
    ]
    cicd = length(var.pipeline_account_ids) == 0 ? [] : [
      {
        Sid       = "PipelineAccountsUseArtifacts"
        Effect    = "Allow"
        Principal = { AWS = [for a in var.pipeline_account_ids : "arn:${local.partition}:iam::${a}:root"] }
        Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
        Resource  = "*"
      },
    ]
  }

  key_policies = {
    for k in keys(local.key_purposes) : k => jsonencode({
      Version   = "2012-10-17"
      Statement = concat([local.admin_statement], lookup(local.key_statements, k, []))
    })
  }
  signing_key_policy = jsonencode({ Version = "2012-10-17", Statement = [local.admin_statement] })

  # The console key is apart from the others: its policy names the
  # CloudFront distribution, and only this key should wait for it.
  console_key_policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([local.admin_statement], var.console_distribution_arn == null ? [] : [
      {
        Sid       = "CloudFrontReadsTheConsole"
        Effect    = "Allow"
        Principal = { Service = "cloudfront.amazonaws.com" }
        Action    = "kms:Decrypt"
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceArn" = var.console_distribution_arn } }
      },
    ])
  })
}

resource "aws_kms_key" "this" {
  for_each = local.key_purposes

  description             = "${var.name} ${each.value}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.key_deletion_window_days
  multi_region            = local.dr_enabled
  policy                  = local.key_policies[each.key]
  tags                    = merge(var.tags, { purpose = each.key })
}

resource "aws_kms_alias" "this" {
  for_each = local.key_purposes

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}

resource "aws_kms_replica_key" "this" {
  for_each = local.dr_enabled ? local.key_purposes : {}
  provider = aws.dr

  description             = "${var.name} ${each.value} (DR replica)"
  primary_key_arn         = aws_kms_key.this[each.key].arn
  deletion_window_in_days = var.key_deletion_window_days
  policy                  = local.key_policies[each.key]
  tags                    = merge(var.tags, { purpose = each.key })
}

resource "aws_kms_key" "console" {
  description             = "${var.name} web console bucket (read by CloudFront through origin access control)"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.key_deletion_window_days
  multi_region            = local.dr_enabled
  policy                  = local.console_key_policy
  tags                    = merge(var.tags, { purpose = "console" })
}

resource "aws_kms_alias" "console" {
  name          = "alias/${var.name}-console"
  target_key_id = aws_kms_key.console.key_id
}

resource "aws_kms_replica_key" "console" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  description             = "${var.name} web console bucket (DR replica)"
  primary_key_arn         = aws_kms_key.console.arn
  deletion_window_in_days = var.key_deletion_window_days
  policy                  = local.console_key_policy
  tags                    = merge(var.tags, { purpose = "console" })
}

# Chain-head signatures of the audit log (issue 18): ECDSA P-256.
resource "aws_kms_key" "audit_signing" {
  #checkov:skip=CKV_AWS_7:asymmetric keys cannot rotate automatically in KMS; a new key is made and the chain heads record which key signed them (docs/aws.md)
  description              = "${var.name} audit chain-head signatures"
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = var.key_deletion_window_days
  multi_region             = local.dr_enabled
  policy                   = local.signing_key_policy
  tags                     = merge(var.tags, { purpose = "audit-signing" })
}

resource "aws_kms_alias" "audit_signing" {
  name          = "alias/${var.name}-audit-signing"
  target_key_id = aws_kms_key.audit_signing.key_id
}

resource "aws_kms_replica_key" "audit_signing" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  description             = "${var.name} audit chain-head signatures (DR replica)"
  primary_key_arn         = aws_kms_key.audit_signing.arn
  deletion_window_in_days = var.key_deletion_window_days
  policy                  = local.signing_key_policy
  tags                    = merge(var.tags, { purpose = "audit-signing" })
}

# ---------------------------------------------------------------- IRSA

module "irsa" {
  source = "./irsa"

  name                 = var.name
  kubernetes_namespace = var.kubernetes_namespace
  oidc_provider_arn    = var.oidc_provider_arn
  oidc_issuer          = var.oidc_issuer
  iam_policy_dir       = var.iam_policy_dir
  template_vars        = local.template_vars
  tags                 = var.tags
}

# ---------------------------------------------------------------- Cognito

resource "aws_cognito_user_pool" "this" {
  count = var.cognito.enabled ? 1 : 0

  name                     = var.name
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  mfa_configuration        = var.cognito.mfa
  deletion_protection      = var.cognito.deletion_protection ? "ACTIVE" : "INACTIVE"

  password_policy {
    minimum_length                   = 12
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = false
    temporary_password_validity_days = 3
  }

  dynamic "software_token_mfa_configuration" {
    for_each = var.cognito.mfa == "OFF" ? [] : [1]
    content {
      enabled = true
    }
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }

  admin_create_user_config {
    allow_admin_create_user_only = false
  }

  # docs/auth.md#cognito-mode: the tenant comes from `custom:tenant` (a
  # pre-token-generation trigger puts it into access tokens) or a group.
  schema {
    name                     = "tenant"
    attribute_data_type      = "String"
    mutable                  = false
    developer_only_attribute = false
    required                 = false
    string_attribute_constraints {
      min_length = 1
      max_length = 64
    }
  }

  tags = var.tags
}

resource "aws_cognito_user_pool_client" "this" {
  count = var.cognito.enabled ? 1 : 0

  name                                 = "${var.name}-console"
  user_pool_id                         = aws_cognito_user_pool.this[0].id
  generate_secret                      = false
  explicit_auth_flows                  = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors        = "ENABLED"
  enable_token_revocation              = true
  access_token_validity                = 15
  id_token_validity                    = 15
  refresh_token_validity               = 30
  allowed_oauth_flows_user_pool_client = length(var.cognito.callback_urls) > 0
  allowed_oauth_flows                  = length(var.cognito.callback_urls) > 0 ? ["code"] : []
  allowed_oauth_scopes                 = length(var.cognito.callback_urls) > 0 ? ["openid", "email"] : []
  callback_urls                        = var.cognito.callback_urls
  logout_urls                          = var.cognito.logout_urls
  supported_identity_providers         = ["COGNITO"]

  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "days"
  }
}
