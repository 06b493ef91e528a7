#!/usr/bin/env python3
"""What tflint would catch, with python-hcl2 (no tflint exists here).

Rules (each finding names its file and block):

- variables: every variable has a `type` and a non-empty `description`;
- outputs: every output has a non-empty `description`;
- providers: every module and root pins `hashicorp/aws` to `~> 5.100` and
  sets `required_version`; no provider comes from anywhere else;
- tags: in modules, every resource whose type takes `tags` (from the
  provider's own schema) sets them; every provider block of a root sets
  `default_tags` with environment, service and owner;
- module READMEs list every variable and output of their module;
- deploy/iam/*.json: valid JSON after every placeholder is replaced, only
  known placeholders, no Allow action containing `*`, no Allow on
  Resource "*" except the actions that have no resource-level permissions.

    python lint.py --root terraform --iam deploy/iam --schema schema.json [--only iam]

Exits 1 with the findings, 0 when clean.
"""

import argparse
import glob
import json
import os
import re
import sys

PROVIDER_VERSION = "~> 5.100"
DEFAULT_TAG_KEYS = {"environment", "service", "owner"}
# deploy/iam/README.md: the placeholders and the only Resource "*" actions.
PLACEHOLDERS = {
    "region",
    "documents_bucket_arn",
    "documents_key_arn",
    "auth_key_arn",
    "dynamodb_key_arn",
    "events_key_arn",
    "mailer_key_arn",
    "audit_signing_key_arn",
    "events_topic_arn",
    "events_fifo_topic_arn",
    "event_bus_arn",
    "audit_queue_arn",
    "audit_dlq_arn",
    "mailer_queue_arn",
    "mailer_dlq_arn",
    "audit_table_arn",
    "inbox_table_arn",
}
RESOURCE_WILDCARD_ACTIONS = {"sns:ListTopics"}
COMPONENTS = ["auth", "documents", "audit", "gateway", "mailer"]


