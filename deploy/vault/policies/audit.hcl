# Vault policy for the audit service (cloudsec-audit), the event subscriber
# that keeps the append-only audit log.
#
# Least privilege: its own KV secrets (e.g. the key of its tamper-evident
# hash chain), dynamic database credentials for its own role,
# certificates for its own SPIFFE id, and signing chain heads with the
# transit key cloudsec-audit-signing (`[audit.signing] backend =
# "transit"`: sign, verify and read its metadata; it can neither create,
# rotate nor export it). It never sees document data keys.
# docs/security.md explains the mounts, roles and paths.

path "secret/data/cloudsec/audit" {
  capabilities = ["read"]
}

path "transit/sign/cloudsec-audit-signing" {
  capabilities = ["update"]
}
path "transit/verify/cloudsec-audit-signing" {
  capabilities = ["update"]
}
path "transit/keys/cloudsec-audit-signing" {
  capabilities = ["read"]
}

path "database/creds/audit" {
  capabilities = ["read"]
}
# The embedded event bus's database, shared by every component (the
# chart's `[database_credentials.events]`).
path "database/creds/events" {
  capabilities = ["read"]
}

path "pki/issue/mesh-audit" {
  capabilities = ["update"]
}
path "pki/cert/ca_chain" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
