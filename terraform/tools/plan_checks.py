#!/usr/bin/env python3
"""Checks on the offline plans (`terraform show -json`) of the envs.

1. The event bus under the names the Rust code expects in `existing` mode.
   The names are read from the sources, the single source of truth:
   mesh/bus/src/config.rs (default topic and bus), services/audit/src/
   config.rs (audit's queue), services/audit/src/subscriber.rs (its
   receives, every event type), src/mailer.rs (the mailer's queue and its
   event type), mesh/bus/src/envelope.rs (type names, the ce_type
   attribute), mesh/bus/src/transport/{mod,aws}.rs (defaults, the -dlq and
   cloudsec- naming, DLQ retention, raw delivery, event patterns). Each
   plan must create exactly those topics, bus, queues, DLQs, subscriptions
   and rules, with those attributes.
2. Per-environment security properties of what is planned: encryption on
   every bucket, queue, topic, table, log group, database and cache; public
   access blocked; PITR; Multi-AZ and DR replication in prod.
3. Plan resource counts, which must match the table in docs/aws.md.

    python3 plan_checks.py --repo . --plan dev=dev.json --plan staging=... --plan prod=...
"""

import argparse
import json
import os
import re
import sys


class Failures(list):
    def check(self, ok, message):
        if not ok:
            self.append(message)
        return ok


# ---------------------------------------------------------------- Rust

def read(repo, path):
    with open(os.path.join(repo, path)) as f:
        return f.read()


def one(pattern, text, what):
    m = re.search(pattern, text, re.S)
    if not m:
        raise SystemExit(f"plan_checks: cannot find {what} in the Rust sources (pattern {pattern!r}); update plan_checks.py with the code")
    return m.group(1)