def unq(value):
    """python-hcl2 8 keeps the quotes of strings and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(path):
    import hcl2  # python-hcl2, from terraform/.venv-hcl2

    with open(path) as f:
        return hcl2.load(f)


def tf_dirs(root):
    """Every directory with .tf files: modules, submodules, envs, bootstrap."""
    dirs = set()
    for path in glob.glob(os.path.join(root, "**", "*.tf"), recursive=True):
        if "/.terraform/" in path or "/tests/" in path:
            continue
        dirs.add(os.path.dirname(path))
    return sorted(dirs)


def blocks(dir_):
    """(file, parsed) for each .tf file of a directory (not overrides)."""
    out = []
    for path in sorted(glob.glob(os.path.join(dir_, "*.tf"))):
        if path.endswith("_override.tf") or os.path.basename(path).startswith("zz_"):
            continue
        out.append((path, load(path)))
    return out


def taggable_types(schema_path):
    with open(schema_path) as f:
        schema = json.load(f)
    aws = schema["provider_schemas"]["registry.terraform.io/hashicorp/aws"]
    return {
        name
        for name, rs in aws["resource_schemas"].items()
        if "tags" in rs["block"].get("attributes", {})
    }


def lint_terraform(root, schema_path, findings):
    taggable = taggable_types(schema_path)
    for d in tf_dirs(root):
        rel = os.path.relpath(d, root)
        is_module = rel.startswith("modules")
        parsed = blocks(d)
        variables, outputs = [], []
        has_terraform = False
        for path, doc in parsed:
            f = os.path.relpath(path, root)
            for var in doc.get("variable", []):
                for name, body in var.items():
                    name = unq(name)
                    variables.append(name)
                    if "type" not in body:
                        findings.append(f"{f}: variable {name} has no type")
                    if not unq(body.get("description", "")).strip():
                        findings.append(f"{f}: variable {name} has no description")
            for out in doc.get("output", []):
                for name, body in out.items():
                    name = unq(name)
                    outputs.append(name)
                    if not unq(body.get("description", "")).strip():
                        findings.append(f"{f}: output {name} has no description")
            for tf in doc.get("terraform", []):
                has_terraform = True
                if "required_version" not in tf:
                    findings.append(f"{f}: terraform block without required_version")
                providers = {}
                for rp in tf.get("required_providers", []):
                    providers.update({k: v for k, v in rp.items() if k != "__is_block__"})
                if set(providers) != {"aws"}:
                    findings.append(f"{f}: required_providers must be exactly aws, got {sorted(providers)}")
                aws = providers.get("aws", {})
                if unq(aws.get("source", "")) != "hashicorp/aws":
                    findings.append(f"{f}: aws provider source is not hashicorp/aws")
                if unq(aws.get("version", "")) != PROVIDER_VERSION:
                    findings.append(f"{f}: aws provider is not pinned to {PROVIDER_VERSION!r}")
            for res in doc.get("resource", []):
                for rtype, named in res.items():
                    rtype = unq(rtype)
                    for rname, body in named.items():
                        if is_module and rtype in taggable and "tags" not in body:
                            findings.append(f"{f}: {rtype}.{unq(rname)} takes tags but sets none")
            if not is_module:
                locals_ = {}
                for loc in doc.get("locals", []):
                    locals_.update(loc)
                for prov in doc.get("provider", []):
                    for pname, body in prov.items():
                        label = unq(pname) + (f".{unq(body['alias'])}" if "alias" in body else "")
                        tags = (body.get("default_tags") or [{}])[0].get("tags")
                        keys = tag_keys(tags, locals_)
                        if not DEFAULT_TAG_KEYS <= keys:
                            findings.append(
                                f"{f}: provider {label} default_tags lack {sorted(DEFAULT_TAG_KEYS - keys)}"
                            )
        if not has_terraform:
            findings.append(f"{rel}: no terraform block (versions.tf) pinning the provider")
        if is_module:
            readme = os.path.join(d, "README.md")
            if not os.path.exists(readme):
                findings.append(f"{rel}: no README.md")
            else:
                text = open(readme).read()
                for name in variables + outputs:
                    if f"`{name}`" not in text:
                        findings.append(f"{rel}/README.md does not list `{name}`")


def tag_keys(tags, locals_):
    """The keys of a default_tags `tags` value, following one local."""
    if isinstance(tags, dict):
        return set(tags)
    if isinstance(tags, str):
        keys = set()
        for m in re.finditer(r"local\.([a-z_0-9]+)", tags):
            value = locals_.get(m.group(1))
            if isinstance(value, dict):
                keys |= set(value)
        keys |= set(re.findall(r"([a-z_]+)\s*=", tags))
        return keys
    return set()


def lint_iam(iam_dir, findings):
    seen = set()
    for path in sorted(glob.glob(os.path.join(iam_dir, "*.json"))):
        component = os.path.basename(path)[:-5]
        seen.add(component)
        text = open(path).read()
        used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
        for name in sorted(used - PLACEHOLDERS):
            findings.append(f"{path}: unknown placeholder ${{{name}}} (deploy/iam/README.md lists them)")
        if re.search(r"%\{|\$\{[^A-Za-z]", text):
            findings.append(f"{path}: template directives other than ${{placeholder}} are not allowed")
        rendered = re.sub(
            r"\$\{([A-Za-z0-9_]+)\}",
            lambda m: "eu-west-1" if m.group(1) == "region" else f"arn:aws:placeholder:::{m.group(1)}",
            text,
        )
        try:
            doc = json.loads(rendered)
        except json.JSONDecodeError as e:
            findings.append(f"{path}: not valid JSON after substitution: {e}")
            continue
        if doc.get("Version") != "2012-10-17":
            findings.append(f"{path}: Version must be 2012-10-17")
        statements = doc.get("Statement")
        if not isinstance(statements, list) or not statements:
            findings.append(f"{path}: Statement must be a non-empty list")
            continue
        sids = [s.get("Sid") for s in statements]
        if None in sids or len(set(sids)) != len(sids):
            findings.append(f"{path}: every statement needs a unique Sid")
        for s in statements:
            sid = s.get("Sid", "?")
            for forbidden in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
                if forbidden in s:
                    findings.append(f"{path}: {sid}: {forbidden} is not allowed in an identity policy")
            if s.get("Effect") != "Allow":
                continue
            actions = s.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = s.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            for a in actions:
                if "*" in a:
                    findings.append(f"{path}: {sid}: Allow action {a!r} contains *")
                if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a):
                    findings.append(f"{path}: {sid}: {a!r} is not a service:Action name")
            if "*" in resources and set(actions) - RESOURCE_WILDCARD_ACTIONS:
                findings.append(
                    f"{path}: {sid}: Resource \"*\" for {sorted(set(actions) - RESOURCE_WILDCARD_ACTIONS)}, which have resource-level permissions"
                )
            for r in resources:
                if r != "*" and "*" in r and not r.endswith("/*"):
                    findings.append(f"{path}: {sid}: resource {r!r} has a wildcard")
                if r.endswith("/*") and not r.startswith("arn:aws:placeholder:::documents_bucket_arn"):
                    findings.append(f"{path}: {sid}: only the documents bucket's objects may be named with /*")
    for c in COMPONENTS:
        if c not in seen:
            findings.append(f"{iam_dir}: no policy for component {c}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="the terraform/ directory")
    p.add_argument("--iam", required=True, help="the deploy/iam/ directory")
    p.add_argument("--schema", help="`terraform providers schema -json` output (needed unless --only iam)")
    p.add_argument("--only", choices=["iam", "terraform"])
    args = p.parse_args()
    findings = []
    if args.only in (None, "terraform"):
        if not args.schema:
            p.error("--schema is needed to lint the Terraform code")
        lint_terraform(args.root, args.schema, findings)
    if args.only in (None, "iam"):
        lint_iam(args.iam, findings)
    for f in findings:
        print(f"lint: {f}")
    if findings:
        print(f"lint: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    print("lint: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
