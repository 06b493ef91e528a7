output "url" {
  description = "The environment's public URL (console at /, API at /v1/)."
  value       = "https://${var.domain_name}"
}

output "api_url" {
  description = "The API's own name, `https://api.<domain>` (fails over to the DR region when there is one)."
  value       = "https://${local.api_domain}"
}

output "distribution_id" {
  description = "The CloudFront distribution's id (cache invalidations after a console deploy)."
  value       = aws_cloudfront_distribution.this.id
}

output "distribution_arn" {
  description = "The CloudFront distribution's ARN: the console bucket policy and key policy admit only it."
  value       = aws_cloudfront_distribution.this.arn
}

output "distribution_domain_name" {
  description = "The distribution's *.cloudfront.net name."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "web_acl_arn" {
  description = "The WAFv2 web ACL attached to the distribution."
  value       = aws_wafv2_web_acl.this.arn
}

output "api" {
  description = "The primary region's HTTP API: id, stage, execute-api host, and the target group the gateway pods join."
  value = {
    id               = module.primary.api_id
    stage            = module.primary.stage
    execute_api_host = module.primary.execute_api_host
    target_group_arn = module.primary.target_group_arn
    lb_sg_id         = module.primary.load_balancer_security_group_id
  }
}

output "health_check_id" {
  description = "The Route 53 health check of the primary API (failover and Shield's health-based detection)."
  value       = aws_route53_health_check.primary_api.id
}
