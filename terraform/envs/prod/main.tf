# prod: NAT per zone, Multi-AZ PostgreSQL and Redis, the longest retentions,
# backups under vault lock, and the DR region (provider aws.dr): replica
# keys, buckets, tables and backups, plus a standby network, cluster, event
# bus and API entry that `api.<domain>` fails over to (docs/aws.md, DR).
# The delivery pipeline and the image repository live in this account.

locals {
  environment = "prod"
  name        = "cloudsec-${local.environment}"
  dr_name     = "${local.name}-dr"
  namespace   = "cloudsec"
  state_key   = "cloudsec/${local.environment}/terraform.tfstate"

  sizes = {
    single_nat_gateway = false
    node_groups = {
      general = { instance_types = ["m6i.xlarge"], min_size = 3, max_size = 12, desired_size = 3 }
    }
    # The standby cluster keeps one node warm; it scales out at failover.
    dr_node_groups = {
      general = { instance_types = ["m6i.xlarge"], min_size = 1, max_size = 12, desired_size = 1 }
    }
    postgres        = { instance_class = "db.r6g.large", allocated_storage = 200, max_allocated_storage = 1000, multi_az = true, backup_retention_days = 35, deletion_protection = true }
    redis           = { node_type = "cache.r7g.large", num_cache_clusters = 3 }
    log_days        = 365
    app_log_days    = 90
    key_window_days = 30
    backup_days     = 35
    throttling      = { rate_limit = 1000, burst_limit = 2000 }
  }

  # The subscribers of the event bus, as their QueueSpecs say
  # (services/audit/src/subscriber.rs, src/mailer.rs; docs/events.md).
  subscribers = {
    audit  = { queue = "audit", max_receives = 20 }
    mailer = { queue = "cloudsec-${local.environment}-mailer", event_types = ["cloudsec.events.v1.UserConfirmationRequested"] }
  }
}

module "security" {
  source = "../../modules/security"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name                     = local.name
  account_id               = var.account_id
  dr_region                = var.dr_region
  key_deletion_window_days = local.sizes.key_window_days
  kubernetes_namespace     = local.namespace
  oidc_provider_arn        = module.eks.oidc_provider_arn
  oidc_issuer              = module.eks.oidc_issuer
  console_distribution_arn = module.edge.distribution_arn
  # staging's deploy reads pipeline artifacts; dev and staging pull images
  pipeline_account_ids = distinct(concat([var.staging.account_id], var.pull_account_ids))
  cognito              = { enabled = var.cognito_enabled }
  resources = {
    documents_bucket_arn  = module.data.buckets.documents.arn
    events_topic_arn      = module.messaging.topic_arn
    events_fifo_topic_arn = module.messaging.fifo_topic_arn
    event_bus_arn         = module.messaging.event_bus_arn
    audit_queue_arn       = module.messaging.queues.audit.arn
    audit_dlq_arn         = module.messaging.queues.audit.dlq_arn
    mailer_queue_arn      = module.messaging.queues.mailer.arn
    mailer_dlq_arn        = module.messaging.queues.mailer.dlq_arn
    audit_table_arn       = module.data.tables.audit.arn
    inbox_table_arn       = module.data.tables.inbox.arn
  }
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  cidr               = var.cidr
  azs                = var.azs
  single_nat_gateway = local.sizes.single_nat_gateway
  cluster_name       = local.name
  logs_kms_key_arn   = module.security.kms_key_arns.logs
}

module "eks" {
  source = "../../modules/eks"

  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  secrets_kms_key_arn = module.security.kms_key_arns.eks
  logs_kms_key_arn    = module.security.kms_key_arns.logs
  log_retention_days  = local.sizes.log_days
  node_groups         = local.sizes.node_groups
  access_entries = {
    admins = { principal_arn = var.admin_role_arn, policy = "AmazonEKSClusterAdminPolicy" }
    deploy = { principal_arn = module.cicd.deploy_role_arn, policy = "AmazonEKSAdminPolicy", namespaces = [local.namespace] }
  }
}

