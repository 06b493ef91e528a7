# ECR with immutable tags, scan on push and KMS; the pipeline's stages in
# order with a manual approval before production; deploy projects with
# least-privilege roles.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::333333333333:role/mock" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::cloudsec-prod-pipeline-artifacts-333333333333" }
  }
  mock_resource "aws_codestarconnections_connection" {
    defaults = { arn = "arn:aws:codestar-connections:eu-west-1:333333333333:connection/mock" }
  }
  mock_resource "aws_codebuild_project" {
    defaults = { arn = "arn:aws:codebuild:eu-west-1:333333333333:project/mock" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:333333333333:log-group:/aws/codebuild/mock" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = { arn = "arn:aws:ecr:eu-west-1:333333333333:repository/cloudsec", repository_url = "333333333333.dkr.ecr.eu-west-1.amazonaws.com/cloudsec" }
  }
}

variables {
  name             = "cloudsec-prod"
  environment      = "prod"
  account_id       = "333333333333"
  kms_key_arn      = "arn:aws:kms:eu-west-1:333333333333:key/cicd"
  logs_kms_key_arn = "arn:aws:kms:eu-west-1:333333333333:key/logs"
  deploy = {
    enabled      = true
    vpc_id       = "vpc-1"
    subnet_ids   = ["subnet-a", "subnet-b"]
    cluster_name = "cloudsec-prod"
    state_bucket = "cloudsec-tfstate-333333333333"
    state_key    = "cloudsec/prod/terraform.tfstate"
  }
}

run "pipeline_account" {
  command = plan

  variables {
    ecr = {
      enabled             = true
      pull_account_ids    = ["111111111111", "222222222222"]
      replication_regions = ["eu-central-1"]
    }
    pipeline = {
      enabled           = true
      repository        = "example/cloudsec"
      access_log_bucket = "cloudsec-prod-access-logs-333333333333"
      staging = {
        account_id      = "222222222222"
        action_role_arn = "arn:aws:iam::222222222222:role/cloudsec-staging-pipeline-action"
        project_name    = "cloudsec-staging-deploy"
      }
    }
  }

  assert {
    condition     = aws_ecr_repository.this[0].image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.this[0].image_scanning_configuration[0].scan_on_push && aws_ecr_repository.this[0].encryption_configuration[0].encryption_type == "KMS" && aws_ecr_repository.this[0].encryption_configuration[0].kms_key == var.kms_key_arn
    error_message = "ECR: immutable tags, scan on push, KMS"
  }

  assert {
    condition     = [for s in aws_codepipeline.this[0].stage : s.name] == ["Source", "Test", "Image", "Staging", "Approval", "Production"]
    error_message = "source -> test -> image -> staging -> approval -> production"
  }

  assert {
    condition     = aws_codepipeline.this[0].stage[4].action[0].provider == "Manual" && aws_codepipeline.this[0].stage[3].action[0].role_arn == var.pipeline.staging.action_role_arn
    error_message = "a person approves production; staging runs in its own account"
  }

  assert {
    condition     = alltrue([for p in aws_codebuild_project.build : p.source[0].buildspec == "buildspec.yml" && !p.environment[0].privileged_mode && p.encryption_key == var.kms_key_arn]) && toset(keys(aws_codebuild_project.build)) == toset(["test", "image"])
    error_message = "test and image run buildspec.yml at the repository root, unprivileged, with encrypted output"
  }

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.artifacts[0].rule).apply_server_side_encryption_by_default[0].kms_master_key_id == var.kms_key_arn && aws_s3_bucket_public_access_block.artifacts[0].restrict_public_buckets
    error_message = "artifacts are encrypted and private"
  }

  assert {
    condition     = one(aws_codepipeline.this[0].artifact_store).encryption_key[0].id == var.kms_key_arn
    error_message = "the artifact store uses the cicd key"
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.build[0].policy).Statement :
      s.Resource != "*" || flatten([s.Action]) == ["ecr:GetAuthorizationToken"]
    ])
    error_message = "the build role's only Resource * is ecr:GetAuthorizationToken"
  }
}

run "deploy_only_environment" {
  command = plan

  assert {
    condition     = length(aws_codepipeline.this) == 0 && length(aws_ecr_repository.this) == 0 && length(aws_codebuild_project.deploy) == 1
    error_message = "an environment without the pipeline has just its deploy project"
  }

  assert {
    condition     = aws_codebuild_project.deploy[0].vpc_config[0].vpc_id == "vpc-1" && !aws_codebuild_project.deploy[0].environment[0].privileged_mode
    error_message = "the deploy project runs inside the VPC (the API endpoint is private)"
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.deploy[0].policy).Statement : s.Resource if s.Sid == "ReadTerraformOutputs"]) == "arn:aws:s3:::cloudsec-tfstate-333333333333/cloudsec/prod/terraform.tfstate"
    error_message = "the deploy role reads exactly its environment's state object"
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.deploy[0].policy).Statement :
      s.Resource != "*" || s.Sid == "VpcNetworkInterfaces"
    ])
    error_message = "only the VPC interface calls CodeBuild needs have Resource *"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    environment = "qa"
    account_id  = "3"
    ecr         = { enabled = true, repository_name = "Not Valid", pull_account_ids = ["x"] }
    pipeline    = { enabled = true }
    deploy      = { enabled = true, helm_version = "latest", pipeline_role_arn = "arn:aws:iam::333333333333:role/p" }
  }

  expect_failures = [var.environment, var.account_id, var.ecr, var.pipeline, var.deploy]
}

run "cross_account_action_role" {
  command = plan

  variables {
    environment = "staging"
    deploy = {
      enabled             = true
      vpc_id              = "vpc-1"
      subnet_ids          = ["subnet-a"]
      cluster_name        = "cloudsec-staging"
      state_bucket        = "cloudsec-tfstate-222222222222"
      state_key           = "cloudsec/staging/terraform.tfstate"
      pipeline_role_arn   = "arn:aws:iam::333333333333:role/cloudsec-prod-codepipeline"
      artifact_bucket_arn = "arn:aws:s3:::cloudsec-prod-pipeline-artifacts-333333333333"
      artifact_key_arn    = "arn:aws:kms:eu-west-1:333333333333:key/cicd"
    }
  }

  assert {
    condition     = jsondecode(aws_iam_role.action[0].assume_role_policy).Statement[0].Condition.ArnEquals["aws:PrincipalArn"] == "arn:aws:iam::333333333333:role/cloudsec-prod-codepipeline" && jsondecode(aws_iam_role.action[0].assume_role_policy).Statement[0].Principal.AWS == "arn:aws:iam::333333333333:root"
    error_message = "only the pipeline role of the pipeline account may start this environment's deploy"
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.action[0].policy).Statement : s.Action if s.Sid == "RunTheDeploy"]) == ["codebuild:BatchGetBuilds", "codebuild:StartBuild"]
    error_message = "the action role can only run the deploy project"
  }
}
