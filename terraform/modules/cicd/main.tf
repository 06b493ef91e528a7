# Delivery: the ECR repository (immutable tags, scan on push, KMS), the
# CodeBuild projects that run buildspec.yml (test; image: build, push by
# digest, SBOM), the pipeline source -> test -> image -> staging -> manual
# approval -> production, and each environment's deploy project.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  pipeline_enabled = var.pipeline.enabled
  deploy_enabled   = var.deploy.enabled

  repository_url = var.ecr.enabled ? aws_ecr_repository.this[0].repository_url : null

  artifact_bucket_arn = local.pipeline_enabled ? aws_s3_bucket.artifacts[0].arn : var.deploy.artifact_bucket_arn
  artifact_key_arn    = local.pipeline_enabled ? var.kms_key_arn : var.deploy.artifact_key_arn

  build_projects = local.pipeline_enabled ? {
    test  = { description = "scripts/test (the README's test command)", timeout = 120 }
    image = { description = "the image: build, push by digest, SBOM", timeout = 90 }
  } : {}
}

resource "aws_cloudwatch_log_group" "codebuild" {
  count = local.pipeline_enabled || local.deploy_enabled ? 1 : 0

  name              = "/aws/codebuild/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}

# ---------------------------------------------------------------- ECR

resource "aws_ecr_repository" "this" {
  count = var.ecr.enabled ? 1 : 0

  name                 = var.ecr.repository_name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  count = var.ecr.enabled ? 1 : 0

  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest ${var.ecr.keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr.keep_images
      }
      action = { type = "expire" }
    }]
  })
}

resource "aws_ecr_repository_policy" "pull" {
  count = var.ecr.enabled && length(var.ecr.pull_account_ids) > 0 ? 1 : 0

  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "OtherEnvironmentsPull"
      Effect    = "Allow"
      Principal = { AWS = [for a in var.ecr.pull_account_ids : "arn:${local.partition}:iam::${a}:root"] }
      Action    = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    }]
  })
}

resource "aws_ecr_replication_configuration" "this" {
  count = var.ecr.enabled && length(var.ecr.replication_regions) > 0 ? 1 : 0

  replication_configuration {
    rule {
      dynamic "destination" {
        for_each = toset(var.ecr.replication_regions)
        content {
          region      = destination.value
          registry_id = var.account_id
        }
      }
      repository_filter {
        filter      = var.ecr.repository_name
        filter_type = "PREFIX_MATCH"
      }
    }
  }
}

# ---------------------------------------------------------------- pipeline

resource "aws_codestarconnections_connection" "github" {
  count = local.pipeline_enabled ? 1 : 0

  name          = substr("${var.name}-github", 0, 32)
  provider_type = "GitHub"
  tags          = var.tags
}

resource "aws_s3_bucket" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  #checkov:skip=CKV_AWS_144:pipeline artifacts are rebuilt from the repository; they are not replicated
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the artifact bucket
  bucket = "${var.name}-pipeline-artifacts-${var.account_id}"
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket                  = aws_s3_bucket.artifacts[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = 30
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket        = aws_s3_bucket.artifacts[0].id
  target_bucket = var.pipeline.access_log_bucket
  target_prefix = "s3/${aws_s3_bucket.artifacts[0].id}/"
}

resource "aws_s3_bucket_policy" "artifacts" {
  count = local.pipeline_enabled ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.artifacts[0].arn, "${aws_s3_bucket.artifacts[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        # The principal is the staging account, narrowed to its action role
        # by condition: a role ARN as principal would have to exist first,
        # and the staging role trusts this account's pipeline role in turn.
        Sid       = "StagingActionReadsAndWritesArtifacts"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${var.pipeline.staging.account_id}:root" }
        Action    = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
        Resource  = "${aws_s3_bucket.artifacts[0].arn}/*"
        Condition = { ArnEquals = { "aws:PrincipalArn" = var.pipeline.staging.action_role_arn } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

resource "aws_iam_role" "build" {
  count = local.pipeline_enabled ? 1 : 0

  name = "${var.name}-codebuild"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codebuild.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "build" {
  count = local.pipeline_enabled ? 1 : 0

  name = "build"
  role = aws_iam_role.build[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "Logs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.codebuild[0].arn}:*"
        },
        {
          Sid      = "Artifacts"
          Effect   = "Allow"
          Action   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
          Resource = "${aws_s3_bucket.artifacts[0].arn}/*"
        },
        {
          Sid      = "ArtifactKey"
          Effect   = "Allow"
          Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource = var.kms_key_arn
        },
        {
          Sid      = "Source"
          Effect   = "Allow"
          Action   = ["codestar-connections:UseConnection"]
          Resource = aws_codestarconnections_connection.github[0].arn
        },
      ],
      var.ecr.enabled ? [
        {
          # GetAuthorizationToken has no resource-level permissions.
          Sid      = "RegistryLogin"
          Effect   = "Allow"
          Action   = ["ecr:GetAuthorizationToken"]
          Resource = "*"
        },
        {
          Sid      = "PushImage"
          Effect   = "Allow"
          Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"]
          Resource = aws_ecr_repository.this[0].arn
        },
      ] : [],
    )
  })
}

