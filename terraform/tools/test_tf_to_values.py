#!/usr/bin/env python3
"""Tests scripts/tf-to-values.

1. On the outputs of each env's offline plan: every value the chart's
   contract names is there and comes from the right output. Values known
   only after apply are stand-ins naming their output path
   ("<known after apply: role_arns.auth>"), so the test sees which output
   each key was read from.
2. prod --dr on the same outputs: the DR region's roles, bus and bucket.
3. A committed fixture of applied outputs (fixtures/prod-outputs.json,
   the plan's outputs with realistic values) renders exactly
   fixtures/values-prod.yaml; with Cognito on, the cognito keys appear.
4. Errors: a missing output, another environment's outputs, --dr without
   the restored database's host.

    python3 test_tf_to_values.py --repo . --tf-to-values scripts/tf-to-values --plan dev=dev.plan.json ...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml  # PyYAML: Debian's python3-yaml, on the machine

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def known_after_apply(value, unknown, path):
    if unknown is True:
        return f"<known after apply: {path}>"
    if isinstance(unknown, dict):
        value = dict(value or {})
        for k, u in unknown.items():
            value[k] = known_after_apply(value.get(k), u, f"{path}.{k}")
        return value
    if isinstance(unknown, list):
        value = list(value or [])
        for i, u in enumerate(unknown):
            if i < len(value):
                value[i] = known_after_apply(value[i], u, f"{path}[{i}]")
        return value
    return value


def outputs_of_plan(plan_path):
    """The plan's outputs as `terraform output -json` would print them."""
    with open(plan_path) as f:
        plan = json.load(f)
    return {
        name: {"sensitive": False, "type": "dynamic", "value": known_after_apply(c.get("after"), c.get("after_unknown"), name)}
        for name, c in plan["output_changes"].items()
    }


