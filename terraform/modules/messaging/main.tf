# The event bus as `[events] provisioning = "existing"` expects it
# (docs/events.md, "Infrastructure per mode"): the SNS topic (and its FIFO
# twin), the EventBridge bus, and per subscriber a queue, its dead-letter
# queue `<queue>-dlq` with a redrive policy, a raw-delivery subscription
# filtered on `ce_type`, and a rule `cloudsec-<queue>` targeting the queue.
# Queue policies admit only their own topic and rule, over TLS.

data "aws_partition" "current" {}

locals {
  subscribers = {
    for k, s in var.subscribers : k => merge(s, {
      # dead_letter_name() in mesh/bus/src/transport/aws.rs
      dlq = s.fifo ? "${trimsuffix(s.queue, ".fifo")}-dlq.fifo" : "${s.queue}-dlq"
      # rule_name(): `cloudsec-` + the queue without .fifo, at most 64 characters
      rule = substr("cloudsec-${trimsuffix(s.queue, ".fifo")}", 0, 64)
      # event_pattern(): every CloudEvent carries specversion 1.0
      pattern = length(s.event_types) == 0 ? jsonencode({ detail = { specversion = ["1.0"] } }) : jsonencode({ "detail-type" = s.event_types })
      # filter_policy(): on the ce_type message attribute
      filter = length(s.event_types) == 0 ? null : jsonencode({ ce_type = s.event_types })
    })
  }

  # Dead letters wait for a person: the longest retention SQS allows
  # (ensure_queue_pair() sets the same).
  dlq_retention_seconds = 1209600

  topic_arn_for = { for k, s in local.subscribers : k => s.fifo ? aws_sns_topic.fifo[0].arn : aws_sns_topic.events.arn }
}

# ---------------------------------------------------------------- SNS

resource "aws_sns_topic" "events" {
  name              = var.topic_name
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic" "fifo" {
  count = var.fifo_topic ? 1 : 0

  name                        = "${var.topic_name}.fifo"
  fifo_topic                  = true
  content_based_deduplication = false # the relay sets the event id as deduplication id
  kms_master_key_id           = var.kms_key_arn
  tags                        = var.tags
}

locals {
  topics = merge({ standard = aws_sns_topic.events }, var.fifo_topic ? { fifo = aws_sns_topic.fifo[0] } : {})
}

resource "aws_sns_topic_policy" "this" {
  for_each = local.topics

  arn = each.value.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountPrincipalsPublishThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${each.value.owner}:root" }
        Action    = ["sns:GetTopicAttributes", "sns:Publish"]
        Resource  = each.value.arn
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = each.value.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

# ---------------------------------------------------------------- SQS

resource "aws_sqs_queue" "dlq" {
  for_each = local.subscribers

  name                              = each.value.dlq
  fifo_queue                        = each.value.fifo
  message_retention_seconds         = local.dlq_retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = merge(var.tags, { subscriber = each.key })
}

resource "aws_sqs_queue" "queue" {
  for_each = local.subscribers

  name                              = each.value.queue
  fifo_queue                        = each.value.fifo
  visibility_timeout_seconds        = each.value.visibility_timeout_seconds
  message_retention_seconds         = each.value.message_retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receives
  })
  tags = merge(var.tags, { subscriber = each.key })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = local.subscribers

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}

resource "aws_sqs_queue_policy" "queue" {
  for_each = local.subscribers

  queue_url = aws_sqs_queue.queue[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ItsTopic"
        Effect    = "Allow"
        Principal = { Service = "sns.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.queue[each.key].arn
        Condition = { ArnEquals = { "aws:SourceArn" = local.topic_arn_for[each.key] } }
      },
      {
        Sid       = "ItsRule"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.queue[each.key].arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.subscriber[each.key].arn } }
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = aws_sqs_queue.queue[each.key].arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

# Deliveries that SNS or EventBridge cannot make land in the dead-letter
# queue too, so nothing published is dropped silently.
resource "aws_sqs_queue_policy" "dlq" {
  for_each = local.subscribers

  queue_url = aws_sqs_queue.dlq[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "UndeliverableFromItsSubscription"
        Effect    = "Allow"
        Principal = { Service = "sns.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.dlq[each.key].arn
        Condition = { ArnEquals = { "aws:SourceArn" = local.topic_arn_for[each.key] } }
      }],
      each.value.fifo ? [] : [{
        Sid       = "UndeliverableFromItsRule"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.dlq[each.key].arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.subscriber[each.key].arn } }
      }],
      [{
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = aws_sqs_queue.dlq[each.key].arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
    )
  })
}

resource "aws_sns_topic_subscription" "subscriber" {
  for_each = local.subscribers

  topic_arn            = local.topic_arn_for[each.key]
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.queue[each.key].arn
  raw_message_delivery = true
  filter_policy        = each.value.filter
  filter_policy_scope  = each.value.filter == null ? null : "MessageAttributes"
  redrive_policy       = jsonencode({ deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn })

  depends_on = [aws_sqs_queue_policy.queue]
}

# ---------------------------------------------------------------- EventBridge

resource "aws_cloudwatch_event_bus" "events" {
  name = var.event_bus_name
  tags = var.tags
}

resource "aws_cloudwatch_event_archive" "events" {
  name             = substr("${var.event_bus_name}-archive", 0, 48)
  description      = "Every event of ${var.event_bus_name}, for replay after an outage"
  event_source_arn = aws_cloudwatch_event_bus.events.arn
  retention_days   = var.archive_retention_days
}

resource "aws_cloudwatch_event_rule" "subscriber" {
  for_each = local.subscribers

  name           = each.value.rule
  description    = "Events for the ${each.value.queue} queue"
  event_bus_name = aws_cloudwatch_event_bus.events.name
  event_pattern  = each.value.pattern
  state          = "ENABLED"
  tags           = merge(var.tags, { subscriber = each.key })
}

resource "aws_cloudwatch_event_target" "subscriber" {
  for_each = local.subscribers

  rule           = aws_cloudwatch_event_rule.subscriber[each.key].name
  event_bus_name = aws_cloudwatch_event_bus.events.name
  target_id      = "sqs"
  arn            = aws_sqs_queue.queue[each.key].arn

  # EventBridge takes one fixed group per target (eventbridge_subscription()).
  dynamic "sqs_target" {
    for_each = each.value.fifo ? [1] : []
    content {
      message_group_id = trimsuffix(each.value.queue, ".fifo")
    }
  }

  # EventBridge dead-letter queues must be standard queues.
  dynamic "dead_letter_config" {
    for_each = each.value.fifo ? [] : [1]
    content {
      arn = aws_sqs_queue.dlq[each.key].arn
    }
  }

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}
