#!/usr/bin/env python3
"""The live observability checks: a real `cloudsec up`, a real Prometheus
evaluating the rules, steady traffic, and fault drills.

Run by scripts/check-observability inside a private network namespace
(`unshare --net`): the drills refuse connections with iptables there, and
only there (CLOUDSEC_OBS_NETNS=1 says so; without it the documents drill
refuses to touch the firewall and fails).

  drills.py CLOUDSEC_BINARY WORK_DIR

Steps, each reported PASS or FAIL with its time:
  1. moto (SNS/SQS), `cloudsec up` on it with every listener on port 0,
     Prometheus with the test profile of the rules (obs.py scale-rules),
     scraping every admin port every second; waits on readiness, never a
     fixed sleep.
  2. A user signs up, confirms (the code from `up`'s log) and logs in; a
     thread keeps creating and listing documents, reading the audit log and
     failing a login now and then.
  3. Every rule is healthy in Prometheus; every rule expression (as
     shipped) and every dashboard query evaluates through the query API;
     the core panels return series.
  4. /metrics of every admin port matches docs/observability.md.
  5. Drills: a poison message -> DeadLettersPresent; the broker stopped ->
     OutboxEventsStuck, then resolved after it resumes; documents stopped ->
     GatewayErrorBudgetBurn and MeshErrorBudgetBurn (critical).
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import obs  # noqa: E402

DOC = obs.ROOT / "docs" / "observability.md"

# Panels that must return series on a platform with traffic, by dashboard.
CORE_PANELS = {
    "cloudsec-overview": [
        "Gateway availability: burn rate (1 h)", "Gateway latency: burn rate (1 h)",
        "Mesh success: burn rate per service (1 h)", "Requests per second by status", "Latency",
        "Requests in flight", "Requests per second", "Latency p99", "Requests in flight (concurrency)",
        "Database connections in use / max", "Database checkout wait (probe)", "Targets up", "Build",
    ],
    "cloudsec-mesh": [
        "Calls per second by backend", "Success rate by backend", "Latency p99 by backend",
        "Calls per second by route", "Latency p99 by route", "Requests in flight",
        "Endpoints with an open breaker", "Authorization decisions", "Inbound calls per second by service",
        "Connections opened per second", "Bytes per second",
    ],
    "cloudsec-events": [
        "Oldest unpublished event", "Outbox depth", "Relay: events per second by outcome",
        "Relay: publish call p99", "Lag at receipt", "Settled per second by outcome", "Queue depth",
        "Dead letters",
    ],
    "cloudsec-security": [
        "Workload certificates: time left", "Trust anchors: time left", "Signing key age",
        "Time to the next signing key", "Keys in the JWKS", "JWKS fetches by outcome",
        "Failed sign-in checks per second", "Lockouts (10 minutes)",
        "Audit: records appended and broken chains",
    ],
}


class Failure(Exception):
    pass


RESULTS = []


def report(name, ok, started, detail=""):
    took = time.monotonic() - started
    RESULTS.append((name, ok))
    line = f"{'PASS' if ok else 'FAIL'} {name} ({took:.1f} s)"
    if detail:
        line += f": {detail}"
    print(line, flush=True)


def step(name):
    """Runs the decorated function as one reported step."""
    def wrap(fn):
        def run(*args, **kwargs):
            started = time.monotonic()
            try:
                detail = fn(*args, **kwargs)
                report(name, True, started, detail or "")
                return True
            except Failure as e:
                report(name, False, started, str(e))
                return False
        return run
    return wrap


def eventually(what, check, timeout, every=0.2):
    """Polls `check` until it returns a truthy value, or fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(every)
    raise Failure(f"{what} not within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=5):
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        headers.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Processes:
    """The processes this run starts; stopped in reverse order at the end."""

    def __init__(self, work):
        self.work = work
        self.running = []

    def start(self, name, argv, env=None):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, cwd=self.work)
        self.running.append((name, p))
        return p

    def stop_all(self):
        for name, p in reversed(self.running):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.terminate()
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class Prometheus:
    def __init__(self, url):
        self.url = url

    def get(self, path, **params):
        q = urllib.parse.urlencode(params)
        status, body = http("GET", f"{self.url}{path}?{q}", timeout=30)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise Failure(f"{path} {params}: {data.get('errorType')}: {data.get('error')}")
        return data["data"]

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)["result"]

    def alerts(self, name, state="firing", **labels):
        found = []
        for a in self.get("/api/v1/alerts")["alerts"]:
            if a["labels"].get("alertname") != name or (state and a["state"] != state):
                continue
            if all(a["labels"].get(k) == v for k, v in labels.items()):
                found.append(a)
        return found


