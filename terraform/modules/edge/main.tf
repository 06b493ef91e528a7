# The way in: CloudFront (WAF attached) serves the console from S3 through
# origin access control and sends /v1/* to `api.<domain>`, which Route 53
# resolves to the primary region's API Gateway, or to the DR region's when
# the primary's health check fails. Each region's HTTP API reaches the
# gateway Service through a VPC link and an internal load balancer
# (./regional_api: the primary's here, the DR region's in the prod root).

data "aws_region" "primary" {}

data "aws_partition" "current" {}

locals {
  api_domain      = "api.${var.domain_name}"
  primary_region  = data.aws_region.primary.name
  dr_enabled      = var.dr_api != null
  cloudfront_zone = "Z2FDTNDATAQYW2" # CloudFront's hosted zone for alias records

  # AWS managed CloudFront policies.
  cache_optimized               = "658327ea-f89d-4fab-a63d-7e88639e58f6"
  cache_disabled                = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
  origin_all_viewer_except_host = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
}

module "primary" {
  source = "./regional_api"

  name                 = var.name
  api_domain_name      = local.api_domain
  internal_domain_name = "gateway.${local.primary_region}.internal.${var.domain_name}"
  hosted_zone_id       = var.hosted_zone_id
  vpc_id               = var.primary.vpc_id
  vpc_cidr             = var.primary.vpc_cidr
  subnet_ids           = var.primary.subnet_ids
  gateway_port         = var.gateway_port
  throttling           = var.throttling
  logs_kms_key_arn     = var.logs_kms_key_arn
  log_retention_days   = var.log_retention_days
  access_log_bucket    = var.access_log_bucket
  tags                 = var.tags
}

# ---------------------------------------------------------------- Route 53

resource "aws_route53_health_check" "primary_api" {
  fqdn              = module.primary.execute_api_host
  port              = 443
  type              = "HTTPS"
  resource_path     = "/openapi.json"
  request_interval  = 30
  failure_threshold = 3
  measure_latency   = true
  tags              = merge(var.tags, { Name = "${var.name}-api-primary" })
}

resource "aws_route53_record" "api_primary" {
  #checkov:skip=CKV2_AWS_23:an alias to the API's custom domain (./regional_api) made in the same plan, which the plan scan cannot connect; tests/edge.tftest.hcl asserts the target

  zone_id         = var.hosted_zone_id
  name            = local.api_domain
  type            = "A"
  set_identifier  = local.dr_enabled ? "primary" : null
  health_check_id = local.dr_enabled ? aws_route53_health_check.primary_api.id : null

  dynamic "failover_routing_policy" {
    for_each = local.dr_enabled ? ["PRIMARY"] : []
    content {
      type = failover_routing_policy.value
    }
  }

  alias {
    name                   = module.primary.domain_target.name
    zone_id                = module.primary.domain_target.zone_id
    evaluate_target_health = false
  }
}

resource "aws_route53_record" "api_secondary" {
  count = local.dr_enabled ? 1 : 0

  #checkov:skip=CKV2_AWS_23:an alias to the DR region's API custom domain (var.dr_api), made by the root; the plan scan cannot connect it

  zone_id        = var.hosted_zone_id
  name           = local.api_domain
  type           = "A"
  set_identifier = "secondary"

  failover_routing_policy {
    type = "SECONDARY"
  }

  alias {
    name                   = var.dr_api.name
    zone_id                = var.dr_api.zone_id
    evaluate_target_health = false
  }
}

resource "aws_route53_record" "site" {
  for_each = toset(["A", "AAAA"])

  zone_id = var.hosted_zone_id
  name    = var.domain_name
  type    = each.key

  alias {
    name                   = aws_cloudfront_distribution.this.domain_name
    zone_id                = local.cloudfront_zone
    evaluate_target_health = false
  }
}

# ---------------------------------------------------------------- us-east-1: certificate, WAF, logs