module "data" {
  source = "../../modules/data"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name                         = local.name
  account_id                   = var.account_id
  vpc_id                       = module.network.vpc_id
  database_subnet_ids          = module.network.intra_subnet_ids
  client_security_group_ids    = [module.eks.cluster_security_group_id]
  kms_key_arns                 = module.security.kms_key_arns
  console_kms_key_arn          = module.security.console_kms_key_arn
  postgres                     = local.sizes.postgres
  redis                        = local.sizes.redis
  dynamodb_deletion_protection = true
  log_retention_days           = local.sizes.log_days
  console_distribution_arn     = module.edge.distribution_arn
  dr_region                    = var.dr_region
  dr_kms_key_arns = {
    rds       = module.security.dr_kms_key_arns.rds
    dynamodb  = module.security.dr_kms_key_arns.dynamodb
    documents = module.security.dr_kms_key_arns.documents
    console   = module.security.dr_console_kms_key_arn
  }
}

module "messaging" {
  source = "../../modules/messaging"

  kms_key_arn = module.security.kms_key_arns.events
  subscribers = local.subscribers
}

module "edge" {
  source = "../../modules/edge"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                    = local.name
  account_id              = var.account_id
  domain_name             = var.domain_name
  hosted_zone_id          = var.hosted_zone_id
  primary                 = { vpc_id = module.network.vpc_id, vpc_cidr = module.network.vpc_cidr, subnet_ids = module.network.private_subnet_ids }
  console_bucket          = module.data.buckets.console
  console_failover_bucket = module.data.replica_buckets.console
  throttling              = local.sizes.throttling
  shield_advanced         = var.shield_advanced
  price_class             = "PriceClass_All"
  logs_kms_key_arn        = module.security.kms_key_arns.logs
  log_retention_days      = local.sizes.log_days
  access_log_bucket       = module.data.access_log_bucket
  dr_api                  = module.api_dr.domain_target
}

module "observability" {
  source = "../../modules/observability"

  name               = local.name
  kms_key_arn        = module.security.kms_key_arns.logs
  log_retention_days = local.sizes.app_log_days
  alert_emails       = var.alert_emails
  api                = { id = module.edge.api.id, stage = module.edge.api.stage }
  rds_instance_id    = module.data.postgres.identifier
  queues             = { for k, q in module.messaging.queues : k => { name = q.name, dlq_name = q.dlq_name } }
  cluster_name       = module.eks.cluster_name
  oidc_provider_arn  = module.eks.oidc_provider_arn
  oidc_issuer        = module.eks.oidc_issuer
}

module "cicd" {
  source = "../../modules/cicd"

  name             = local.name
  environment      = local.environment
  account_id       = var.account_id
  kms_key_arn      = module.security.kms_key_arns.cicd
  logs_kms_key_arn = module.security.kms_key_arns.logs
  ecr = {
    enabled             = true
    pull_account_ids    = var.pull_account_ids
    replication_regions = [var.dr_region]
  }
  pipeline = {
    enabled           = true
    repository        = var.repository
    access_log_bucket = module.data.access_log_bucket
    staging           = var.staging
  }
  deploy = {
    enabled             = true
    vpc_id              = module.network.vpc_id
    subnet_ids          = module.network.private_subnet_ids
    cluster_name        = local.name
    namespace           = local.namespace
    state_bucket        = "cloudsec-tfstate-${var.account_id}"
    state_key           = local.state_key
    state_kms_key_alias = "alias/cloudsec-tfstate"
  }
}

module "backup" {
  source = "../../modules/backup"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name           = local.name
  kms_key_arn    = module.security.kms_key_arns.backup
  resource_arns  = module.data.backup_resource_arns
  retention_days = local.sizes.backup_days
  dr             = { kms_key_arn = module.security.dr_kms_key_arns.backup, retention_days = local.sizes.backup_days }
  vault_lock     = { min_retention_days = 7, max_retention_days = 400 }
}

# ---------------------------------------------------------------- DR region (standby)

