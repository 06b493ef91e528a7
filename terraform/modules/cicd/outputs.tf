output "repository_url" {
  description = "The ECR repository URL (`<account>.dkr.ecr.<region>.amazonaws.com/cloudsec`), or null where this instance has none."
  value       = local.repository_url
}

output "repository_arn" {
  description = "The ECR repository's ARN, or null."
  value       = var.ecr.enabled ? aws_ecr_repository.this[0].arn : null
}

output "pipeline_name" {
  description = "The delivery pipeline, or null."
  value       = local.pipeline_enabled ? aws_codepipeline.this[0].name : null
}

output "pipeline_role_arn" {
  description = "The pipeline's role: other environments' action roles trust it."
  value       = local.pipeline_enabled ? aws_iam_role.pipeline[0].arn : null
}

output "artifact_bucket_arn" {
  description = "The pipeline's artifact bucket, or null."
  value       = local.pipeline_enabled ? aws_s3_bucket.artifacts[0].arn : null
}

output "connection_arn" {
  description = "The CodeStar connection to GitHub (finish its handshake once in the console), or null."
  value       = local.pipeline_enabled ? aws_codestarconnections_connection.github[0].arn : null
}

output "deploy_project_name" {
  description = "This environment's deploy project, or null."
  value       = local.deploy_enabled ? aws_codebuild_project.deploy[0].name : null
}

output "deploy_role_arn" {
  description = "The deploy project's role: the cluster admits it through an access entry limited to the chart's namespace."
  value       = local.deploy_enabled ? aws_iam_role.deploy[0].arn : null
}

output "action_role_arn" {
  description = "The role the pipeline account assumes to start this environment's deploy, or null."
  value       = length(aws_iam_role.action) > 0 ? aws_iam_role.action[0].arn : null
}
