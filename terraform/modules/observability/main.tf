# Application log groups, the alert topic and alarms (API 5xx, RDS, queue
# age, DLQ depth, EKS nodes), and the ADOT collector's X-Ray permissions.

data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
}

resource "aws_cloudwatch_log_group" "component" {
  for_each = toset(var.components)

  #checkov:skip=CKV_AWS_338:application logs are kept per environment (dev 14 days, staging 30, prod 90; docs/aws.md, cost notes); the audit trail lives in the audit service, and infrastructure logs are kept a year

  name              = "/cloudsec/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { component = each.key })
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_policy" "alerts" {
  arn = aws_sns_topic.alerts.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AlarmsOfThisAccount"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { StringEquals = { "aws:SourceAccount" = aws_sns_topic.alerts.owner } }
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.key
}

locals {
  alarm_actions = [aws_sns_topic.alerts.arn]

  queue_alarms = merge(
    {
      for k, q in var.queues : "${k}-age" => {
        description = "Subscriber ${k} is falling behind: the oldest message of ${q.name} is older than ${var.queue_age_threshold_seconds} s"
        metric      = "ApproximateAgeOfOldestMessage"
        queue       = q.name
        threshold   = var.queue_age_threshold_seconds
        statistic   = "Maximum"
      }
    },
    {
      for k, q in var.queues : "${k}-dlq" => {
        description = "Dead letters in ${q.dlq_name}: events subscriber ${k} could not handle"
        metric      = "ApproximateNumberOfMessagesVisible"
        queue       = q.dlq_name
        threshold   = 0
        statistic   = "Maximum"
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "The HTTP API answers 5xx"
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = var.api.id, Stage = var.api.stage }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.api_5xx_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rds" {
  for_each = {
    cpu = { metric = "CPUUtilization", threshold = 80, op = "GreaterThanThreshold", description = "PostgreSQL CPU above 80%" }
    # 5 GiB
    storage     = { metric = "FreeStorageSpace", threshold = 5368709120, op = "LessThanThreshold", description = "PostgreSQL has less than 5 GiB free" }
    memory      = { metric = "FreeableMemory", threshold = 268435456, op = "LessThanThreshold", description = "PostgreSQL has less than 256 MiB freeable memory" }
    connections = { metric = "DatabaseConnections", threshold = 400, op = "GreaterThanThreshold", description = "PostgreSQL holds more than 400 connections" }
  }

  alarm_name          = "${var.name}-rds-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/RDS"
  metric_name         = each.value.metric
  dimensions          = { DBInstanceIdentifier = var.rds_instance_id }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = each.value.threshold
  comparison_operator = each.value.op
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "queue" {
  for_each = local.queue_alarms

  alarm_name          = "${var.name}-queue-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue }
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# Container Insights (the amazon-cloudwatch-observability add-on).
resource "aws_cloudwatch_metric_alarm" "eks_nodes" {
  alarm_name          = "${var.name}-eks-failed-nodes"
  alarm_description   = "EKS nodes are failing (NotReady)"
  namespace           = "ContainerInsights"
  metric_name         = "cluster_failed_node_count"
  dimensions          = { ClusterName = var.cluster_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# ---------------------------------------------------------------- X-Ray / ADOT

resource "aws_iam_role" "adot" {
  name = "${var.name}-adot-collector"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = var.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${var.oidc_issuer}:sub" = "system:serviceaccount:${var.adot_service_account.namespace}:${var.adot_service_account.name}"
          "${var.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "adot" {
  name = "xray-write"
  role = aws_iam_role.adot.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # X-Ray has no resource-level permissions for these: Resource "*" is
      # the only form IAM accepts.
      Sid      = "SendTraces"
      Effect   = "Allow"
      Action   = ["xray:GetSamplingRules", "xray:GetSamplingStatisticSummaries", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
      Resource = "*"
    }]
  })
}
