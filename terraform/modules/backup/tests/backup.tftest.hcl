# Encrypted vaults, daily backups, copies to the DR region, vault lock.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/cloudsec-test-backup" }
  }
}

mock_provider "aws" {
  alias           = "dr"
  override_during = plan

  mock_resource "aws_backup_vault" {
    defaults = { arn = "arn:aws:backup:eu-central-1:111111111111:backup-vault:cloudsec-test-dr" }
  }
}

variables {
  name          = "cloudsec-test"
  kms_key_arn   = "arn:aws:kms:eu-west-1:111111111111:key/backup"
  resource_arns = ["arn:aws:rds:eu-west-1:111111111111:db:cloudsec-test-postgres", "arn:aws:dynamodb:eu-west-1:111111111111:table/cloudsec-test-audit-log"]
}

run "daily_encrypted_no_copies" {
  command = plan

  assert {
    condition     = aws_backup_vault.this.kms_key_arn == var.kms_key_arn && length(aws_backup_vault.dr) == 0
    error_message = "the vault is encrypted with the backup key; no DR vault without DR"
  }

  assert {
    condition     = one(aws_backup_plan.this.rule).schedule == "cron(0 3 * * ? *)" && one(aws_backup_plan.this.rule).lifecycle[0].delete_after == 35 && length(one(aws_backup_plan.this.rule).copy_action) == 0
    error_message = "a daily rule kept 35 days"
  }

  assert {
    condition     = aws_backup_selection.this.resources == toset(var.resource_arns)
    error_message = "the databases are selected"
  }
}

run "copies_to_dr_and_lock" {
  command = plan

  variables {
    dr         = { kms_key_arn = "arn:aws:kms:eu-central-1:111111111111:key/backup", retention_days = 90 }
    vault_lock = { min_retention_days = 7, max_retention_days = 365 }
  }

  assert {
    condition     = aws_backup_vault.dr[0].kms_key_arn == var.dr.kms_key_arn && one(one(aws_backup_plan.this.rule).copy_action).destination_vault_arn == "arn:aws:backup:eu-central-1:111111111111:backup-vault:cloudsec-test-dr" && one(one(aws_backup_plan.this.rule).copy_action).lifecycle[0].delete_after == 90
    error_message = "every recovery point is copied to the encrypted DR vault"
  }

  assert {
    condition     = aws_backup_vault_lock_configuration.this[0].min_retention_days == 7
    error_message = "vault lock is on"
  }
}

run "bad_variables_are_refused" {
  command = plan

  variables {
    kms_key_arn    = "backup"
    resource_arns  = []
    schedule       = "daily"
    retention_days = 1
    dr             = { kms_key_arn = "nope" }
    vault_lock     = { min_retention_days = 30, max_retention_days = 7, changeable_for_days = 1 }
  }

  expect_failures = [var.kms_key_arn, var.resource_arns, var.schedule, var.retention_days, var.dr, var.vault_lock]
}