class Traffic(threading.Thread):
    """Steady REST traffic: create, list, read the audit log; a failed
    login every tenth round."""

    def __init__(self, gateway, token, email):
        super().__init__(daemon=True)
        self.gateway, self.token, self.email = gateway, token, email
        self.stop = threading.Event()
        self.statuses = {}

    def call(self, method, path, body=None):
        try:
            status, _ = http(method, self.gateway + path, body,
                             {"authorization": f"Bearer {self.token}"}, timeout=3)
        except OSError:
            status = 0
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            self.call("POST", "/v1/documents",
                      {"title": f"doc {n}", "classification": "INTERNAL", "content": f"body {n}"})
            self.call("GET", "/v1/documents")
            self.call("GET", "/v1/audit/records")
            if n % 10 == 0:
                self.call("POST", "/v1/auth:login", {"email": self.email, "password": "wrong horse battery"})
            self.stop.wait(0.1)


def read_metrics_doc():
    """The metrics table of docs/observability.md: name -> (type, labels, always)."""
    table = {}
    inside = False
    for line in DOC.read_text().split("\n"):
        if line.startswith("| metric | type | labels |"):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            name = cells[0].strip("`")
            labels = frozenset() if cells[2] in ("—", "-", "") else frozenset(
                l.strip().strip("`") for l in cells[2].split(","))
            table[name] = (cells[1], labels, cells[4] == "always")
    if not table:
        raise Failure(f"no metrics table in {DOC}")
    return table


def scrape(addr):
    """Families of a /metrics (0.0.4 text): name -> (type, set of label-key sets)."""
    status, text = http("GET", f"http://{addr}/metrics")
    if status != 200:
        raise Failure(f"{addr}/metrics answered {status}")
    types, seen = {}, {}
    for line in text.split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ', line)
        if not m:
            raise Failure(f"{addr}: unparsable sample {line!r}")
        name, keys = m.group(1), set(re.findall(r'(\w+)="', m.group(2) or ""))
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        if "component" not in keys:
            raise Failure(f"{addr}: {name} has no component label")
        keys -= {"component"}
        if name.endswith("_bucket"):
            keys -= {"le"}
        seen.setdefault(family, set()).add(frozenset(keys))
    return {name: (types.get(name, "untyped"), keys) for name, keys in seen.items()}


def main(binary, work):
    binary = str(pathlib.Path(binary).resolve())
    work = pathlib.Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    procs = Processes(work)
    try:
        return run(binary, work, procs)
    finally:
        procs.stop_all()
        failed = [n for n, ok in RESULTS if not ok]
        print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed"
              + (f"; logs in {work}" if failed else ""), flush=True)


