# Vault policy for the documents service (cloudsec-documents).
#
# Least privilege: its own KV secrets; envelope encryption with the four
# classification keys (transit `docs-public`, `docs-internal`,
# `docs-confidential`, `docs-restricted`): new data keys, unwrap, rewrap to
# the latest version, wrap under another key when a document is
# reclassified, and read the key's metadata (latest version). It cannot
# rotate, configure, export, back up or delete keys: rotation and retiring
# old versions (min_decryption_version) are operator actions. Dynamic
# database credentials for its own role; certificates for its own SPIFFE id.
# docs/security.md explains the mounts, roles and paths.

path "secret/data/cloudsec/documents" {
  capabilities = ["read"]
}

path "transit/datakey/plaintext/docs-*" {
  capabilities = ["update"]
}
path "transit/decrypt/docs-*" {
  capabilities = ["update"]
}
path "transit/rewrap/docs-*" {
  capabilities = ["update"]
}
path "transit/encrypt/docs-*" {
  capabilities = ["update"]
}
# Named one by one: a `docs-*` glob here would also match
# transit/keys/docs-x/config and .../rotate.
path "transit/keys/docs-public" {
  capabilities = ["read"]
}
path "transit/keys/docs-internal" {
  capabilities = ["read"]
}
path "transit/keys/docs-confidential" {
  capabilities = ["read"]
}
path "transit/keys/docs-restricted" {
  capabilities = ["read"]
}

path "database/creds/documents" {
  capabilities = ["read"]
}
# The embedded event bus's database, shared by every component (the
# chart's `[database_credentials.events]`).
path "database/creds/events" {
  capabilities = ["read"]
}

path "pki/issue/mesh-documents" {
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
