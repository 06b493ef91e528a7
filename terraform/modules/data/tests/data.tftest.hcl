# Encryption everywhere, nothing public, TLS only, PITR, Multi-AZ and DR
# replication where asked.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-bucket" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
  mock_resource "aws_db_instance" {
    defaults = { arn = "arn:aws:rds:eu-west-1:111111111111:db:cloudsec-test-postgres" }
  }
}

mock_provider "aws" {
  alias           = "dr"
  override_during = plan

  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-replica" }
  }
}

variables {
  name                      = "cloudsec-test"
  account_id                = "111111111111"
  vpc_id                    = "vpc-1"
  database_subnet_ids       = ["subnet-a", "subnet-b", "subnet-c"]
  client_security_group_ids = ["sg-cluster"]
  kms_key_arns = {
    rds       = "arn:aws:kms:eu-west-1:111111111111:key/rds"
    cache     = "arn:aws:kms:eu-west-1:111111111111:key/cache"
    dynamodb  = "arn:aws:kms:eu-west-1:111111111111:key/dynamodb"
    documents = "arn:aws:kms:eu-west-1:111111111111:key/documents"
    secrets   = "arn:aws:kms:eu-west-1:111111111111:key/secrets"
    logs      = "arn:aws:kms:eu-west-1:111111111111:key/logs"
  }
  console_kms_key_arn = "arn:aws:kms:eu-west-1:111111111111:key/console"
  postgres = {
    instance_class        = "db.t4g.medium"
    allocated_storage     = 20
    max_allocated_storage = 100
    multi_az              = false
  }
  redis = {
    node_type          = "cache.t4g.small"
    num_cache_clusters = 1
  }
}