def run(binary, work, procs):
    started = time.monotonic()
    # 1. moto, the platform, Prometheus.
    moto_port = free_port()
    procs.start("moto", ["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)])
    moto_url = f"http://127.0.0.1:{moto_port}"
    eventually("moto answering", lambda: http("GET", f"{moto_url}/moto-api/")[0] < 500, 60)
    data = work / "data"
    config = work / "up.toml"
    config.write_text(f"""[telemetry]
log_format = "json"

[events]
transport = "sns"
topic = "cloudsec-observability"

[events.aws]
region = "us-east-1"
endpoint_url = "{moto_url}"
dummy_credentials = true

[events.relay]
publish_timeout = "1s"
backoff = {{ initial = "100ms", max = "1s" }}
metrics_interval = "1s"

[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[auth]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[documents]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[audit]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
""")
    up = procs.start("up", [binary, "up", "--data-dir", str(data), "--config", str(config)])

    def platform_ready():
        if up.poll() is not None:
            raise Failure(f"cloudsec up exited with {up.returncode}; see {work}/up.log")
        platform = json.loads((data / "platform.json").read_text())
        if all(http("GET", f"http://{a}/ready")[0] == 200 for a in platform["admin"].values()):
            return platform
        return None

    platform = eventually("every admin port ready", platform_ready, 180)
    gateway = f"http://{platform['gateway']}"
    rules = work / "rules"
    obs.write_scaled_rules(rules, 60)
    prom_port = free_port()
    (work / "prometheus.yml").write_text(obs.prometheus_config(platform, rules, interval="1s"))
    procs.start("prometheus", [
        "prometheus", f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
    ])
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    eventually("Prometheus ready", lambda: http("GET", f"{prom.url}/-/ready")[0] == 200, 60)
    report("platform, moto and Prometheus started", True, started,
           f"{len(platform['admin'])} admin ports scraped every second")

    # 2. A user, then steady traffic.
    t0 = time.monotonic()
    email = "drill@example.com"
    password = "correct horse battery staple"
    status, body = http("POST", f"{gateway}/v1/auth:signUp",
                        {"email": email, "password": password, "tenant": "drills"})
    if status != 200:
        raise Failure(f"sign-up answered {status}: {body}")

    def code():
        for line in (work / "up.log").read_text().split("\n"):
            if email in line and "confirmation code" in line:
                m = re.search(r'code["=:]+"?(\d{6})', line)
                if m:
                    return m.group(1)
        return None

    confirmation = eventually("the confirmation code in the log", code, 60)
    status, body = http("POST", f"{gateway}/v1/auth:confirmSignUp", {"email": email, "code": confirmation})
    if status != 200:
        raise Failure(f"confirmation answered {status}: {body}")
    status, body = http("POST", f"{gateway}/v1/auth:login", {"email": email, "password": password})
    if status != 200:
        raise Failure(f"login answered {status}: {body}")
    token = json.loads(body)["accessToken"]
    traffic = Traffic(gateway, token, email)
    traffic.start()
    eventually("traffic succeeding", lambda: traffic.statuses.get(200, 0) >= 30, 60)
    report("a user signs up, confirms and logs in; traffic flows", True, t0)

    # 3. Rules healthy; every expression evaluates; core panels have data.
    checks_ok = rules_and_panels(prom)
    # 4. /metrics against the documentation.
    doc_ok = metrics_match_the_doc(platform)
    # 5. Drills.
    drills_ok = [
        drill_poison(prom, moto_url),
        drill_broker(prom, procs),
        drill_documents(prom, platform),
    ]
    traffic.stop.set()
    traffic.join(timeout=10)
    print(f"traffic: {dict(sorted(traffic.statuses.items()))}", flush=True)
    return 0 if checks_ok and doc_ok and all(drills_ok) else 1


def rules_and_panels(prom):
    ok = True

    @step("every rule loaded and evaluated without error (test profile)")
    def healthy():
        def evaluated():
            groups = prom.get("/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if not rules or any(r.get("lastEvaluation", "").startswith("0001") for r in rules):
                return None
            return rules
        rules = eventually("every rule evaluated once", evaluated, 60)
        expected = len(obs.all_rules())
        if len(rules) != expected:
            raise Failure(f"{len(rules)} rules loaded, the files have {expected}")
        bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
        if bad:
            raise Failure("; ".join(bad))
        return f"{len(rules)} rules"

    @step("every rule expression (as shipped) evaluates through the query API")
    def rule_expressions():
        for r in obs.all_rules():
            try:
                prom.query(r["expr"])
            except Failure as e:
                raise Failure(f"{r['file']} {r['name']}: {e}")
        return f"{len(obs.all_rules())} expressions"

    @step("every dashboard query evaluates; the core panels return series")
    def panels():
        targets = obs.dashboard_targets()
        empty = []
        core = {(uid, title) for uid, titles in CORE_PANELS.items() for title in titles}
        known = {(uid, title) for uid, title, _ in targets}
        missing = core - known
        if missing:
            raise Failure(f"core panels not in the dashboards: {sorted(missing)}")
        returned = {}
        for uid, title, expr in targets:
            try:
                result = prom.query(obs.concrete(expr))
            except Failure as e:
                raise Failure(f"{uid} / {title}: {e}")
            returned[(uid, title)] = returned.get((uid, title), False) or bool(result)

        def core_have_data():
            nonlocal empty
            empty = []
            for key in sorted(core):
                if not returned.get(key):
                    exprs = [e for u, t, e in targets if (u, t) == key]
                    returned[key] = any(prom.query(obs.concrete(e)) for e in exprs)
                if not returned[key]:
                    empty.append(f"{key[0]} / {key[1]}")
            return not empty

        try:
            eventually("core panels returning series", core_have_data, 90, every=2)
        except Failure:
            raise Failure(f"no series: {empty}")
        return f"{len(targets)} queries, {len(core)} core panels with data"

    for check in (healthy, rule_expressions, panels):
        ok = check() and ok
    return ok


@step("/metrics of every admin port matches docs/observability.md")
def metrics_match_the_doc(platform):
    doc = read_metrics_doc()
    exposed = {}
    for workload, addr in sorted(platform["admin"].items()):
        for name, (kind, keysets) in scrape(addr).items():
            e = exposed.setdefault(name, (kind, set(), set()))
            e[1].update(keysets)
            e[2].add(workload)
    problems = []
    for name, (kind, keysets, where) in sorted(exposed.items()):
        if name not in doc:
            problems.append(f"{name} ({kind}, on {sorted(where)}) is not documented")
            continue
        dkind, dlabels, _ = doc[name]
        if dkind != kind:
            problems.append(f"{name}: documented as {dkind}, exposed as {kind}")
        for keys in keysets:
            if keys != dlabels:
                problems.append(f"{name}: exposed with labels {sorted(keys)}, documented {sorted(dlabels)}")
    for name, (_, _, always) in sorted(doc.items()):
        if always and name not in exposed:
            problems.append(f"{name} is documented as always exposed but no admin port has it")
    if problems:
        raise Failure("; ".join(problems))
    optional = sorted(n for n, (_, _, always) in doc.items() if not always and n not in exposed)
    return f"{len(exposed)} families match; not seen (conditional): {', '.join(optional) or 'none'}"


def moto_sqs(moto_url, action, **params):
    """One SQS call to moto (JSON protocol; moto picks the service from the
    credential scope, and checks no signature)."""
    status, text = http("POST", moto_url, json.dumps(params).encode(), {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": f"AmazonSQS.{action}",
        "authorization": "AWS4-HMAC-SHA256 Credential=cloudsec/20240101/us-east-1/sqs/aws4_request, "
                         "SignedHeaders=host, Signature=0",
    })
    if status != 200:
        raise Failure(f"SQS {action} answered {status}: {text[:200]}")
    return json.loads(text) if text else {}


@step("drill: a poison message on audit's queue raises DeadLettersPresent")
def drill_poison(prom, moto_url):
    if prom.alerts("DeadLettersPresent", state=None):
        raise Failure("DeadLettersPresent already active before the poison")
    url = moto_sqs(moto_url, "GetQueueUrl", QueueName="audit")["QueueUrl"]
    moto_sqs(moto_url, "SendMessage", QueueUrl=url, MessageBody="this is not an event")
    t = time.monotonic()
    eventually("DeadLettersPresent firing for queue audit",
               lambda: prom.alerts("DeadLettersPresent", queue="audit"), 90, every=1)
    return f"fired {time.monotonic() - t:.0f} s after the message was sent"


@step("drill: the broker stopped raises OutboxEventsStuck, which resolves once it is back")
def drill_broker(prom, procs):
    if prom.alerts("OutboxEventsStuck", state=None, component="documents"):
        raise Failure("OutboxEventsStuck already active before the drill")
    moto = dict(procs.running)["moto"]
    os.kill(moto.pid, signal.SIGSTOP)
    t = time.monotonic()
    try:
        eventually("OutboxEventsStuck firing for documents",
                   lambda: prom.alerts("OutboxEventsStuck", component="documents"), 120, every=1)
        fired = time.monotonic() - t
    finally:
        os.kill(moto.pid, signal.SIGCONT)
    t = time.monotonic()
    eventually("OutboxEventsStuck resolved after the broker resumed",
               lambda: not prom.alerts("OutboxEventsStuck", state=None, component="documents"), 120, every=1)
    return f"fired after {fired:.0f} s of outage; resolved {time.monotonic() - t:.0f} s after recovery"


@step("drill: documents stopped raises GatewayErrorBudgetBurn and MeshErrorBudgetBurn (critical)")
def drill_documents(prom, platform):
    if os.environ.get("CLOUDSEC_OBS_NETNS") != "1":
        raise Failure("not in a private network namespace (CLOUDSEC_OBS_NETNS=1): "
                      "refusing to change this machine's firewall; run scripts/check-observability")
    service = "cloudsec.documents.v1.DocumentService"
    for name, labels in (("GatewayErrorBudgetBurn", {"severity": "critical"}),
                         ("MeshErrorBudgetBurn", {"severity": "critical", "grpc_service": service})):
        if prom.alerts(name, state=None, **labels):
            raise Failure(f"{name} already active before the drill")
    ports = [platform["services"][service][1].rsplit(":", 1)[1],
             platform["admin"]["documents"].rsplit(":", 1)[1],
             platform["admin"]["documents-sidecar"].rsplit(":", 1)[1]]
    rules = [["INPUT", "-p", "tcp", "--dport", p, "-j", "REJECT", "--reject-with", "tcp-reset"] for p in ports]
    for r in rules:
        subprocess.run(["iptables", "-A", *r], check=True)
    t = time.monotonic()
    try:
        eventually("GatewayErrorBudgetBurn (critical) firing",
                   lambda: prom.alerts("GatewayErrorBudgetBurn", severity="critical"), 120, every=1)
        gateway = time.monotonic() - t
        eventually(f"MeshErrorBudgetBurn (critical) firing for {service}",
                   lambda: prom.alerts("MeshErrorBudgetBurn", severity="critical", grpc_service=service),
                   120, every=1)
        mesh = time.monotonic() - t
    finally:
        for r in rules:
            subprocess.run(["iptables", "-D", *r], check=False)
    return f"gateway alert after {gateway:.0f} s, mesh alert after {mesh:.0f} s"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except Failure as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
