# Vault policy for the mailer: the one reader of confirmation and reset
# codes. It opens the codes the auth service sealed under the transit key
# `cloudsec-mailer` (auth.confirmation.mailer_key) and can do nothing else
# with that key: no data keys of its own, no rotation, no export.

path "transit/decrypt/cloudsec-mailer" {
  capabilities = ["update"]
}

# Keep its own token alive (also in Vault's default policy, which roles
# may detach with token_no_default_policy).
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
