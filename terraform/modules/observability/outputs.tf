output "log_groups" {
  description = "Application log group name per component."
  value       = { for k, g in aws_cloudwatch_log_group.component : k => g.name }
}

output "alert_topic_arn" {
  description = "The SNS topic every alarm notifies."
  value       = aws_sns_topic.alerts.arn
}

output "alarm_names" {
  description = "Names of all alarms."
  value = concat(
    [aws_cloudwatch_metric_alarm.api_5xx.alarm_name, aws_cloudwatch_metric_alarm.eks_nodes.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.rds : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.queue : a.alarm_name],
  )
}

output "adot_role_arn" {
  description = "IRSA role of the ADOT collector (X-Ray writes), for its ServiceAccount annotation."
  value       = aws_iam_role.adot.arn
}
