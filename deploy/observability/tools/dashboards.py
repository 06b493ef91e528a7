#!/usr/bin/env python3
"""Writes the Grafana dashboards of charts/cloudsec/files/dashboards.

The JSON files are generated so that every panel follows the same rules
(the datasource, namespace and component variables, units, legends) and
committed so that the chart ships them as they are; `--check` fails when a
committed file differs from what this script makes (scripts/check-observability
runs it).

Usage: dashboards.py [--check] [OUTPUT_DIR]
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "charts" / "cloudsec" / "files" / "dashboards"

# Every selector of every panel narrows to the chosen namespaces and
# components; `$__rate_interval` follows the scrape interval.
SEL = 'namespace=~"$namespace", component=~"$component"'
NS = 'namespace=~"$namespace"'
RI = "$__rate_interval"
SERVER_FAULTS = "Unknown|DeadlineExceeded|Internal|Unavailable|DataLoss"


def target(expr, legend="", ref="A", instant=False):
    t = {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
    }
    if instant:
        t["instant"] = True
        t["range"] = False
        t["format"] = "table"
    return t


class Board:
    """Lays panels out on Grafana's 24-column grid, left to right."""

    def __init__(self, uid, title, description):
        self.uid, self.title, self.description = uid, title, description
        self.panels = []
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def _place(self, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append(
            {
                "type": "row",
                "id": self.next_id,
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.next_id += 1
        self.y += 1

    def panel(self, title, targets, unit="short", kind="timeseries", w=8, h=8,
              description="", thresholds=None, stack=False):
        if isinstance(targets, str):
            targets = [target(targets)]
        for i, t in enumerate(targets):
            t["refId"] = chr(ord("A") + i)
        fieldconfig = {"defaults": {"unit": unit}, "overrides": []}
        if thresholds:
            fieldconfig["defaults"]["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": c, "value": v} for v, c in thresholds],
            }
        if kind == "timeseries":
            fieldconfig["defaults"]["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            }
        p = {
            "type": kind,
            "id": self.next_id,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": self._place(w, h),
            "fieldConfig": fieldconfig,
            "targets": targets,
            "options": {},
        }
        if kind == "timeseries":
            p["options"] = {
                "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "background", "graphMode": "area"}
        elif kind == "table":
            p["options"] = {"showHeader": True}
        self.next_id += 1
        self.panels.append(p)

    def json(self):
        def variable(name, label, query, hide=0):
            return {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "definition": query,
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1,
                "hide": hide,
                "options": [],
            }

        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["cloudsec"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "links": [
                {"type": "dashboards", "tags": ["cloudsec"], "asDropdown": True,
                 "title": "cloudsec", "includeVars": True, "keepTime": True}
            ],
            "annotations": {"list": []},
            "templating": {
                "list": [
                    {
                        "name": "datasource",
                        "label": "Data source",
                        "type": "datasource",
                        "query": "prometheus",
                        "current": {},
                        "hide": 0,
                        "options": [],
                        "refresh": 1,
                    },
                    variable("namespace", "Namespace", "label_values(cloudsec_build_info, namespace)"),
                    variable("component", "Component",
                             'label_values(cloudsec_build_info{namespace=~"$namespace"}, component)'),
                ]
            },
            "panels": self.panels,
        }


def overview():
    b = Board("cloudsec-overview", "cloudsec / Overview",
              "Golden signals of every component: traffic, errors, latency and saturation, and the SLOs.")
    b.row("SLOs (docs/observability.md)")
    b.panel("Gateway availability: burn rate (1 h)",
            f"namespace:gateway_request_errors:ratio_rate1h{{{NS}}} / 0.001",
            unit="short", kind="stat", w=6, h=5,
            description="How fast the 30-day error budget (0.1 % of REST answers may be 5xx) is spent; 1 spends it in exactly 30 days, 14.4 pages.",
            thresholds=[(None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")])
    b.panel("Gateway latency: burn rate (1 h)",
            f"namespace:gateway_request_slow:ratio_rate1h{{{NS}}} / 0.01",
            unit="short", kind="stat", w=6, h=5,
            description="How fast the latency budget (1 % of REST answers may take over 500 ms) is spent.",
            thresholds=[(None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")])
    b.panel("Mesh success: burn rate per service (1 h)",
            [target(f"namespace_grpc_service:mesh_request_errors:ratio_rate1h{{{NS}}} / 0.001",
                    "{{grpc_service}}")],
            unit="short", kind="stat", w=12, h=5,
            description="Server-side failures (Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss) seen by the callers' sidecars, against a 0.1 % budget.",
            thresholds=[(None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")])
    b.row("Gateway (REST)")
    b.panel("Requests per second by status",
            [target(f'sum by (status) (rate(gateway_response_total{{{SEL}}}[{RI}]))', "{{status}}")],
            unit="reqps", stack=True)
    b.panel("5xx ratio",
            [target(f'(sum(rate(gateway_response_total{{{SEL}, status=~"5.."}}[{RI}])) or vector(0)) / sum(rate(gateway_response_total{{{SEL}}}[{RI}]))', "5xx")],
            unit="percentunit")
    b.panel("Latency",
            [target(f"histogram_quantile({q}, sum by (le) (rate(gateway_response_latency_seconds_bucket{{{SEL}}}[{RI}])))", f"p{int(q * 100)}")
             for q in (0.5, 0.95, 0.99)],
            unit="s")
    b.panel("Requests in flight",
            [target(f"sum by (instance) (gateway_requests_in_flight{{{SEL}}})", "{{instance}}")],
            unit="short")
    b.panel("Refused at the edge",
            [target(f"sum by (reason) (rate(gateway_rejected_total{{{SEL}}}[{RI}]))", "{{reason}}"),
             target(f"sum by (limit) (rate(gateway_throttled_total{{{SEL}}}[{RI}]))", "throttled: {{limit}}")],
            unit="reqps")
    b.panel("Slowest routes (p99)",
            [target(f"topk(5, histogram_quantile(0.99, sum by (route, method, le) (rate(gateway_response_latency_seconds_bucket{{{SEL}}}[{RI}]))))", "{{method}} {{route}}")],
            unit="s")
    b.row("Services (gRPC, inbound)")
    b.panel("Requests per second",
            [target(f"sum by (component) (rate(inbound_request_total{{{SEL}}}[{RI}]))", "{{component}}")],
            unit="reqps")
    b.panel("Server-fault ratio",
            [target(f'(sum by (component) (rate(inbound_response_total{{{SEL}, grpc_status=~"{SERVER_FAULTS}"}}[{RI}])) or sum by (component) (rate(inbound_response_total{{{SEL}}}[{RI}])) * 0) / sum by (component) (rate(inbound_response_total{{{SEL}}}[{RI}]))', "{{component}}")],
            unit="percentunit")
    b.panel("Latency p99",
            [target(f"histogram_quantile(0.99, sum by (component, le) (rate(inbound_response_latency_seconds_bucket{{{SEL}}}[{RI}])))", "{{component}}")],
            unit="s")
    b.panel("Requests in flight (concurrency)",
            [target(f"sum by (component) (inbound_requests_in_flight{{{SEL}}})", "{{component}}")],
            unit="short")
    b.panel("Database connections in use / max",
            [target(f'sum by (component, pool) (db_pool_connections{{{SEL}, state="in_use"}}) / sum by (component, pool) (db_pool_max_connections{{{SEL}}})', "{{component}}/{{pool}}")],
            unit="percentunit")
    b.panel("Database checkout wait (probe)",
            [target(f"max by (component, pool) (db_pool_acquire_wait_seconds{{{SEL}}})", "{{component}}/{{pool}}")],
            unit="s")
    b.row("Fleet")
    b.panel("Targets up",
            [target(f'sum by (workload, instance) (up{{job=~"cloudsec.*", {NS}}})', "{{workload}} {{instance}}")],
            unit="short", w=12)
    b.panel("Build",
            [target(f"cloudsec_build_info{{{SEL}}}", instant=True)],
            kind="table", w=12)
    return b


def mesh():
    b = Board("cloudsec-mesh", "cloudsec / Mesh",
              "The sidecars: calls per route and backend, success, latency, retries, timeouts, breakers, authorization and connections.")
    out = f'{SEL}'
    b.row("Outbound: per backend and route (what callers see)")
    b.panel("Calls per second by backend",
            [target(f"sum by (grpc_service) (rate(outbound_request_total{{{out}}}[{RI}]))", "{{grpc_service}}")],
            unit="reqps")
    b.panel("Success rate by backend",
            [target(f'1 - (sum by (grpc_service) (rate(outbound_response_total{{{out}, grpc_status=~"{SERVER_FAULTS}"}}[{RI}])) or sum by (grpc_service) (rate(outbound_response_total{{{out}}}[{RI}])) * 0) / sum by (grpc_service) (rate(outbound_response_total{{{out}}}[{RI}]))', "{{grpc_service}}")],
            unit="percentunit")
    b.panel("Latency p99 by backend",
            [target(f"histogram_quantile(0.99, sum by (grpc_service, le) (rate(outbound_response_latency_seconds_bucket{{{out}}}[{RI}])))", "{{grpc_service}}")],
            unit="s")
    b.panel("Calls per second by route",
            [target(f"sum by (grpc_service, grpc_method) (rate(outbound_request_total{{{out}}}[{RI}]))", "{{grpc_service}}/{{grpc_method}}")],
            unit="reqps", w=12)
    b.panel("Latency p99 by route",
            [target(f"histogram_quantile(0.99, sum by (grpc_service, grpc_method, le) (rate(outbound_response_latency_seconds_bucket{{{out}}}[{RI}])))", "{{grpc_service}}/{{grpc_method}}")],
            unit="s", w=12)
    b.panel("Answers by gRPC status",
            [target(f'sum by (grpc_status) (rate(outbound_response_total{{{out}, grpc_status!="Ok"}}[{RI}]))', "{{grpc_status}}")],
            unit="reqps", stack=True)
    b.panel("Requests in flight",
            [target(f"sum by (instance) (outbound_requests_in_flight{{{out}}})", "{{instance}}")],
            unit="short")
    b.row("Policy: retries, timeouts, breakers")
    b.panel("Retries by backend and route",
            [target(f"sum by (dst, route) (rate(retry_total{{{out}}}[{RI}]))", "{{dst}} {{route}}"),
             target(f"sum by (dst, route) (rate(retry_budget_exhausted_total{{{out}}}[{RI}]))", "budget exhausted: {{dst}} {{route}}")],
            unit="reqps")
    b.panel("Retries skipped",
            [target(f"sum by (reason) (rate(retry_skipped_total{{{out}}}[{RI}]))", "{{reason}}")],
            unit="reqps")
    b.panel("Timeouts",
            [target(f"sum by (dst, route) (rate(timeout_total{{{out}}}[{RI}]))", "{{dst}} {{route}}")],
            unit="reqps")
    b.panel("Endpoints with an open breaker",
            [target(f"sum by (dst, route) (breaker_open_endpoints{{{out}}})", "{{dst}} {{route}}")],
            unit="short")
    b.panel("Breaker transitions",
            [target(f"sum by (dst, to) (increase(breaker_transitions_total{{{out}}}[{RI}]))", "{{dst}} → {{to}}")],
            unit="short")
    b.row("Inbound: what the sidecars let in")
    b.panel("Authorization decisions",
            [target(f"sum by (decision) (rate(inbound_authz_total{{{out}}}[{RI}]))", "{{decision}}")],
            unit="reqps")
    b.panel("Inbound calls per second by service",
            [target(f'sum by (grpc_service) (rate(inbound_request_total{{{out}, component="proxy"}}[{RI}]))', "{{grpc_service}}")],
            unit="reqps")
    b.panel("Connections opened per second",
            [target(f"sum by (direction) (rate(tcp_open_total{{{out}}}[{RI}]))", "{{direction}}")],
            unit="short")
    b.panel("Bytes per second",
            [target(f"sum by (direction) (rate(tcp_read_bytes_total{{{out}}}[{RI}]))", "read {{direction}}"),
             target(f"sum by (direction) (rate(tcp_write_bytes_total{{{out}}}[{RI}]))", "written {{direction}}")],
            unit="Bps")
    return b


def events():
    b = Board("cloudsec-events", "cloudsec / Event bus",
              "Outboxes and relays of the producers, subscribers and their queues.")
    b.row("Producers: outbox and relay")
    b.panel("Oldest unpublished event",
            [target(f"max by (component) (bus_outbox_oldest_age_seconds{{{SEL}}})", "{{component}}")],
            unit="s", description="Over 5 minutes raises OutboxEventsStuck.")
    b.panel("Outbox depth",
            [target(f"max by (component) (bus_outbox_depth{{{SEL}}})", "{{component}}")],
            unit="short")
    b.panel("Relay: events per second by outcome",
            [target(f"sum by (component, outcome) (rate(bus_relay_events_total{{{SEL}}}[{RI}]))", "{{component}} {{outcome}}")],
            unit="short")
    b.panel("Relay: publish call p99",
            [target(f"histogram_quantile(0.99, sum by (component, le) (rate(bus_relay_publish_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{component}}")],
            unit="s")
    b.row("Subscribers")
    b.panel("Lag at receipt",
            [target(f"histogram_quantile({q}, sum by (queue, le) (rate(bus_subscriber_lag_seconds_bucket{{{SEL}}}[{RI}])))", f"{{{{queue}}}} p{int(q * 100)}")
             for q in (0.5, 0.99)],
            unit="s", description="Time from the event's occurrence to its receipt; p99 over a minute for 10 minutes raises SubscriberLagging.")
    b.panel("Settled per second by outcome",
            [target(f"sum by (queue, outcome) (rate(bus_subscriber_handled_total{{{SEL}}}[{RI}]))", "{{queue}} {{outcome}}")],
            unit="short")
    b.panel("Queue depth",
            [target(f"max by (queue) (bus_queue_depth{{{SEL}}})", "{{queue}}")],
            unit="short")
    b.panel("Dead letters",
            [target(f"max by (queue) (bus_dlq_depth{{{SEL}}})", "{{queue}}")],
            unit="short", description="Anything above 0 raises DeadLettersPresent; docs/runbooks/DeadLettersPresent.md says how to redrive.",
            thresholds=[(None, "green"), (1, "red")])
    return b


def security():
    b = Board("cloudsec-security", "cloudsec / Auth and security",
              "Certificates, trust anchors, Vault, signing keys, JWKS, logins and the audit chain.")
    b.row("Mesh identity")
    b.panel("Workload certificates: time left",
            [target(f"namespace_identity:identity_cert_remaining_seconds:min{{{NS}}}", "{{identity}}")],
            unit="s", description="Renewed at 70 % of their lifetime; MeshCertificateExpiring fires when one has missed it and expires within 24 h.")
    b.panel("Trust anchors: time left",
            [target(f"namespace_subject:identity_trust_anchor_remaining_seconds:min{{{NS}}}", "{{subject}}")],
            unit="s")
    b.panel("Certificate renewals",
            [target(f"sum by (outcome) (increase(identity_cert_renewals_total{{{SEL}}}[1h]))", "{{outcome}}")],
            unit="short")
    b.row("Vault")
    b.panel("Token: time left",
            [target(f"namespace_instance:vault_token_remaining_seconds:min{{{NS}}}", "{{instance}}")],
            unit="s")
    b.panel("Leases: time left",
            [target(f"namespace_lease:vault_lease_remaining_seconds:min{{{NS}}}", "{{lease}}")],
            unit="s")
    b.panel("Renewals by outcome",
            [target(f"sum by (outcome) (increase(vault_token_renewals_total{{{SEL}}}[1h]))", "token {{outcome}}"),
             target(f"sum by (lease, outcome) (increase(vault_lease_renewals_total{{{SEL}}}[1h]))", "{{lease}} {{outcome}}")],
            unit="short")
    b.row("Tokens")
    b.panel("Signing key age",
            [target(f"namespace:auth_signing_key_age_seconds:max{{{NS}}}", "{{namespace}}")],
            unit="s")
    b.panel("Time to the next signing key",
            [target(f"namespace:auth_signing_key_rotation_remaining_seconds:min{{{NS}}}", "{{namespace}}")],
            unit="s")
    b.panel("Keys in the JWKS",
            [target(f"max by (namespace) (auth_signing_keys_published{{{SEL}}})", "{{namespace}}")],
            unit="short")
    b.panel("JWKS fetches by outcome",
            [target(f"sum by (component, source, outcome) (increase(jwks_refreshes_total{{{SEL}}}[1h]))", "{{component}} {{source}} {{outcome}}")],
            unit="short", w=24)
    b.row("Logins and the audit chain")
    b.panel("Failed sign-in checks per second",
            [target(f"sum (rate(auth_login_failures_total{{{SEL}}}[{RI}]))", "failures")],
            unit="short")
    b.panel("Lockouts (10 minutes)",
            [target(f"sum by (scope) (increase(auth_lockouts_total{{{SEL}}}[10m]))", "{{scope}}")],
            unit="short", description="Over 10 and three times the day's average raises LoginLockoutSpike.")
    b.panel("Password checks: run per second and refused (5 minutes)",
            [target(f"sum (rate(auth_password_verifications_total{{{SEL}}}[{RI}]))", "verified/s"),
             target(f"sum (increase(auth_password_busy_total{{{SEL}}}[5m]))", "refused, queue full (5 min)")],
            unit="short", description="Any refusal raises PasswordHashingSaturated.")
    b.panel("Audit: records appended and broken chains",
            [target(f"sum (rate(audit_records_appended_total{{{SEL}}}[{RI}]))", "appended/s"),
             target(f"sum (increase(audit_chain_verify_failures_total{{{SEL}}}[1h]))", "verifications failed (1 h)")],
            unit="short")
    b.panel("Refused by authorization (audit mode counts too)",
            [target(f'sum by (decision) (rate(inbound_authz_total{{{SEL}, decision!="allow"}}[{RI}]))', "{{decision}}")],
            unit="reqps", w=24)
    return b


BOARDS = [overview, mesh, events, security]


def render():
    return {
        f"{b.uid}.json": json.dumps(b.json(), indent=2, ensure_ascii=False) + "\n"
        for b in (make() for make in BOARDS)
    }


def main(argv):
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    out = pathlib.Path(rest[0]) if rest else OUT
    files = render()
    if check:
        stale = [name for name, text in files.items()
                 if not (out / name).exists() or (out / name).read_text() != text]
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in files)
        if stale or extra:
            print(f"dashboards: out of date: {stale + extra}; run {__file__}", file=sys.stderr)
            return 1
        print(f"dashboards: {len(files)} up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    print(f"dashboards: wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
