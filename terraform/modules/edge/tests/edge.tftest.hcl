# WAF in front of CloudFront, TLS everywhere, the console only through
# origin access control, /v1/* to the API, the API through a VPC link and
# an internal load balancer with throttling and access logs, and DNS
# failover to the DR region when there is one.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

mock_provider "aws" {
  alias = "us_east_1"
}

variables {
  name           = "cloudsec-test"
  account_id     = "111111111111"
  domain_name    = "cloudsec.example.com"
  hosted_zone_id = "Z0123456789ABCDEFGHIJ"
  primary = {
    vpc_id     = "vpc-1"
    vpc_cidr   = "10.20.0.0/16"
    subnet_ids = ["subnet-a", "subnet-b", "subnet-c"]
  }
  console_bucket = {
    name                 = "cloudsec-test-console-111111111111"
    regional_domain_name = "cloudsec-test-console-111111111111.s3.eu-west-1.amazonaws.com"
  }
  logs_kms_key_arn  = "arn:aws:kms:eu-west-1:111111111111:key/logs"
  access_log_bucket = "cloudsec-test-access-logs-111111111111"
}

run "edge_without_dr" {
  command = plan

  assert {
    condition     = aws_wafv2_web_acl.this.scope == "CLOUDFRONT" && length(aws_wafv2_web_acl.this.rule) == 6
    error_message = "a CloudFront-scope web ACL with five managed rule groups and a rate rule"
  }

  assert {
    condition     = toset([for r in aws_wafv2_web_acl.this.rule : r.statement[0].managed_rule_group_statement[0].name if length(r.statement[0].managed_rule_group_statement) > 0]) == toset(["AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesAnonymousIpList", "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesSQLiRuleSet"])
    error_message = "the AWS managed rule groups are attached"
  }

  assert {
    condition     = one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0].limit if length(r.statement[0].rate_based_statement) > 0]) == 2000
    error_message = "a rate-based rule per client IP"
  }

  assert {
    condition     = aws_cloudfront_distribution.this.viewer_certificate[0].minimum_protocol_version == "TLSv1.2_2021" && aws_cloudfront_distribution.this.default_cache_behavior[0].viewer_protocol_policy == "redirect-to-https"
    error_message = "viewers get TLS 1.2 or later only"
  }

  assert {
    condition     = strcontains(aws_cloudfront_response_headers_policy.security.security_headers_config[0].content_security_policy[0].content_security_policy, "script-src 'self'") && aws_cloudfront_response_headers_policy.security.security_headers_config[0].content_security_policy[0].override
    error_message = "the console gets a CSP that allows only its own scripts (plan_checks.py compares it with web/security-headers.json)"
  }

  assert {
    condition     = length(aws_cloudfront_distribution.this.default_cache_behavior[0].function_association) == 1 && length(aws_cloudfront_distribution.this.ordered_cache_behavior[0].function_association) == 0
    error_message = "console deep links are rewritten to index.html; the API is not"
  }

  assert {
    condition     = aws_cloudfront_distribution.this.ordered_cache_behavior[0].path_pattern == "/v1/*" && aws_cloudfront_distribution.this.ordered_cache_behavior[0].target_origin_id == "api" && aws_cloudfront_distribution.this.ordered_cache_behavior[0].viewer_protocol_policy == "https-only"
    error_message = "/v1/* goes to the API origin over HTTPS only"
  }

  assert {
    condition     = one([for o in aws_cloudfront_distribution.this.origin : o.custom_origin_config[0].origin_protocol_policy if o.origin_id == "api"]) == "https-only" && one([for o in aws_cloudfront_distribution.this.origin : o.domain_name if o.origin_id == "api"]) == "api.cloudsec.example.com"
    error_message = "CloudFront reaches the API at api.<domain> over HTTPS"
  }

  assert {
    condition     = aws_cloudfront_origin_access_control.console.signing_behavior == "always" && aws_cloudfront_origin_access_control.console.signing_protocol == "sigv4"
    error_message = "the console bucket is read through origin access control"
  }

  assert {
    condition     = aws_cloudwatch_log_group.edge["waf"].name == "aws-waf-logs-cloudsec-test" && alltrue([for g in aws_cloudwatch_log_group.edge : g.retention_in_days == 365]) && aws_kms_key.edge_logs.enable_key_rotation
    error_message = "WAF and CloudFront log to encrypted groups in us-east-1"
  }

  assert {
    condition     = module.primary.stage == "$default"
    error_message = "the API serves one auto-deployed stage"
  }

  assert {
    condition     = length(aws_route53_record.api_secondary) == 0 && length(aws_route53_record.api_primary.failover_routing_policy) == 0
    error_message = "without DR, api.<domain> is a plain alias"
  }

  assert {
    condition     = aws_route53_health_check.primary_api.type == "HTTPS" && aws_route53_health_check.primary_api.resource_path == "/openapi.json"
    error_message = "the primary API is health-checked over HTTPS"
  }

  assert {
    condition     = length(aws_shield_protection.distribution) == 0
    error_message = "Shield Advanced is a switch, off by default"
  }
}

