# Vault policy for the auth service (cloudsec-auth).
#
# Least privilege: its own KV secrets, its token-signing keys (kept and
# rotated in KV v2: a new version per rotation, older versions stay readable
# for the JWKS), dynamic PostgreSQL credentials for its own database role,
# and certificates for its own SPIFFE id only (the PKI role `mesh-auth`
# allows `spiffe://<trust domain>/ns/<namespace>/sa/auth` and nothing else).
# docs/security.md explains the mounts, roles and paths.

# Service configuration referenced as vault:secret/cloudsec/auth#<field>.
path "secret/data/cloudsec/auth" {
  capabilities = ["read"]
}

# Token-signing keys: read the current and older versions, write a new
# version to rotate. No delete or destroy: retiring a key is an operator's job.
path "secret/data/cloudsec/auth/signing-keys" {
  capabilities = ["create", "update", "read"]
}
path "secret/metadata/cloudsec/auth/signing-keys" {
  capabilities = ["read"]
}

# Sealing the signing keys kept in the auth database (auth.signing.
# encryption_key): a data key per private key, and opening it again.
path "transit/datakey/plaintext/auth-signing-keys" {
  capabilities = ["update"]
}
path "transit/decrypt/auth-signing-keys" {
  capabilities = ["update"]
}

# Sealing confirmation and reset codes for the mailer (auth.confirmation.
# mailer_key): a data key under the mailer's key, and nothing more. No
# decrypt: the auth service cannot open a sealed code; the mailer can.
path "transit/datakey/plaintext/cloudsec-mailer" {
  capabilities = ["update"]
}
# Reading the key's metadata, so that a missing key stops the start rather
# than the first sign-up.
path "transit/keys/cloudsec-mailer" {
  capabilities = ["read"]
}

# Dynamic database credentials.
path "database/creds/auth" {
  capabilities = ["read"]
}
# The embedded event bus's database, shared by every component (the
# chart's `[database_credentials.events]`).
path "database/creds/events" {
  capabilities = ["read"]
}

# Workload certificate for spiffe://.../sa/auth.
path "pki/issue/mesh-auth" {
  capabilities = ["update"]
}
path "pki/cert/ca_chain" {
  capabilities = ["read"]
}

# Keep its own token and leases alive (also in Vault's default policy, which
# roles may detach with token_no_default_policy).
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
