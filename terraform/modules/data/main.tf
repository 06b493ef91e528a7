# The stateful services: RDS PostgreSQL, ElastiCache Redis, the DynamoDB
# tables of the AWS profile (issue 18: audit log, subscriber inbox) and the
# S3 buckets for document content and the web console, with replication
# to the DR region where there is one.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  dr_enabled = var.dr_region != null
}

# ---------------------------------------------------------------- PostgreSQL

resource "aws_db_subnet_group" "this" {
  name       = "${var.name}-postgres"
  subnet_ids = var.database_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "postgres" {
  name        = "${var.name}-postgres"
  description = "PostgreSQL from the EKS cluster only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-postgres" })
}

resource "aws_vpc_security_group_ingress_rule" "postgres" {
  for_each = { for i, sg in var.client_security_group_ids : tostring(i) => sg }

  security_group_id            = aws_security_group.postgres.id
  description                  = "PostgreSQL from the cluster"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = each.value
  tags                         = var.tags
}

resource "aws_db_parameter_group" "this" {
  name        = "${var.name}-postgres${split(".", var.postgres.engine_version)[0]}"
  family      = "postgres${split(".", var.postgres.engine_version)[0]}"
  description = "TLS only, SCRAM passwords, connection and slow-query logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "ssl_min_protocol_version"
    value = "TLSv1.2"
  }
  parameter {
    name  = "password_encryption"
    value = "scram-sha-256"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_cloudwatch_log_group" "postgres" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}-postgres/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arns.logs
  tags              = var.tags
}

resource "aws_db_instance" "postgres" {
  #checkov:skip=CKV_AWS_293:deletion protection is var.postgres.deletion_protection: on in staging and prod (plan_checks.py asserts it), off in dev so that it can be torn down
  #checkov:skip=CKV_AWS_157:Multi-AZ is var.postgres.multi_az: on in prod (terraform/envs/prod), off in dev and staging to halve their cost (docs/aws.md)
  identifier                            = "${var.name}-postgres"
  engine                                = "postgres"
  engine_version                        = var.postgres.engine_version
  instance_class                        = var.postgres.instance_class
  allocated_storage                     = var.postgres.allocated_storage
  max_allocated_storage                 = var.postgres.max_allocated_storage
  storage_type                          = "gp3"
  port                                  = 5432
  storage_encrypted                     = true
  kms_key_id                            = var.kms_key_arns.rds
  username                              = "cloudsec_admin"
  manage_master_user_password           = true
  master_user_secret_kms_key_id         = var.kms_key_arns.secrets
  iam_database_authentication_enabled   = true
  db_subnet_group_name                  = aws_db_subnet_group.this.name
  vpc_security_group_ids                = [aws_security_group.postgres.id]
  parameter_group_name                  = aws_db_parameter_group.this.name
  publicly_accessible                   = false
  multi_az                              = var.postgres.multi_az
  ca_cert_identifier                    = "rds-ca-rsa2048-g1"
  backup_retention_period               = var.postgres.backup_retention_days
  backup_window                         = "02:00-03:00"
  maintenance_window                    = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot                 = true
  delete_automated_backups              = false
  deletion_protection                   = var.postgres.deletion_protection
  skip_final_snapshot                   = false
  final_snapshot_identifier             = "${var.name}-postgres-final"
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arns.rds
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  tags                                  = var.tags

  depends_on = [aws_cloudwatch_log_group.postgres, aws_iam_role_policy_attachment.rds_monitoring]
}

# Point-in-time recovery in the DR region: automated backups and
# transaction logs are copied there continuously.
resource "aws_db_instance_automated_backups_replication" "dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  source_db_instance_arn = aws_db_instance.postgres.arn
  kms_key_id             = var.dr_kms_key_arns.rds
  retention_period       = var.postgres.backup_retention_days
}

# ---------------------------------------------------------------- Redis

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-redis"
  subnet_ids = var.database_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Redis from the EKS cluster only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  for_each = { for i, sg in var.client_security_group_ids : tostring(i) => sg }

  security_group_id            = aws_security_group.redis.id
  description                  = "Redis (TLS) from the cluster"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = each.value
  tags                         = var.tags
}

