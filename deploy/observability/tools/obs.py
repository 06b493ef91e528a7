#!/usr/bin/env python3
"""The observability checks and helpers that need no running platform, and
the pieces the live checks (drills.py) and scripts/observability share.

Standard library only: the rule files are read as text (their layout is
this repository's own), the dashboards as JSON.

Subcommands:
  check-rules                 every alert has a severity, a summary, and a
                              runbook_url naming docs/runbooks/<alert>.md,
                              which exists and says what it means, how to
                              confirm and what to do; no runbook is
                              orphaned; a promtool test expects every alert
                              to fire; the dashboards are well formed
  scale-rules OUT [FACTOR]    writes the test profile: the rule files with
                              every window, offset, `for` and `# seconds`
                              number divided by FACTOR (default 60)
  prometheus-config PLATFORM_JSON OUT [--rules DIR] [--interval 15s]
                              a Prometheus configuration scraping every
                              admin port listed in a running platform's
                              platform.json, with the rule files of DIR
  expressions                 every PromQL expression of the rules and the
                              dashboards, one JSON object per line
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
RULES = ROOT / "charts" / "cloudsec" / "files" / "rules"
DASHBOARDS = ROOT / "charts" / "cloudsec" / "files" / "dashboards"
RUNBOOKS = ROOT / "docs" / "runbooks"
TESTS = ROOT / "deploy" / "observability" / "tests"

# What a runbook must say, as headings.
RUNBOOK_SECTIONS = ("## What it means", "## How to confirm", "## What to do")

DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def rule_files(directory=RULES):
    return sorted(pathlib.Path(directory).glob("*.yaml"))


def parse_rules(text):
    """The rules of a rule file as dicts: kind (alert/record), name, expr,
    for, labels, annotations. Reads this repository's layout: two-space
    YAML, `expr: |` blocks, plain scalar labels and annotations (folded
    `>-` ones joined)."""
    rules = []
    lines = text.split("\n")
    i = 0
    current = None
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^      - (alert|record): (.+)$", line)
        if m:
            current = {"kind": m.group(1), "name": m.group(2).strip(), "expr": "",
                       "for": None, "labels": {}, "annotations": {}, "line": i + 1}
            rules.append(current)
            i += 1
            continue
        if current is None:
            i += 1
            continue
        m = re.match(r"^        expr: (\|)?(.*)$", line)
        if m:
            if m.group(1):
                body = []
                i += 1
                while i < len(lines) and (lines[i].startswith("          ") or not lines[i].strip()):
                    if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].startswith("          ")):
                        break
                    body.append(lines[i][10:])
                    i += 1
                current["expr"] = "\n".join(body).strip("\n")
                continue
            current["expr"] = m.group(2).strip()
            i += 1
            continue
        m = re.match(r"^        for: (.+)$", line)
        if m:
            current["for"] = m.group(1).strip()
            i += 1
            continue
        m = re.match(r"^        (labels|annotations):$", line)
        if m:
            target = current[m.group(1)]
            i += 1
            while i < len(lines) and lines[i].startswith("          "):
                km = re.match(r"^          (\w+): ?(.*)$", lines[i])
                if not km:
                    i += 1
                    continue
                key, value = km.group(1), km.group(2).strip()
                i += 1
                if value in (">-", ">", "|", "|-"):
                    parts = []
                    while i < len(lines) and lines[i].startswith("            "):
                        parts.append(lines[i].strip())
                        i += 1
                    value = " ".join(parts)
                target[key] = value.strip("'\"")
            continue
        i += 1
    return rules


def all_rules(directory=RULES):
    out = []
    for path in rule_files(directory):
        for rule in parse_rules(path.read_text()):
            rule["file"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
            out.append(rule)
    return out


def check_rules(directory=RULES, runbooks=RUNBOOKS):
    """Problems with the alerts' metadata and runbooks, as messages."""
    problems = []
    alerts = [r for r in all_rules(directory) if r["kind"] == "alert"]
    if not alerts:
        problems.append(f"no alerts found in {directory}")
    named = set()
    for a in alerts:
        where = f"{a['file']}:{a['line']} {a['name']}"
        if a["labels"].get("severity") not in ("critical", "warning"):
            problems.append(f"{where}: severity must be critical or warning, not {a['labels'].get('severity')!r}")
        if not a["annotations"].get("summary"):
            problems.append(f"{where}: no summary")
        if not a["annotations"].get("description"):
            problems.append(f"{where}: no description")
        url = a["annotations"].get("runbook_url", "")
        expected = f"docs/runbooks/{a['name']}.md"
        if url != expected:
            problems.append(f"{where}: runbook_url is {url!r}, expected {expected!r}")
            continue
        path = ROOT / url
        named.add(path.name)
        if not path.exists():
            problems.append(f"{where}: {url} does not exist")
            continue
        text = path.read_text()
        if not text.startswith(f"# {a['name']}"):
            problems.append(f"{url}: must start with '# {a['name']}'")
        for section in RUNBOOK_SECTIONS:
            if section not in text:
                problems.append(f"{url}: no '{section}' section")
    for path in sorted(pathlib.Path(runbooks).glob("*.md")):
        if path.name != "README.md" and path.name not in named:
            problems.append(f"{path.relative_to(ROOT)}: no alert links to it")
    # Every alert has a promtool test in which it is expected to fire (its
    # neighbours in the same test are the series that must stay silent).
    tested = set()
    for path in sorted(TESTS.glob("*.test.yaml")):
        text = path.read_text()
        for m in re.finditer(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", text):
            tested.add(m.group(1))
    for name in sorted({a["name"] for a in alerts} - tested):
        problems.append(f"{name}: no promtool test expects it to fire ({TESTS.relative_to(ROOT)})")
    return problems


def scale_duration(text, factor):
    """`1h` / 60 -> `1m`; `30m` -> `30s`; `5m` -> `5s`; `1d` -> `24m`."""
    total = sum(int(n) * UNIT_SECONDS[u] for n, u in DURATION.findall(text))
    seconds = total / factor
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def scale_rules_text(text, factor):
    """The test profile of a rule file (see the module doc). Recording rule
    names keep their production windows, so every rule still finds the
    series it reads."""
    def window(m):
        return "[" + scale_duration(m.group(1), factor) + (m.group(2) or "") + "]"

    def offset(m):
        return "offset " + scale_duration(m.group(1), factor)

    def seconds(m):
        value = float(m.group(1)) / factor
        return f"{value:g} # seconds"

    out = []
    for line in text.split("\n"):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        line = re.sub(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(:(?:\d+(?:ms|s|m|h|d|w|y))*)?\]", window, line)
        line = re.sub(r"offset ((?:\d+(?:ms|s|m|h|d|w|y))+)", offset, line)
        line = re.sub(r"(\d+(?:\.\d+)?) # seconds", seconds, line)
        m = re.match(r"^(\s+for: )((?:\d+(?:ms|s|m|h|d|w|y))+)$", line)
        if m:
            line = m.group(1) + ("0s" if m.group(2) in ("0s", "0m") else scale_duration(m.group(2), factor))
        out.append(line)
    return "\n".join(out)


def write_scaled_rules(out_dir, factor=60, directory=RULES):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in rule_files(directory):
        target = out_dir / path.name
        target.write_text(scale_rules_text(path.read_text(), factor))
        written.append(target)
    return written


def prometheus_config(platform, rules_dir=None, interval="15s", evaluation=None, namespace=None):
    """A Prometheus configuration (as YAML text) scraping every admin port
    of a running `cloudsec up`, as its platform.json lists them. Targets
    carry `namespace` (the mesh namespace, as on Kubernetes) and `workload`
    (which component or sidecar), the labels the rules and dashboards use;
    `component` comes from the metrics themselves."""
    admin = platform.get("admin") or {}
    if not admin:
        raise SystemExit(
            "platform.json lists no admin ports: this `cloudsec up` predates them; "
            "restart it with a current build"
        )
    ns = namespace or platform.get("namespace", "default")
    lines = [
        "# Written by deploy/observability/tools/obs.py for a running `cloudsec up`.",
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {evaluation or interval}",
        "scrape_configs:",
        "  - job_name: cloudsec",
        "    static_configs:",
    ]
    for workload, addr in sorted(admin.items()):
        lines.append(f"      - targets: ['{addr}']")
        lines.append(f"        labels: {{namespace: '{ns}', workload: '{workload}'}}")
    if rules_dir:
        lines.append("rule_files:")
        lines.append(f"  - '{pathlib.Path(rules_dir).resolve()}/*.yaml'")
    return "\n".join(lines) + "\n"


def dashboard_targets(directory=DASHBOARDS):
    """(dashboard uid, panel title, expr) for every query of every panel."""
    out = []
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board.get("panels", []):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    out.append((board["uid"], panel["title"], t["expr"]))
    return out


def check_dashboards(directory=DASHBOARDS):
    problems = []
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        try:
            board = json.loads(path.read_text())
        except ValueError as e:
            problems.append(f"{path.name}: not JSON: {e}")
            continue
        variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for needed in ("datasource", "namespace", "component"):
            if needed not in variables:
                problems.append(f"{path.name}: no ${needed} template variable")
        ids = set()
        for panel in board.get("panels", []):
            if panel["id"] in ids:
                problems.append(f"{path.name}: duplicate panel id {panel['id']}")
            ids.add(panel["id"])
            if panel["type"] == "row":
                continue
            if not panel.get("targets"):
                problems.append(f"{path.name}: panel {panel['title']!r} has no query")
            for t in panel.get("targets", []):
                if "$namespace" not in t.get("expr", ""):
                    problems.append(f"{path.name}: panel {panel['title']!r} ignores $namespace")
    return problems


# Grafana's variables, as the live checks substitute them.
GRAFANA_VARIABLES = {
    "$namespace": ".*",
    "$component": ".*",
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
}


def concrete(expr, variables=None):
    for name, value in sorted((variables or GRAFANA_VARIABLES).items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    return expr


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "check-rules":
        problems = check_rules() + check_dashboards()
        for p in problems:
            print(f"FAIL: {p}", file=sys.stderr)
        if problems:
            return 1
        alerts = sorted({r["name"] for r in all_rules() if r["kind"] == "alert"})
        print(f"rules: {len(alerts)} alerts, each with a severity, a summary and a runbook "
              f"with its three sections; dashboards: {len(dashboard_targets())} queries, all with $namespace")
        return 0
    if cmd == "scale-rules":
        factor = float(args[1]) if len(args) > 1 else 60
        for path in write_scaled_rules(args[0], factor):
            print(path)
        return 0
    if cmd == "prometheus-config":
        platform = json.loads(pathlib.Path(args[0]).read_text())
        rules = interval = None
        rest = args[2:]
        while rest:
            flag, value, rest = rest[0], rest[1], rest[2:]
            if flag == "--rules":
                rules = value
            elif flag == "--interval":
                interval = value
        pathlib.Path(args[1]).write_text(prometheus_config(platform, rules, interval or "15s"))
        return 0
    if cmd == "expressions":
        for r in all_rules():
            print(json.dumps({"source": f"{r['file']}:{r['name']}", "expr": r["expr"]}))
        for uid, title, expr in dashboard_targets():
            print(json.dumps({"source": f"{uid}:{title}", "expr": concrete(expr)}))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