def rust_contract(repo):
    """What `[events] provisioning = "existing"` expects, from the code."""
    config = read(repo, "mesh/bus/src/config.rs")
    audit_config = read(repo, "services/audit/src/config.rs")
    subscriber = read(repo, "services/audit/src/subscriber.rs")
    mailer = read(repo, "src/mailer.rs")
    envelope = read(repo, "mesh/bus/src/envelope.rs")
    transport = read(repo, "mesh/bus/src/transport/mod.rs")
    aws = read(repo, "mesh/bus/src/transport/aws.rs")

    default_name = one(r'pub const DEFAULT_NAME: &str = "([^"]+)";', config, "DEFAULT_NAME")
    # topic and event_bus both default to DEFAULT_NAME (BusConfig's impl Default)
    one(r'(topic): DEFAULT_NAME\.to_owned\(\)', config, "BusConfig.topic's default")
    one(r'(event_bus): DEFAULT_NAME\.to_owned\(\)', config, "BusConfig.event_bus's default")

    # An event's type is its message's full name (the proto build
    # generates `DomainEvent` from the `event_aggregate` option).
    events_proto = read(repo, "proto/cloudsec/events/v1/events.proto")
    type_prefix = one(r'\npackage ([a-z0-9.]+);', events_proto, "the events' package") + "."
    type_attribute = one(r'pub const TYPE_ATTRIBUTE: &str = "([^"]+)"', envelope, "TYPE_ATTRIBUTE")

    default_receives = int(one(r'fn default_max_receives\(\) -> u32 \{\s*(\d+)\s*\}', transport, "default_max_receives()"))
    default_visibility = int(one(r'fn default_visibility\(\) -> Duration \{\s*Duration::from_secs\((\d+)\)', transport, "default_visibility()"))

    dlq_suffix = one(r'None => format!\("\{queue\}(-[a-z]+)"\)', aws, "dead_letter_name()")
    dlq_fifo = one(r'Some\(base\) => format!\("\{base\}(-[a-z]+\.fifo)"\)', aws, "dead_letter_name() for FIFO")
    rule_prefix = one(r'format!\("([a-z]+-)\{\}", queue\.trim_end_matches\("\.fifo"\)\)', aws, "rule_name()")
    dlq_retention = int(one(r'QueueAttributeName::MessageRetentionPeriod,\s*"(\d+)"\.to_owned\(\)', aws, "the DLQ retention"))
    raw = one(r'\("RawMessageDelivery"\.to_owned\(\), "(\w+)"\.to_owned\(\)\)', aws, "RawMessageDelivery")
    all_pattern = one(r'serde_json::json!\(\{ "detail": \{ "specversion": \["([0-9.]+)"\] \} \}\)', aws, "event_pattern() for all types")
    one(r'serde_json::json!\(\{ "(detail-type)": event_types \}\)', aws, "event_pattern() for some types")

    audit_queue = one(r'fn default_queue\(\) -> String \{\s*"([^"]+)"\.to_owned\(\)', audit_config, "audit's default queue")
    audit_receives = int(one(r'pub const MAX_RECEIVES: u32 = (\d+);', subscriber, "audit's MAX_RECEIVES"))
    one(r'QueueSpec::new\(\s*config\.queue\.clone\(\),\s*(&\[\])\s*,?\s*\)\s*\.max_receives\(\s*MAX_RECEIVES\s*\)', subscriber, "audit's queue_spec (every event type)")

    mailer_queue = one(r'pub const QUEUE: &str = "([^"]+)";', mailer, "the mailer's QUEUE")
    mailer_type = one(r'QueueSpec::new\(\s*QUEUE,\s*&\[\s*(\w+)::TYPE\s*\]\s*,?\s*\)', mailer, "the mailer's event type")
    one(rf'message ({mailer_type}) \{{\s*option \(cloudsec\.api\.v1\.event_aggregate\)', events_proto, "the mailer's event marked as a domain event")

    return {
        "topic": default_name,
        "event_bus": default_name,
        "type_attribute": type_attribute,
        "default_receives": default_receives,
        "default_visibility": default_visibility,
        "dlq": lambda q: f"{q[:-5]}{dlq_fifo}" if q.endswith(".fifo") else f"{q}{dlq_suffix}",
        "rule": lambda q: f"{rule_prefix}{q[:-5] if q.endswith('.fifo') else q}"[:64],
        "dlq_retention": dlq_retention,
        "raw": raw,
        "all_pattern": {"detail": {"specversion": [all_pattern]}},
        "subscribers": {
            "audit": {"queue": lambda env: audit_queue, "types": [], "receives": audit_receives},
            # `cloudsec up`'s mailer reads cloudsec-dev-mailer; each env's
            # mailer reads the same name with its environment.
            "mailer": {
                "queue": lambda env: mailer_queue.replace("-dev-", f"-{env}-"),
                "types": [type_prefix + mailer_type],
                "receives": default_receives,
            },
        },
        "mailer_queue_constant": mailer_queue,
    }


# ---------------------------------------------------------------- plan

def resources(plan):
    """address -> (type, known values, unknown markers) of every managed resource to create."""
    out = {}
    for rc in plan.get("resource_changes", []):
        if rc.get("mode") != "managed":
            continue
        change = rc["change"]
        out[rc["address"]] = (rc["type"], change.get("after") or {}, change.get("after_unknown") or {}, rc.get("provider_name", ""), change["actions"])
    return out


def of_type(res, rtype, prefix=""):
    return {a: r for a, r in res.items() if r[0] == rtype and a.startswith(prefix)}


def is_set(values, unknown, key):
    return values.get(key) not in (None, "", []) or unknown.get(key) is True


