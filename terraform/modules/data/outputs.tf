output "postgres" {
  description = "The PostgreSQL instance: host, port, instance identifier and ARN, the Secrets Manager secret RDS keeps the master password in, and the security group."
  value = {
    host              = aws_db_instance.postgres.address
    port              = aws_db_instance.postgres.port
    identifier        = aws_db_instance.postgres.identifier
    arn               = aws_db_instance.postgres.arn
    master_username   = aws_db_instance.postgres.username
    master_secret_arn = one(aws_db_instance.postgres.master_user_secret[*].secret_arn)
    security_group_id = aws_security_group.postgres.id
  }
}

output "databases" {
  description = "Database name per component (auth, documents, audit), all on the one instance."
  value       = { for d in var.postgres.databases : d => d }
}

output "redis" {
  description = "The Redis replication group: primary endpoint host, port, TLS (always), the secret holding the AUTH token and rediss:// URL, and the replication group id."
  value = {
    host              = aws_elasticache_replication_group.redis.primary_endpoint_address
    port              = aws_elasticache_replication_group.redis.port
    tls               = true
    auth_secret_arn   = aws_secretsmanager_secret.redis.arn
    replication_group = aws_elasticache_replication_group.redis.id
  }
}

output "tables" {
  description = "DynamoDB tables by role (audit: the audit log; inbox: the subscriber inbox with TTL on expires_at): name and ARN."
  value       = { for k, t in aws_dynamodb_table.this : k => { name = t.name, arn = t.arn } }
}

output "buckets" {
  description = "S3 buckets by role (documents, console): name, ARN and regional domain name (the console's CloudFront origin)."
  value = {
    for k, b in aws_s3_bucket.this : k => {
      name                 = b.bucket
      arn                  = b.arn
      regional_domain_name = b.bucket_regional_domain_name
    }
  }
}

output "replica_buckets" {
  description = "The DR replicas of the buckets (name, ARN, regional domain name); empty without DR."
  value = {
    for k, b in aws_s3_bucket.replica : k => {
      name                 = b.bucket
      arn                  = b.arn
      regional_domain_name = b.bucket_regional_domain_name
    }
  }
}

output "access_log_bucket" {
  description = "The bucket that receives S3 server access logs (prefix s3/) and load balancer logs (prefix lb/)."
  value       = aws_s3_bucket.logs.bucket
}

output "dr_access_log_bucket" {
  description = "The DR region's access-log bucket (its load balancer's logs, prefix lb/), or null."
  value       = one(aws_s3_bucket.logs_dr[*].bucket)
}

output "backup_resource_arns" {
  description = "What AWS Backup should protect: the PostgreSQL instance and the DynamoDB tables."
  value       = concat([aws_db_instance.postgres.arn], [for t in aws_dynamodb_table.this : t.arn])
}
