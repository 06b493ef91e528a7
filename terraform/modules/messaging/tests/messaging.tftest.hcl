# The bus infrastructure under the names and attributes mesh/bus expects in
# `existing` mode; queue policies admit only their own topic and rule.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

# Distinct, ARN-shaped values for what the assertions compare.
override_resource {
  target          = aws_sns_topic.events
  override_during = plan
  values          = { arn = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events", owner = "111111111111" }
}
override_resource {
  target          = aws_sns_topic.fifo[0]
  override_during = plan
  values          = { arn = "arn:aws:sns:eu-west-1:111111111111:cloudsec-events.fifo", owner = "111111111111" }
}
override_resource {
  target          = aws_cloudwatch_event_bus.events
  override_during = plan
  values          = { arn = "arn:aws:events:eu-west-1:111111111111:event-bus/cloudsec-events" }
}
override_resource {
  target          = aws_sqs_queue.queue["audit"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:audit", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/audit", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/audit" }
}
override_resource {
  target          = aws_sqs_queue.dlq["audit"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:audit-dlq", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/audit-dlq", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/audit-dlq" }
}
override_resource {
  target          = aws_cloudwatch_event_rule.subscriber["audit"]
  override_during = plan
  values          = { arn = "arn:aws:events:eu-west-1:111111111111:rule/cloudsec-events/cloudsec-audit" }
}
override_resource {
  target          = aws_sqs_queue.queue["mailer"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/cloudsec-test-mailer", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/cloudsec-test-mailer" }
}
override_resource {
  target          = aws_sqs_queue.dlq["mailer"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:cloudsec-test-mailer-dlq", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/cloudsec-test-mailer-dlq", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/cloudsec-test-mailer-dlq" }
}
override_resource {
  target          = aws_cloudwatch_event_rule.subscriber["mailer"]
  override_during = plan
  values          = { arn = "arn:aws:events:eu-west-1:111111111111:rule/cloudsec-events/cloudsec-cloudsec-test-mailer" }
}
override_resource {
  target          = aws_sqs_queue.queue["orders"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:orders.fifo", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/orders.fifo", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/orders.fifo" }
}
override_resource {
  target          = aws_sqs_queue.dlq["orders"]
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:111111111111:orders-dlq.fifo", id = "https://sqs.eu-west-1.amazonaws.com/111111111111/orders-dlq.fifo", url = "https://sqs.eu-west-1.amazonaws.com/111111111111/orders-dlq.fifo" }
}
override_resource {
  target          = aws_cloudwatch_event_rule.subscriber["orders"]
  override_during = plan
  values          = { arn = "arn:aws:events:eu-west-1:111111111111:rule/cloudsec-events/cloudsec-orders" }
}

variables {
  kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/events"
  subscribers = {
    audit = {
      queue        = "audit"
      max_receives = 20
    }
    mailer = {
      queue       = "cloudsec-test-mailer"
      event_types = ["cloudsec.events.v1.UserConfirmationRequested"]
    }
    orders = {
      queue       = "orders.fifo"
      fifo        = true
      event_types = ["cloudsec.events.v1.DocumentCreated", "cloudsec.events.v1.DocumentDeleted"]
    }
  }
}

run "names_and_attributes_the_bus_expects" {
  command = plan

  assert {
    condition     = aws_sns_topic.events.name == "cloudsec-events" && aws_sns_topic.fifo[0].name == "cloudsec-events.fifo" && aws_sns_topic.fifo[0].fifo_topic && aws_cloudwatch_event_bus.events.name == "cloudsec-events"
    error_message = "topic, FIFO topic and bus carry the [events] defaults"
  }

  assert {
    condition     = aws_sqs_queue.queue["audit"].name == "audit" && aws_sqs_queue.dlq["audit"].name == "audit-dlq" && aws_sqs_queue.dlq["orders"].name == "orders-dlq.fifo" && aws_sqs_queue.dlq["orders"].fifo_queue
    error_message = "dead-letter queues are <queue>-dlq and <base>-dlq.fifo"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.queue["audit"].redrive_policy).maxReceiveCount == 20 && jsondecode(aws_sqs_queue.queue["audit"].redrive_policy).deadLetterTargetArn == aws_sqs_queue.dlq["audit"].arn && jsondecode(aws_sqs_queue.queue["mailer"].redrive_policy).maxReceiveCount == 5
    error_message = "the redrive policy sends to the subscriber's own DLQ after max_receives (default 5)"
  }

  assert {
    condition     = alltrue([for q in aws_sqs_queue.dlq : q.message_retention_seconds == 1209600]) && alltrue([for q in aws_sqs_queue.queue : q.visibility_timeout_seconds == 30])
    error_message = "DLQs keep messages 14 days; queues default to 30 s visibility"
  }

  assert {
    condition     = alltrue([for q in concat(values(aws_sqs_queue.queue), values(aws_sqs_queue.dlq)) : q.kms_master_key_id == var.kms_key_arn]) && aws_sns_topic.events.kms_master_key_id == var.kms_key_arn && aws_sns_topic.fifo[0].kms_master_key_id == var.kms_key_arn
    error_message = "every topic and queue is encrypted with the events key"
  }

  assert {
    condition     = alltrue([for s in aws_sns_topic_subscription.subscriber : s.raw_message_delivery && s.protocol == "sqs"]) && aws_sns_topic_subscription.subscriber["audit"].filter_policy == null
    error_message = "raw delivery; a subscriber of every type has no filter"
  }

  assert {
    condition     = aws_sns_topic_subscription.subscriber["mailer"].filter_policy == "{\"ce_type\":[\"cloudsec.events.v1.UserConfirmationRequested\"]}" && aws_sns_topic_subscription.subscriber["orders"].topic_arn == aws_sns_topic.fifo[0].arn && aws_sns_topic_subscription.subscriber["mailer"].topic_arn == aws_sns_topic.events.arn
    error_message = "filter on ce_type; FIFO queues subscribe to the FIFO topic"
  }

  assert {
    condition     = aws_cloudwatch_event_rule.subscriber["audit"].name == "cloudsec-audit" && aws_cloudwatch_event_rule.subscriber["orders"].name == "cloudsec-orders" && aws_cloudwatch_event_rule.subscriber["audit"].event_pattern == "{\"detail\":{\"specversion\":[\"1.0\"]}}" && aws_cloudwatch_event_rule.subscriber["mailer"].event_pattern == "{\"detail-type\":[\"cloudsec.events.v1.UserConfirmationRequested\"]}"
    error_message = "rules are cloudsec-<queue> with the bus's event patterns"
  }

  assert {
    condition     = aws_cloudwatch_event_target.subscriber["orders"].sqs_target[0].message_group_id == "orders" && length(aws_cloudwatch_event_target.subscriber["orders"].dead_letter_config) == 0 && aws_cloudwatch_event_target.subscriber["audit"].dead_letter_config[0].arn == aws_sqs_queue.dlq["audit"].arn
    error_message = "a FIFO target takes one fixed group; standard targets dead-letter into the subscriber's DLQ"
  }

  assert {
    condition = alltrue([
      for k, p in aws_sqs_queue_policy.queue :
      jsondecode(p.policy).Statement[0].Condition.ArnEquals["aws:SourceArn"] == (k == "orders" ? aws_sns_topic.fifo[0].arn : aws_sns_topic.events.arn)
      && jsondecode(p.policy).Statement[0].Principal.Service == "sns.amazonaws.com"
      && jsondecode(p.policy).Statement[1].Condition.ArnEquals["aws:SourceArn"] == aws_cloudwatch_event_rule.subscriber[k].arn
      && jsondecode(p.policy).Statement[1].Principal.Service == "events.amazonaws.com"
      && jsondecode(p.policy).Statement[0].Action == "sqs:SendMessage" && jsondecode(p.policy).Statement[1].Action == "sqs:SendMessage"
      && length([for s in jsondecode(p.policy).Statement : s if s.Effect == "Allow"]) == 2
    ])
    error_message = "each queue admits only its own topic and its own rule, and only to send"
  }

  assert {
    condition = alltrue([
      for p in concat(values(aws_sqs_queue_policy.queue), values(aws_sqs_queue_policy.dlq)) :
      anytrue([for s in jsondecode(p.policy).Statement : s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])
    ]) && alltrue([for p in aws_sns_topic_policy.this : anytrue([for s in jsondecode(p.policy).Statement : s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])])
    error_message = "every queue and topic refuses requests without TLS"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue_redrive_allow_policy.dlq["audit"].redrive_allow_policy).sourceQueueArns == [aws_sqs_queue.queue["audit"].arn]
    error_message = "a DLQ accepts dead letters only from its own queue"
  }
}

run "no_fifo_topic" {
  command = plan

  variables {
    fifo_topic = false
    subscribers = {
      audit = { queue = "audit", max_receives = 20 }
    }
  }

  assert {
    condition     = length(aws_sns_topic.fifo) == 0 && output.fifo_topic_arn == null
    error_message = "fifo_topic = false makes no FIFO topic"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    topic_name             = "events.fifo"
    event_bus_name         = "default"
    archive_retention_days = -1
    kms_key_arn            = "alias/events"
    fifo_topic             = false
    subscribers = {
      a = { queue = "plain.fifo" }
      b = { queue = "b", max_receives = 0, visibility_timeout_seconds = 50000, message_retention_seconds = 10 }
      c = { queue = "b", fifo = true }
      d = { queue = "has space" }
    }
  }

  expect_failures = [
    var.topic_name,
    var.event_bus_name,
    var.archive_retention_days,
    var.kms_key_arn,
    var.subscribers,
  ]
}