# The AUTH token: 256 random bits from two UUIDv4 (crypto/rand), drawn once
# and kept (no random provider here). It lives in the state, as any
# auth_token does, and in Secrets Manager for the gateway's redis_url.
resource "terraform_data" "redis_auth_token" {
  input = replace("${uuid()}${uuid()}", "-", "")

  lifecycle {
    ignore_changes = [input]
  }
}

resource "aws_cloudwatch_log_group" "redis" {
  for_each = toset(["slow-log", "engine-log"])

  name              = "/aws/elasticache/${var.name}-redis/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arns.logs
  tags              = var.tags
}

resource "aws_elasticache_replication_group" "redis" {
  #checkov:skip=CKV2_AWS_50:Multi-AZ with automatic failover follows var.redis.num_cache_clusters (2 or more: staging, prod); dev runs one node
  replication_group_id       = "${var.name}-redis"
  description                = "${var.name} gateway rate limits and caches"
  engine                     = "redis"
  engine_version             = var.redis.engine_version
  node_type                  = var.redis.node_type
  num_cache_clusters         = var.redis.num_cache_clusters
  port                       = 6379
  parameter_group_name       = "default.redis7"
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arns.cache
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = terraform_data.redis_auth_token.output
  auth_token_update_strategy = "ROTATE"
  automatic_failover_enabled = var.redis.num_cache_clusters > 1
  multi_az_enabled           = var.redis.num_cache_clusters > 1
  snapshot_retention_limit   = 7
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  dynamic "log_delivery_configuration" {
    for_each = aws_cloudwatch_log_group.redis
    content {
      destination      = log_delivery_configuration.value.name
      destination_type = "cloudwatch-logs"
      log_format       = "json"
      log_type         = log_delivery_configuration.key
    }
  }

  tags = var.tags
}