resource "aws_codebuild_project" "build" {
  for_each = local.build_projects

  name           = "${var.name}-${each.key}"
  description    = each.value.description
  service_role   = aws_iam_role.build[0].arn
  build_timeout  = each.value.timeout
  queued_timeout = 60
  encryption_key = var.kms_key_arn

  source {
    type      = "CODEPIPELINE"
    buildspec = "buildspec.yml"
  }

  artifacts {
    type = "CODEPIPELINE"
  }

  environment {
    compute_type                = "BUILD_GENERAL1_LARGE"
    image                       = "aws/codebuild/standard:7.0"
    type                        = "LINUX_CONTAINER"
    image_pull_credentials_type = "CODEBUILD"
    privileged_mode             = false # buildah/skopeo need no Docker daemon

    environment_variable {
      name  = "CLOUDSEC_STAGE"
      value = each.key
    }
    environment_variable {
      name  = "IMAGE_REPOSITORY"
      value = coalesce(local.repository_url, "none")
    }
    environment_variable {
      name  = "CI"
      value = "true"
    }
  }

  logs_config {
    cloudwatch_logs {
      group_name = aws_cloudwatch_log_group.codebuild[0].name
      status     = "ENABLED"
    }
  }

  tags = var.tags
}

resource "aws_iam_role" "pipeline" {
  count = local.pipeline_enabled ? 1 : 0

  name = "${var.name}-codepipeline"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codepipeline.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "pipeline" {
  count = local.pipeline_enabled ? 1 : 0

  name = "pipeline"
  role = aws_iam_role.pipeline[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Artifacts"
        Effect   = "Allow"
        Action   = ["s3:GetBucketVersioning", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
        Resource = [aws_s3_bucket.artifacts[0].arn, "${aws_s3_bucket.artifacts[0].arn}/*"]
      },
      {
        Sid      = "ArtifactKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
      {
        Sid      = "Source"
        Effect   = "Allow"
        Action   = ["codestar-connections:UseConnection"]
        Resource = aws_codestarconnections_connection.github[0].arn
      },
      {
        Sid      = "RunBuilds"
        Effect   = "Allow"
        Action   = ["codebuild:BatchGetBuilds", "codebuild:StartBuild"]
        Resource = concat([for p in aws_codebuild_project.build : p.arn], [for p in aws_codebuild_project.deploy : p.arn])
      },
      {
        Sid      = "StagingAction"
        Effect   = "Allow"
        Action   = "sts:AssumeRole"
        Resource = var.pipeline.staging.action_role_arn
      },
    ]
  })
}