def check_bus(env, plan, contract, fails):
    res = resources(plan)
    out = plan.get("output_changes", {}).get("events", {}).get("after") or {}
    for prefix, label in (("module.messaging.", ""), ("module.messaging_dr.", " (DR)")):
        if prefix == "module.messaging_dr." and env != "prod":
            continue
        topics = {r[1].get("name"): r for r in of_type(res, "aws_sns_topic", prefix).values()}
        fails.check(set(topics) == {contract["topic"], contract["topic"] + ".fifo"},
                    f"{env}{label}: SNS topics {sorted(topics)} are not [events] topic {contract['topic']!r} and its .fifo twin")
        buses = [r[1].get("name") for r in of_type(res, "aws_cloudwatch_event_bus", prefix).values()]
        fails.check(buses == [contract["event_bus"]], f"{env}{label}: EventBridge bus {buses} is not {contract['event_bus']!r}")

        queues = {r[1].get("name"): r for r in of_type(res, "aws_sqs_queue", prefix).values()}
        want_queues = set()
        for key, sub in contract["subscribers"].items():
            q = sub["queue"](env)
            dlq = contract["dlq"](q)
            want_queues |= {q, dlq}
            if not fails.check(q in queues and dlq in queues, f"{env}{label}: subscriber {key} needs queues {q!r} and {dlq!r}, the plan has {sorted(queues)}"):
                continue
            fails.check(queues[q][1].get("visibility_timeout_seconds") == contract["default_visibility"],
                        f"{env}{label}: {q} visibility is not the bus default {contract['default_visibility']} s")
            fails.check(queues[dlq][1].get("message_retention_seconds") == contract["dlq_retention"],
                        f"{env}{label}: {dlq} does not keep dead letters {contract['dlq_retention']} s")
            fails.check(is_set(queues[q][1], queues[q][2], "redrive_policy"), f"{env}{label}: {q} has no redrive policy")
            rules = {r[1].get("name"): r for r in of_type(res, "aws_cloudwatch_event_rule", prefix).values()}
            rule = contract["rule"](q)
            if fails.check(rule in rules, f"{env}{label}: no EventBridge rule {rule!r} for {q}"):
                pattern = json.loads(rules[rule][1]["event_pattern"])
                want = contract["all_pattern"] if not sub["types"] else {"detail-type": sub["types"]}
                fails.check(pattern == want, f"{env}{label}: rule {rule} pattern {pattern} is not {want}")
            if prefix == "module.messaging.":
                spec = (out.get("queues") or {}).get(key, {})
                fails.check(spec.get("name") in (None, q) and spec.get("max_receives") == sub["receives"],
                            f"{env}: subscriber {key} gets {spec.get('max_receives')} receives before the DLQ, the code says {sub['receives']}")
                fails.check(spec.get("event_types") == sub["types"], f"{env}: subscriber {key} receives {spec.get('event_types')}, the code {sub['types']}")
        fails.check(set(queues) == want_queues, f"{env}{label}: unexpected queues {sorted(set(queues) - want_queues)}")

        subs = list(of_type(res, "aws_sns_topic_subscription", prefix).values())
        fails.check(len(subs) == len(contract["subscribers"]), f"{env}{label}: {len(subs)} subscriptions for {len(contract['subscribers'])} subscribers")
        filters = sorted(json.dumps(s[1].get("filter_policy") and json.loads(s[1]["filter_policy"]), sort_keys=True) for s in subs)
        want_filters = sorted(json.dumps({contract["type_attribute"]: sub["types"]} if sub["types"] else None, sort_keys=True)
                              for sub in contract["subscribers"].values())
        fails.check(filters == want_filters, f"{env}{label}: subscription filter policies {filters} are not {want_filters}")
        for s in subs:
            fails.check(str(s[1].get("raw_message_delivery")).lower() == contract["raw"], f"{env}{label}: a subscription without raw message delivery")
            fails.check(s[1].get("protocol") == "sqs", f"{env}{label}: a subscription that is not to SQS")
        targets = of_type(res, "aws_cloudwatch_event_target", prefix)
        fails.check(len(targets) == len(contract["subscribers"]), f"{env}{label}: {len(targets)} rule targets for {len(contract['subscribers'])} subscribers")
    if env == "dev":
        fails.check(contract["subscribers"]["mailer"]["queue"]("dev") == contract["mailer_queue_constant"],
                    "dev: the mailer queue is not src/mailer.rs's QUEUE")


