#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Idempotent Vault/OpenBao configuration for the cloudsec playbook."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_state
short_description: Make a Vault (or OpenBao) object look as declared, and say whether it changed
description:
  - community.hashi_vault's vault_write always reports a change; this module reads first, compares
    the declared fields with what the server returns (durations and lists normalised), writes only
    on a difference, supports check mode and returns a diff. It uses hvac, as the collection does.
options:
  url: {description: Vault address; defaults to VAULT_ADDR., type: str}
  token: {description: Token; defaults to VAULT_TOKEN., type: str, no_log: true}
  kind:
    description:
      - C(mount) a secrets engine at I(path) (I(data.type), I(data.options), I(data.config) tuning);
      - C(auth) an auth method at I(path) (I(data.type));
      - C(policy) an ACL policy named I(path) with the text I(data.policy);
      - C(audit) an audit device at I(path) (I(data.type), I(data.options)); OpenBao accepts these
        only from its configuration file, so a missing one fails with that explanation;
      - C(object) anything else, written at I(path) and read back from I(read_path).
    type: str
    choices: [mount, auth, policy, audit, object]
    default: object
  path: {description: The mount path, policy name or API path., type: str, required: true}
  read_path: {description: Where to read the object back (default I(path))., type: str}
  data: {description: The declared fields., type: dict, default: {}}
  secret_keys: {description: Fields that are written but never compared (the server does not return them)., type: list, elements: str, default: []}
  expect: {description: What the server returns when the object is as declared, when that differs from I(data) (default I(data) less I(secret_keys))., type: dict}
  create_only: {description: Write only when the object does not exist; never update it., type: bool, default: false}
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

try:
    import hvac
    from hvac import exceptions as hvac_exceptions

    HAS_HVAC = True
except ImportError:  # pragma: no cover
    HAS_HVAC = False

