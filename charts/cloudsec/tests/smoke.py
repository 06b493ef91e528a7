"""The pod smoke run: the chart's rendered Deployments and Jobs, run as a
kubelet would run them, then the README walkthrough through the gateway
Service. scripts/smoke-pods starts it inside the "node" network namespace
(a bridge with 10.244.0.1) and documents the options.

What it does, in order:

1. renders ci/smoke-values.yaml (helm-python-sdk) with the trust bundle of a
   CA made for the run and the image's digest; `--break` damages the
   rendered manifests for the negative tests;
2. starts a PostgreSQL "pod" (its own network namespace) for the
   Service name the values use, and creates the databases (the DBA's job);
3. plays cert-manager: every Certificate becomes a Secret (tls.crt,
   tls.key, ca.crt) issued by `cloudsec cert` from that CA, after checking
   that the SPIFFE id and DNS name it asks for are what `cloudsec cert`
   issues for its ServiceAccount;
4. plays the operator: each `vault:` reference of a configuration gets a
   random value in the keystore of the volume claim it is read from;
5. runs the hook Jobs by weight (ServiceAccounts and ConfigMaps first),
   each to completion;
6. starts every Deployment's pods at once: each pod its own network
   namespace and address on the bridge, /etc/hosts resolving every Service
   (headless: the pods' addresses; others: the pod behind it), the
   rendered volumes (ConfigMap items, Secret items, emptyDir, volume
   claims; a missing key fails like the kubelet's FailedMount), and each
   container from the image's root file system, read-only, as the rendered
   user, with the rendered command, args and env; native sidecars first,
   the app only once the sidecar's startupProbe passes; the rendered
   startup, readiness and liveness probes decide when a pod is ready;
7. the walkthrough: sign-up, login, create, read, list, update, a stale
   update (409), delete, the audit records of those changes and the chain
   verified, the JWKS, all through the gateway Service's address;
8. SIGTERM to every pod (apps first, sidecars after), each must exit 0.

It prints each pod's start-to-ready time and writes them to --report.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chartlib  # noqa: E402
from chartlib import CHART, NAMESPACE  # noqa: E402

SUBNET = "10.244.0"
NODE_IP = f"{SUBNET}.1"
UID = 65532


class SmokeFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"smoke: {message}", flush=True)


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SmokeFailure(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def parse_duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(text[:-1]) * units[text[-1]]


# ---------------------------------------------------------------- the network


class Network:
    """The node's bridge (this process's namespace) and a namespace per pod."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        # .2-.9 infrastructure, .10-.99 Deployments' pods (planned), .100- Jobs.
        self.next_ip = 100
        self.pods: list[str] = []
        sh("ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", "br0")
        sh("ip", "link", "set", "br0", "up")
        sh("ip", "link", "set", "lo", "up")

    def add_pod(self, name: str, ip: str | None = None) -> tuple[str, str]:
        """A namespace with its own address; returns (namespace, address)."""
        n = len(self.pods)
        ns = f"{self.prefix}-{n}"
        if ip is None:
            ip = f"{SUBNET}.{self.next_ip}"
            self.next_ip += 1
        host_if, pod_if = f"{self.prefix}h{n}"[-15:], f"{self.prefix}p{n}"[-15:]
        sh("ip", "netns", "add", ns)
        self.pods.append(ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        sh("ip", "link", "set", pod_if, "netns", ns)
        sh("ip", "-n", ns, "link", "set", pod_if, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", NODE_IP)
        sh("ip", "link", "set", host_if, "master", "br0", "up")
        Path(f"/etc/netns/{ns}").mkdir(parents=True, exist_ok=True)
        return ns, ip

    def write_hosts(self, ns: str, hostname: str, ip: str, names: dict[str, str]) -> Path:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost", f"{ip}\t{hostname}"]
        lines += [f"{addr}\t{name}" for name, addr in sorted(names.items())]
        path = Path(f"/etc/netns/{ns}/hosts")
        path.write_text("\n".join(lines) + "\n")
        return path

    def close(self):
        for ns in self.pods:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


# ---------------------------------------------------------------- containers


@dataclass
class Container:
    pod: "Pod"
    spec: dict
    sidecar: bool = False
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    ready: bool = False
    startup_done: bool = False
    fails: dict = field(default_factory=dict)
    last_probe: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec["name"]

    def log_path(self) -> Path:
        return self.pod.dir / f"{self.name}.log"

    def port(self, ref) -> int:
        if isinstance(ref, int):
            return ref
        for p in self.spec.get("ports") or []:
            if p.get("name") == ref:
                return p["containerPort"]
        raise SmokeFailure(f"pod {self.pod.name} container {self.name}: probe port {ref!r} is not one of its ports")

    def probe(self, kind: str) -> bool | None:
        """Runs the rendered probe once: True, False, or None when there is none."""
        p = self.spec.get(kind)
        if not p:
            return None
        action = p.get("httpGet")
        if not action:
            raise SmokeFailure(f"{self.pod.name}/{self.name}: only httpGet probes are run here ({kind})")
        url = f"http://{self.pod.ip}:{self.port(action['port'])}{action.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=p.get("timeoutSeconds", 1)) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, OSError, TimeoutError):
            return False


class Pod:
    def __init__(self, run: "Run", owner: dict, index: int, ip: str | None = None):
        self.run = run
        self.owner = owner
        self.kind = owner["kind"]
        self.spec = copy.deepcopy(owner["spec"]["template"]["spec"])
        base = owner["metadata"]["name"]
        self.name = f"{base}-{index}"
        self.dir = run.dir / "pods" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ns, self.ip = run.net.add_pod(self.name, ip)
        self.hosts = run.net.write_hosts(self.ns, self.name, self.ip, run.service_names())
        self.labels = owner["spec"]["template"]["metadata"].get("labels", {})
        self.volumes = self.materialize_volumes()
        self.init = [Container(self, c, sidecar=c.get("restartPolicy") == "Always") for c in self.spec.get("initContainers") or []]
        self.main = [Container(self, c) for c in self.spec["containers"]]
        self.created = time.monotonic()
        self.ready_at: float | None = None

    # -- volumes, as the kubelet would set them up
    def materialize_volumes(self) -> dict[str, Path]:
        out = {}
        sec = self.spec.get("securityContext") or {}
        fs_group = sec.get("fsGroup")
        for v in self.spec.get("volumes") or []:
            path = self.dir / "volumes" / v["name"]
            if "configMap" in v:
                cm = self.run.configmaps.get(v["configMap"]["name"])
                if cm is None:
                    raise SmokeFailure(f"pod {self.name}: MountVolume.SetUp failed for volume {v['name']}: configmap {v['configMap']['name']!r} not found")
                self.write_items(path, cm, v["configMap"], "configmap", v["configMap"]["name"], fs_group, 0o644)
            elif "secret" in v:
                s = self.run.secrets.get(v["secret"]["secretName"])
                if s is None:
                    raise SmokeFailure(f"pod {self.name}: MountVolume.SetUp failed for volume {v['name']}: secret {v['secret']['secretName']!r} not found")
                self.write_items(path, s, v["secret"], "secret", v["secret"]["secretName"], fs_group, 0o644)
            elif "emptyDir" in v:
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o777)
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
                    os.chmod(path, 0o2777)
            elif "persistentVolumeClaim" in v:
                path = self.run.volume_claim(v["persistentVolumeClaim"]["claimName"], fs_group)
            elif "projected" in v:
                raise SmokeFailure(f"pod {self.name}: volume {v['name']} is a projected ServiceAccount token, which needs an API server (Vault mode is not what the smoke run renders)")
            else:
                raise SmokeFailure(f"pod {self.name}: volume {v['name']}: unsupported source {sorted(v)}")
            out[v["name"]] = path
        return out

    def write_items(self, path: Path, data: dict, source: dict, what: str, name: str, fs_group, default_mode):
        path.mkdir(parents=True, exist_ok=True)
        mode = source.get("defaultMode", default_mode)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise SmokeFailure(f"pod {self.name}: MountVolume.SetUp failed: {what} {name!r} has no key {item['key']!r} (it has {sorted(data)})")
            f = path / item["path"]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data[item["key"]] if isinstance(data[item["key"]], bytes) else data[item["key"]].encode())
            os.chmod(f, item.get("mode", mode))
            if fs_group is not None:
                os.chown(f, 0, fs_group)
        os.chmod(path, 0o755)

    # -- containers
    def env_of(self, c: dict) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOSTNAME": self.name, "HOME": "/nonexistent"}
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "valueFrom" in e:
                ref = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
                env[e["name"]] = {"status.podIP": self.ip, "metadata.name": self.name, "metadata.namespace": NAMESPACE}.get(ref, "")
        return env

    def start(self, c: Container):
        spec = c.spec
        sec = {**(self.spec.get("securityContext") or {}), **(spec.get("securityContext") or {})}
        if not sec.get("readOnlyRootFilesystem"):
            raise SmokeFailure(f"{self.name}/{c.name}: the smoke run only runs read-only roots")
        uid, gid = sec.get("runAsUser", UID), sec.get("runAsGroup", UID)
        if sec.get("runAsNonRoot") and uid == 0:
            raise SmokeFailure(f"{self.name}/{c.name}: runAsNonRoot with uid 0")
        image = spec["image"]
        if self.run.digest and not image.endswith("@" + self.run.digest):
            raise SmokeFailure(f"{self.name}/{c.name}: image {image} is not the image built for this run ({self.run.digest})")
        root = self.dir / "roots" / c.name
        skel = self.dir / "skel" / c.name
        shutil.rmtree(skel, ignore_errors=True)
        for d in ("proc", "dev", "etc"):
            (skel / d).mkdir(parents=True, exist_ok=True)
        for f in ("etc/hosts", "etc/resolv.conf", "etc/hostname", "dev/null", "dev/zero", "dev/urandom", "dev/random"):
            (skel / f).touch()
        mounts = []
        for m in spec.get("volumeMounts") or []:
            src = self.volumes[m["name"]]
            (skel / m["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
            mounts.append((src, m["mountPath"], m.get("readOnly", False)))
        root.mkdir(parents=True, exist_ok=True)
        resolv = self.dir / "resolv.conf"
        resolv.write_text(f"search {NAMESPACE}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n")
        hostname = self.dir / "hostname"
        hostname.write_text(self.name + "\n")
        q = shlex.quote
        lines = [
            "set -e",
            f"mount -t overlay overlay -o lowerdir={q(str(skel))}:{q(str(self.run.rootfs))} {q(str(root))}",
            f"mount --bind {q(str(self.hosts))} {q(str(root))}/etc/hosts",
            f"mount --bind {q(str(resolv))} {q(str(root))}/etc/resolv.conf",
            f"mount --bind {q(str(hostname))} {q(str(root))}/etc/hostname",
            f"mount -t proc proc {q(str(root))}/proc",
        ]
        for dev in ("null", "zero", "urandom", "random"):
            lines.append(f"mount --bind /dev/{dev} {q(str(root))}/dev/{dev}")
        for src, target, ro in mounts:
            t = f"{q(str(root))}{q(target)}"
            lines.append(f"mount --bind {q(str(src))} {t}")
            if ro:
                lines.append(f"mount -o remount,bind,ro {t}")
        env = " ".join(f"{q(k)}={q(v)}" for k, v in self.env_of(spec).items())
        argv = " ".join(q(a) for a in (spec.get("command") or []) + (spec.get("args") or []))
        if not argv:
            raise SmokeFailure(f"{self.name}/{c.name}: no command (the image's entrypoint is not read here)")
        lines.append(f"cd {q(str(root))}")
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        lines.append(f"exec env -i {env} {chroot} --userspec={uid}:{gid} {q(str(root))} {argv}")
        script = "\n".join(lines)
        out = open(c.log_path(), "ab")
        c.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        c.started = time.monotonic()
        c.ready = False
        c.startup_done = not spec.get("startupProbe")
        c.fails = {}
        c.last_probe = {}

    def containers(self) -> list[Container]:
        return self.init + self.main

    def stop(self, grace: float) -> list[str]:
        """SIGTERM the apps, then the sidecars (native sidecars stop last); exit codes."""
        problems = []
        for group in (self.main, [c for c in self.init if c.sidecar]):
            for c in group:
                if c.proc and c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for c in group:
                if not c.proc:
                    continue
                try:
                    code = c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
                    problems.append(f"{self.name}/{c.name} did not stop within {grace:.0f}s of SIGTERM")
                    continue
                if code != 0:
                    problems.append(f"{self.name}/{c.name} exited {code} after SIGTERM")
        return problems


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, args, net: Network):
        self.args = args
        self.net = net
        self.dir = Path(args.work)
        self.rootfs = Path(args.rootfs).resolve()
        self.digest = args.digest
        self.configmaps: dict[str, dict] = {}
        self.secrets: dict[str, dict] = {}
        self.services: list[dict] = []
        self.pods: list[Pod] = []
        self.claims: dict[str, Path] = {}
        self.extra_names: dict[str, str] = {}
        self.report: dict = {"pods": {}}
        # Volume claims and the operator's files live where the pods' user
        # can reach them (the operator's steps run as that user), outside
        # the work tree, whose parents may be private.
        self.shared = Path(tempfile.mkdtemp(prefix="cloudsec-smoke-"))
        os.chmod(self.shared, 0o711)

    def volume_claim(self, claim: str, fs_group) -> Path:
        path = self.claims.get(claim)
        if path is None:
            path = self.shared / "claims" / claim
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o711)
            self.claims[claim] = path
        # fsGroupChangePolicy OnRootMismatch: only the root of the volume.
        if fs_group is not None and path.stat().st_gid != fs_group:
            os.chown(path, 0, fs_group)
            os.chmod(path, 0o2770)
        return path

    def service_names(self) -> dict[str, str]:
        """Every Service name (short and qualified) -> the address it leads to."""
        names = dict(self.extra_names)
        for svc in self.services:
            sel = svc["spec"].get("selector") or {}
            addrs = [ip for (_, labels, ip) in self.planned if all(labels.get(k) == v for k, v in sel.items())]
            if not addrs:
                continue
            n = svc["metadata"]["name"]
            for name in (n, f"{n}.{NAMESPACE}", f"{n}.{NAMESPACE}.svc", f"{n}.{NAMESPACE}.svc.cluster.local"):
                names[name] = addrs[0]
        return names

    # -- the database "pod"
    def start_postgres(self, host: str) -> None:
        bindir = next(Path("/usr/lib/postgresql").glob("*/bin"), None)
        if bindir is None:
            raise SmokeFailure("PostgreSQL's server binaries are missing (apt-get install postgresql)")
        ns, ip = self.net.add_pod("postgres", f"{SUBNET}.2")
        data = self.shared / "postgres"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        shutil.chown(data, "postgres", "postgres")
        sh("runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        with open(data / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        out = open(self.dir / "postgres.log", "ab")
        self.postgres = subprocess.Popen(
            ["ip", "netns", "exec", ns, "runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data / "data"),
             "-c", f"listen_addresses={ip}", "-c", f"unix_socket_directories={data}", "-c", "fsync=off", "-p", "5432"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        for name in (host, host.split(".")[0]):
            self.extra_names[name] = ip
        self.extra_names[host + ".cluster.local"] = ip
        deadline = time.monotonic() + 30
        while sh("pg_isready", "-q", "-h", ip, "-p", "5432", check=False).returncode != 0:
            if self.postgres.poll() is not None or time.monotonic() > deadline:
                raise SmokeFailure(f"PostgreSQL did not start; see {self.dir / 'postgres.log'}")
            time.sleep(0.1)
        self.postgres_ip = ip
        log(f"PostgreSQL pod {ip}:5432 ({host})")

    def stop_postgres(self):
        p = getattr(self, "postgres", None)
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def render(args, ca_pem: str) -> str:
    values = chartlib.values_of(CHART / "ci" / "smoke-values.yaml", {"mesh": {"trustBundle": ca_pem}, "image": {"digest": args.digest}})
    if args.values:
        values = chartlib.merge(values, yaml.safe_load(Path(args.values).read_text()) or {})
    try:
        return chartlib.manifest_text(chartlib.render(values))
    except Exception as e:  # noqa: BLE001
        raise SmokeFailure(f"the chart refused the values: {str(e).strip()}") from e


def damage(objs: list[dict], what: str) -> None:
    """The negative tests' damage to the rendered manifests."""
    if what == "probe-port":
        for o in objs:
            if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"):
                o["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 19999
                return
    if what == "configmap-key":
        for o in objs:
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-documents") and "proxy.toml" in o.get("data", {}):
                del o["data"]["proxy.toml"]
                return
    raise SmokeFailure(f"unknown damage {what!r}")


def hook_weight(o: dict) -> tuple[int, int]:
    ann = o["metadata"].get("annotations") or {}
    order = {"ServiceAccount": 0, "ConfigMap": 1, "Job": 2}
    return int(ann.get("helm.sh/hook-weight", "0")), order.get(o["kind"], 3)


def is_hook(o: dict) -> bool:
    return "helm.sh/hook" in (o["metadata"].get("annotations") or {})


def cloudsec(args, *argv: str, uid: int | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [args.cloudsec, *argv]
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSEC")}
    r = subprocess.run(cmd, capture_output=True, text=True, input=stdin, env=env)
    if r.returncode != 0:
        raise SmokeFailure(f"cloudsec {' '.join(argv)}: {r.stderr.strip()}")
    return r


def play_cert_manager(run: Run, args, objs: list[dict], ca_dir: Path) -> None:
    mesh_cfg = run.dir / "mesh.toml"
    for o in objs:
        if o["kind"] != "Certificate":
            continue
        spec = o["spec"]
        uri = spec["uris"][0]
        sa = uri.rsplit("/sa/", 1)[1]
        trust_domain = uri.split("/")[2]
        mesh_cfg.write_text(f'[mesh]\ntrust_domain = "{trust_domain}"\nnamespace = "{NAMESPACE}"\n')
        want = f"spiffe://{trust_domain}/ns/{NAMESPACE}/sa/{sa}"
        if uri != want or spec["dnsNames"] != [f"{sa}.{NAMESPACE}.svc"]:
            raise SmokeFailure(f"Certificate {o['metadata']['name']} asks for {spec['uris']} {spec['dnsNames']}, the mesh expects {want} and {sa}.{NAMESPACE}.svc")
        out = run.dir / "certs" / sa
        cloudsec(args, "cert", sa, "--data-dir", str(ca_dir), "--out", str(out), "--config", str(mesh_cfg),
                 "--lifetime", spec.get("duration", "1h"))
        run.secrets[spec["secretName"]] = {
            "tls.crt": (out / "cert.pem").read_text(),
            "tls.key": (out / "key.pem").read_text(),
            "ca.crt": (out / "ca.pem").read_text(),
        }
        log(f"cert-manager: Secret {spec['secretName']} for {uri}")


def play_operator(run: Run, args, objs: list[dict]) -> None:
    """Random values for every vault: reference, in the keystore it is read from."""
    import re  # noqa: PLC0415
    import tomllib  # noqa: PLC0415

    claims_of, done = {}, set()
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            for v in o["spec"]["template"]["spec"].get("volumes") or []:
                if "persistentVolumeClaim" in v:
                    claims_of[o["metadata"]["name"]] = v["persistentVolumeClaim"]["claimName"]
    for cm, key, text in chartlib.toml_files(objs):
        refs = sorted(set(re.findall(r'"(vault:[^"]+)"', text)))
        if not refs:
            continue
        cfg = tomllib.loads(text)
        if cfg.get("secrets", {}).get("backend") != "local":
            raise SmokeFailure(f"{cm}/{key}: the smoke run fills local keystores only")
        claim = claims_of.get(cm)
        if claim is None:
            raise SmokeFailure(f"{cm}/{key} reads {refs} but its pods have no volume claim for the keystore")
        volume = run.volume_claim(claim, UID)
        keystore = volume / Path(cfg["secrets"]["dir"]).relative_to("/var/lib/cloudsec")
        op = run.shared / f"operator-{cm}.toml"
        op.write_text(f'[secrets]\nbackend = "local"\ndir = "{keystore}"\n')
        os.chmod(op, 0o644)
        home = run.shared / "operator"
        home.mkdir(exist_ok=True)
        os.chown(home, UID, UID)
        for ref in refs:
            if (claim, ref) in done:
                continue
            done.add((claim, ref))
            value = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()
            cloudsec(args, "secrets", "put", ref, "--config", str(op), "--data-dir", str(home / "data"), uid=UID, stdin=value)
            log(f"operator: {ref} put into claim {claim}")


def wait_job(run: Run, job: dict, deadline: float) -> None:
    backoff = job["spec"].get("backoffLimit", 6)
    for attempt in range(backoff + 1):
        pod = Pod(run, job, attempt)
        run.pods.append(pod)
        c = pod.main[0]
        pod.start(c)
        limit = time.monotonic() + min(job["spec"].get("activeDeadlineSeconds", 600), deadline - time.monotonic())
        while c.proc.poll() is None:
            if time.monotonic() > limit:
                c.proc.kill()
                raise SmokeFailure(f"Job {job['metadata']['name']} did not finish in time; see {c.log_path()}")
            time.sleep(0.05)
        if c.proc.returncode == 0:
            log(f"Job {job['metadata']['name']} completed in {time.monotonic() - pod.created:.1f}s")
            return
        log(f"Job {job['metadata']['name']} attempt {attempt + 1} exited {c.proc.returncode}:\n{tail(c.log_path())}")
    raise SmokeFailure(f"Job {job['metadata']['name']} failed {backoff + 1} times")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join("    " + l for l in path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "    (no log)"


def drive_pods(run: Run, deadline: float) -> None:
    """The kubelet's loop: start containers in order, run probes, restart what dies."""
    while True:
        now = time.monotonic()
        all_ready = True
        for pod in run.pods:
            if pod.kind != "Deployment":
                continue
            # Init containers in order; a native sidecar counts as done once started (startupProbe passed).
            blocked = False
            for c in pod.init:
                if blocked:
                    break
                if c.proc is None:
                    pod.start(c)
                    blocked = True
                    break
                if not c.sidecar:
                    if c.proc.poll() is None:
                        blocked = True
                    elif c.proc.returncode != 0:
                        raise SmokeFailure(f"{pod.name}/{c.name} failed:\n{tail(c.log_path())}")
                    continue
                tick(pod, c, now)
                if not c.startup_done:
                    blocked = True
            if not blocked:
                for c in pod.main:
                    if c.proc is None:
                        pod.start(c)
                    tick(pod, c, now)
            ready = not blocked and all(c.ready for c in pod.main) and all(c.ready for c in pod.init if c.sidecar)
            if ready and pod.ready_at is None:
                pod.ready_at = now
                log(f"pod {pod.name} ready {pod.ready_at - pod.created:.2f}s after it was created ({pod.ip})")
            all_ready &= pod.ready_at is not None
        if all_ready:
            return
        if now > deadline:
            pending = []
            for pod in run.pods:
                if pod.kind == "Deployment" and pod.ready_at is None:
                    for c in pod.containers():
                        state = "not started" if c.proc is None else ("exited %s" % c.proc.returncode if c.proc.poll() is not None else "running")
                        pending.append(f"{pod.name}/{c.name}: {state}, ready={c.ready}, startup={c.startup_done}, probes={c.last_probe}, restarts={c.restarts}\n{tail(c.log_path(), 8)}")
            raise SmokeFailure("pods not ready before the deadline:\n" + "\n".join(pending))
        time.sleep(0.1)


def tick(pod: Pod, c: Container, now: float) -> None:
    """One container: restart it if it died (restartPolicy Always), run its due probes."""
    if c.proc.poll() is not None:
        c.restarts += 1
        if c.restarts > pod.run.args.max_restarts:
            raise SmokeFailure(f"{pod.name}/{c.name} keeps exiting ({c.proc.returncode}):\n{tail(c.log_path())}")
        log(f"{pod.name}/{c.name} exited {c.proc.returncode}; restarting ({c.restarts})")
        time.sleep(min(10, 0.5 * 2 ** c.restarts))
        pod.start(c)
        return
    kinds = ["startupProbe"] if not c.startup_done else ["readinessProbe", "livenessProbe"]
    for kind in kinds:
        p = c.spec.get(kind)
        if not p:
            if kind == "readinessProbe":
                c.ready = True
            continue
        period = p.get("periodSeconds", 10)
        first = c.started + p.get("initialDelaySeconds", 0)
        last = c.last_probe.get(kind, {}).get("at", 0)
        if now < first or now - last < period:
            continue
        ok = c.probe(kind)
        c.last_probe[kind] = {"at": now, "ok": ok}
        if ok:
            c.fails[kind] = 0
            if kind == "startupProbe":
                c.startup_done = True
                c.last_probe.pop("readinessProbe", None)
            elif kind == "readinessProbe":
                c.ready = True
        else:
            c.fails[kind] = c.fails.get(kind, 0) + 1
            if kind == "readinessProbe":
                c.ready = False
            if c.fails[kind] >= p.get("failureThreshold", 3) and kind in ("startupProbe", "livenessProbe"):
                log(f"{pod.name}/{c.name}: {kind} failed {c.fails[kind]} times; killing it")
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()


# ---------------------------------------------------------------- the walkthrough


class Client:
    def __init__(self, base: str):
        self.base = base
        self.calls = 0

    def call(self, method: str, path: str, body=None, token: str | None = None, expect: int | tuple = 200):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        self.calls += 1
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        expected = expect if isinstance(expect, tuple) else (expect,)
        if status not in expected:
            raise SmokeFailure(f"{method} {path}: HTTP {status} (wanted {expected}): {text[:500]}")
        return json.loads(text) if text.strip() else {}


def walkthrough(base: str, deadline: float) -> dict:
    """The README's walkthrough, answer by answer."""
    api = Client(base)
    email, password, tenant = f"ada-{secrets.token_hex(3)}@example.com", "correct horse battery", f"acme-{secrets.token_hex(3)}"
    api.call("POST", "/v1/auth:signUp", {"email": email, "password": password, "tenant": tenant})
    log(f"walkthrough: signed up {email} in tenant {tenant}")
    login = api.call("POST", "/v1/auth:login", {"email": email, "password": password})
    token = login.get("accessToken")
    if not token:
        raise SmokeFailure(f"login gave no accessToken: {login}")
    doc = api.call("POST", "/v1/documents", {"title": "Plan", "classification": "INTERNAL", "labels": {"team": "ops"}, "content": "step one"}, token)
    did, etag = doc.get("id"), doc.get("etag")
    if not did or not etag or doc.get("title") != "Plan":
        raise SmokeFailure(f"create answered {doc}")
    got = api.call("GET", f"/v1/documents/{did}", token=token)
    if got.get("content") != "step one" or got.get("title") != "Plan":
        raise SmokeFailure(f"read answered {got}")
    listed = api.call("GET", "/v1/documents?classification=INTERNAL&label=team%3Dops&pageSize=10", token=token)
    if [d.get("id") for d in listed.get("documents", [])] != [did]:
        raise SmokeFailure(f"list answered {listed}")
    updated = api.call("PATCH", f"/v1/documents/{did}?updateMask=title", {"title": "Plan v2", "etag": etag}, token)
    if updated.get("title") != "Plan v2" or updated.get("etag") == etag:
        raise SmokeFailure(f"update answered {updated}")
    stale = api.call("PATCH", f"/v1/documents/{did}?updateMask=title", {"title": "Plan v3", "etag": etag}, token, expect=409)
    if stale.get("code") != 10:
        raise SmokeFailure(f"a stale update answered {stale}, wanted code 10 (ABORTED)")
    api.call("DELETE", f"/v1/documents/{did}", token=token)
    api.call("GET", f"/v1/documents/{did}", token=token, expect=404)
    log("walkthrough: create, read, list, update, stale update (409), delete, read after delete (404)")
    # The audit log fills from the bus: wait for the four changes.
    want = {"UserSignedUp", "DocumentCreated", "DocumentUpdated", "DocumentDeleted"}
    records = {}
    while True:
        records = api.call("GET", "/v1/audit/records", token=token)
        types = {r.get("eventType", "").rsplit(".", 1)[-1] for r in records.get("records", [])}
        if all(any(w in t for t in types) for w in want):
            break
        if time.monotonic() > deadline:
            raise SmokeFailure(f"the audit log did not get {sorted(want)}; it has {sorted(types)}")
        time.sleep(0.3)
    chain = records.get("records", [])
    for i, r in enumerate(chain):
        if str(r.get("seq")) != str(i + 1) or r.get("tenant") != tenant:
            raise SmokeFailure(f"audit record {i}: seq {r.get('seq')} tenant {r.get('tenant')}, wanted {i + 1} and {tenant}")
        if i and r.get("prevHash") != chain[i - 1].get("hash"):
            raise SmokeFailure(f"audit record {i + 1} does not link to the one before it")
    verified = api.call("GET", "/v1/audit/chain:verify", token=token)
    if verified.get("ok") is not True or str(verified.get("recordsChecked")) != str(len(chain)):
        raise SmokeFailure(f"the audit chain did not verify: {verified}")
    jwks = api.call("GET", "/.well-known/jwks.json")
    if not jwks.get("keys"):
        raise SmokeFailure(f"the JWKS has no keys: {jwks}")
    log(f"walkthrough: {len(records.get('records', []))} audit records, chain verified, {len(jwks['keys'])} signing key(s); {api.calls} calls")
    return {"calls": api.calls, "audit_records": len(records.get("records", []))}


# ---------------------------------------------------------------- the login storm


def tree_tids(root: int) -> list[int]:
    """Every thread of `root` and of all its descendants (a pod container's
    process tree, or the database's: PostgreSQL's postmaster starts a
    session of its own, so a session would miss it)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            # Fields after the command (which may hold spaces): state ppid.
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(d.name))
    tids, todo = [], [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            tids += [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
    return tids


def pin_tree(root: int, cpus: set[int]) -> int:
    n = 0
    for tid in tree_tids(root):
        try:
            os.sched_setaffinity(tid, cpus)
            n += 1
        except OSError:
            pass
    return n


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[round((len(s) - 1) * p)]


class KeepAlive:
    """One keep-alive HTTP/1.1 connection: the benchmark's client, so that
    every timed call is one request on a warm connection."""

    def __init__(self, base: str):
        import http.client  # noqa: PLC0415
        import urllib.parse  # noqa: PLC0415
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"} if body is not None else {}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()


def storm_loop(base: str, body: bytes, cpus: set[int], stop, counts) -> None:
    os.sched_setaffinity(0, cpus)
    client, ok, bad = KeepAlive(base), 0, 0
    while not stop.is_set():
        try:
            status, _ = client.call("POST", "/v1/auth:login", body)
        except OSError:
            status, client = 0, KeepAlive(base)
        if status == 200:
            ok += 1
        else:
            bad += 1
    counts.put((ok, bad))


def login_storm(run: "Run", base: str, calls: int, loops: int, pin: bool = True, db_cpu: int = 0) -> dict:
    """The unrelated call's p99 idle and during a login storm, with auth on
    pods of its own as docs/auth.md recommends for production: the auth
    pod's containers (app and sidecar) and the storm's clients on CPU 1,
    every other pod, the database and the timed client on CPU 0."""
    import multiprocessing  # noqa: PLC0415
    if len(os.sched_getaffinity(0)) < 2:
        raise SmokeFailure("the login storm needs two CPUs")
    # Without pinning (the control): every process may run on every CPU.
    serving, auth_cpu = ({0}, {1}) if pin else ({0, 1}, {0, 1})
    auth_pods = [p for p in run.pods if p.kind == "Deployment" and p.labels.get("app.kubernetes.io/component") == "auth"]
    if not auth_pods:
        raise SmokeFailure("no auth pod to pin")
    pinned = {}
    for pod in run.pods:
        if pod.kind != "Deployment":
            continue
        cpus = auth_cpu if pod in auth_pods else serving
        for c in pod.containers():
            if c.proc and c.proc.poll() is None:
                pinned[f"{pod.name}/{c.name}"] = (sorted(cpus), pin_tree(c.proc.pid, cpus))
    # The database is another machine in production; here it shares one
    # of the two CPUs: the serving one (0, the default) or auth's (1).
    db = ({db_cpu} if pin else serving)
    pinned["postgres"] = (sorted(db), pin_tree(run.postgres.pid, db))
    os.sched_setaffinity(0, serving)
    log("login storm: threads pinned " + ", ".join(f"{k} {n} on CPU {','.join(map(str, c))}" for k, (c, n) in pinned.items()))

    api = Client(base)
    email, password = f"storm-{secrets.token_hex(3)}@example.com", "correct horse battery"
    api.call("POST", "/v1/auth:signUp", {"email": email, "password": password, "tenant": f"storm-{secrets.token_hex(3)}"})
    token = api.call("POST", "/v1/auth:login", {"email": email, "password": password})["accessToken"]
    api.call("POST", "/v1/documents", {"title": "Plan", "classification": "INTERNAL", "content": "step one"}, token)
    timed = KeepAlive(base)

    def unrelated() -> float:
        t = time.perf_counter()
        status, body = timed.call("GET", "/v1/documents?pageSize=10", token=token)
        elapsed = time.perf_counter() - t
        if status != 200 or b'"documents"' not in body:
            raise SmokeFailure(f"GET /v1/documents answered {status}: {body[:300]!r}")
        return elapsed

    for _ in range(20):
        unrelated()
    idle = [unrelated() for _ in range(calls)]
    ctx = multiprocessing.get_context("fork")
    stop, counts = ctx.Event(), ctx.Queue()
    body = json.dumps({"email": email, "password": password}).encode()
    workers = [ctx.Process(target=storm_loop, args=(base, body, auth_cpu, stop, counts)) for _ in range(loops)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # the storm fills auth's hashing pool first
    t = time.monotonic()
    busy = [unrelated() for _ in range(calls)]
    storm_s = time.monotonic() - t
    stop.set()
    ok = bad = 0
    for _ in workers:
        o, b = counts.get(timeout=60)
        ok, bad = ok + o, bad + b
    for w in workers:
        w.join(timeout=30)
    result = {
        "calls": calls,
        "storm_loops": loops,
        "pinned_to_cpus": pin,
        "database_cpu": db_cpu if pin else None,
        "idle_p50_ms": round(percentile(idle, 0.5) * 1e3, 3),
        "idle_p99_ms": round(percentile(idle, 0.99) * 1e3, 3),
        "storm_p50_ms": round(percentile(busy, 0.5) * 1e3, 3),
        "storm_p99_ms": round(percentile(busy, 0.99) * 1e3, 3),
        "storm_logins_per_second": round(ok / storm_s, 1),
        "storm_login_failures": bad,
        "pinned": {k: {"cpus": c, "threads": n} for k, (c, n) in pinned.items()},
    }
    result["p99_ratio"] = round(result["storm_p99_ms"] / result["idle_p99_ms"], 2)
    log(f"login storm: GET /v1/documents p50/p99 idle {result['idle_p50_ms']}/{result['idle_p99_ms']} ms, "
        f"during {loops} login loops {result['storm_p50_ms']}/{result['storm_p99_ms']} ms "
        f"(p99 {result['p99_ratio']}x idle); {result['storm_logins_per_second']} logins/s, {bad} failed")
    if bad:
        raise SmokeFailure(f"login storm: {bad} logins failed")
    return result


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True, help="the image's root file system (scripts/image)")
    ap.add_argument("--digest", required=True, help="the image's digest, pinned in the rendered pods")
    ap.add_argument("--cloudsec", required=True, help="a cloudsec binary for the operator's steps (cert, secrets put)")
    ap.add_argument("--prefix", required=True, help="network namespace prefix")
    ap.add_argument("--work", required=True)
    ap.add_argument("--values", default="", help="more values over ci/smoke-values.yaml")
    ap.add_argument("--break", dest="damage", default="", choices=["", "probe-port", "configmap-key"])
    ap.add_argument("--ready-timeout", type=float, default=120)
    ap.add_argument("--max-restarts", type=int, default=3)
    ap.add_argument("--report", default="")
    ap.add_argument("--storm-calls", type=int, default=0,
                    help="after the walkthrough, time this many unrelated calls idle and during a login storm (0: off)")
    ap.add_argument("--storm-loops", type=int, default=16, help="concurrent login loops of the storm")
    ap.add_argument("--storm-no-pin", action="store_true", help="the control: no process kept to a CPU")
    ap.add_argument("--storm-db-cpu", type=int, default=0, choices=[0, 1], help="the CPU the database keeps to (0: with the serving pods, 1: with auth)")
    args = ap.parse_args()

    t0 = time.monotonic()
    net = Network(args.prefix)
    run = Run(args, net)
    run.dir.mkdir(parents=True, exist_ok=True)
    run.planned = []
    failed = None
    try:
        ca_dir = run.dir / "ca"
        cloudsec(args, "cert", "ca-probe", "--init-ca", "--data-dir", str(ca_dir), "--out", str(run.dir / "certs" / "ca-probe"))
        ca_pem = (run.dir / "certs" / "ca-probe" / "ca.pem").read_text()
        text = render(args, ca_pem)
        objs = chartlib.objects(text)
        if args.damage:
            damage(objs, args.damage)
            log(f"damaged the rendered manifests: {args.damage}")
        (run.dir / "manifests.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))

        hosts = set()
        for _, _, t in chartlib.toml_files(objs):
            import re  # noqa: PLC0415
            hosts |= set(re.findall(r"postgres://[^@\"]*@([^:/\"]+)", t))
        if len(hosts) != 1:
            raise SmokeFailure(f"the smoke values should name one database host, not {sorted(hosts)}")
        db_host = hosts.pop()
        run.start_postgres(db_host)
        import re  # noqa: PLC0415
        dbs = sorted({m for _, _, t in chartlib.toml_files(objs) for m in re.findall(r"postgres://[^\"]*?/([A-Za-z0-9_]+)\?", t)})
        for db in dbs:
            sh("psql", "-q", "-h", run.postgres_ip, "-U", "postgres", "-c", f"CREATE DATABASE {db}")
        log(f"DBA: databases {', '.join(dbs)}")

        play_cert_manager(run, args, objs, ca_dir)
        play_operator(run, args, objs)

        # The planned pods' addresses are known before they start, so every
        # pod's /etc/hosts can name every Service (headless DNS would answer
        # only ready pods; the sidecars' breakers and fail-fast cover that).
        deployments = [o for o in objs if o["kind"] == "Deployment"]
        run.services = [o for o in objs if o["kind"] == "Service"]
        n = 10
        for d in deployments:
            for i in range(d["spec"].get("replicas", 1)):
                run.planned.append((f"{d['metadata']['name']}-{i}", d["spec"]["template"]["metadata"]["labels"], f"{SUBNET}.{n}"))
                n += 1

        hooks = sorted((o for o in objs if is_hook(o)), key=hook_weight)
        for o in hooks:
            if o["kind"] == "ConfigMap":
                run.configmaps[o["metadata"]["name"]] = o.get("data") or {}
        t_hooks = time.monotonic()
        for o in hooks:
            if o["kind"] == "Job":
                wait_job(run, o, t_hooks + 300)
        hooks_s = time.monotonic() - t_hooks

        for o in objs:
            if o["kind"] == "ConfigMap" and not is_hook(o):
                run.configmaps[o["metadata"]["name"]] = o.get("data") or {}
        t_pods = time.monotonic()
        planned = iter(run.planned)
        for d in deployments:
            for i in range(d["spec"].get("replicas", 1)):
                pod = Pod(run, d, i, next(planned)[2])
                run.pods.append(pod)
        drive_pods(run, t_pods + args.ready_timeout)
        all_ready_s = time.monotonic() - t_pods
        for pod in run.pods:
            if pod.kind == "Deployment":
                run.report["pods"][pod.name] = round(pod.ready_at - pod.created, 2)
        log(f"every pod ready {all_ready_s:.2f}s after the first was created (hook Jobs took {hooks_s:.2f}s)")

        gw = next(s for s in run.services if s["metadata"]["name"] == "gateway")
        port = next(p for p in gw["spec"]["ports"] if p["name"] == "http")
        gw_pod = next(p for p in run.pods if p.kind == "Deployment" and all(p.labels.get(k) == v for k, v in gw["spec"]["selector"].items()))
        target = next(c for c in gw_pod.main if True).port(port["targetPort"])
        base_url = f"http://{gw_pod.ip}:{target}"
        log(f"Service gateway:{port['port']} -> {gw_pod.name} {base_url}")
        result = walkthrough(base_url, time.monotonic() + 60)
        if args.storm_calls:
            run.report["login_storm"] = login_storm(run, base_url, args.storm_calls, args.storm_loops, not args.storm_no_pin, args.storm_db_cpu)

        t_stop = time.monotonic()
        problems = []
        for pod in reversed(run.pods):
            if pod.kind == "Deployment":
                grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
                problems += pod.stop(grace)
        if problems:
            raise SmokeFailure("shutdown: " + "; ".join(problems))
        run.report.update({
            "hook_jobs_seconds": round(hooks_s, 2),
            "all_pods_ready_seconds": round(all_ready_s, 2),
            "walkthrough": result,
            "shutdown_seconds": round(time.monotonic() - t_stop, 2),
            "restarts": {f"{p.name}/{c.name}": c.restarts for p in run.pods for c in p.containers() if c.restarts},
            "total_seconds": round(time.monotonic() - t0, 2),
        })
        log(f"every pod stopped cleanly on SIGTERM in {run.report['shutdown_seconds']:.2f}s")
    except SmokeFailure as e:
        failed = str(e)
    finally:
        for pod in run.pods:
            for c in pod.containers():
                if c.proc and c.proc.poll() is None:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    c.proc.wait()
        run.stop_postgres()
        net.close()
        shutil.rmtree(run.shared, ignore_errors=True)
    if args.report:
        Path(args.report).write_text(json.dumps(run.report | {"failed": failed}, indent=2) + "\n")
    if failed:
        print(f"smoke: FAIL: {failed}", file=sys.stderr)
        print(f"smoke: logs in {run.dir}/pods", file=sys.stderr)
        return 1
    log(f"passed in {time.monotonic() - t0:.1f}s; start-to-ready per pod: " + ", ".join(f"{k} {v}s" for k, v in run.report["pods"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