def check_security(env, plan, fails):
    res = resources(plan)
    prod = env == "prod"

    buckets = of_type(res, "aws_s3_bucket")
    for t in ("aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_public_access_block", "aws_s3_bucket_versioning", "aws_s3_bucket_policy"):
        fails.check(len(of_type(res, t)) == len(buckets), f"{env}: {len(buckets)} buckets but {len(of_type(res, t))} {t}")
    for a, r in of_type(res, "aws_s3_bucket_server_side_encryption_configuration").items():
        algorithm = r[1]["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
        # Access-log buckets: log delivery supports SSE-S3 only.
        want = "AES256" if re.search(r"\.(logs|logs_dr)(\[0\])?$", a) else "aws:kms"
        fails.check(algorithm == want, f"{env}: {a} uses {algorithm}, want {want}")
    for a, r in of_type(res, "aws_s3_bucket_public_access_block").items():
        fails.check(all(r[1].get(k) is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")), f"{env}: {a} does not block everything")
    for a, r in of_type(res, "aws_s3_bucket_versioning").items():
        fails.check(r[1]["versioning_configuration"][0]["status"] == "Enabled", f"{env}: {a} is not versioned")

    for t in ("aws_sqs_queue", "aws_sns_topic"):
        for a, r in of_type(res, t).items():
            fails.check(is_set(r[1], r[2], "kms_master_key_id"), f"{env}: {a} is not encrypted with a KMS key")
    for a, r in of_type(res, "aws_cloudwatch_log_group").items():
        fails.check(is_set(r[1], r[2], "kms_key_id") and (r[1].get("retention_in_days") or 0) > 0, f"{env}: {a} lacks a KMS key or a retention")
    for a, r in of_type(res, "aws_dynamodb_table").items():
        sse = r[1].get("server_side_encryption", [{}])[0]
        fails.check(sse.get("enabled") is True and is_set(sse, (r[2].get("server_side_encryption") or [{}])[0], "kms_key_arn"), f"{env}: {a} is not KMS-encrypted")
        fails.check(r[1].get("point_in_time_recovery", [{}])[0].get("enabled") is True, f"{env}: {a} has no PITR")
        if prod:
            fails.check(len(r[1].get("replica") or []) == 1 and r[1].get("deletion_protection_enabled") is True, f"prod: {a} has no DR replica or no deletion protection")
    for a, r in of_type(res, "aws_kms_key").items():
        fails.check(r[1].get("enable_key_rotation") is True or r[1].get("key_usage") == "SIGN_VERIFY", f"{env}: {a} does not rotate")

    dbs = of_type(res, "aws_db_instance")
    fails.check(len(dbs) == 1, f"{env}: {len(dbs)} database instances")
    for a, r in dbs.items():
        v = r[1]
        fails.check(v.get("storage_encrypted") is True and is_set(v, r[2], "kms_key_id"), f"{env}: {a} storage is not KMS-encrypted")
        fails.check(v.get("publicly_accessible") is False, f"{env}: {a} is public")
        fails.check((v.get("backup_retention_period") or 0) >= 7, f"{env}: {a} keeps under 7 days of PITR backups")
        fails.check(v.get("multi_az") is prod, f"{env}: {a} multi_az is {v.get('multi_az')}, want {prod}")
        if env != "dev":
            fails.check(v.get("deletion_protection") is True, f"{env}: {a} has no deletion protection")
    for a, r in of_type(res, "aws_db_parameter_group").items():
        params = {p["name"]: p["value"] for p in r[1].get("parameter", [])}
        fails.check(params.get("rds.force_ssl") == "1", f"{env}: {a} does not force TLS")
    for a, r in of_type(res, "aws_elasticache_replication_group").items():
        v = r[1]
        fails.check(str(v.get("transit_encryption_enabled")).lower() == "true" and str(v.get("at_rest_encryption_enabled")).lower() == "true", f"{env}: {a} is not encrypted in transit and at rest")
        fails.check(v.get("multi_az_enabled") is (env != "dev"), f"{env}: {a} multi_az_enabled is {v.get('multi_az_enabled')}")
    for a, r in of_type(res, "aws_eks_cluster").items():
        fails.check(len(r[1].get("encryption_config") or []) == 1, f"{env}: {a} does not encrypt secrets")
        fails.check(r[1]["vpc_config"][0].get("endpoint_public_access") is False, f"{env}: {a} API is public")
        fails.check(r[1]["access_config"][0].get("authentication_mode") == "API", f"{env}: {a} uses aws-auth")

    dr = {
        "aws_s3_bucket_replication_configuration": 2,
        "aws_db_instance_automated_backups_replication": 1,
        "aws_kms_replica_key": 14,
        "aws_route53_record": None,
    }
    for t, n in dr.items():
        if n is None:
            continue
        got = len(of_type(res, t))
        fails.check(got == (n if prod else 0), f"{env}: {got} {t}, want {n if prod else 0}")
    failover = [r[1].get("failover_routing_policy") for r in of_type(res, "aws_route53_record").values() if r[1].get("failover_routing_policy")]
    fails.check(len(failover) == (2 if prod else 0), f"{env}: {len(failover)} failover records")
    plans = of_type(res, "aws_backup_plan")
    copies = [c for p in plans.values() for rule in p[1].get("rule", []) for c in rule.get("copy_action", [])]
    fails.check(len(copies) == (1 if prod else 0), f"{env}: {len(copies)} backup copy actions to the DR region")
    providers = plan.get("configuration", {}).get("provider_config", {})
    fails.check(("aws.dr" in providers) is prod, f"{env}: the aliased DR provider is {'missing' if prod else 'present'}")
    if prod:
        standby = [a for a in res if a.startswith(("module.network_dr.", "module.eks_dr.", "module.messaging_dr.", "module.irsa_dr."))]
        fails.check(len(standby) > 50, f"prod: only {len(standby)} resources in the DR region's standby modules")


def check_edge_headers(env, plan, repo, fails):
    """The console's security headers at CloudFront are the ones the
    gateway serves and the bucket upload sets (web/security-headers.json)."""
    want = json.loads(read(repo, "web/security-headers.json"))
    policies = of_type(resources(plan), "aws_cloudfront_response_headers_policy")
    fails.check(len(policies) == 1, f"{env}: {len(policies)} CloudFront response headers policies, expected 1")
    for addr, (_, values, _, _, _) in policies.items():
        sec = (values.get("security_headers_config") or [{}])[0]
        got = {
            "Content-Security-Policy": ((sec.get("content_security_policy") or [{}])[0]).get("content_security_policy"),
            "Referrer-Policy": ((sec.get("referrer_policy") or [{}])[0]).get("referrer_policy"),
            "X-Frame-Options": ((sec.get("frame_options") or [{}])[0]).get("frame_option"),
        }
        for item in ((values.get("custom_headers_config") or [{}])[0]).get("items") or []:
            got[item["header"]] = item["value"]
        for name, value in want.items():
            if name == "X-Content-Type-Options":
                fails.check(bool(sec.get("content_type_options")), f"{env}: {addr} does not set {name}")
                continue
            fails.check(got.get(name) == value, f"{env}: {addr} sets {name} to {got.get(name)!r}, web/security-headers.json to {value!r}")


def counts(plan):
    res = resources(plan)
    return sum(1 for r in res.values() if "create" in r[4])


def check_docs(repo, got, fails):
    text = read(repo, "docs/aws.md")
    table = dict(re.findall(r"^\| (dev|staging|prod) \| (\d+) \|", text, re.M))
    for env, n in got.items():
        fails.check(table.get(env) == str(n),
                    f"docs/aws.md says {env} plans {table.get(env)} resources, the plan has {n}: update the table in \"Plan resource counts\"")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--plan", action="append", required=True, help="ENV=plan.json")
    p.add_argument("--no-docs", action="store_true", help="do not compare the counts with docs/aws.md")
    args = p.parse_args()

    contract = rust_contract(args.repo)
    fails = Failures()
    got = {}
    for spec in args.plan:
        env, path = spec.split("=", 1)
        with open(path) as f:
            plan = json.load(f)
        check_bus(env, plan, contract, fails)
        check_security(env, plan, fails)
        check_edge_headers(env, plan, args.repo, fails)
        got[env] = counts(plan)
        print(f"plan_checks: {env}: {got[env]} resources to create")
    if not args.no_docs:
        check_docs(args.repo, got, fails)
    for f in fails:
        print(f"plan_checks: {f}")
    if fails:
        print(f"plan_checks: {len(fails)} failure(s)", file=sys.stderr)
        return 1
    print(f"plan_checks: the bus matches the Rust sources (topic {contract['topic']!r}, queues "
          f"{', '.join(s['queue']('<env>') for s in contract['subscribers'].values())}) and every security property holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