DURATION = re.compile(r"^(\d+)(s|m|h|d)?$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def norm(value):
    """A comparable form: durations in seconds, comma lists as lists, sets sorted."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = DURATION.match(value.strip())
        if m:
            return int(m.group(1)) * UNITS[m.group(2)]
        if "," in value and "\n" not in value and "{{" not in value:
            return sorted(v.strip() for v in value.split(",") if v.strip())
        return value.strip()
    if isinstance(value, list):
        items = [norm(v) for v in value]
        if all(isinstance(i, (str, int)) for i in items):
            return sorted(items, key=str)
        return items
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    return value


def same(declared, current):
    """Whether every declared field has the declared value on the server."""
    if isinstance(declared, dict):
        if not isinstance(current, dict):
            return False
        return all(same(v, current.get(k)) for k, v in declared.items())
    d, c = norm(declared), norm(current)
    if isinstance(d, list) and isinstance(c, str):
        c = norm([c])
    if isinstance(c, list) and isinstance(d, str):
        d = norm([d])
    if isinstance(d, list) and c is None:
        return d == []
    if d in ("", None) and c in ("", None, [], {}):
        return True
    return d == c


def read(client, path):
    try:
        answer = client.adapter.get(f"/v1/{path}")
    except hvac_exceptions.InvalidPath:
        return None
    except hvac_exceptions.InvalidRequest as e:
        # PKI answers 400 for a CA it does not have yet.
        if "no default issuer" in str(e) or "not found" in str(e).lower():
            return None
        raise
    if answer is None:
        return None
    if hasattr(answer, "json"):
        if answer.status_code == 204:
            return None
        answer = answer.json()
    return answer.get("data", answer) if isinstance(answer, dict) else answer


def write(client, path, data, method="post"):
    call = client.adapter.post if method == "post" else client.adapter.put
    return call(f"/v1/{path}", json=data)


def ensure_mount(module, client, kind):
    path = module.params["path"].strip("/")
    data = module.params["data"]
    listing = read(client, "sys/mounts" if kind == "mount" else "sys/auth") or {}
    current = listing.get(f"{path}/")
    changes = []
    if current is None:
        changes.append(f"enable {data['type']} at {path}/")
        if not module.check_mode:
            body = {"type": data["type"]}
            for k in ("options", "description", "config"):
                if k in data:
                    body[k] = data[k]
            write(client, f"sys/{'mounts' if kind == 'mount' else 'auth'}/{path}", body)
        return changes, None, data
    if current.get("type") != data["type"]:
        module.fail_json(msg=f"{path}/ is a {current.get('type')} mount, not {data['type']}: remove it or use another path")
    if not same(data.get("options", {}), current.get("options") or {}):
        changes.append(f"options of {path}/")
        if not module.check_mode:
            write(client, f"sys/mounts/{path}/tune", {"options": data["options"]})
    tune = data.get("config", {})
    if tune and not same(tune, current.get("config") or {}):
        changes.append(f"tune {path}/")
        if not module.check_mode:
            prefix = "sys/mounts" if kind == "mount" else "sys/auth"
            write(client, f"{prefix}/{path}/tune", tune)
    return changes, {"type": current.get("type"), "options": current.get("options"), "config": current.get("config")}, data


def ensure_policy(module, client):
    name = module.params["path"]
    text = module.params["data"]["policy"]
    current = read(client, f"sys/policies/acl/{name}")
    have = (current or {}).get("policy")
    if have is not None and have.strip() == text.strip():
        return [], have, text
    if not module.check_mode:
        write(client, f"sys/policies/acl/{name}", {"policy": text}, method="put")
    return [f"policy {name}"], have, text


def ensure_audit(module, client):
    path = module.params["path"].strip("/")
    data = module.params["data"]
    devices = read(client, "sys/audit") or {}
    current = devices.get(f"{path}/")
    if current is not None:
        if current.get("type") != data["type"]:
            module.fail_json(msg=f"audit device {path}/ is of type {current.get('type')}, not {data['type']}")
        return [], current, data
    if module.check_mode:
        return [f"enable audit device {path}/"], None, data
    try:
        write(client, f"sys/audit/{path}", {"type": data["type"], "options": data.get("options", {})}, method="put")
    except hvac_exceptions.InvalidRequest as e:
        if "declarative" in str(e) or "config-based" in str(e):
            module.fail_json(
                msg=f"this server (OpenBao) takes audit devices only from its configuration file: declare "
                f"audit \"{data['type']}\" \"{path}\" {{ options {{ ... }} }} there and restart it ({e})"
            )
        raise
    return [f"enable audit device {path}/"], None, data


def ensure_object(module, client):
    path = module.params["path"]
    read_path = module.params["read_path"] or path
    data = module.params["data"]
    secret = set(module.params["secret_keys"])
    current = read(client, read_path)
    if current is not None and module.params["create_only"]:
        return [], current, data
    compared = module.params["expect"] if module.params["expect"] is not None else {k: v for k, v in data.items() if k not in secret}
    if current is not None and same(compared, current):
        return [], current, data
    if not module.check_mode:
        write(client, path, data)
    shown = {k: ("<secret>" if k in secret else v) for k, v in data.items()}
    return [f"{'update' if current is not None else 'create'} {path}"], current, shown


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", default=os.environ.get("VAULT_ADDR")),
            token=dict(type="str", default=os.environ.get("VAULT_TOKEN"), no_log=True),
            kind=dict(type="str", default="object", choices=["mount", "auth", "policy", "audit", "object"]),
            path=dict(type="str", required=True),
            read_path=dict(type="str"),
            data=dict(type="dict", default={}),
            secret_keys=dict(type="list", elements="str", default=[], no_log=False),
            create_only=dict(type="bool", default=False),
            expect=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    if not HAS_HVAC:
        module.fail_json(msg="the hvac Python package is required (pip install hvac beside ansible)")
    if not module.params["url"] or not module.params["token"]:
        module.fail_json(msg="no Vault address or token: set VAULT_ADDR and VAULT_TOKEN (or url and token)")
    client = hvac.Client(url=module.params["url"], token=module.params["token"])
    kind = module.params["kind"]
    try:
        if kind in ("mount", "auth"):
            changes, before, after = ensure_mount(module, client, kind)
        elif kind == "policy":
            changes, before, after = ensure_policy(module, client)
        elif kind == "audit":
            changes, before, after = ensure_audit(module, client)
        else:
            changes, before, after = ensure_object(module, client)
    except hvac_exceptions.VaultError as e:
        module.fail_json(msg=f"vault {kind} {module.params['path']}: {e}")
    result = dict(changed=bool(changes), changes=changes)
    if module._diff and changes:
        result["diff"] = dict(
            before=json.dumps(before, indent=2, sort_keys=True, default=str) + "\n",
            after=json.dumps(after, indent=2, sort_keys=True, default=str) + "\n",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
