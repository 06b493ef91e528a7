#!/usr/bin/env python3
"""Writes the Inputs and Outputs tables of each module's README.md.

The part between `<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->` is
generated from variables.tf and outputs.tf (name, type, default,
description); the text around it is written by hand.

    terraform/.venv-hcl2/bin/python terraform/tools/module_docs.py [--check]

--check exits 1 when a README is out of date (lint.py checks that every
input and output is listed either way).
"""

import glob
import os
import sys

BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def unq(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def expr(value):
    """An HCL value as python-hcl2 returns it, back to readable text."""
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(expr(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{unq(k)} = {expr(v)}" for k, v in value.items() if k != "__is_block__"]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    return str(value)


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def tables(module_dir):
    import hcl2

    rows_in, rows_out = [], []
    for name in ("variables.tf", "outputs.tf"):
        path = os.path.join(module_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            doc = hcl2.load(f)
        for var in doc.get("variable", []):
            for vname, body in var.items():
                default = "required" if "default" not in body else f"`{cell(expr(body['default']))}`"
                type_ = cell(expr(body.get("type", "any")))
                rows_in.append(f"| `{unq(vname)}` | `{type_}` | {default} | {cell(unq(body.get('description', '')))} |")
        for out in doc.get("output", []):
            for oname, body in out.items():
                rows_out.append(f"| `{unq(oname)}` | {cell(unq(body.get('description', '')))} |")
    text = [BEGIN, "## Inputs", "", "| name | type | default | description |", "|---|---|---|---|", *rows_in, "",
            "## Outputs", "", "| name | description |", "|---|---|", *rows_out, END]
    return "\n".join(text)


def main():
    check = "--check" in sys.argv
    stale = []
    for readme in sorted(glob.glob(os.path.join(ROOT, "modules", "**", "README.md"), recursive=True)):
        module_dir = os.path.dirname(readme)
        text = open(readme).read()
        if BEGIN not in text or END not in text:
            print(f"module_docs: {readme} has no {BEGIN} ... {END} section", file=sys.stderr)
            stale.append(readme)
            continue
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + tables(module_dir) + tail
        if new != text:
            stale.append(readme)
            if not check:
                with open(readme, "w") as f:
                    f.write(new)
    if check and stale:
        print("module_docs: out of date: " + ", ".join(os.path.relpath(s, ROOT) for s in stale), file=sys.stderr)
        return 1
    print(f"module_docs: {'checked' if check else 'wrote'} {len(glob.glob(os.path.join(ROOT, 'modules', '**', 'README.md'), recursive=True))} READMEs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
