output "vpc_id" {
  description = "The VPC's id."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's IPv4 range."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone in the order of var.azs (internet-facing load balancers, NAT gateways)."
  value       = [for az in var.azs : aws_subnet.public[az].id]
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone in the order of var.azs (EKS nodes and pods, internal load balancers, interface endpoints)."
  value       = [for az in var.azs : aws_subnet.private[az].id]
}

output "intra_subnet_ids" {
  description = "Intra subnets without any route out of the VPC, one per zone (RDS, ElastiCache)."
  value       = [for az in var.azs : aws_subnet.intra[az].id]
}

output "private_cidrs" {
  description = "IPv4 ranges of the private subnets (where the pods that reach the databases live)."
  value       = [for az in var.azs : aws_subnet.private[az].cidr_block]
}

output "nat_gateway_count" {
  description = "How many NAT gateways egress goes through (1 with single_nat_gateway, else one per zone)."
  value       = length(aws_nat_gateway.this)
}

output "endpoint_security_group_id" {
  description = "Security group of the interface endpoints."
  value       = aws_security_group.endpoints.id
}

output "flow_log_group_name" {
  description = "CloudWatch log group of the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow.name
}