resource "aws_acm_certificate" "site" {
  provider = aws.us_east_1

  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "site_validation" {
  zone_id         = var.hosted_zone_id
  name            = one(aws_acm_certificate.site.domain_validation_options).resource_record_name
  type            = one(aws_acm_certificate.site.domain_validation_options).resource_record_type
  records         = [one(aws_acm_certificate.site.domain_validation_options).resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "site" {
  provider = aws.us_east_1

  certificate_arn         = aws_acm_certificate.site.arn
  validation_record_fqdns = [aws_route53_record.site_validation.fqdn]
}

# CloudFront and WAF log in us-east-1, so their log groups need a key
# there.
resource "aws_kms_key" "edge_logs" {
  provider = aws.us_east_1

  description             = "${var.name} CloudFront and WAF logs (us-east-1)"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${var.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsItsGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.us-east-1.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
        Resource  = "*"
        Condition = { ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:us-east-1:${var.account_id}:log-group:*" } }
      },
    ]
  })
  tags = var.tags
}

resource "aws_cloudwatch_log_group" "edge" {
  for_each = {
    waf        = "aws-waf-logs-${var.name}"
    cloudfront = "/aws/cloudfront/${var.name}"
  }
  provider = aws.us_east_1

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.edge_logs.arn
  tags              = var.tags
}

resource "aws_wafv2_web_acl" "this" {
  provider = aws.us_east_1

  name        = var.name
  description = "AWS managed rule groups and a per-IP rate limit in front of ${var.domain_name}"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  rule {
    name     = "AWSManagedRulesAmazonIpReputationList"
    priority = 1

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesAmazonIpReputationList"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesAmazonIpReputationList"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "AWSManagedRulesCommonRuleSet"
    priority = 2

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesCommonRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesCommonRuleSet"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "AWSManagedRulesKnownBadInputsRuleSet"
    priority = 3

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesKnownBadInputsRuleSet"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "AWSManagedRulesSQLiRuleSet"
    priority = 4

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesSQLiRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesSQLiRuleSet"
      sampled_requests_enabled   = true
    }
  }

  # Anonymisers (Tor exits, anonymous proxies) are blocked; hosting
  # providers only counted, since API clients legitimately run in clouds.
  rule {
    name     = "AWSManagedRulesAnonymousIpList"
    priority = 5

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesAnonymousIpList"
        vendor_name = "AWS"

        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesAnonymousIpList"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-per-ip"
    priority = 10

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit
        aggregate_key_type    = "IP"
        evaluation_window_sec = 300
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "rate-per-ip"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  provider = aws.us_east_1

  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.edge["waf"].arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    single_header {
      name = "x-api-key"
    }
  }
}

# ---------------------------------------------------------------- CloudFront

