# One region's API entry: an HTTP API with throttling and access logs, a
# VPC link to an internal Network Load Balancer whose TLS listener forwards
# (re-encrypted) to the gateway pods, and the API's custom domain.

locals {
  cert_names = [var.api_domain_name, var.internal_domain_name]
}

resource "aws_acm_certificate" "this" {
  domain_name               = var.api_domain_name
  subject_alternative_names = [var.internal_domain_name]
  validation_method         = "DNS"
  tags                      = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

# Keyed by the (known) names so that plans work before the certificate
# exists.
resource "aws_route53_record" "validation" {
  for_each = toset(local.cert_names)

  zone_id         = var.hosted_zone_id
  name            = one([for o in aws_acm_certificate.this.domain_validation_options : o.resource_record_name if o.domain_name == each.key])
  type            = one([for o in aws_acm_certificate.this.domain_validation_options : o.resource_record_type if o.domain_name == each.key])
  records         = [one([for o in aws_acm_certificate.this.domain_validation_options : o.resource_record_value if o.domain_name == each.key])]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  certificate_arn         = aws_acm_certificate.this.arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}

# ---------------------------------------------------------------- load balancer

resource "aws_security_group" "link" {
  name        = "${var.name}-api-vpc-link"
  description = "API Gateway VPC link: HTTPS to the internal load balancer"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-api-vpc-link" })
}

resource "aws_vpc_security_group_egress_rule" "link" {
  security_group_id            = aws_security_group.link.id
  description                  = "HTTPS to the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lb.id
  tags                         = var.tags
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-gateway-nlb"
  description = "Internal load balancer of the gateway: HTTPS from the VPC link, TLS to the pods"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-gateway-nlb" })
}

resource "aws_vpc_security_group_ingress_rule" "lb" {
  security_group_id            = aws_security_group.lb.id
  description                  = "HTTPS from the API's VPC link"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.link.id
  tags                         = var.tags
}

resource "aws_vpc_security_group_egress_rule" "lb" {
  security_group_id = aws_security_group.lb.id
  description       = "TLS to the gateway pods"
  ip_protocol       = "tcp"
  from_port         = var.gateway_port
  to_port           = var.gateway_port
  cidr_ipv4         = var.vpc_cidr
  tags              = var.tags
}

resource "aws_lb" "gateway" {
  name                             = substr("${var.name}-gateway", 0, 32)
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.lb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true

  dynamic "access_logs" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "lb"
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "gateway" {
  name                 = substr("${var.name}-gateway", 0, 32)
  port                 = var.gateway_port
  protocol             = "TLS"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    protocol            = "HTTPS"
    path                = var.health_check_path
    port                = "traffic-port"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }

  tags = var.tags
}

resource "aws_lb_listener" "gateway" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = 443
  protocol          = "TLS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.this.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }

  tags = var.tags
}

resource "aws_route53_record" "internal" {
  zone_id = var.hosted_zone_id
  name    = var.internal_domain_name
  type    = "A"

  alias {
    name                   = aws_lb.gateway.dns_name
    zone_id                = aws_lb.gateway.zone_id
    evaluate_target_health = true
  }
}

# ---------------------------------------------------------------- HTTP API

resource "aws_apigatewayv2_vpc_link" "this" {
  name               = "${var.name}-gateway"
  subnet_ids         = var.subnet_ids
  security_group_ids = [aws_security_group.link.id]
  tags               = var.tags
}

resource "aws_apigatewayv2_api" "this" {
  name          = var.name
  protocol_type = "HTTP"
  description   = "cloudsec REST API: /v1/* to the gateway Service through a VPC link"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "gateway" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "HTTP_PROXY"
  integration_method     = "ANY"
  connection_type        = "VPC_LINK"
  connection_id          = aws_apigatewayv2_vpc_link.this.id
  integration_uri        = aws_lb_listener.gateway.arn
  payload_format_version = "1.0"
  timeout_milliseconds   = 30000

  tls_config {
    server_name_to_verify = var.internal_domain_name
  }
}

resource "aws_apigatewayv2_route" "this" {
  for_each = toset(["ANY /v1/{proxy+}", "GET ${var.health_check_path}"])

  #checkov:skip=CKV_AWS_309:authentication is the gateway's (API keys, usage plans, JWT and Cognito tokens per route, docs/gateway.md); an API Gateway authorizer would check the same tokens twice

  api_id    = aws_apigatewayv2_api.this.id
  route_key = each.key
  target    = "integrations/${aws_apigatewayv2_integration.gateway.id}"
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.throttling.rate_limit
    throttling_burst_limit   = var.throttling.burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId        = "$context.requestId"
      ip               = "$context.identity.sourceIp"
      requestTime      = "$context.requestTime"
      httpMethod       = "$context.httpMethod"
      routeKey         = "$context.routeKey"
      path             = "$context.path"
      status           = "$context.status"
      protocol         = "$context.protocol"
      responseLength   = "$context.responseLength"
      integrationError = "$context.integrationErrorMessage"
      latency          = "$context.responseLatency"
    })
  }

  tags = var.tags
}

resource "aws_apigatewayv2_domain_name" "api" {
  domain_name = var.api_domain_name

  domain_name_configuration {
    certificate_arn = aws_acm_certificate_validation.this.certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }

  tags = var.tags
}

resource "aws_apigatewayv2_api_mapping" "api" {
  api_id      = aws_apigatewayv2_api.this.id
  domain_name = aws_apigatewayv2_domain_name.api.id
  stage       = aws_apigatewayv2_stage.default.id
}
