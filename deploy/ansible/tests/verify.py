#!/usr/bin/env python3
"""Checks what site.yml configured, against the live Vault (OpenBao) and
PostgreSQL, the way the platform will use it:

- the audit device, the mounts and their types (KV v2, transit, PKI root
  and intermediate, database, Kubernetes auth);
- the transit keys: type, not exportable, not deletable, and a data key
  can be made;
- PKI: the intermediate chains to the root; each workload role issues its
  own DNS name and SPIFFE id and refuses another's; the single-process
  role issues every workload of the namespace;
- the database engine: credentials of each role (auth, documents, audit
  and events, the embedded bus's) log in to their database
  and create tables owned by the component's owner role; revoking the
  lease drops the login;
- the policies are exactly deploy/vault/policies/*.hcl and grant what the
  services need (a sample of paths, allowed and denied);
- the Kubernetes auth configuration and a role per component bound to its
  ServiceAccount with its policy.

    verify.py --policies DIR --prefix PFX --namespace NS [--cleanup]

VAULT_ADDR and VAULT_TOKEN name the server; the local PostgreSQL (trust,
user postgres) the database. --cleanup revokes the leases and drops what
the postgres play made. Exits 1 listing every failure.
"""

import argparse
import glob
import os
import sys

import hvac
import psycopg2
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

failures = []


def check(ok, what):
    print(f"verify: {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)
    return ok


def get(client, path):
    return client.adapter.get(f"/v1/{path}")


def post(client, path, data=None):
    return client.adapter.post(f"/v1/{path}", json=data or {})


def pems(text):
    blocks, cur = [], []
    for line in text.splitlines():
        cur.append(line)
        if line.startswith("-----END CERTIFICATE"):
            blocks.append("\n".join(cur) + "\n")
            cur = []
    return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]


def pg(database="postgres", user="postgres", password=None):
    return psycopg2.connect(host="127.0.0.1", port=5432, dbname=database, user=user, password=password)


