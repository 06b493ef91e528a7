# Encrypted log groups with retention; every alarm notifies the encrypted
# alert topic; the ADOT role trusts only its ServiceAccount.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:111111111111:cloudsec-test-alerts", owner = "111111111111" }
  }
}

variables {
  name            = "cloudsec-test"
  kms_key_arn     = "arn:aws:kms:eu-west-1:111111111111:key/logs"
  api             = { id = "a1b2c3" }
  rds_instance_id = "cloudsec-test-postgres"
  queues = {
    audit  = { name = "audit", dlq_name = "audit-dlq" }
    mailer = { name = "cloudsec-test-mailer", dlq_name = "cloudsec-test-mailer-dlq" }
  }
  cluster_name      = "cloudsec-test"
  oidc_provider_arn = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  oidc_issuer       = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
  alert_emails      = ["oncall@example.com"]
}

run "alarms_and_logs" {
  command = plan

  assert {
    condition     = alltrue([for g in aws_cloudwatch_log_group.component : g.kms_key_id == var.kms_key_arn && g.retention_in_days == 90])
    error_message = "application logs are encrypted and expire"
  }

  assert {
    condition     = aws_sns_topic.alerts.kms_master_key_id == var.kms_key_arn
    error_message = "the alert topic is encrypted"
  }

  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.queue)) == toset(["audit-age", "audit-dlq", "mailer-age", "mailer-dlq"]) && aws_cloudwatch_metric_alarm.queue["audit-dlq"].dimensions["QueueName"] == "audit-dlq" && aws_cloudwatch_metric_alarm.queue["audit-dlq"].threshold == 0
    error_message = "queue age and DLQ depth alarm per subscriber; one dead letter is enough"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.api_5xx.dimensions["ApiId"] == "a1b2c3" && aws_cloudwatch_metric_alarm.api_5xx.metric_name == "5xx" && aws_cloudwatch_metric_alarm.eks_nodes.dimensions["ClusterName"] == "cloudsec-test" && length(aws_cloudwatch_metric_alarm.rds) == 4
    error_message = "API 5xx, RDS and EKS node alarms exist"
  }

  assert {
    condition     = alltrue([for a in concat([aws_cloudwatch_metric_alarm.api_5xx, aws_cloudwatch_metric_alarm.eks_nodes], values(aws_cloudwatch_metric_alarm.rds), values(aws_cloudwatch_metric_alarm.queue)) : a.alarm_actions == toset([aws_sns_topic.alerts.arn])])
    error_message = "every alarm notifies the alert topic"
  }

  assert {
    condition     = jsondecode(aws_iam_role.adot.assume_role_policy).Statement[0].Condition.StringEquals["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub"] == "system:serviceaccount:opentelemetry:adot-collector"
    error_message = "only the collector's ServiceAccount assumes the X-Ray role"
  }

  assert {
    condition     = alltrue([for a in jsondecode(aws_iam_role_policy.adot.policy).Statement[0].Action : startswith(a, "xray:") && !strcontains(a, "*")])
    error_message = "the collector may only send to X-Ray"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    name                        = "-bad"
    log_retention_days          = 13
    kms_key_arn                 = "key"
    alert_emails                = ["not-an-address"]
    api_5xx_threshold           = 0
    queue_age_threshold_seconds = 1
  }

  expect_failures = [var.name, var.log_retention_days, var.kms_key_arn, var.alert_emails, var.api_5xx_threshold, var.queue_age_threshold_seconds]
}
