# The security module: keys per purpose with rotation, IRSA roles that trust
# only their own ServiceAccount, and component policies that allow exactly
# the actions and resources listed here (rendered from deploy/iam/*.json).

mock_provider "aws" {
  override_during = plan

  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

mock_provider "aws" {
  alias           = "dr"
  override_during = plan
}

variables {
  name              = "cloudsec-test"
  account_id        = "111111111111"
  oidc_provider_arn = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  oidc_issuer       = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  resources = {
    documents_bucket_arn  = "arn:aws:s3:::cloudsec-test-documents"
    events_topic_arn      = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events"
    events_fifo_topic_arn = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events.fifo"
    event_bus_arn         = "arn:aws:events:eu-west-1:111111111111:event-bus/cloudsec-events"
    audit_queue_arn       = "arn:aws:sqs:eu-west-1:111111111111:audit"
    audit_dlq_arn         = "arn:aws:sqs:eu-west-1:111111111111:audit-dlq"
    mailer_queue_arn      = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer"
    mailer_dlq_arn        = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer-dlq"
    audit_table_arn       = "arn:aws:dynamodb:eu-west-1:111111111111:table/cloudsec-test-audit-log"
    inbox_table_arn       = "arn:aws:dynamodb:eu-west-1:111111111111:table/cloudsec-test-inbox"
  }
}

run "policies_allow_exactly_the_listed_actions_on_exactly_the_listed_resources" {
  command = plan

  override_resource {
    override_during = plan
    target          = aws_kms_key.this["auth"]
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/auth" }
  }
  override_resource {
    override_during = plan
    target          = aws_kms_key.this["documents"]
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/documents" }
  }
  override_resource {
    override_during = plan
    target          = aws_kms_key.this["dynamodb"]
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/dynamodb" }
  }
  override_resource {
    override_during = plan
    target          = aws_kms_key.this["events"]
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/events" }
  }
  override_resource {
    override_during = plan
    target          = aws_kms_key.this["mailer"]
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/mailer" }
  }
  override_resource {
    override_during = plan
    target          = aws_kms_key.audit_signing
    values          = { arn = "arn:aws:kms:eu-west-1:111111111111:key/audit-signing" }
  }

  assert {
    condition = jsonencode(jsondecode(output.policies["documents"])) == jsonencode({
      Version = "2012-10-17"
      Statement = [
        { Sid = "ContentObjects", Effect = "Allow", Action = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"], Resource = "arn:aws:s3:::cloudsec-test-documents/*" },
        { Sid = "ContentBucket", Effect = "Allow", Action = ["s3:ListBucket"], Resource = "arn:aws:s3:::cloudsec-test-documents" },
        { Sid = "ContentEnvelopeKey", Effect = "Allow", Action = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/documents", Condition = { Null = { "kms:EncryptionContextKeys" = "false" } } },
        { Sid = "EnvelopeKeyVersions", Effect = "Allow", Action = ["kms:DescribeKey", "kms:ListKeyRotations"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/documents" },
        { Sid = "PublishEvents", Effect = "Allow", Action = ["sns:Publish"], Resource = ["arn:aws:sns:eu-west-1:111111111111:cloudsec-events", "arn:aws:sns:eu-west-1:111111111111:cloudsec-events.fifo"] },
        { Sid = "FindEventTopic", Effect = "Allow", Action = ["sns:ListTopics"], Resource = "*" },
        { Sid = "PutEventsOnBus", Effect = "Allow", Action = ["events:DescribeEventBus", "events:PutEvents"], Resource = "arn:aws:events:eu-west-1:111111111111:event-bus/cloudsec-events" },
        { Sid = "EncryptedTopic", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/events", Condition = { StringEquals = { "kms:ViaService" = "sns.eu-west-1.amazonaws.com" } } },
      ]
    })
    error_message = "documents: ${output.policies["documents"]}"
  }

  assert {
    condition = jsonencode(jsondecode(output.policies["auth"])) == jsonencode({
      Version = "2012-10-17"
      Statement = [
        { Sid = "SealedSigningKeys", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/auth", Condition = { Null = { "kms:EncryptionContextKeys" = "false" } } },
        { Sid = "SealCodesForTheMailer", Effect = "Allow", Action = ["kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/mailer", Condition = { Null = { "kms:EncryptionContextKeys" = "false" } } },
        { Sid = "SealingKeyVersions", Effect = "Allow", Action = ["kms:DescribeKey", "kms:ListKeyRotations"], Resource = ["arn:aws:kms:eu-west-1:111111111111:key/auth", "arn:aws:kms:eu-west-1:111111111111:key/mailer"] },
        { Sid = "PublishEvents", Effect = "Allow", Action = ["sns:Publish"], Resource = ["arn:aws:sns:eu-west-1:111111111111:cloudsec-events", "arn:aws:sns:eu-west-1:111111111111:cloudsec-events.fifo"] },
        { Sid = "FindEventTopic", Effect = "Allow", Action = ["sns:ListTopics"], Resource = "*" },
        { Sid = "PutEventsOnBus", Effect = "Allow", Action = ["events:DescribeEventBus", "events:PutEvents"], Resource = "arn:aws:events:eu-west-1:111111111111:event-bus/cloudsec-events" },
        { Sid = "EncryptedTopic", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/events", Condition = { StringEquals = { "kms:ViaService" = "sns.eu-west-1.amazonaws.com" } } },
      ]
    })
    error_message = "auth: ${output.policies["auth"]}"
  }

  assert {
    condition = jsonencode(jsondecode(output.policies["audit"])) == jsonencode({
      Version = "2012-10-17"
      Statement = [
        { Sid = "ReadItsQueue", Effect = "Allow", Action = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"], Resource = "arn:aws:sqs:eu-west-1:111111111111:audit" },
        { Sid = "DeadLetterNow", Effect = "Allow", Action = ["sqs:GetQueueUrl", "sqs:SendMessage"], Resource = "arn:aws:sqs:eu-west-1:111111111111:audit-dlq" },
        { Sid = "EncryptedQueues", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/events", Condition = { StringEquals = { "kms:ViaService" = "sqs.eu-west-1.amazonaws.com" } } },
        { Sid = "AuditLogAndInbox", Effect = "Allow", Action = ["dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"], Resource = ["arn:aws:dynamodb:eu-west-1:111111111111:table/cloudsec-test-audit-log", "arn:aws:dynamodb:eu-west-1:111111111111:table/cloudsec-test-inbox"] },
        { Sid = "TablesKey", Effect = "Allow", Action = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/dynamodb", Condition = { StringEquals = { "kms:ViaService" = "dynamodb.eu-west-1.amazonaws.com" } } },
        { Sid = "ChainHeadSignatures", Effect = "Allow", Action = ["kms:GetPublicKey", "kms:Sign", "kms:Verify"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/audit-signing" },
      ]
    })
    error_message = "audit: ${output.policies["audit"]}"
  }

  assert {
    condition = jsonencode(jsondecode(output.policies["mailer"])) == jsonencode({
      Version = "2012-10-17"
      Statement = [
        { Sid = "ReadItsQueue", Effect = "Allow", Action = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"], Resource = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer" },
        { Sid = "DeadLetterNow", Effect = "Allow", Action = ["sqs:GetQueueUrl", "sqs:SendMessage"], Resource = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer-dlq" },
        { Sid = "EncryptedQueues", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/events", Condition = { StringEquals = { "kms:ViaService" = "sqs.eu-west-1.amazonaws.com" } } },
        { Sid = "OpenSealedCodes", Effect = "Allow", Action = ["kms:Decrypt"], Resource = "arn:aws:kms:eu-west-1:111111111111:key/mailer", Condition = { Null = { "kms:EncryptionContextKeys" = "false" } } },
      ]
    })
    error_message = "mailer: ${output.policies["mailer"]}"
  }

  assert {
    condition = jsonencode(jsondecode(output.policies["gateway"])) == jsonencode({
      Version   = "2012-10-17"
      Statement = [{ Sid = "NoAwsDataPlaneCalls", Effect = "Deny", Action = "*", Resource = "*" }]
    })
    error_message = "gateway makes no AWS calls: its policy denies everything"
  }

  assert {
    condition = alltrue([
      for c, p in output.trust_policies :
      jsondecode(p).Statement[0].Condition.StringEquals["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub"] == "system:serviceaccount:cloudsec:${c}"
      && jsondecode(p).Statement[0].Condition.StringEquals["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:aud"] == "sts.amazonaws.com"
      && jsondecode(p).Statement[0].Principal.Federated == var.oidc_provider_arn
      && length(jsondecode(p).Statement) == 1
    ])
    error_message = "each IRSA role trusts exactly its own ServiceAccount through the cluster's OIDC provider"
  }

  assert {
    condition     = toset(keys(output.role_names)) == toset(["auth", "documents", "audit", "gateway", "mailer"]) && output.role_names["documents"] == "cloudsec-test-documents"
    error_message = "one role per component, named <name>-<component> (DESIGN.md)"
  }

  assert {
    condition     = alltrue([for k in concat(values(aws_kms_key.this), [aws_kms_key.console]) : k.enable_key_rotation && k.rotation_period_in_days == 365 && k.deletion_window_in_days == 30])
    error_message = "every symmetric key rotates yearly and has a 30-day deletion window"
  }

  assert {
    condition     = length(aws_kms_key.this) == 12 && aws_kms_key.console.enable_key_rotation && aws_kms_key.audit_signing.key_usage == "SIGN_VERIFY" && aws_kms_key.audit_signing.customer_master_key_spec == "ECC_NIST_P256"
    error_message = "13 keys per purpose (12 plus the console key) and an ECDSA P-256 signing key for the audit chain heads"
  }

  assert {
    condition     = length(aws_kms_replica_key.this) == 0 && !aws_kms_key.this["documents"].multi_region
    error_message = "no DR region, no replica keys"
  }

  assert {
    condition     = length(aws_cognito_user_pool.this) == 0 && output.cognito == null
    error_message = "Cognito is off unless enabled"
  }

  assert {
    condition     = !strcontains(jsondecode(aws_kms_key.console.policy).Statement[0].Principal.AWS, "*") && length(jsondecode(aws_kms_key.console.policy).Statement) == 1
    error_message = "without a distribution, the console key grants nobody outside the account"
  }
}

run "dr_region_replicates_every_key" {
  command = plan

  variables {
    dr_region                = "eu-central-1"
    console_distribution_arn = "arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE"
  }

  assert {
    condition     = length(aws_kms_replica_key.this) == 12 && length(aws_kms_replica_key.console) == 1 && length(aws_kms_replica_key.audit_signing) == 1
    error_message = "every key has a replica in the DR region"
  }

  assert {
    condition     = alltrue([for k in aws_kms_key.this : k.multi_region]) && aws_kms_key.console.multi_region && aws_kms_key.audit_signing.multi_region
    error_message = "replicated keys are multi-Region keys"
  }

  assert {
    condition     = jsondecode(aws_kms_key.console.policy).Statement[1].Condition.StringEquals["aws:SourceArn"] == "arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE" && jsondecode(aws_kms_key.console.policy).Statement[1].Action == "kms:Decrypt"
    error_message = "only the console's distribution may decrypt the console key"
  }
}

run "cognito_mode" {
  command = plan

  variables {
    cognito = {
      enabled       = true
      callback_urls = ["https://console.example.com/callback"]
      mfa           = "ON"
    }
  }

  assert {
    condition     = aws_cognito_user_pool.this[0].mfa_configuration == "ON" && aws_cognito_user_pool.this[0].password_policy[0].minimum_length >= 12 && aws_cognito_user_pool.this[0].deletion_protection == "ACTIVE"
    error_message = "the user pool enforces MFA, 12-character passwords and deletion protection"
  }

  assert {
    condition     = !aws_cognito_user_pool_client.this[0].generate_secret && aws_cognito_user_pool_client.this[0].prevent_user_existence_errors == "ENABLED" && aws_cognito_user_pool_client.this[0].allowed_oauth_flows == toset(["code"])
    error_message = "a public app client (no secret) with the authorization-code flow only"
  }
}

run "a_wildcard_action_in_a_template_is_refused" {
  command = plan

  module {
    source = "./irsa"
  }

  variables {
    name           = "cloudsec-test"
    iam_policy_dir = "./tests/fixtures/wildcard"
    template_vars = {
      region               = "eu-west-1"
      documents_bucket_arn = "arn:aws:s3:::cloudsec-test-documents"
      audit_queue_arn      = "arn:aws:sqs:eu-west-1:111111111111:audit"
    }
  }

  expect_failures = [aws_iam_role_policy.component]
}

# Every variable validation in one run: each listed variable must fail.
run "bad_variables_are_refused" {
  command = plan

  variables {
    name                     = "Cloudsec_Prod"
    account_id               = "12345"
    oidc_issuer              = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
    key_deletion_window_days = 3
    dr_region                = "moon-1"
    kubernetes_namespace     = "Not_A_Namespace"
    oidc_provider_arn        = "arn:aws:iam::111111111111:role/not-a-provider"
    pipeline_account_ids     = ["42"]
    cognito                  = { enabled = true, callback_urls = ["http://console.example.com/cb"] }
    resources = {
      documents_bucket_arn  = "arn:aws:s3:::*"
      events_topic_arn      = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events"
      events_fifo_topic_arn = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events.fifo"
      event_bus_arn         = "arn:aws:events:eu-west-1:111111111111:event-bus/cloudsec-events"
      audit_queue_arn       = "arn:aws:sqs:eu-west-1:111111111111:audit"
      audit_dlq_arn         = "arn:aws:sqs:eu-west-1:111111111111:audit-dlq"
      mailer_queue_arn      = "arn:aws:sqs:eu-west-1:111111111111:m"
      mailer_dlq_arn        = "arn:aws:sqs:eu-west-1:111111111111:m-dlq"
      audit_table_arn       = "arn:aws:dynamodb:eu-west-1:111111111111:table/a"
      inbox_table_arn       = "arn:aws:dynamodb:eu-west-1:111111111111:table/i"
    }
  }

  expect_failures = [
    var.name,
    var.account_id,
    var.oidc_issuer,
    var.key_deletion_window_days,
    var.dr_region,
    var.kubernetes_namespace,
    var.oidc_provider_arn,
    var.pipeline_account_ids,
    var.cognito,
    var.resources,
  ]
}
