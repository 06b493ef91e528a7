output "bucket" {
  description = "The state bucket (the envs' backend `bucket`)."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "The lock table (the envs' backend `dynamodb_table`)."
  value       = aws_dynamodb_table.lock.name
}

output "kms_key_arn" {
  description = "The state key (alias/cloudsec-tfstate; the envs' backend `kms_key_id`)."
  value       = aws_kms_key.state.arn
}
