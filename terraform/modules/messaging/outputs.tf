output "topic_name" {
  description = "The standard topic's name, for `[events] topic`."
  value       = aws_sns_topic.events.name
}

output "topic_arn" {
  description = "The standard topic's ARN (relays' sns:Publish)."
  value       = aws_sns_topic.events.arn
}

output "fifo_topic_name" {
  description = "The FIFO topic's name (`<topic>.fifo`), or null when fifo_topic is false."
  value       = var.fifo_topic ? aws_sns_topic.fifo[0].name : null
}

output "fifo_topic_arn" {
  description = "The FIFO topic's ARN, or null when fifo_topic is false."
  value       = var.fifo_topic ? aws_sns_topic.fifo[0].arn : null
}

output "event_bus_name" {
  description = "The EventBridge bus's name, for `[events] event_bus`."
  value       = aws_cloudwatch_event_bus.events.name
}

output "event_bus_arn" {
  description = "The EventBridge bus's ARN (relays' events:PutEvents)."
  value       = aws_cloudwatch_event_bus.events.arn
}

output "queues" {
  description = "Per subscriber key: name, url and arn of the queue and of its dead-letter queue (dlq_name, dlq_url, dlq_arn), the rule's name and arn, the subscription's arn, and the QueueSpec it was made for (event_types, max_receives, visibility_timeout_seconds, fifo, filter_policy, event_pattern)."
  value = {
    for k, s in local.subscribers : k => {
      name             = aws_sqs_queue.queue[k].name
      url              = aws_sqs_queue.queue[k].url
      arn              = aws_sqs_queue.queue[k].arn
      dlq_name         = aws_sqs_queue.dlq[k].name
      dlq_url          = aws_sqs_queue.dlq[k].url
      dlq_arn          = aws_sqs_queue.dlq[k].arn
      rule_name        = aws_cloudwatch_event_rule.subscriber[k].name
      rule_arn         = aws_cloudwatch_event_rule.subscriber[k].arn
      subscription_arn = aws_sns_topic_subscription.subscriber[k].arn

      event_types                = s.event_types
      max_receives               = s.max_receives
      visibility_timeout_seconds = s.visibility_timeout_seconds
      fifo                       = s.fifo
      filter_policy              = s.filter
      event_pattern              = s.pattern
    }
  }
}