resource "aws_codepipeline" "this" {
  count = local.pipeline_enabled ? 1 : 0

  name          = var.name
  role_arn      = aws_iam_role.pipeline[0].arn
  pipeline_type = "V2"

  artifact_store {
    type     = "S3"
    location = aws_s3_bucket.artifacts[0].id
    encryption_key {
      type = "KMS"
      id   = var.kms_key_arn
    }
  }

  stage {
    name = "Source"
    action {
      name             = "Source"
      category         = "Source"
      owner            = "AWS"
      provider         = "CodeStarSourceConnection"
      version          = "1"
      output_artifacts = ["source"]
      namespace        = "SOURCE"
      configuration = {
        ConnectionArn        = aws_codestarconnections_connection.github[0].arn
        FullRepositoryId     = var.pipeline.repository
        BranchName           = var.pipeline.branch
        OutputArtifactFormat = "CODE_ZIP"
      }
    }
  }

  stage {
    name = "Test"
    action {
      name            = "Test"
      category        = "Test"
      owner           = "AWS"
      provider        = "CodeBuild"
      version         = "1"
      input_artifacts = ["source"]
      configuration   = { ProjectName = aws_codebuild_project.build["test"].name }
    }
  }

  stage {
    name = "Image"
    action {
      name             = "Image"
      category         = "Build"
      owner            = "AWS"
      provider         = "CodeBuild"
      version          = "1"
      input_artifacts  = ["source"]
      output_artifacts = ["image"]
      namespace        = "IMAGE"
      configuration    = { ProjectName = aws_codebuild_project.build["image"].name }
    }
  }

  stage {
    name = "Staging"
    action {
      name            = "Deploy"
      category        = "Build"
      owner           = "AWS"
      provider        = "CodeBuild"
      version         = "1"
      input_artifacts = ["source"]
      role_arn        = var.pipeline.staging.action_role_arn
      configuration = {
        ProjectName = var.pipeline.staging.project_name
        EnvironmentVariables = jsonencode([
          { name = "IMAGE_DIGEST", value = "#{IMAGE.IMAGE_DIGEST}", type = "PLAINTEXT" },
          { name = "IMAGE_REPOSITORY", value = "#{IMAGE.IMAGE_REPOSITORY}", type = "PLAINTEXT" },
        ])
      }
    }
  }

  stage {
    name = "Approval"
    action {
      name     = "Production"
      category = "Approval"
      owner    = "AWS"
      provider = "Manual"
      version  = "1"
      configuration = {
        CustomData = "Staging runs #{IMAGE.IMAGE_REPOSITORY}@#{IMAGE.IMAGE_DIGEST} (commit #{SOURCE.CommitId}). Promote the same digest to production?"
      }
    }
  }

  stage {
    name = "Production"
    action {
      name            = "Deploy"
      category        = "Build"
      owner           = "AWS"
      provider        = "CodeBuild"
      version         = "1"
      input_artifacts = ["source"]
      configuration = {
        ProjectName = aws_codebuild_project.deploy[0].name
        EnvironmentVariables = jsonencode([
          { name = "IMAGE_DIGEST", value = "#{IMAGE.IMAGE_DIGEST}", type = "PLAINTEXT" },
          { name = "IMAGE_REPOSITORY", value = "#{IMAGE.IMAGE_REPOSITORY}", type = "PLAINTEXT" },
        ])
      }
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.deploy_enabled
      error_message = "the pipeline's production stage runs this account's deploy project: enable deploy too."
    }
  }
}

# ---------------------------------------------------------------- deploy

resource "aws_security_group" "deploy" {
  count = local.deploy_enabled ? 1 : 0

  name        = "${var.name}-deploy"
  description = "The deploy project: HTTPS out (Kubernetes API, AWS APIs, Helm download)"
  vpc_id      = var.deploy.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-deploy" })
}

resource "aws_vpc_security_group_egress_rule" "deploy_https" {
  count = local.deploy_enabled ? 1 : 0

  #checkov:skip=CKV_AWS_382:the deploy build reaches the Kubernetes API, AWS APIs and get.helm.sh over HTTPS only; their addresses are not fixed
  security_group_id = aws_security_group.deploy[0].id
  description       = "HTTPS out"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
  tags              = var.tags
}

resource "aws_iam_role" "deploy" {
  count = local.deploy_enabled ? 1 : 0

  name = "${var.name}-deploy"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codebuild.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "deploy" {
  count = local.deploy_enabled ? 1 : 0

  name = "deploy"
  role = aws_iam_role.deploy[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "Logs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.codebuild[0].arn}:*"
        },
        {
          Sid      = "ReadTerraformOutputs"
          Effect   = "Allow"
          Action   = ["s3:GetObject"]
          Resource = "arn:${local.partition}:s3:::${var.deploy.state_bucket}/${var.deploy.state_key}"
        },
        {
          # The state key is known by its alias (terraform/bootstrap); KMS
          # matches the alias on the key it names.
          Sid       = "StateKey"
          Effect    = "Allow"
          Action    = ["kms:Decrypt"]
          Resource  = "arn:${local.partition}:kms:${local.region}:${var.account_id}:key/*"
          Condition = { "ForAnyValue:StringEquals" = { "kms:ResourceAliases" = var.deploy.state_kms_key_alias } }
        },
        {
          Sid      = "FindTheCluster"
          Effect   = "Allow"
          Action   = ["eks:DescribeCluster"]
          Resource = "arn:${local.partition}:eks:${local.region}:${var.account_id}:cluster/${var.deploy.cluster_name}"
        },
        {
          # CodeBuild in a VPC manages its network interfaces; these EC2
          # calls have no resource-level permissions.
          Sid      = "VpcNetworkInterfaces"
          Effect   = "Allow"
          Action   = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
          Resource = "*"
        },
        {
          Sid      = "VpcNetworkInterfacePermission"
          Effect   = "Allow"
          Action   = ["ec2:CreateNetworkInterfacePermission"]
          Resource = "arn:${local.partition}:ec2:${local.region}:${var.account_id}:network-interface/*"
          Condition = {
            StringEquals = { "ec2:AuthorizedService" = "codebuild.amazonaws.com" }
            ArnEquals    = { "ec2:Subnet" = [for s in var.deploy.subnet_ids : "arn:${local.partition}:ec2:${local.region}:${var.account_id}:subnet/${s}"] }
          }
        },
      ],
      local.artifact_bucket_arn == null ? [] : [
        {
          Sid      = "PipelineSource"
          Effect   = "Allow"
          Action   = ["s3:GetObject", "s3:GetObjectVersion"]
          Resource = "${local.artifact_bucket_arn}/*"
        },
        {
          Sid      = "PipelineArtifactKey"
          Effect   = "Allow"
          Action   = ["kms:Decrypt"]
          Resource = local.artifact_key_arn
        },
      ],
    )
  })
}

