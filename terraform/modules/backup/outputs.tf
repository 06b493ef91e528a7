output "vault_name" {
  description = "The primary backup vault."
  value       = aws_backup_vault.this.name
}

output "vault_arn" {
  description = "ARN of the primary backup vault."
  value       = aws_backup_vault.this.arn
}

output "dr_vault_arn" {
  description = "ARN of the DR-region vault that receives the copies, or null."
  value       = var.dr == null ? null : aws_backup_vault.dr[0].arn
}

output "plan_id" {
  description = "The backup plan's id."
  value       = aws_backup_plan.this.id
}
