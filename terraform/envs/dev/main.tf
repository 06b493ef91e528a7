# dev: one NAT gateway, small nodes, single-AZ database and cache, short
# log retention, no DR region. Sizes are the locals below; every module is
# the same as in staging and prod.

locals {
  environment = "dev"
  name        = "cloudsec-${local.environment}"
  namespace   = "cloudsec"
  state_key   = "cloudsec/${local.environment}/terraform.tfstate"

  sizes = {
    single_nat_gateway = true
    node_groups = {
      general = { instance_types = ["m6i.large", "m5.large"], capacity_type = "SPOT", min_size = 1, max_size = 3, desired_size = 2 }
    }
    postgres        = { instance_class = "db.t4g.medium", allocated_storage = 20, max_allocated_storage = 100, multi_az = false, backup_retention_days = 7, deletion_protection = false }
    redis           = { node_type = "cache.t4g.small", num_cache_clusters = 1 }
    log_days        = 365
    app_log_days    = 14
    key_window_days = 7
    backup_days     = 7
    throttling      = { rate_limit = 100, burst_limit = 200 }
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
    aws.dr = aws
  }

  name                     = local.name
  account_id               = var.account_id
  key_deletion_window_days = local.sizes.key_window_days
  kubernetes_namespace     = local.namespace
  oidc_provider_arn        = module.eks.oidc_provider_arn
  oidc_issuer              = module.eks.oidc_issuer
  console_distribution_arn = module.edge.distribution_arn
  cognito                  = { enabled = var.cognito_enabled, deletion_protection = false }
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
    aws.dr = aws
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
  dynamodb_deletion_protection = false
  log_retention_days           = local.sizes.log_days
  console_distribution_arn     = module.edge.distribution_arn
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

  name               = local.name
  account_id         = var.account_id
  domain_name        = var.domain_name
  hosted_zone_id     = var.hosted_zone_id
  primary            = { vpc_id = module.network.vpc_id, vpc_cidr = module.network.vpc_cidr, subnet_ids = module.network.private_subnet_ids }
  console_bucket     = module.data.buckets.console
  throttling         = local.sizes.throttling
  logs_kms_key_arn   = module.security.kms_key_arns.logs
  log_retention_days = local.sizes.log_days
  access_log_bucket  = module.data.access_log_bucket
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
    aws.dr = aws
  }

  name           = local.name
  kms_key_arn    = module.security.kms_key_arns.backup
  resource_arns  = module.data.backup_resource_arns
  retention_days = local.sizes.backup_days
}