run "regional_api_is_private_throttled_and_logged" {
  command = plan

  module {
    source = "./regional_api"
  }

  variables {
    name                 = "cloudsec-test"
    api_domain_name      = "api.cloudsec.example.com"
    internal_domain_name = "gateway.eu-west-1.internal.cloudsec.example.com"
    vpc_id               = "vpc-1"
    vpc_cidr             = "10.20.0.0/16"
    subnet_ids           = ["subnet-a", "subnet-b"]
    throttling           = { rate_limit = 500, burst_limit = 1000 }
  }

  assert {
    condition     = aws_lb.gateway.internal && aws_lb.gateway.load_balancer_type == "network" && aws_lb_listener.gateway.protocol == "TLS" && aws_lb_target_group.gateway.protocol == "TLS"
    error_message = "an internal NLB terminating and re-originating TLS"
  }

  assert {
    condition     = aws_lb_listener.gateway.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    error_message = "the load balancer accepts TLS 1.2+ only"
  }

  assert {
    condition     = aws_apigatewayv2_integration.gateway.connection_type == "VPC_LINK" && aws_apigatewayv2_integration.gateway.tls_config[0].server_name_to_verify == "gateway.eu-west-1.internal.cloudsec.example.com"
    error_message = "API Gateway reaches the gateway through the VPC link and verifies its TLS name"
  }

  assert {
    condition     = aws_apigatewayv2_stage.default.default_route_settings[0].throttling_rate_limit == 500 && aws_apigatewayv2_stage.default.default_route_settings[0].throttling_burst_limit == 1000
    error_message = "the stage throttles"
  }

  assert {
    condition     = length(aws_apigatewayv2_stage.default.access_log_settings) == 1 && aws_cloudwatch_log_group.access.kms_key_id == var.logs_kms_key_arn
    error_message = "access logs go to an encrypted group"
  }

  assert {
    condition     = aws_apigatewayv2_domain_name.api.domain_name_configuration[0].security_policy == "TLS_1_2" && contains(keys(aws_apigatewayv2_route.this), "ANY /v1/{proxy+}")
    error_message = "the custom domain requires TLS 1.2; /v1/* is routed"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.lb.from_port == 8443 && aws_vpc_security_group_egress_rule.lb.cidr_ipv4 == "10.20.0.0/16" && aws_vpc_security_group_ingress_rule.lb.from_port == 443
    error_message = "the load balancer takes 443 from the VPC link only and sends to the pods' TLS port"
  }
}

run "failover_to_dr" {
  command = plan

  variables {
    dr_api = {
      name    = "d-abcdef1234.execute-api.eu-central-1.amazonaws.com"
      zone_id = "Z1U9ULNL0V5AJ3"
    }
    console_failover_bucket = {
      name                 = "cloudsec-test-console-111111111111-replica"
      regional_domain_name = "cloudsec-test-console-111111111111-replica.s3.eu-central-1.amazonaws.com"
    }
    shield_advanced = true
  }

  assert {
    condition     = aws_route53_record.api_primary.failover_routing_policy[0].type == "PRIMARY" && aws_route53_record.api_secondary[0].failover_routing_policy[0].type == "SECONDARY" && aws_route53_record.api_primary.set_identifier == "primary"
    error_message = "api.<domain> fails over from the primary region to the DR region"
  }

  assert {
    condition     = one(aws_route53_record.api_secondary[0].alias).name == var.dr_api.name
    error_message = "the secondary points at the DR region's API"
  }

  assert {
    condition     = aws_cloudfront_distribution.this.default_cache_behavior[0].target_origin_id == "console-group" && length(aws_cloudfront_distribution.this.origin_group) == 1
    error_message = "the console fails over to its DR replica"
  }

  assert {
    condition     = length(aws_shield_protection.distribution) == 1 && length(aws_shield_protection.zone) == 1 && length(aws_shield_protection_health_check_association.distribution) == 1
    error_message = "Shield Advanced protects the distribution and the zone, with health-based detection"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    domain_name      = "Not A Domain"
    hosted_zone_id   = "zone"
    throttling       = { rate_limit = 0, burst_limit = 0 }
    waf_rate_limit   = 10
    price_class      = "PriceClass_Free"
    logs_kms_key_arn = "logs"
    account_id       = "1"
  }

  expect_failures = [var.domain_name, var.hosted_zone_id, var.throttling, var.waf_rate_limit, var.price_class, var.logs_kms_key_arn, var.account_id]
}
