"""Checks of the rendered manifests that no schema states: what the kubelet
would refuse or get wrong at run time (a probe on a port the container does
not expose, a ConfigMap key that does not exist), the restricted Pod
Security Standard, the labels that must never change, and that no secret
value is in any manifest. Each returns a list of problems, one line each.
"""

from __future__ import annotations

import re

# Objects whose CRDs the chart may use; kubernetes-validate has no schema
# for them, so their shape is checked here instead.
CRD_KINDS = {
    ("cert-manager.io/v1", "Certificate"): ["spec.secretName", "spec.issuerRef.name", "spec.uris"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PodMonitor"): ["spec.selector", "spec.podMetricsEndpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
    ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"): ["spec.serviceRef.name", "spec.serviceRef.port", "spec.targetGroupARN"],
}

# cert-manager writes these keys into a Certificate's Secret.
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}

SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}

# What a secret value looks like, anywhere in a manifest.
SECRET_PATTERNS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^/\s@\"']+@"), "a password in a URL"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\b(hvs|s|hvb)\.[A-Za-z0-9]{24,}\b"), "a Vault token"),
]
# TOML keys whose value is a secret: only a vault: reference may stand there.
SECRET_KEYS = re.compile(
    r"^\s*(page_token_key|redis_url|client_secret|secret_id|token|password|encryption_key|database_url)\s*=\s*\"(?P<v>[^\"]*)\"",
    re.M,
)


def dig(obj, path: str):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def name_of(o: dict) -> str:
    return f"{o.get('kind')}/{dig(o, 'metadata.name')}"


def pod_specs(objs: list[dict]):
    for o in objs:
        if o.get("kind") in ("Deployment", "Job"):
            yield o, dig(o, "spec.template.spec") or {}


def check_crds(objs: list[dict]) -> list[str]:
    problems = []
    for o in objs:
        key = (o.get("apiVersion"), o.get("kind"))
        if key in CRD_KINDS:
            for path in CRD_KINDS[key]:
                if dig(o, path) in (None, "", [], {}):
                    problems.append(f"{name_of(o)}: {path} is missing")
    return problems


def check_probes(objs: list[dict]) -> list[str]:
    """Every probe names a port its own container declares."""
    problems = []
    for o, spec in pod_specs(objs):
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            ports = c.get("ports") or []
            names = {p.get("name") for p in ports}
            numbers = {p.get("containerPort") for p in ports}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    continue
                action = p.get("httpGet") or p.get("grpc") or p.get("tcpSocket")
                if not action:
                    problems.append(f"{name_of(o)} container {c['name']}: {probe} has no httpGet, grpc or tcpSocket")
                    continue
                port = action.get("port")
                if isinstance(port, str) and port not in names:
                    problems.append(f"{name_of(o)} container {c['name']}: {probe} port {port!r} is not one of its ports {sorted(n for n in names if n)}")
                if isinstance(port, int) and port not in numbers:
                    problems.append(f"{name_of(o)} container {c['name']}: {probe} port {port} is not one of its ports {sorted(numbers)}")
    return problems


def check_volumes(objs: list[dict], external_configmaps: set[str], external_secrets: set[str]) -> list[str]:
    """ConfigMap and Secret volumes exist and carry the keys they mount."""
    configmaps = {dig(o, "metadata.name"): o.get("data") or {} for o in objs if o.get("kind") == "ConfigMap"}
    cert_secrets = {dig(o, "spec.secretName") for o in objs if o.get("kind") == "Certificate"}
    problems = []
    for o, spec in pod_specs(objs):
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for v in volumes.values():
            if "configMap" in v:
                cm = v["configMap"]["name"]
                if cm in external_configmaps:
                    continue
                if cm not in configmaps:
                    problems.append(f"{name_of(o)} volume {v['name']}: ConfigMap {cm} is not rendered")
                    continue
                for item in v["configMap"].get("items") or []:
                    if item["key"] not in configmaps[cm]:
                        problems.append(f"{name_of(o)} volume {v['name']}: ConfigMap {cm} has no key {item['key']!r} (it has {sorted(configmaps[cm])})")
            if "secret" in v:
                secret = v["secret"]["secretName"]
                if secret in cert_secrets:
                    for item in v["secret"].get("items") or []:
                        if item["key"] not in CERT_MANAGER_KEYS:
                            problems.append(f"{name_of(o)} volume {v['name']}: cert-manager writes no key {item['key']!r} into {secret}")
                elif secret not in external_secrets:
                    problems.append(f"{name_of(o)} volume {v['name']}: Secret {secret} is neither a Certificate's nor named in values")
            if "hostPath" in v:
                problems.append(f"{name_of(o)} volume {v['name']}: hostPath is not allowed")
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            paths = set()
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    problems.append(f"{name_of(o)} container {c['name']}: mounts volume {m['name']} that the pod does not have")
                if m["mountPath"] in paths:
                    problems.append(f"{name_of(o)} container {c['name']}: two mounts at {m['mountPath']}")
                paths.add(m["mountPath"])
    return problems


