"""scripts/check-chart: the chart's static checks, for every ci/*-values.yaml.

    check.py --cloudsec BIN --checkov CHECKOV [--update-golden] [--only NAME]

Per case: helm lint --strict and render (helm-python-sdk); kubernetes-validate
--strict against the oldest and newest Kubernetes the chart supports (an
object without a schema fails unless its CRD is on the allow-list, whose
shape rules.py checks instead); the run-time rules of rules.py; every
rendered configuration through `cloudsec config check --component`; the
golden rendered output. Then checkov over every case at once, and the
negative tests: bad values and broken manifests must be refused, naming
what is wrong.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chartlib  # noqa: E402
import rules  # noqa: E402
from chartlib import CHART, NAMESPACE, REPO  # noqa: E402

GOLDEN = CHART / "tests" / "golden"
KUBE_VERSIONS = ["1.29.0", "1.33.0"]


class Failures:
    def __init__(self):
        self.items: list[str] = []

    def add(self, case: str, problems: list[str]):
        for p in problems:
            self.items.append(f"[{case}] {p}")
            print(f"  FAIL {p}", file=sys.stderr)


def lint(values: dict) -> list[str]:
    h = chartlib.helm()
    report = h.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=chartlib.KUBE_VERSION)
    problems = list(report.get("errors") or [])
    for m in report.get("messages") or []:
        if m.get("severity", 0) >= 2:  # strict: warnings are errors too
            problems.append(f"lint {m.get('path')}: {m.get('error')}")
    return problems


def kube_validate(kv: str, manifests: Path) -> list[str]:
    problems = []
    for version in KUBE_VERSIONS:
        out = subprocess.run([kv, "--strict", "-k", version, str(manifests)], capture_output=True, text=True)
        text = out.stdout + out.stderr
        for line in text.splitlines():
            if "Couldn't find schema" in line:
                m = re.search(r"kind (\w+) with api version (\S+)", line)
                if not m or (m.group(2), m.group(1)) not in rules.CRD_KINDS:
                    problems.append(f"kubernetes-validate {version}: {line.strip()} (not a CRD on the allow-list)")
            elif re.search(r"\b(ERROR|FAIL|error)\b", line) or "did not validate" in line:
                problems.append(f"kubernetes-validate {version}: {line.strip()}")
        if out.returncode != 0 and not problems:
            problems.append(f"kubernetes-validate {version} exited {out.returncode}: {text.strip()[:500]}")
    return problems


def golden_text(text: str) -> str:
    """The rendered stream with what files/ provides elided (its own checks own it)."""
    out = []
    for chunk in re.split(r"^---\s*$", text, flags=re.M):
        doc = yaml.safe_load("\n".join(l for l in chunk.splitlines() if not l.startswith("# Source:")))
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            src = re.search(r"# From (\S+)", chunk)
            chunk = re.sub(r"(?ms)^spec:\n.*", f"spec:\n  groups: <from {src.group(1) if src else 'files/rules'}>\n", chunk)
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap" and "dashboard" in doc["metadata"]["name"]:
            chunk = re.sub(r"(?ms)^data:\n.*", "data: <from files/dashboards>\n", chunk)
        out.append(chunk.rstrip() + "\n")
    return "---".join(out)


def config_checks(cloudsec: str, objs: list[dict], work: Path) -> list[str]:
    """`cloudsec config check --component C` on every rendered configuration.

    Files the configurations name (certificate files from cert-manager's
    Secrets, the trust bundle) are read by the check, so it runs in a
    private mount namespace whose /run holds a certificate made for the
    occasion at the paths the pods mount them.
    """
    files = chartlib.toml_files(objs)
    if not files:
        return ["no configuration was rendered"]
    d = work / "configs"
    d.mkdir(parents=True, exist_ok=True)
    lines = ["set -u", "rc=0", "mount -t tmpfs tmpfs /run", "mkdir -p /run/cloudsec/mesh /run/cloudsec/trust"]
    ca = work / "ca"
    if not (ca / "out" / "cert.pem").exists():
        mesh = work / "mesh.toml"
        mesh.write_text(f'[mesh]\ntrust_domain = "cloudsec.local"\nnamespace = "{NAMESPACE}"\n')
        r = subprocess.run([cloudsec, "cert", "check", "--init-ca", "--data-dir", str(ca / "data"), "--out", str(ca / "out"), "--config", str(mesh)], capture_output=True, text=True)
        if r.returncode != 0:
            return [f"cloudsec cert failed: {r.stderr.strip()}"]
    lines += [f"cp {ca}/out/cert.pem /run/cloudsec/mesh/tls.crt", f"cp {ca}/out/key.pem /run/cloudsec/mesh/tls.key", f"cp {ca}/out/ca.pem /run/cloudsec/trust/ca.crt"]
    for cm, key, text in files:
        path = d / f"{cm}--{key}"
        path.write_text(text)
        component = chartlib.component_of(key)
        lines.append(f"out=$({cloudsec} config check --component {component} {path} 2>&1) || {{ rc=1; echo \"{cm}/{key}: $out\"; }}")
    lines.append("exit $rc")
    script = work / "config-check.sh"
    script.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CLOUDSEC__")}
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", str(script)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return [f"cloudsec config check: {l}" for l in (r.stdout + r.stderr).strip().splitlines()] or ["cloudsec config check failed"]
    return []


def external_names(values: dict) -> tuple[set[str], set[str]]:
    cms = {values.get("secrets", {}).get("vault", {}).get("caConfigMap") or ""}
    secrets = {values.get("components", {}).get("gateway", {}).get("tlsSecretName") or ""}
    if values.get("mesh", {}).get("issuer") == "certManager" and not values.get("mesh", {}).get("certManager", {}).get("createCertificates", True):
        secrets |= {f"cloudsec-{c}-mesh-tls" for c in ("auth", "documents", "audit", "gateway")}
    return cms - {""}, secrets - {""}


def static_rules(text: str, values: dict) -> list[str]:
    objs = chartlib.objects(text)
    digest = (values.get("image") or {}).get("digest") or ""
    cms, secrets = external_names(values)
    return (
        rules.check_crds(objs)
        + rules.check_probes(objs)
        + rules.check_volumes(objs, cms, secrets)
        + rules.check_restricted(objs)
        + rules.check_shape(objs, digest)
        + rules.check_no_secrets(text, objs)
    )


def run_case(case: Path, args, failures: Failures, work: Path) -> Path | None:
    name = case.name[: -len("-values.yaml")]
    t0 = time.monotonic()
    print(f"== {name} ({case.relative_to(CHART)})")
    values = chartlib.values_of(case)
    failures.add(name, lint(values))
    try:
        rendered = chartlib.render(values)
    except Exception as e:  # noqa: BLE001 - a render error is this case's failure
        failures.add(name, [f"render: {e}"])
        return None
    text = chartlib.manifest_text(rendered)
    out = work / "cases" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifests.yaml").write_text(text)
    failures.add(name, kube_validate(args.kubernetes_validate, out / "manifests.yaml"))
    failures.add(name, static_rules(text, values))
    failures.add(name, config_checks(args.cloudsec, chartlib.objects(text), work))
    golden = GOLDEN / f"{name}.yaml"
    want = golden_text(text)
    if args.update_golden:
        golden.write_text(want)
        print(f"  wrote {golden.relative_to(REPO)}")
    elif not golden.exists():
        failures.add(name, [f"no golden output {golden.relative_to(REPO)}: run scripts/check-chart --update-golden and review it"])
    elif golden.read_text() != want:
        diff = subprocess.run(["diff", "-u", str(golden), "-"], input=want, capture_output=True, text=True).stdout
        failures.add(name, [f"the rendered output differs from {golden.relative_to(REPO)} (scripts/check-chart --update-golden, then review):\n{diff[:4000]}"])
    print(f"  {name}: {len(chartlib.objects(text))} objects, {time.monotonic() - t0:.1f}s")
    return out


def checkov(args, dirs: list[Path], failures: Failures):
    """checkov's Kubernetes checks over every case; skips are inline in the chart, with reasons."""
    print("== checkov (kubernetes)")
    t0 = time.monotonic()
    cmd = [args.checkov, "--framework", "kubernetes", "--skip-download", "--quiet", "--compact", "-o", "json"]
    for d in dirs:
        cmd += ["-d", str(d)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    # One JSON report per directory, one after the other.
    reports, text, decoder = [], r.stdout.strip(), json.JSONDecoder()
    while text:
        try:
            doc, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            failures.add("checkov", [f"checkov gave no report (exit {r.returncode}): {r.stderr.strip()[-800:]}"])
            return
        reports += doc if isinstance(doc, list) else [doc]
        text = text[end:].strip()
    if len(reports) != len(dirs):
        failures.add("checkov", [f"checkov reported on {len(reports)} of {len(dirs)} cases"])
    passed = skipped = 0
    for rep in reports:
        res = rep.get("results", {})
        summary = rep.get("summary", {})
        passed += summary.get("passed", 0)
        if summary.get("parsing_errors"):
            failures.add("checkov", [f"checkov could not parse {summary['parsing_errors']} file(s)"])
        for s in res.get("skipped_checks", []):
            skipped += 1
            if not (s.get("suppress_comment") or "").strip() or s.get("suppress_comment") == "No comment provided":
                failures.add("checkov", [f"{s['check_id']} skipped without a reason on {s.get('resource')}"])
        for f in res.get("failed_checks", []):
            failures.add("checkov", [f"{f['check_id']} {f['check_name']}: {f.get('resource')} ({f.get('file_path')})"])
    if passed == 0:
        failures.add("checkov", ["checkov passed no check at all: did it scan anything?"])
    print(f"  checkov: {passed} passed, {skipped} skipped with reasons, {time.monotonic() - t0:.1f}s")


def expect_refused(failures: Failures, what: str, values: dict, field: str):
    """Bad values must be refused, and the message must name the field."""
    try:
        chartlib.render(values)
    except Exception as e:  # noqa: BLE001
        message = str(e)
        if field not in message:
            failures.add("negative", [f"{what}: refused, but the message does not name {field!r}: {message}"])
        else:
            print(f"  refused as it should: {what}: {message.strip().splitlines()[-1]}")
        return
    failures.add("negative", [f"{what}: the chart accepted it"])


def expect_caught(failures: Failures, what: str, problems: list[str], needle: str):
    if not any(needle in p for p in problems):
        failures.add("negative", [f"{what}: not caught (wanted a problem naming {needle!r}; got {problems})"])
    else:
        print(f"  caught as it should: {what}")


def negatives(args, failures: Failures, work: Path):
    print("== negative tests")
    base = chartlib.values_of(CHART / "ci" / "default-values.yaml")

    def with_(path: str, value):
        v = copy.deepcopy(base)
        node = v
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        return v

    expect_refused(failures, "an unknown key (components.auth.replica)", with_("components.auth.replica", 2), "replica")
    expect_refused(failures, "an unknown top-level key (replicaCount)", with_("replicaCount", 2), "replicaCount")
    expect_refused(failures, "replicas 0", with_("components.documents.replicas", 0), "replicas")
    expect_refused(failures, "a wrong type (components.gateway.ports.public = \"eighty\")", with_("components.gateway.ports.public", "eighty"), "public")
    expect_refused(failures, "a literal secret (components.documents.pageTokenKey)", with_("components.documents.pageTokenKey", "a-literal-page-token-key-of-32-bytes!"), "pageTokenKey")
    expect_refused(failures, "a password in a database URL", with_("databases.auth.url", "postgres://u:hunter2@db/auth"), "url")
    expect_refused(failures, "certManager without a trust bundle", with_("mesh.issuer", "certManager") | {"secrets": {"backend": "local"}, "databases": merge_db(base, "static")}, "trustBundle")
    # A parent chart's keys stay accepted.
    try:
        chartlib.render(with_("global.someParentValue", {"x": 1}) | {"enabled": False})
        print("  accepted as it should: global.* and enabled from a parent chart")
    except Exception as e:  # noqa: BLE001
        failures.add("negative", [f"global.someParentValue / enabled were refused: {e}"])

    # An upgrade to another chart and app version keeps every selector
    # (a changed selector is "field is immutable" for Deployments).
    bumped = work / "bumped-chart"
    shutil.rmtree(bumped, ignore_errors=True)
    shutil.copytree(CHART, bumped, ignore=shutil.ignore_patterns("tests"))
    meta = (bumped / "Chart.yaml").read_text()
    meta = re.sub(r"(?m)^version: .*$", "version: 9.9.9", meta)
    meta = re.sub(r"(?m)^appVersion: .*$", 'appVersion: "9.9.9"', meta)
    (bumped / "Chart.yaml").write_text(meta)

    def selectors(text):
        return {f"{o['kind']}/{o['metadata']['name']}": (o.get("spec") or {}).get("selector")
                for o in chartlib.objects(text) if o["kind"] in ("Deployment", "Service", "PodDisruptionBudget")}

    ha = chartlib.values_of(CHART / "ci" / "ha-values.yaml")
    before = selectors(chartlib.manifest_text(chartlib.render(ha)))
    after_text = chartlib.manifest_text(chartlib.render(ha, upgrade=True, chart_dir=bumped))
    after = selectors(after_text)
    if "9.9.9" not in after_text or before != after:
        failures.add("negative", [f"an upgrade to chart 9.9.9 changes selectors: {before} -> {after}"])
    else:
        print(f"  kept as it should: {len(before)} selectors across an upgrade to chart and app version 9.9.9")

    removed = work / "removed-api.yaml"
    removed.write_text("apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata:\n  name: x\nspec: {}\n")
    expect_caught(failures, "an object kubernetes-validate has no schema for (a removed API)", kube_validate(args.kubernetes_validate, removed), "PodSecurityPolicy")

    text = (work / "cases" / "default" / "manifests.yaml").read_text()
    objs = chartlib.objects(text)

    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"):
            o["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "adminn"
    expect_caught(failures, "a broken probe port", rules.check_probes(broken), "adminn")

    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cloudsec-documents":
            del o["data"]["proxy.toml"]
    expect_caught(failures, "a missing ConfigMap key", rules.check_volumes(broken, set(), set()), "proxy.toml")

    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cloudsec-documents":
            o["data"]["documents.toml"] = o["data"]["documents.toml"].replace(
                "vault:secret/cloudsec/documents#page_token_key", "0123456789abcdef0123456789abcdef")
    expect_caught(failures, "a secret value in a ConfigMap", rules.check_no_secrets(yaml.safe_dump_all(broken), broken), "page_token_key")

    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cloudsec-gateway":
            o["data"]["gateway.toml"] = o["data"]["gateway.toml"].replace("admin_listen", "admin_lisen")
    bad = work / "negative-config"
    problems = config_checks(args.cloudsec, [o for o in broken if o["metadata"]["name"] == "cloudsec-gateway"], bad)
    expect_caught(failures, "an unknown configuration key (gateway.admin_lisen)", problems, "admin_lisen")

    broken = copy.deepcopy(objs)
    for o in broken:
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
            break
    expect_caught(failures, "a writable root filesystem", rules.check_restricted(broken), "readOnlyRootFilesystem")

    # The password calls' admission: on by default, off with null, and a
    # bad one refused by the schema or by `cloudsec config check`.
    def gateway_toml(values) -> str:
        rendered = chartlib.objects(chartlib.manifest_text(chartlib.render(values)))
        return next(o["data"]["gateway.toml"] for o in rendered
                    if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cloudsec-gateway")

    want = '[gateway.routes."cloudsec.auth.v1.AuthService/Login"]\nconcurrency = { limit = 4, queue = 64, queue_timeout = "5s" }'
    if want not in gateway_toml(base):
        failures.add("negative", [f"the default gateway configuration has no admission limit on Login ({want!r})"])
    else:
        print("  rendered as it should: the default admission limit on Login, SignUp and ConfirmForgotPassword")
    if "[gateway.routes." in gateway_toml(with_("components.gateway.passwordCalls", None)):
        failures.add("negative", ["components.gateway.passwordCalls = null still renders gateway routes"])
    else:
        print("  rendered as it should: no admission limit with components.gateway.passwordCalls = null")
    expect_refused(failures, "components.gateway.passwordCalls.limit = 0",
                   with_("components.gateway.passwordCalls.limit", 0), "limit")
    slow = with_("components.gateway.passwordCalls.queueTimeout", "30s")
    broken = [o for o in chartlib.objects(chartlib.manifest_text(chartlib.render(slow)))
              if o["metadata"]["name"] == "cloudsec-gateway"]
    expect_caught(failures, "a password-call queue timeout as long as the request timeout",
                  config_checks(args.cloudsec, broken, work / "negative-admission"), "queue_timeout")


def merge_db(base: dict, credentials: str) -> dict:
    d = copy.deepcopy(base.get("databases", {}))
    d["credentials"] = credentials
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cloudsec", required=True)
    ap.add_argument("--checkov", required=True)
    ap.add_argument("--kubernetes-validate", required=True)
    ap.add_argument("--update-golden", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--work", default="")
    args = ap.parse_args()
    t0 = time.monotonic()
    work = Path(args.work or tempfile.mkdtemp(prefix="cloudsec-chart-"))
    failures = Failures()
    cases = sorted((CHART / "ci").glob("*-values.yaml"))
    if args.only:
        cases = [c for c in cases if c.name.startswith(args.only)]
    if not cases:
        chartlib.fail("no ci/*-values.yaml")
    # The schema and the README's table of values are generated: stale is a failure.
    schema = subprocess.run([sys.executable, str(CHART / "tests" / "schema.py")], capture_output=True, text=True).stdout
    if schema != (CHART / "values.schema.json").read_text():
        failures.add("schema", ["values.schema.json is not what tests/schema.py writes: run it (> values.schema.json)"])
    r = subprocess.run([sys.executable, str(CHART / "tests" / "readme.py"), "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        failures.add("readme", [r.stderr.strip()])
    dirs = [run_case(c, args, failures, work) for c in cases]
    checkov(args, [d for d in dirs if d], failures)
    if (work / "cases" / "default" / "manifests.yaml").exists():
        negatives(args, failures, work)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - t0
    if failures.items:
        print(f"check-chart: {len(failures.items)} failed, {len(cases)} cases, {total:.0f}s", file=sys.stderr)
        for f in failures.items:
            print(f"  {f.splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"check-chart: {len(cases)} cases passed in {total:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