class Test:
    def __init__(self, tool):
        self.tool = tool
        self.failures = []
        self.dir = tempfile.mkdtemp(prefix="tf-to-values-")

    def run(self, *args, ok=True):
        proc = subprocess.run([sys.executable, self.tool, *args], capture_output=True, text=True)
        if ok and proc.returncode != 0:
            raise AssertionError(f"tf-to-values {' '.join(args)} failed: {proc.stderr}")
        return proc

    def render(self, env, outputs, *extra):
        src = os.path.join(self.dir, f"{env}-outputs.json")
        with open(src, "w") as f:
            json.dump(outputs, f)
        out = os.path.join(self.dir, f"values-{env}{'-dr' if '--dr' in extra else ''}.yaml")
        self.run(env, src, "--out", out, *extra)
        with open(out) as f:
            return yaml.safe_load(f), open(out).read()

    def eq(self, what, got, want):
        if got != want:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")

    def contract(self, env, v):
        """The keys the chart consumes (docs/aws.md)."""
        u = lambda path: f"<known after apply: {path}>"  # noqa: E731
        self.eq(f"{env} global.environment", v["global"]["environment"], env)
        self.eq(f"{env} global.aws.region", v["global"]["aws"]["region"], "eu-west-1")
        self.eq(f"{env} global.aws.accountId", v["global"]["aws"]["accountId"], {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}[env])
        self.eq(f"{env} image.repository", v["image"]["repository"], u("image_repository") if env == "prod" else "333333333333.dkr.ecr.eu-west-1.amazonaws.com/cloudsec")
        for c in ["auth", "documents", "audit", "gateway", "mailer"]:
            self.eq(f"{env} components.{c}.serviceAccount.roleArn", v["components"][c]["serviceAccount"]["roleArn"], u(f"role_arns.{c}"))
        e = v["aws"]["events"]
        self.eq(f"{env} aws.events.transport", e["transport"], "sns")
        self.eq(f"{env} aws.events.topic", e["topic"], "cloudsec-events")
        self.eq(f"{env} aws.events.topicArn", e["topicArn"], u("events.topic_arn"))
        self.eq(f"{env} aws.events.eventBus", e["eventBus"], "cloudsec-events")
        self.eq(f"{env} aws.events.queues", e["queues"], {"audit": u("events.queues.audit.url"), "mailer": u("events.queues.mailer.url")})
        self.eq(f"{env} aws.events.dlqs", e["dlqs"], {"audit": u("events.queues.audit.dlq_url"), "mailer": u("events.queues.mailer.dlq_url")})
        self.eq(f"{env} aws.events.queueNames", e["queueNames"], {"audit": "audit", "mailer": f"cloudsec-{env}-mailer"})
        acct = v["global"]["aws"]["accountId"]
        self.eq(f"{env} aws.documents", v["aws"]["documents"], {"bucket": f"cloudsec-{env}-documents-{acct}", "kmsKeyId": u("kms_key_arns.documents")})
        self.eq(f"{env} aws.audit", v["aws"]["audit"], {"table": f"cloudsec-{env}-audit-log", "signingKeyId": u("kms_key_arns.audit_signing"), "queue": "audit"})
        self.eq(f"{env} aws.auth", v["aws"]["auth"], {"kmsKeyId": u("kms_key_arns.auth"), "mailerKeyId": u("kms_key_arns.mailer")})
        self.eq(f"{env} aws.mailer", v["aws"]["mailer"], {"queue": f"cloudsec-{env}-mailer", "kmsKeyId": u("kms_key_arns.mailer")})
        self.eq(f"{env} aws.inbox.table", v["aws"]["inbox"]["table"], f"cloudsec-{env}-inbox")
        for d in ["auth", "documents", "audit"]:
            self.eq(f"{env} databases.{d}", v["databases"][d], {"host": u("postgres.host"), "port": 5432, "name": d, "sslmode": "verify-full"})
        self.eq(f"{env} redis", v["redis"], {"host": u("redis.host"), "port": 6379, "tls": True, "authSecretArn": u("redis.auth_secret_arn")})
        self.eq(f"{env} edge.targetGroupArn", v["edge"]["targetGroupArn"], u("edge.api.target_group_arn"))

    def dr(self, v):
        u = lambda path: f"<known after apply: {path}>"  # noqa: E731
        self.eq("prod --dr region", v["global"]["aws"]["region"], "eu-central-1")
        self.eq("prod --dr cluster", v["global"]["kubernetes"]["clusterName"], "cloudsec-prod-dr")
        self.eq("prod --dr roles", v["components"]["audit"]["serviceAccount"]["roleArn"], u("dr.role_arns.audit"))
        self.eq("prod --dr queues", v["aws"]["events"]["queues"]["audit"], u("dr.events.queues.audit.url"))
        self.eq("prod --dr bucket", v["aws"]["documents"]["bucket"], "cloudsec-prod-documents-333333333333-replica")
        self.eq("prod --dr key", v["aws"]["documents"]["kmsKeyId"], u("dr.kms_key_arns.documents"))
        self.eq("prod --dr database host", v["databases"]["audit"]["host"], "restored.example.internal")
        self.eq("prod --dr has no redis", "redis" in v, False)

    def errors(self, outputs):
        src = os.path.join(self.dir, "broken.json")
        broken = {k: val for k, val in outputs.items() if k != "role_arns"}
        with open(src, "w") as f:
            json.dump(broken, f)
        p = self.run("prod", src, "--stdout", ok=False)
        self.eq("a missing output fails", p.returncode != 0 and "role_arns" in p.stderr, True)
        p = self.run("dev", src, "--stdout", ok=False)
        self.eq("another environment's outputs fail", p.returncode != 0 and "'prod'" in p.stderr, True)
        p = self.run("prod", src, "--dr", ok=False)
        self.eq("--dr without the database host fails", p.returncode != 0 and "--dr-postgres-host" in p.stderr, True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--tf-to-values", required=True)
    p.add_argument("--plan", action="append", required=True, help="ENV=plan.json")
    p.add_argument("--write-golden", action="store_true", help="rewrite fixtures/values-prod.yaml from the fixture")
    args = p.parse_args()
    t = Test(args.tf_to_values)

    prod_outputs = None
    for spec in args.plan:
        env, path = spec.split("=", 1)
        outputs = outputs_of_plan(path)
        v, _ = t.render(env, outputs)
        t.contract(env, v)
        if env == "prod":
            prod_outputs = outputs
            v, _ = t.render(env, outputs, "--dr", "--dr-postgres-host", "restored.example.internal")
            t.dr(v)
            t.errors(outputs)

    # Applied outputs -> exactly the golden values file; Cognito adds its keys.
    with open(os.path.join(FIXTURES, "prod-outputs.json")) as f:
        fixture = json.load(f)
    if prod_outputs is not None:
        t.eq("the fixture has the plan's outputs", sorted(fixture), sorted(prod_outputs))
    _, text = t.render("prod", fixture)
    golden = os.path.join(FIXTURES, "values-prod.yaml")
    if args.write_golden:
        with open(golden, "w") as f:
            f.write(text)
    t.eq("values-prod.yaml from fixtures/prod-outputs.json", text, open(golden).read())
    fixture["cognito"] = {"sensitive": False, "type": "dynamic", "value": {"user_pool_id": "eu-west-1_AbCdEf123", "client_id": "5ab1c2d3e4f5g6h7i8j9k0l1m2", "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"}}
    v, _ = t.render("prod", fixture)
    t.eq("cognito keys", v["aws"]["auth"].get("cognito", {}).get("userPoolId"), "eu-west-1_AbCdEf123")

    for f in t.failures:
        print(f"tf-to-values test: {f}")
    if t.failures:
        print(f"tf-to-values test: {len(t.failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"tf-to-values test: {len(args.plan)} plans and the applied fixture render the chart's contract")
    return 0


if __name__ == "__main__":
    sys.exit(main())
