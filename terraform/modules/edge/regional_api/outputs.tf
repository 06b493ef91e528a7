output "api_id" {
  description = "The HTTP API's id."
  value       = aws_apigatewayv2_api.this.id
}

output "stage" {
  description = "The API stage (`$default`)."
  value       = aws_apigatewayv2_stage.default.name
}

output "execute_api_host" {
  description = "The API's own host name (execute-api), where the Route 53 health check probes."
  value       = trimprefix(aws_apigatewayv2_api.this.api_endpoint, "https://")
}

output "domain_target" {
  description = "Where `api.<domain>` points in this region: the custom domain's regional target name and hosted zone."
  value = {
    name    = aws_apigatewayv2_domain_name.api.domain_name_configuration[0].target_domain_name
    zone_id = aws_apigatewayv2_domain_name.api.domain_name_configuration[0].hosted_zone_id
  }
}

output "target_group_arn" {
  description = "The load balancer's target group; the chart's TargetGroupBinding registers the gateway pods in it."
  value       = aws_lb_target_group.gateway.arn
}

output "load_balancer_arn" {
  description = "The internal Network Load Balancer."
  value       = aws_lb.gateway.arn
}

output "load_balancer_security_group_id" {
  description = "The load balancer's security group; the gateway pods must admit it on gateway_port."
  value       = aws_security_group.lb.id
}

output "access_log_group" {
  description = "The API's access log group."
  value       = aws_cloudwatch_log_group.access.name
}
