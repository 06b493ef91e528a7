# Everything scripts/tf-to-values turns into the chart's values-<env>.yaml
# (docs/aws.md, "Terraform outputs -> chart values").

output "environment" {
  description = "The environment's name."
  value       = local.environment
}

output "aws" {
  description = "Account and region."
  value       = { account_id = var.account_id, region = var.region }
}

output "kubernetes" {
  description = "Cluster name and the chart's namespace."
  value       = { cluster_name = module.eks.cluster_name, namespace = local.namespace, cluster_endpoint = module.eks.cluster_endpoint }
}

output "image_repository" {
  description = "Where the chart pulls the image from (by digest)."
  value       = var.image_repository
}

output "role_arns" {
  description = "IRSA role per component."
  value       = module.security.role_arns
}

output "kms_key_arns" {
  description = "KMS key per purpose."
  value       = module.security.kms_key_arns
}

output "events" {
  description = "The event bus: topic, FIFO topic, bus and every subscriber's queue and DLQ."
  value = {
    topic_name      = module.messaging.topic_name
    topic_arn       = module.messaging.topic_arn
    fifo_topic_name = module.messaging.fifo_topic_name
    fifo_topic_arn  = module.messaging.fifo_topic_arn
    event_bus_name  = module.messaging.event_bus_name
    event_bus_arn   = module.messaging.event_bus_arn
    queues          = module.messaging.queues
  }
}

output "buckets" {
  description = "S3 buckets by role."
  value       = module.data.buckets
}

output "tables" {
  description = "DynamoDB tables by role."
  value       = module.data.tables
}

output "postgres" {
  description = "The PostgreSQL instance and the database per component."
  value       = merge(module.data.postgres, { databases = module.data.databases })
}

output "redis" {
  description = "The Redis endpoint (TLS) and the secret with its AUTH token."
  value       = module.data.redis
}

output "cognito" {
  description = "Cognito mode's pool and client, or null."
  value       = module.security.cognito
}

output "edge" {
  description = "Public URLs, the API and the target group the gateway pods join."
  value = {
    url             = module.edge.url
    api_url         = module.edge.api_url
    distribution_id = module.edge.distribution_id
    api             = module.edge.api
  }
}

output "observability" {
  description = "Log groups, the alert topic and the ADOT collector's role."
  value = {
    log_groups      = module.observability.log_groups
    alert_topic_arn = module.observability.alert_topic_arn
    adot_role_arn   = module.observability.adot_role_arn
  }
}

output "deploy" {
  description = "The deploy project and its role, and the action role the pipeline assumes."
  value = {
    project_name    = module.cicd.deploy_project_name
    role_arn        = module.cicd.deploy_role_arn
    action_role_arn = module.cicd.action_role_arn
  }
}