resource "aws_cloudfront_origin_access_control" "console" {
  name                              = "${var.name}-console"
  description                       = "CloudFront reads the console bucket with SigV4"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# The console's security headers are web/security-headers.json's, the set
# the gateway serves and the bucket upload sets; terraform/tools/plan_checks.py
# fails the plan when the two disagree (the module cannot read outside
# itself once published).
locals {
  console_headers = {
    "Content-Security-Policy"    = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    "Referrer-Policy"            = "no-referrer"
    "X-Frame-Options"            = "DENY"
    "Cross-Origin-Opener-Policy" = "same-origin"
    "Permissions-Policy"         = "camera=(), microphone=(), geolocation=()"
  }
}

resource "aws_cloudfront_response_headers_policy" "security" {
  name    = "${var.name}-security-headers"
  comment = "HSTS, the console's CSP, no sniffing, no framing, no referrer"

  security_headers_config {
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_security_policy {
      content_security_policy = local.console_headers["Content-Security-Policy"]
      override                = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = local.console_headers["X-Frame-Options"]
      override     = true
    }
    referrer_policy {
      referrer_policy = local.console_headers["Referrer-Policy"]
      override        = true
    }
    xss_protection {
      protection = true
      mode_block = true
      override   = true
    }
  }

  custom_headers_config {
    items {
      header   = "Cross-Origin-Opener-Policy"
      value    = local.console_headers["Cross-Origin-Opener-Policy"]
      override = true
    }
    items {
      header   = "Permissions-Policy"
      value    = local.console_headers["Permissions-Policy"]
      override = true
    }
  }
}

# The console is a single-page application: a deep link such as
# /documents/42 has no object in the bucket. Paths without a file
# extension get index.html; the API behaviour (/v1/*) never runs this, so
# its 404s stay JSON.
resource "aws_cloudfront_function" "console_routes" {
  name    = "${var.name}-console-routes"
  runtime = "cloudfront-js-2.0"
  comment = "console deep links serve index.html"
  publish = true
  code    = <<-EOT
    function handler(event) {
      var request = event.request;
      var last = request.uri.split('/').pop();
      if (last.indexOf('.') === -1) {
        request.uri = '/index.html';
      }
      return request;
    }
  EOT
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_86:access logs go to CloudWatch Logs through standard logging v2 (aws_cloudwatch_log_delivery below), not the legacy S3 logging_config checkov looks for
  #checkov:skip=CKV_AWS_374:the console and API serve users in every country; no geo restriction
  #checkov:skip=CKV_AWS_310:origin failover needs a replica of the console bucket, which exists where there is a DR region (prod: console_failover_bucket); dev and staging have one origin
  enabled             = true
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  comment             = "${var.name}: console and /v1/* API"
  aliases             = [var.domain_name]
  default_root_object = "index.html"
  price_class         = var.price_class
  web_acl_id          = aws_wafv2_web_acl.this.arn

  origin {
    origin_id                = "console"
    domain_name              = var.console_bucket.regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.console.id
  }

  dynamic "origin" {
    for_each = var.console_failover_bucket == null ? [] : [var.console_failover_bucket]
    content {
      origin_id                = "console-dr"
      domain_name              = origin.value.regional_domain_name
      origin_access_control_id = aws_cloudfront_origin_access_control.console.id
    }
  }

  dynamic "origin_group" {
    for_each = var.console_failover_bucket == null ? [] : [1]
    content {
      origin_id = "console-group"
      failover_criteria {
        status_codes = [500, 502, 503, 504]
      }
      member {
        origin_id = "console"
      }
      member {
        origin_id = "console-dr"
      }
    }
  }

  origin {
    origin_id   = "api"
    domain_name = local.api_domain
    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = 30
      origin_keepalive_timeout = 5
    }
  }

  default_cache_behavior {
    target_origin_id           = var.console_failover_bucket == null ? "console" : "console-group"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = local.cache_optimized
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.console_routes.arn
    }
  }

  ordered_cache_behavior {
    path_pattern               = "/v1/*"
    target_origin_id           = "api"
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = local.cache_disabled
    origin_request_policy_id   = local.origin_all_viewer_except_host
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    acm_certificate_arn      = aws_acm_certificate_validation.site.certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }

  tags = var.tags
}

# Standard logging v2: CloudFront access logs into CloudWatch Logs.
resource "aws_cloudwatch_log_delivery_source" "cloudfront" {
  provider = aws.us_east_1

  name         = "${var.name}-cloudfront"
  log_type     = "ACCESS_LOGS"
  resource_arn = aws_cloudfront_distribution.this.arn
  tags         = var.tags
}

resource "aws_cloudwatch_log_delivery_destination" "cloudfront" {
  provider = aws.us_east_1

  name          = "${var.name}-cloudfront"
  output_format = "json"

  delivery_destination_configuration {
    destination_resource_arn = aws_cloudwatch_log_group.edge["cloudfront"].arn
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_delivery" "cloudfront" {
  provider = aws.us_east_1

  delivery_source_name     = aws_cloudwatch_log_delivery_source.cloudfront.name
  delivery_destination_arn = aws_cloudwatch_log_delivery_destination.cloudfront.arn
  tags                     = var.tags
}

# ---------------------------------------------------------------- Shield Advanced

resource "aws_shield_protection" "distribution" {
  count = var.shield_advanced ? 1 : 0

  name         = "${var.name}-cloudfront"
  resource_arn = aws_cloudfront_distribution.this.arn
  tags         = var.tags
}

resource "aws_shield_protection" "zone" {
  count = var.shield_advanced ? 1 : 0

  name         = "${var.name}-zone"
  resource_arn = "arn:${data.aws_partition.current.partition}:route53:::hostedzone/${var.hosted_zone_id}"
  tags         = var.tags
}

resource "aws_shield_protection_health_check_association" "distribution" {
  count = var.shield_advanced ? 1 : 0

  shield_protection_id = aws_shield_protection.distribution[0].id
  health_check_arn     = aws_route53_health_check.primary_api.arn
}
