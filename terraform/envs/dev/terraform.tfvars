# dev. Account ids, zone and domain are this repository's examples: replace
# them with your organisation's before the first apply (docs/aws.md).
account_id          = "111111111111"
cidr                = "10.10.0.0/16"
owner               = "platform-team"
domain_name         = "dev.cloudsec.example.com"
hosted_zone_id      = "Z0000000000000000DEV1"
admin_role_arn      = "arn:aws:iam::111111111111:role/platform-admin"
pipeline_account_id = "333333333333"
image_repository    = "333333333333.dkr.ecr.eu-west-1.amazonaws.com/cloudsec"
alert_emails        = []
