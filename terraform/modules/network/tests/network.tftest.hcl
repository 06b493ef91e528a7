# Three zones, the subnet tiers, NAT per zone (one in dev), the endpoints
# and flow logs.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/vpc/cloudsec-test/flow-logs" }
  }
  mock_resource "aws_nat_gateway" {
    defaults = { id = "nat-0123456789abcdef0" }
  }
  mock_resource "aws_internet_gateway" {
    defaults = { id = "igw-0123456789abcdef0" }
  }
  mock_resource "aws_route_table" {
    defaults = { route = [] }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/cloudsec-test-vpc-flow-logs" }
  }
}

variables {
  name             = "cloudsec-test"
  cidr             = "10.20.0.0/16"
  azs              = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  cluster_name     = "cloudsec-test"
  logs_kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/logs"
}

run "three_zones_nat_per_zone" {
  command = plan

  assert {
    condition     = length(aws_subnet.public) == 3 && length(aws_subnet.private) == 3 && length(aws_subnet.intra) == 3
    error_message = "public, private and intra subnets in each of three zones"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 3 && output.nat_gateway_count == 3
    error_message = "one NAT gateway per zone"
  }

  assert {
    condition     = alltrue([for az, r in aws_route.private_nat : r.nat_gateway_id == aws_nat_gateway.this[az].id && r.destination_cidr_block == "0.0.0.0/0" && r.gateway_id == null])
    error_message = "each private subnet's default route is its zone's NAT gateway"
  }

  assert {
    condition     = aws_route.public_internet.gateway_id == aws_internet_gateway.this.id && length(aws_route_table.intra.route) == 0
    error_message = "public subnets route through the internet gateway; intra subnets have no route out"
  }

  assert {
    condition     = aws_subnet.private["eu-west-1b"].cidr_block == "10.20.32.0/19" && aws_subnet.public["eu-west-1a"].cidr_block == "10.20.96.0/24" && aws_subnet.intra["eu-west-1c"].cidr_block == "10.20.102.0/24"
    error_message = "subnet ranges are carved as documented"
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : !s.map_public_ip_on_launch])
    error_message = "no public IPs are handed out automatically"
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["sqs", "sns", "ecr.api", "ecr.dkr", "sts", "kms", "logs"]) && toset(keys(aws_vpc_endpoint.gateway)) == toset(["s3", "dynamodb"])
    error_message = "endpoints for S3, DynamoDB, SQS, SNS, ECR, STS, KMS and logs"
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled])
    error_message = "interface endpoints answer the services' own names"
  }

  assert {
    condition     = aws_flow_log.this.traffic_type == "ALL" && aws_cloudwatch_log_group.flow.kms_key_id == var.logs_kms_key_arn && aws_cloudwatch_log_group.flow.retention_in_days == 365
    error_message = "all traffic is logged to an encrypted group kept a year"
  }

  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "the default security group allows nothing"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.endpoints_https.cidr_ipv4 == var.cidr && aws_vpc_security_group_ingress_rule.endpoints_https.from_port == 443
    error_message = "endpoints accept HTTPS from the VPC only"
  }
}

run "one_nat_in_dev" {
  command = plan

  variables {
    single_nat_gateway = true
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_route.private_nat) == 3
    error_message = "a single NAT gateway serves all three private route tables"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    name                    = "x"
    cidr                    = "10.0.0.0/8"
    azs                     = ["eu-west-1a", "eu-west-1a"]
    flow_log_retention_days = 42
    logs_kms_key_arn        = "alias/logs"
    interface_endpoints     = ["SQS Endpoint"]
  }

  expect_failures = [var.name, var.cidr, var.azs, var.flow_log_retention_days, var.logs_kms_key_arn, var.interface_endpoints]
}
