# staging. Account ids, zone and domain are this repository's examples:
# replace them with your organisation's before the first apply (docs/aws.md).
account_id                = "222222222222"
cidr                      = "10.20.0.0/16"
owner                     = "platform-team"
domain_name               = "staging.cloudsec.example.com"
hosted_zone_id            = "Z0000000000000000STG1"
admin_role_arn            = "arn:aws:iam::222222222222:role/platform-admin"
pipeline_account_id       = "333333333333"
pipeline_artifact_key_arn = "arn:aws:kms:eu-west-1:333333333333:key/00000000-0000-0000-0000-00000000c1cd"
image_repository          = "333333333333.dkr.ecr.eu-west-1.amazonaws.com/cloudsec"
alert_emails              = ["platform-oncall@example.com"]
