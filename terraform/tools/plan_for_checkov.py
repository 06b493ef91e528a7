#!/usr/bin/env python3
"""Marks a plan's unknown values for checkov.

In an offline plan every attribute that refers to another new resource
(a key ARN, a log group, a role) is unknown: `terraform show -json` leaves
it out of `after` and lists it in `after_unknown`. checkov's plan runner
reads only `after`, so `kms_key_id = module.security.kms_key_arns.logs`
would look unset and fail every encryption check.

This writes a copy of the plan in which each unknown leaf holds the string
"(known after apply)". Only attributes Terraform itself reports as unknown
are filled: an attribute left unset in the code stays null and still fails
its check. Nothing else changes.

    python3 plan_for_checkov.py IN.json OUT.json
"""

import json
import sys

UNKNOWN = "(known after apply)"


def fill(value, unknown):
    """value with every leaf that `unknown` marks True replaced."""
    if unknown is True:
        if isinstance(value, (dict, list)) and value:
            return value  # a known container holding unknowns is described below
        return UNKNOWN
    if isinstance(unknown, dict):
        value = dict(value) if isinstance(value, dict) else {}
        for key, u in unknown.items():
            value[key] = fill(value.get(key), u)
        return value
    if isinstance(unknown, list):
        value = list(value) if isinstance(value, list) else []
        for i, u in enumerate(unknown):
            if i < len(value):
                value[i] = fill(value[i], u)
            elif u is not False:
                value.append(fill(None, u))
        return value
    return value


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        plan = json.load(f)
    unknowns = {}
    for rc in plan.get("resource_changes", []):
        change = rc.get("change", {})
        u = change.get("after_unknown")
        if u:
            change["after"] = fill(change.get("after") or {}, u)
            unknowns[rc["address"]] = u

    def walk(module):
        for r in module.get("resources", []):
            u = unknowns.get(r["address"])
            if u:
                r["values"] = fill(r.get("values") or {}, u)
        for child in module.get("child_modules", []):
            walk(child)

    walk(plan.get("planned_values", {}).get("root_module", {}))
    with open(dst, "w") as f:
        json.dump(plan, f)
    print(f"plan_for_checkov: {len(unknowns)} resources with values known only after apply marked in {dst}")


if __name__ == "__main__":
    main()
