"""The chart README's table of values, from values.yaml and its `# --` comments.

    readme.py            # print the table
    readme.py --write    # replace the table between the markers in README.md
    readme.py --check    # exit 1 when README.md's table is not this one

Every leaf of values.yaml is a row (maps and lists that are values of their
own, such as `resources` or `tolerations`, are one row); the description is
the `# --` comment above the key, or the nearest one above its parent.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
# Maps and lists whose keys are not the chart's own: one row each.
OPAQUE = {"resources", "annotations", "podAnnotations", "nodeSelector", "tolerations", "affinity", "env",
          "labels", "queues", "queueNames", "dlqs", "logGroups", "publicFrom", "externalEgress",
          "imagePullSecrets", "issuerRef"}


def comments(text: str) -> dict[str, str]:
    """Dotted key -> its `# --` description, following indentation."""
    out, stack, pending = {}, [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped[1:].strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not m:
            pending = [] if stripped else pending
            continue
        indent = len(m.group(1)) // 2
        stack = stack[:indent] + [m.group(2)]
        if pending:
            out[".".join(stack)] = " ".join(pending)
        pending = []
    return out


def rows(values, prefix="", out=None):
    out = [] if out is None else out
    if isinstance(values, dict) and values and prefix.rsplit(".", 1)[-1] not in OPAQUE:
        for k, v in values.items():
            rows(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        out.append((prefix, values))
    return out


def describe(key: str, docs: dict[str, str]) -> str:
    parts = key.split(".")
    if len(parts) > 2 and parts[0] in ("components", "databases"):
        own = _describe(parts, docs, exact_only=True)
        if own:
            return own
        return _describe([parts[0], "auth", *parts[2:]], docs) or _describe(parts, docs)
    return _describe(parts, docs)


def _describe(parts: list[str], docs: dict[str, str], exact_only: bool = False) -> str:
    if exact_only:
        return docs.get(".".join(parts), "")
    for n in range(len(parts), 0, -1):
        k = ".".join(parts[:n])
        if k in docs:
            return docs[k] if n == len(parts) else f"({'.'.join(parts[:n])}) {docs[k]}"
    return ""


def table() -> str:
    text = (CHART / "values.yaml").read_text()
    docs = comments(text)
    lines = ["| key | default | description |", "|---|---|---|"]
    for key, value in rows(yaml.safe_load(text)):
        default = json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else (f'"{value}"' if value else '""')
        default = default.replace("|", "\\|")
        desc = describe(key, docs).replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {desc} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    readme = CHART / "README.md"
    want = table()
    if "--write" in sys.argv or "--check" in sys.argv:
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            print(f"readme: {readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{BEGIN}\n{want}{END}{tail}"
        if "--check" in sys.argv:
            if new != text:
                print("readme: charts/cloudsec/README.md's table of values is stale: run charts/cloudsec/tests/readme.py --write", file=sys.stderr)
                return 1
            return 0
        readme.write_text(new)
        return 0
    print(want, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
