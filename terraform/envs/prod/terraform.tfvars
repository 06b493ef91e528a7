# prod. Account ids, zone and domain are this repository's examples: replace
# them with your organisation's before the first apply (docs/aws.md).
account_id          = "333333333333"
cidr                = "10.30.0.0/16"
dr_cidr             = "10.130.0.0/16"
owner               = "platform-team"
domain_name         = "cloudsec.example.com"
hosted_zone_id      = "Z0000000000000000PRD1"
admin_role_arn      = "arn:aws:iam::333333333333:role/platform-admin"
pipeline_account_id = "333333333333"
alert_emails        = ["platform-oncall@example.com"]
repository          = "example/cloudsec"
pull_account_ids    = ["111111111111", "222222222222"]
staging = {
  account_id      = "222222222222"
  action_role_arn = "arn:aws:iam::222222222222:role/cloudsec-staging-pipeline-action"
  project_name    = "cloudsec-staging-deploy"
}