resource "aws_secretsmanager_secret" "redis" {
  #checkov:skip=CKV2_AWS_57:the token is rotated with ElastiCache's AUTH rotation (auth_token_update_strategy = ROTATE) by an operator, not by a Secrets Manager rotation Lambda (docs/aws.md)
  name                    = "${var.name}/redis"
  description             = "AUTH token and URL of ${var.name}-redis (copied into Vault as secret/cloudsec/gateway#redis_url)"
  kms_key_id              = var.kms_key_arns.secrets
  recovery_window_in_days = 30
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "redis" {
  secret_id = aws_secretsmanager_secret.redis.id
  secret_string = jsonencode({
    auth_token = terraform_data.redis_auth_token.output
    url        = "rediss://:${terraform_data.redis_auth_token.output}@${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379"
  })
}

# ---------------------------------------------------------------- DynamoDB

# Generic pk/sk string keys so that the AWS-profile code (issue 18) lays out
# records, chain heads and inbox entries itself; the inbox expires entries
# through TTL on `expires_at` (epoch seconds).
locals {
  tables = {
    audit = { name = "${var.name}-audit-log", ttl = null }
    inbox = { name = "${var.name}-inbox", ttl = "expires_at" }
  }
}

resource "aws_dynamodb_table" "this" {
  for_each = local.tables

  name                        = each.value.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.dynamodb_deletion_protection
  stream_enabled              = local.dr_enabled
  stream_view_type            = local.dr_enabled ? "NEW_AND_OLD_IMAGES" : null

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  dynamic "ttl" {
    for_each = each.value.ttl == null ? [] : [each.value.ttl]
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arns.dynamodb
  }

  point_in_time_recovery {
    enabled = true
  }

  dynamic "replica" {
    for_each = local.dr_enabled ? [var.dr_region] : []
    content {
      region_name            = replica.value
      kms_key_arn            = var.dr_kms_key_arns.dynamodb
      point_in_time_recovery = true
      propagate_tags         = true
    }
  }

  tags = merge(var.tags, { table = each.key })

  lifecycle {
    precondition {
      condition     = (var.dr_region == null) == (var.dr_kms_key_arns == null)
      error_message = "dr_region goes with dr_kms_key_arns: both or neither."
    }
  }
}

# ---------------------------------------------------------------- S3

locals {
  # Names only, so that the buckets depend on nothing else (the console key
  # waits for the CloudFront distribution, which needs the bucket).
  buckets = {
    documents = { name = "${var.name}-documents-${var.account_id}" }
    console   = { name = "${var.name}-console-${var.account_id}" }
  }
  bucket_keys = {
    documents = var.kms_key_arns.documents
    console   = var.console_kms_key_arn
  }
  bucket_dr_keys = local.dr_enabled ? {
    documents = var.dr_kms_key_arns.documents
    console   = var.dr_kms_key_arns.console
  } : {}
  access_log_bucket = "${var.name}-access-logs-${var.account_id}"
}

# S3 server access logs and load balancer logs. Log delivery supports only
# SSE-S3 as the target's default encryption.
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_145:S3 server access logging cannot deliver to a bucket whose default encryption is SSE-KMS; it is SSE-S3
  #checkov:skip=CKV_AWS_18:this is the access-log bucket; logging it into itself would loop
  #checkov:skip=CKV_AWS_144:access logs stay in the region they describe; the DR region logs its own
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the log bucket
  bucket = local.access_log_bucket
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/s3/*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = var.account_id }
          ArnLike      = { "aws:SourceArn" = [for b in local.buckets : "arn:${local.partition}:s3:::${b.name}"] }
        }
      },
      {
        Sid       = "LoadBalancerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "delivery.logs.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/lb/AWSLogs/${var.account_id}/*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id, "s3:x-amz-acl" = "bucket-owner-full-control" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

# The DR region's own access-log bucket (its standby load balancer logs
# there), configured like the primary's.
resource "aws_s3_bucket" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  #checkov:skip=CKV_AWS_145:S3 server access logging and load balancer logs cannot deliver to a bucket whose default encryption is SSE-KMS; it is SSE-S3
  #checkov:skip=CKV_AWS_18:this is the access-log bucket; logging it into itself would loop
  #checkov:skip=CKV_AWS_144:access logs stay in the region they describe
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the log bucket
  bucket = "${local.access_log_bucket}-dr"
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket = aws_s3_bucket.logs_dr[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket = aws_s3_bucket.logs_dr[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket = aws_s3_bucket.logs_dr[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket = aws_s3_bucket.logs_dr[0].id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_public_access_block" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket                  = aws_s3_bucket.logs_dr[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_policy" "logs_dr" {
  count    = local.dr_enabled ? 1 : 0
  provider = aws.dr

  bucket = aws_s3_bucket.logs_dr[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.logs_dr[0].arn, "${aws_s3_bucket.logs_dr[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "LoadBalancerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "delivery.logs.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs_dr[0].arn}/lb/AWSLogs/${var.account_id}/*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id, "s3:x-amz-acl" = "bucket-owner-full-control" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.logs_dr]
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  #checkov:skip=CKV_AWS_144:cross-region replication is configured where there is a DR region (prod, var.dr_region; plan_checks.py asserts it); dev and staging have none by design
  bucket = each.value.name
  tags   = merge(var.tags, { bucket = each.key })
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.bucket_keys[each.key]
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  for_each = local.buckets

  bucket        = aws_s3_bucket.this[each.key].id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${each.value.name}/"
}

resource "aws_s3_bucket_notification" "this" {
  for_each = local.buckets

  bucket      = aws_s3_bucket.this[each.key].id
  eventbridge = true
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid       = "TlsOnly"
          Effect    = "Deny"
          Principal = "*"
          Action    = "s3:*"
          Resource  = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
          Condition = { Bool = { "aws:SecureTransport" = "false" } }
        },
        {
          Sid       = "Tls12OrLater"
          Effect    = "Deny"
          Principal = "*"
          Action    = "s3:*"
          Resource  = [aws_s3_bucket.this[each.key].arn, "${aws_s3_bucket.this[each.key].arn}/*"]
          Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
        },
      ],
      each.key == "console" && var.console_distribution_arn != null ? [
        {
          Sid       = "CloudFrontReadsTheConsole"
          Effect    = "Allow"
          Principal = { Service = "cloudfront.amazonaws.com" }
          Action    = "s3:GetObject"
          Resource  = "${aws_s3_bucket.this[each.key].arn}/*"
          Condition = { StringEquals = { "aws:SourceArn" = var.console_distribution_arn } }
        },
      ] : [],
    )
  })

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# ---------------------------------------------------------------- replication

resource "aws_s3_bucket" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  #checkov:skip=CKV_AWS_144:this is the DR replica; replicating it back would loop
  #checkov:skip=CKV_AWS_18:the replica receives only replication traffic; the source bucket's access is logged
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the replica until a failover
  bucket = "${each.value.name}-replica"
  tags   = merge(var.tags, { bucket = "${each.key}-replica" })
}

resource "aws_s3_bucket_versioning" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket = aws_s3_bucket.replica[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket = aws_s3_bucket.replica[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.bucket_dr_keys[each.key]
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket                  = aws_s3_bucket.replica[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket = aws_s3_bucket.replica[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket = aws_s3_bucket.replica[each.key].id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

resource "aws_s3_bucket_policy" "replica" {
  for_each = local.dr_enabled ? local.buckets : {}
  provider = aws.dr

  bucket = aws_s3_bucket.replica[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.replica[each.key].arn, "${aws_s3_bucket.replica[each.key].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      # CloudFront fails over to the console's replica.
      each.key == "console" && var.console_distribution_arn != null ? [{
        Sid       = "CloudFrontReadsTheConsole"
        Effect    = "Allow"
        Principal = { Service = "cloudfront.amazonaws.com" }
        Action    = "s3:GetObject"
        Resource  = "${aws_s3_bucket.replica[each.key].arn}/*"
        Condition = { StringEquals = { "aws:SourceArn" = var.console_distribution_arn } }
      }] : [],
    )
  })

  depends_on = [aws_s3_bucket_public_access_block.replica]
}

resource "aws_iam_role" "replication" {
  count = local.dr_enabled ? 1 : 0

  name = "${var.name}-s3-replication"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "replication" {
  count = local.dr_enabled ? 1 : 0

  name = "replicate-to-dr"
  role = aws_iam_role.replication[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadSourceConfiguration"
        Effect   = "Allow"
        Action   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
        Resource = [for b in aws_s3_bucket.this : b.arn]
      },
      {
        Sid      = "ReadSourceVersions"
        Effect   = "Allow"
        Action   = ["s3:GetObjectVersionAcl", "s3:GetObjectVersionForReplication", "s3:GetObjectVersionTagging"]
        Resource = [for b in aws_s3_bucket.this : "${b.arn}/*"]
      },
      {
        Sid      = "WriteReplicas"
        Effect   = "Allow"
        Action   = ["s3:ReplicateDelete", "s3:ReplicateObject", "s3:ReplicateTags"]
        Resource = [for b in aws_s3_bucket.replica : "${b.arn}/*"]
      },
      {
        Sid       = "DecryptSource"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = values(local.bucket_keys)
        Condition = { StringLike = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" } }
      },
      {
        Sid       = "EncryptReplica"
        Effect    = "Allow"
        Action    = ["kms:Encrypt", "kms:GenerateDataKey"]
        Resource  = values(local.bucket_dr_keys)
        Condition = { StringLike = { "kms:ViaService" = "s3.${var.dr_region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_s3_bucket_replication_configuration" "this" {
  for_each = local.dr_enabled ? local.buckets : {}

  bucket = aws_s3_bucket.this[each.key].id
  role   = aws_iam_role.replication[0].arn

  rule {
    id     = "dr"
    status = "Enabled"
    filter {}

    delete_marker_replication {
      status = "Enabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }

    destination {
      bucket        = aws_s3_bucket.replica[each.key].arn
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = local.bucket_dr_keys[each.key]
      }

      # S3 Replication Time Control: 99.99% of objects within 15 minutes.
      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }
      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this, aws_s3_bucket_versioning.replica]
}