def verify(client, args):
    ns, pfx = args.namespace, args.prefix
    components = ["auth", "documents", "audit", "gateway"]  # the mesh workloads
    vault_roles = components + ["mailer"]
    databases = ["auth", "documents", "audit", "events"]  # events: the embedded bus's

    audit = get(client, "sys/audit")
    audit = audit.get("data", audit)
    check(any(v.get("type") == "file" for v in audit.values() if isinstance(v, dict)), "a file audit device is on")

    mounts = get(client, "sys/mounts")
    mounts = mounts.get("data", mounts)
    want = {"secret/": "kv", "transit/": "transit", "pki-root/": "pki", "pki/": "pki", "database/": "database"}
    for path, kind in want.items():
        check(mounts.get(path, {}).get("type") == kind, f"{path} is a {kind} engine")
    check(str((mounts.get("secret/", {}).get("options") or {}).get("version")) == "2", "secret/ is KV version 2")
    auths = get(client, "sys/auth")
    auths = auths.get("data", auths)
    check(auths.get("kubernetes/", {}).get("type") == "kubernetes", "kubernetes/ auth is enabled")

    for key in ["docs-public", "docs-internal", "docs-confidential", "docs-restricted", "auth-signing-keys", "cloudsec-mailer"]:
        k = get(client, f"transit/keys/{key}")["data"]
        check(k["type"] == "aes256-gcm96" and not k["exportable"] and not k["deletion_allowed"], f"transit key {key}: aes256-gcm96, not exportable, not deletable")
    k = get(client, "transit/keys/cloudsec-audit-signing")["data"]
    check(k["type"] == "ed25519" and not k["exportable"] and not k["deletion_allowed"], "transit key cloudsec-audit-signing: ed25519, not exportable, not deletable")
    dk = post(client, "transit/datakey/plaintext/docs-public")["data"]
    check(dk["ciphertext"].startswith("vault:v1:") and len(dk["plaintext"]) > 0, "transit makes a data key under docs-public")

    chain_data = get(client, "pki/cert/ca_chain")["data"]
    chain = pems(chain_data.get("ca_chain") or chain_data["certificate"])
    root = pems(get(client, "pki-root/cert/ca")["data"]["certificate"])[0]
    check(len(chain) >= 2 and chain[-1].subject == root.subject and chain[0].issuer == root.subject, "pki/'s chain is intermediate then root")
    for sa in components:
        leaf = post(client, f"pki/issue/mesh-{sa}", {
            "common_name": f"{sa}.{ns}.svc",
            "uri_sans": f"spiffe://cloudsec.local/ns/{ns}/sa/{sa}",
            "ttl": "10m",
        })["data"]
        cert = pems(leaf["certificate"])[0]
        uris = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.UniformResourceIdentifier)
        check(uris == [f"spiffe://cloudsec.local/ns/{ns}/sa/{sa}"] and cert.issuer == chain[0].subject, f"mesh-{sa} issues {sa}'s SPIFFE certificate from the intermediate")
        other = "documents" if sa != "documents" else "auth"
        try:
            post(client, f"pki/issue/mesh-{sa}", {"common_name": f"{other}.{ns}.svc", "uri_sans": f"spiffe://cloudsec.local/ns/{ns}/sa/{other}"})
            check(False, f"mesh-{sa} refuses {other}'s identity")
        except hvac.exceptions.InvalidRequest:
            check(True, f"mesh-{sa} refuses {other}'s identity")
    try:
        post(client, "pki/issue/mesh-documents", {"common_name": f"documents.{ns}.svc", "uri_sans": f"spiffe://evil.example/ns/{ns}/sa/documents"})
        check(False, "mesh-documents refuses another trust domain")
    except hvac.exceptions.InvalidRequest:
        check(True, "mesh-documents refuses another trust domain")
    try:
        post(client, "pki/issue/mesh-documents", {"common_name": f"documents.{ns}.svc", "uri_sans": f"spiffe://cloudsec.local/ns/{ns}-other/sa/documents"})
        check(False, "mesh-documents refuses another namespace")
    except hvac.exceptions.InvalidRequest:
        check(True, "mesh-documents refuses another namespace")
    if args.single_process_role:
        leaf = post(client, "pki/issue/mesh", {"common_name": f"gateway.{ns}.svc", "uri_sans": f"spiffe://cloudsec.local/ns/{ns}/sa/gateway", "ttl": "10m"})["data"]
        check("BEGIN CERTIFICATE" in leaf["certificate"], "the single-process role mesh issues any workload of the namespace")
        got = get(client, "sys/policies/acl/cloudsec-up")["data"]["policy"]
        check('path "pki/issue/mesh"' in got, "policy cloudsec-up grants the single-process role")

    leases = []
    for d in databases:
        creds = get(client, f"database/creds/{d}")
        user, password = creds["data"]["username"], creds["data"]["password"]
        leases.append((creds["lease_id"], user))
        conn = pg(f"{pfx}{d}", user, password)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE verify_owner (x int)")
            cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'verify_owner'")
            owner = cur.fetchone()[0]
            cur.execute("DROP TABLE verify_owner")
        conn.close()
        check(owner == f"{pfx}{d}_owner", f"database/creds/{d} logs in to {pfx}{d} and its tables belong to {pfx}{d}_owner")
    lease, user = leases[0]
    post(client, "sys/leases/revoke", {"lease_id": lease})
    admin = pg()
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (user,))
        gone = cur.fetchone()[0] == 0
    admin.close()
    check(gone, "revoking a lease drops its login")

    for path in sorted(glob.glob(os.path.join(args.policies, "*.hcl"))):
        name = os.path.basename(path)[:-4]
        got = get(client, f"sys/policies/acl/{name}")["data"]["policy"]
        check(got.strip() == open(path).read().strip(), f"policy {name} is deploy/vault/policies/{name}.hcl")
    samples = [
        ("documents", "transit/datakey/plaintext/docs-restricted", True),
        ("documents", "transit/keys/docs-public/rotate", False),
        ("documents", "database/creds/documents", True),
        ("documents", "database/creds/auth", False),
        ("documents", "pki/issue/mesh-documents", True),
        ("documents", "pki/issue/mesh-auth", False),
        ("auth", "transit/datakey/plaintext/auth-signing-keys", True),
        ("auth", "secret/data/cloudsec/auth/signing-keys", True),
        ("gateway", "database/creds/documents", False),
        ("audit", "database/creds/audit", True),
        ("gateway", "database/creds/events", True),
        ("auth", "database/creds/events", True),
        ("auth", "transit/datakey/plaintext/cloudsec-mailer", True),
        ("auth", "transit/decrypt/cloudsec-mailer", False),
        ("mailer", "transit/decrypt/cloudsec-mailer", True),
        ("mailer", "transit/datakey/plaintext/cloudsec-mailer", False),
        ("audit", "transit/sign/cloudsec-audit-signing", True),
        ("audit", "transit/keys/cloudsec-audit-signing/rotate", False),
        ("auth", "transit/sign/cloudsec-audit-signing", False),
    ]
    for policy, path, allowed in samples:
        token = post(client, "auth/token/create", {"policies": [policy], "no_default_policy": True, "ttl": "2m"})["auth"]["client_token"]
        caps = post(client, "sys/capabilities", {"token": token, "paths": [path]})
        caps = caps.get("data", caps).get(path, caps.get("capabilities", []))
        check((caps not in (["deny"], [])) == allowed, f"policy {policy} {'allows' if allowed else 'denies'} {path} ({caps})")

    cfg = get(client, "auth/kubernetes/config")["data"]
    check(cfg["kubernetes_host"] == args.kubernetes_host and "BEGIN CERTIFICATE" in cfg["kubernetes_ca_cert"], "Kubernetes auth knows the API and its CA")
    for c in vault_roles:
        role = get(client, f"auth/kubernetes/role/{c}")["data"]
        check(sorted(role["bound_service_account_names"]) == sorted([c, f"{c}-migrate"]) and role["bound_service_account_namespaces"] == [ns] and role["token_policies"] == [c],
              f"Kubernetes role {c}: ServiceAccounts {c} and {c}-migrate (the chart's migration Job) in {ns}, policy {c}")
    return leases


def cleanup(client, args):
    try:
        post(client, "sys/leases/revoke-prefix/database/creds")
    except Exception as e:  # noqa: BLE001 - clean up as much as possible
        print(f"verify: cleanup: {e}")
    admin = pg()
    admin.autocommit = True
    with admin.cursor() as cur:
        for d in ["auth", "documents", "audit", "events"]:
            cur.execute(f'DROP DATABASE IF EXISTS "{args.prefix}{d}" WITH (FORCE)')
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (args.prefix.replace("_", "\\_") + "%",))
        for (role,) in cur.fetchall():
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    admin.close()
    print(f"verify: dropped the {args.prefix}* databases and roles")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policies", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--kubernetes-host", default="https://127.0.0.1:6443")
    p.add_argument("--single-process-role", action="store_true")
    p.add_argument("--cleanup", action="store_true", help="only revoke leases and drop the test's databases and roles")
    args = p.parse_args()
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    if args.cleanup:
        cleanup(client, args)
        return 0
    verify(client, args)
    if failures:
        print(f"verify: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("verify: Vault is configured as the platform expects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
