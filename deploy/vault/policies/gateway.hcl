# Vault policy for the edge gateway (cloudsec-gateway).
#
# Least privilege: its own KV secrets (e.g. the Redis URL, TLS key material
# for the public listener) and certificates for its own SPIFFE id. The
# gateway holds no data keys and no database credentials.
# docs/security.md explains the mounts, roles and paths.

path "secret/data/cloudsec/gateway" {
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