run "encrypted_private_and_tls_only" {
  command = plan

  assert {
    condition     = aws_db_instance.postgres.storage_encrypted && aws_db_instance.postgres.kms_key_id == var.kms_key_arns.rds && aws_db_instance.postgres.performance_insights_kms_key_id == var.kms_key_arns.rds
    error_message = "PostgreSQL storage and Performance Insights are encrypted with the rds key"
  }

  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "rds.force_ssl"]) == "1" && aws_db_parameter_group.this.family == "postgres16"
    error_message = "the parameter group forces TLS"
  }

  assert {
    condition     = !aws_db_instance.postgres.publicly_accessible && aws_db_instance.postgres.deletion_protection && aws_db_instance.postgres.backup_retention_period >= 7 && !aws_db_instance.postgres.skip_final_snapshot
    error_message = "PostgreSQL is private, protected from deletion and keeps PITR backups"
  }

  assert {
    condition     = aws_db_instance.postgres.manage_master_user_password && aws_db_instance.postgres.master_user_secret_kms_key_id == var.kms_key_arns.secrets && aws_db_instance.postgres.iam_database_authentication_enabled
    error_message = "the master password lives in Secrets Manager, never in the state"
  }

  assert {
    condition     = aws_elasticache_replication_group.redis.transit_encryption_enabled && aws_elasticache_replication_group.redis.transit_encryption_mode == "required" && aws_elasticache_replication_group.redis.at_rest_encryption_enabled && aws_elasticache_replication_group.redis.kms_key_id == var.kms_key_arns.cache
    error_message = "Redis requires TLS and encrypts at rest"
  }

  assert {
    condition     = !aws_elasticache_replication_group.redis.multi_az_enabled && !aws_elasticache_replication_group.redis.automatic_failover_enabled
    error_message = "a single Redis node is not Multi-AZ"
  }

  assert {
    condition     = alltrue([for t in aws_dynamodb_table.this : t.server_side_encryption[0].enabled && t.server_side_encryption[0].kms_key_arn == var.kms_key_arns.dynamodb && t.point_in_time_recovery[0].enabled && t.deletion_protection_enabled])
    error_message = "DynamoDB tables are KMS-encrypted with PITR and deletion protection"
  }

  assert {
    condition     = aws_dynamodb_table.this["inbox"].ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.this["inbox"].ttl[0].enabled && length(aws_dynamodb_table.this["audit"].ttl) == 0
    error_message = "inbox entries expire by TTL, audit records never"
  }

  assert {
    condition     = alltrue([for k, c in aws_s3_bucket_server_side_encryption_configuration.this : one(c.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" && one(c.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == (k == "console" ? var.console_kms_key_arn : var.kms_key_arns[k])])
    error_message = "documents and console buckets use SSE-KMS with their own keys"
  }

  assert {
    condition     = alltrue([for b in concat(values(aws_s3_bucket_public_access_block.this), [aws_s3_bucket_public_access_block.logs]) : b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "public access is blocked on every bucket"
  }

  assert {
    condition     = alltrue([for v in concat(values(aws_s3_bucket_versioning.this), [aws_s3_bucket_versioning.logs]) : v.versioning_configuration[0].status == "Enabled"])
    error_message = "every bucket is versioned"
  }

  assert {
    condition = alltrue([
      for p in concat(values(aws_s3_bucket_policy.this), [aws_s3_bucket_policy.logs]) :
      anytrue([for s in jsondecode(p.policy).Statement : s.Effect == "Deny" && s.Action == "s3:*" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])
    ])
    error_message = "every bucket policy refuses requests without TLS"
  }

  assert {
    condition     = length(aws_s3_bucket_replication_configuration.this) == 0 && length(aws_db_instance_automated_backups_replication.dr) == 0 && length(aws_dynamodb_table.this["audit"].replica) == 0
    error_message = "without DR nothing is replicated"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.postgres["0"].referenced_security_group_id == "sg-cluster" && aws_vpc_security_group_ingress_rule.postgres["0"].from_port == 5432 && length(aws_vpc_security_group_ingress_rule.postgres) == 1
    error_message = "only the cluster reaches PostgreSQL"
  }
}

run "prod_is_multi_az_and_replicated" {
  command = plan

  variables {
    postgres = {
      instance_class        = "db.r6g.large"
      allocated_storage     = 100
      max_allocated_storage = 500
      multi_az              = true
      backup_retention_days = 35
    }
    redis = {
      node_type          = "cache.r7g.large"
      num_cache_clusters = 3
    }
    console_distribution_arn = "arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE"
    dr_region                = "eu-central-1"
    dr_kms_key_arns = {
      rds       = "arn:aws:kms:eu-central-1:111111111111:key/rds"
      dynamodb  = "arn:aws:kms:eu-central-1:111111111111:key/dynamodb"
      documents = "arn:aws:kms:eu-central-1:111111111111:key/documents"
      console   = "arn:aws:kms:eu-central-1:111111111111:key/console"
    }
  }

  assert {
    condition     = aws_db_instance.postgres.multi_az && aws_elasticache_replication_group.redis.multi_az_enabled && aws_elasticache_replication_group.redis.automatic_failover_enabled
    error_message = "prod runs PostgreSQL and Redis across zones"
  }

  assert {
    condition     = aws_db_instance_automated_backups_replication.dr[0].kms_key_id == var.dr_kms_key_arns.rds && aws_db_instance_automated_backups_replication.dr[0].retention_period == 35
    error_message = "PostgreSQL backups are replicated to the DR region, encrypted there"
  }

  assert {
    condition     = alltrue([for t in aws_dynamodb_table.this : one(t.replica).region_name == "eu-central-1" && one(t.replica).kms_key_arn == var.dr_kms_key_arns.dynamodb && one(t.replica).point_in_time_recovery])
    error_message = "tables have an encrypted replica with PITR in the DR region"
  }

  assert {
    condition     = alltrue([for k, r in aws_s3_bucket_replication_configuration.this : r.rule[0].destination[0].encryption_configuration[0].replica_kms_key_id == var.dr_kms_key_arns[k] && r.rule[0].source_selection_criteria[0].sse_kms_encrypted_objects[0].status == "Enabled" && r.rule[0].destination[0].replication_time[0].status == "Enabled"])
    error_message = "both buckets replicate (KMS objects included) to replicas encrypted with the DR keys"
  }

  assert {
    condition     = alltrue([for c in aws_s3_bucket_server_side_encryption_configuration.replica : one(c.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"]) && alltrue([for b in aws_s3_bucket_public_access_block.replica : b.block_public_acls && b.restrict_public_buckets])
    error_message = "replicas are encrypted and private too"
  }

  assert {
    condition     = jsondecode(aws_s3_bucket_policy.this["console"].policy).Statement[2].Condition.StringEquals["aws:SourceArn"] == var.console_distribution_arn && jsondecode(aws_s3_bucket_policy.this["console"].policy).Statement[2].Action == "s3:GetObject" && length(jsondecode(aws_s3_bucket_policy.this["documents"].policy).Statement) == 2
    error_message = "only the console's distribution may read the console bucket; nobody gets the documents bucket by policy"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    account_id                = "acct"
    database_subnet_ids       = ["subnet-a"]
    client_security_group_ids = []
    postgres = {
      engine_version        = "9.6"
      instance_class        = "m5.large"
      allocated_storage     = 10
      max_allocated_storage = 5
      multi_az              = true
      backup_retention_days = 0
    }
    redis = {
      node_type          = "r6g.large"
      num_cache_clusters = 9
    }
    noncurrent_version_days = 0
    access_log_days         = 7
    dr_region               = "mars"
    dr_kms_key_arns         = { rds = "x", dynamodb = "x", documents = "x", console = "x" }
    console_kms_key_arn     = "console"
  }

  expect_failures = [var.account_id, var.database_subnet_ids, var.client_security_group_ids, var.postgres, var.redis, var.noncurrent_version_days, var.access_log_days, var.dr_region, var.dr_kms_key_arns, var.console_kms_key_arn]
}