module "network_dr" {
  source = "../../modules/network"
  providers = {
    aws = aws.dr
  }

  name               = local.dr_name
  cidr               = var.dr_cidr
  azs                = var.dr_azs
  single_nat_gateway = true
  cluster_name       = local.dr_name
  logs_kms_key_arn   = module.security.dr_kms_key_arns.logs
}

module "eks_dr" {
  source = "../../modules/eks"
  providers = {
    aws = aws.dr
  }

  name                = local.dr_name
  vpc_id              = module.network_dr.vpc_id
  subnet_ids          = module.network_dr.private_subnet_ids
  secrets_kms_key_arn = module.security.dr_kms_key_arns.eks
  logs_kms_key_arn    = module.security.dr_kms_key_arns.logs
  log_retention_days  = local.sizes.log_days
  node_groups         = local.sizes.dr_node_groups
  access_entries = {
    admins = { principal_arn = var.admin_role_arn, policy = "AmazonEKSClusterAdminPolicy" }
  }
}

# The DR region's API entry, which `api.<domain>` fails over to.
module "api_dr" {
  source = "../../modules/edge/regional_api"
  providers = {
    aws = aws.dr
  }

  name                 = local.dr_name
  api_domain_name      = "api.${var.domain_name}"
  internal_domain_name = "gateway.${var.dr_region}.internal.${var.domain_name}"
  hosted_zone_id       = var.hosted_zone_id
  vpc_id               = module.network_dr.vpc_id
  vpc_cidr             = module.network_dr.vpc_cidr
  subnet_ids           = module.network_dr.private_subnet_ids
  throttling           = local.sizes.throttling
  logs_kms_key_arn     = module.security.dr_kms_key_arns.logs
  log_retention_days   = local.sizes.log_days
  access_log_bucket    = module.data.dr_access_log_bucket
}

# The same bus, under the same names, in the DR region: after a failover
# the platform publishes and subscribes there.
module "messaging_dr" {
  source = "../../modules/messaging"
  providers = {
    aws = aws.dr
  }

  kms_key_arn = module.security.dr_kms_key_arns.events
  subscribers = local.subscribers
}

# The components' roles in the DR region: the same policy templates,
# rendered with the DR region's ARNs (replica bucket, table replicas,
# replica keys, the DR bus).
module "irsa_dr" {
  source = "../../modules/security/irsa"

  name                 = local.dr_name
  kubernetes_namespace = local.namespace
  oidc_provider_arn    = module.eks_dr.oidc_provider_arn
  oidc_issuer          = module.eks_dr.oidc_issuer
  template_vars = {
    region                = var.dr_region
    documents_bucket_arn  = module.data.replica_buckets.documents.arn
    documents_key_arn     = module.security.dr_kms_key_arns.documents
    auth_key_arn          = module.security.dr_kms_key_arns.auth
    dynamodb_key_arn      = module.security.dr_kms_key_arns.dynamodb
    events_key_arn        = module.security.dr_kms_key_arns.events
    mailer_key_arn        = module.security.dr_kms_key_arns.mailer
    audit_signing_key_arn = module.security.dr_kms_key_arns.audit_signing
    events_topic_arn      = module.messaging_dr.topic_arn
    events_fifo_topic_arn = module.messaging_dr.fifo_topic_arn
    event_bus_arn         = module.messaging_dr.event_bus_arn
    audit_queue_arn       = module.messaging_dr.queues.audit.arn
    audit_dlq_arn         = module.messaging_dr.queues.audit.dlq_arn
    mailer_queue_arn      = module.messaging_dr.queues.mailer.arn
    mailer_dlq_arn        = module.messaging_dr.queues.mailer.dlq_arn
    audit_table_arn       = "arn:aws:dynamodb:${var.dr_region}:${var.account_id}:table/${module.data.tables.audit.name}"
    inbox_table_arn       = "arn:aws:dynamodb:${var.dr_region}:${var.account_id}:table/${module.data.tables.inbox.name}"
  }
}
