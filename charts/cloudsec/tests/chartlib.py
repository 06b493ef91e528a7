"""What scripts/check-chart and scripts/smoke-pods share: values layering,
rendering with helm-python-sdk (Helm 4's library, no helm binary), and the
rendered manifests as Python objects.

A ci/*-values.yaml may start with a line

    # layers: values-ha.yaml values-aws.yaml ../../terraform/tools/fixtures/values-prod.yaml

naming files (relative to the chart) merged before it, in that order, as
`helm install -f a -f b -f ci-file` would.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
RELEASE = "cloudsec"
NAMESPACE = "cloudsec"
KUBE_VERSION = "v1.31.0"


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


def merge(base: dict, top: dict) -> dict:
    """Helm's coalescing of values files: maps merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in (top or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def layers_of(path: Path) -> list[Path]:
    first = path.read_text().splitlines()[:5]
    for line in first:
        m = re.match(r"#\s*layers:\s*(.+)$", line)
        if m:
            return [(CHART / p).resolve() for p in m.group(1).split()]
    return []


def values_of(path: Path, extra: dict | None = None) -> dict:
    """The values of a ci file: its layers, then itself, then `extra`."""
    values: dict = {}
    for layer in layers_of(path) + [path]:
        values = merge(values, yaml.safe_load(layer.read_text()) or {})
    if extra:
        values = merge(values, extra)
    return values


def helm():
    try:
        import helm_python  # noqa: PLC0415
    except ImportError:
        fail("helm-python-sdk is not installed (scripts/check-chart installs it into .venv-chart)")
    return helm_python


def render(values: dict, *, upgrade: bool = False, chart_dir: Path | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would give it."""
    h = helm()
    with h.Chart.load(str(chart_dir or CHART)) as chart:
        chart.validate_schema(values)
        return chart.render(
            values,
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not upgrade,
            is_upgrade=upgrade,
        )


def manifest_text(rendered: dict[str, str]) -> str:
    """Every rendered template but NOTES.txt, in a stable order, as one stream."""
    parts = []
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            continue
        text = rendered[source].strip()
        if not text or all(not d.strip() or d.strip() == "---" for d in re.split(r"^---\s*$", text, flags=re.M)):
            continue
        parts.append(f"# Source: {source}\n{text}\n")
    return "\n".join(parts)


def split_docs(text: str) -> list[str]:
    docs = []
    for chunk in re.split(r"^---\s*$", text, flags=re.M):
        body = "\n".join(l for l in chunk.splitlines() if not l.startswith("# Source:"))
        if yaml.safe_load(body):
            docs.append(body.strip("\n") + "\n")
    return docs


def objects(text: str) -> list[dict]:
    return [yaml.safe_load(d) for d in split_docs(text)]


def toml_files(objs: list[dict]) -> list[tuple[str, str, str]]:
    """(ConfigMap name, key, TOML text) of every rendered configuration."""
    out = []
    for o in objs:
        if o.get("kind") == "ConfigMap":
            for key, value in (o.get("data") or {}).items():
                if key.endswith(".toml"):
                    out.append((o["metadata"]["name"], key, value))
    return out


def component_of(key: str) -> str:
    """`auth.toml` -> auth, `proxy.toml` -> proxy (for config check --component)."""
    return key[: -len(".toml")]


def venv_python() -> str:
    return os.environ.get("CHART_PYTHON", sys.executable)