resource "aws_codebuild_project" "deploy" {
  count = local.deploy_enabled ? 1 : 0

  name           = "${var.name}-deploy"
  description    = "Render values-${var.environment}.yaml from the Terraform outputs and helm upgrade the chart"
  service_role   = aws_iam_role.deploy[0].arn
  build_timeout  = 30
  queued_timeout = 60
  encryption_key = var.kms_key_arn

  source {
    type      = "CODEPIPELINE"
    buildspec = templatefile("${path.module}/deploy-buildspec.yml.tftpl", { helm_version = var.deploy.helm_version })
  }

  artifacts {
    type = "CODEPIPELINE"
  }

  environment {
    compute_type                = "BUILD_GENERAL1_SMALL"
    image                       = "aws/codebuild/standard:7.0"
    type                        = "LINUX_CONTAINER"
    image_pull_credentials_type = "CODEBUILD"
    privileged_mode             = false

    environment_variable {
      name  = "CLOUDSEC_ENV"
      value = var.environment
    }
    environment_variable {
      name  = "CLUSTER_NAME"
      value = var.deploy.cluster_name
    }
    environment_variable {
      name  = "NAMESPACE"
      value = var.deploy.namespace
    }
    environment_variable {
      name  = "STATE_BUCKET"
      value = var.deploy.state_bucket
    }
    environment_variable {
      name  = "STATE_KEY"
      value = var.deploy.state_key
    }
  }

  vpc_config {
    vpc_id             = var.deploy.vpc_id
    subnets            = var.deploy.subnet_ids
    security_group_ids = [aws_security_group.deploy[0].id]
  }

  logs_config {
    cloudwatch_logs {
      group_name = aws_cloudwatch_log_group.codebuild[0].name
      status     = "ENABLED"
    }
  }

  tags = var.tags
}

# Another account's pipeline starts the deploy project through this role
# (CodePipeline cross-account action).
resource "aws_iam_role" "action" {
  count = local.deploy_enabled && var.deploy.pipeline_role_arn != null ? 1 : 0

  #checkov:skip=CKV_AWS_61:the principal is the pipeline's account narrowed to its pipeline role by an aws:PrincipalArn condition (a role ARN as principal must exist first, and the two accounts reference each other)

  name = "${var.name}-pipeline-action"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # The pipeline's account, narrowed to its pipeline role by condition
      # (the role is in another account and may not exist yet).
      Effect    = "Allow"
      Principal = { AWS = "arn:${local.partition}:iam::${split(":", var.deploy.pipeline_role_arn)[4]}:root" }
      Action    = "sts:AssumeRole"
      Condition = { ArnEquals = { "aws:PrincipalArn" = var.deploy.pipeline_role_arn } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "action" {
  count = length(aws_iam_role.action)

  name = "start-deploy"
  role = aws_iam_role.action[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RunTheDeploy"
        Effect   = "Allow"
        Action   = ["codebuild:BatchGetBuilds", "codebuild:StartBuild"]
        Resource = aws_codebuild_project.deploy[0].arn
      },
      {
        Sid      = "PipelineArtifacts"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
        Resource = "${var.deploy.artifact_bucket_arn}/*"
      },
      {
        Sid      = "PipelineArtifactKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = var.deploy.artifact_key_arn
      },
    ]
  })
}