def check_restricted(objs: list[dict]) -> list[str]:
    """The restricted Pod Security Standard, for every pod and container."""
    problems = []
    for o, spec in pod_specs(objs):
        pod = spec.get("securityContext") or {}
        where = name_of(o)
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{where}: securityContext.runAsNonRoot must be true")
        if dig(pod, "seccompProfile.type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: securityContext.seccompProfile.type must be RuntimeDefault")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{where}: {flag} is not allowed")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken must be false (Vault gets a projected token)")
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            sc = c.get("securityContext") or {}
            cw = f"{where} container {c['name']}"
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem must be true")
            if sc.get("privileged"):
                problems.append(f"{cw}: privileged is not allowed")
            if dig(sc, "capabilities.drop") != ["ALL"] or dig(sc, "capabilities.add"):
                problems.append(f"{cw}: capabilities must drop ALL and add none")
            if sc.get("runAsNonRoot") is not True and pod.get("runAsNonRoot") is not True:
                problems.append(f"{cw}: runAsNonRoot must be true")
            if (sc.get("runAsUser", pod.get("runAsUser")) or 0) == 0:
                problems.append(f"{cw}: must not run as uid 0")
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    problems.append(f"{cw}: hostPort is not allowed")
    return problems


def check_shape(objs: list[dict], digest: str) -> list[str]:
    """Native sidecars, selector labels, images by digest, ServiceAccounts."""
    problems = []
    accounts = {dig(o, "metadata.name") for o in objs if o.get("kind") == "ServiceAccount"}
    for o in objs:
        kind = o.get("kind")
        if kind == "Secret":
            problems.append(f"{name_of(o)}: the chart renders no Secret (secrets come from Vault)")
        if kind == "ServiceAccount" and o.get("automountServiceAccountToken") is not False:
            problems.append(f"{name_of(o)}: automountServiceAccountToken must be false")
        if kind in ("Deployment", "PodDisruptionBudget"):
            labels = dig(o, "spec.selector.matchLabels") or {}
            if set(labels) != SELECTOR_KEYS:
                problems.append(f"{name_of(o)}: selector labels must be exactly {sorted(SELECTOR_KEYS)}, not {sorted(labels)}")
        if kind == "Service":
            if set(dig(o, "spec.selector") or {}) != SELECTOR_KEYS:
                problems.append(f"{name_of(o)}: selector must be exactly {sorted(SELECTOR_KEYS)}")
    for o, spec in pod_specs(objs):
        sa = spec.get("serviceAccountName")
        if sa not in accounts:
            problems.append(f"{name_of(o)}: ServiceAccount {sa!r} is not rendered")
        if o["kind"] == "Deployment":
            sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
            if [c["name"] for c in sidecars] != ["proxy"]:
                problems.append(f"{name_of(o)}: the proxy must be the one native sidecar (init container with restartPolicy Always)")
            for c in sidecars:
                if not c.get("startupProbe"):
                    problems.append(f"{name_of(o)}: the sidecar needs a startupProbe (the app starts after it passes)")
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if digest and not c["image"].endswith("@" + digest):
                problems.append(f"{name_of(o)} container {c['name']}: image {c['image']} is not pinned by digest {digest}")
    return problems


def check_no_secrets(text: str, objs: list[dict]) -> list[str]:
    """No secret value in any rendered manifest: secrets are vault: references."""
    problems = []
    for pattern, what in SECRET_PATTERNS:
        for m in pattern.finditer(text):
            problems.append(f"{what} in the rendered manifests: {m.group(0)[:40]}...")
    for o in objs:
        for key, value in (o.get("data") or {}).items():
            if not isinstance(value, str) or not key.endswith(".toml"):
                continue
            for m in SECRET_KEYS.finditer(value):
                v = m.group("v")
                if m.group(1) == "database_url" and not re.search(r"://[^/@]*:[^/@]*@", v):
                    continue  # a URL without a password names no secret
                if not v.startswith("vault:"):
                    problems.append(f"{name_of(o)} {key}: {m.group(1)} holds a value, not a vault: reference")
    for o, spec in pod_specs(objs):
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            for e in c.get("env") or []:
                if re.search(r"(TOKEN|SECRET|PASSWORD|KEY)$", e["name"]) and "value" in e and not str(e["value"]).startswith("vault:"):
                    problems.append(f"{name_of(o)} container {c['name']}: env {e['name']} holds a value, not a vault: reference")
    return problems
