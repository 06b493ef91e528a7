# Vault policy for the edge gateway (cloudsec-gateway).
#
# Least privilege: its own KV secrets (e.g. the Redis URL, TLS key material
# for the public listener) and certificates for its own SPIFFE id. The
# gateway holds no data keys and no credentials of the services'
# databases; it reaches only the embedded event bus's.
# docs/security.md explains the mounts, roles and paths.

path "secret/data/cloudsec/gateway" {
  capabilities = ["read"]
}

# The embedded event bus's database, shared by every component (the
# chart's `[database_credentials.events]`); its only database.
path "database/creds/events" {
  capabilities = ["read"]
}

path "pki/issue/mesh-gateway" {
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
