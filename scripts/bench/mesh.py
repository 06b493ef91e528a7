#!/usr/bin/env python3
"""Helpers for scripts/bench-mesh: free ports, the gRPC request file, h2load
output checks, latency percentiles and the final markdown table.

Usage:
  mesh.py ports N                 print N free loopback TCP ports
  mesh.py request FILE [SIZE]     write a gRPC frame: 5-byte prefix + SIZE bytes of
                                  protobuf (default 1024, at least 4)
  mesh.py check H2LOAD_OUT SIZE   fail unless every request succeeded and every
                                  response carried SIZE bytes of echoed body
  mesh.py report WORKDIR CLK_TCK WORKLOADS VERDICT
                                  print the results tables; target verdicts only
                                  when VERDICT (quiet.sh's) is `quiet`
"""

import json
import os
import re
import socket
import statistics
import struct
import sys

SCENARIOS = [
    ("direct", "(a) direct"),
    ("ours", "(b) cloudsec sidecars"),
    ("envoy", "(c) Envoy x2"),
]


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def request(path, size=1024):
    # message Echo { bytes payload = 1; }: tag 0x0a, a varint length, the
    # payload, sized so that the message is exactly `size` bytes.
    length_bytes = 1 if size - 2 < 128 else 2
    n = size - 1 - length_bytes
    payload = bytes((i * 31 + 7) % 256 for i in range(n))
    varint = bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7])
    message = b"\x0a" + varint + payload
    assert len(message) == size, (len(message), size)
    with open(path, "wb") as f:
        f.write(struct.pack(">BI", 0, len(message)) + message)


def parse_h2load(text):
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if not m:
        raise ValueError("no h2load summary found")
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    data = re.search(r"\((\d+)\) data", text)
    rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", text)
    return {
        "total": total,
        "done": done,
        "succeeded": ok,
        "failed": failed + errored + timeout,
        "data": int(data.group(1)) if data else -1,
        "rps": float(rps.group(1)) if rps else 0.0,
    }


def check(path, size):
    with open(path) as f:
        r = parse_h2load(f.read())
    problems = []
    if r["done"] == 0:
        problems.append("no request completed")
    if r["failed"] or r["succeeded"] != r["done"]:
        problems.append(f"{r['failed']} failed/errored/timed out, "
                        f"{r['succeeded']} of {r['done']} succeeded")
    # A synthetic proxy answer (trailers-only, e.g. grpc-status 14 with HTTP
    # 200) carries no DATA; only the echo server's answer carries the body.
    if r["data"] != r["succeeded"] * size:
        problems.append(f"received {r['data']} body bytes, expected "
                        f"{r['succeeded']} x {size}: some responses were not echoes")
    if problems:
        print(f"{path}: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(r))


def percentile(sorted_values, p):
    # nearest rank
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def latencies(paths):
    values = []
    for path in paths:
        with open(path) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3:
                    values.append(int(cols[2]))
    values.sort()
    return values


def read_kv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out[parts[0]] = int(parts[1])
    return out


WORKLOADS = {
    # name: (what it is, message bytes)
    "1kib": ("1 KiB messages, 8 connections x 16 streams", 1024),
    "small": ("16-byte messages, 1 connection x 128 streams", 16),
    "conns": ("16-byte messages, 128 connections x 1 stream", 16),
}


def report(work, clk_tck, workloads, verdict):
    clk_tck = float(clk_tck)
    workloads = workloads.split()
    busy = verdict != "quiet"
    files = sorted(os.listdir(work))
    res = {}
    for key, _ in SCENARIOS:
        open_logs = [os.path.join(work, f) for f in files
                     if re.fullmatch(rf"{key}\.open\.\d+\.log", f)]
        lat = latencies(open_logs)
        opened = [parse_h2load(open(os.path.join(work, f)).read())
                  for f in files if re.fullmatch(rf"{key}\.open\.\d+\.out", f)]
        cpu = read_kv(os.path.join(work, f"{key}.cpu"))
        r = {
            "n": len(lat),
            "p50": percentile(lat, 50) / 1000,
            "p99": percentile(lat, 99) / 1000,
            "p999": percentile(lat, 99.9) / 1000,
            "open_rate": sum(o["done"] for o in opened)
            / max(1e-9, sum(o["done"] / o["rps"] for o in opened if o["rps"])),
            "idle": read_kv(os.path.join(work, f"{key}.idle")),
            "hwm": read_kv(os.path.join(work, f"{key}.hwm")),
        }
        reqs = sum(o["succeeded"] for o in opened)
        ticks = cpu.get("open")
        r["cpu_open"] = (ticks / clk_tck) / reqs * 1000 if ticks is not None and reqs else None
        for w in workloads:
            closed = [parse_h2load(open(os.path.join(work, f)).read())
                      for f in files if re.fullmatch(rf"{key}\.{w}\.closed\.\d+\.out", f)]
            reqs = sum(c["succeeded"] for c in closed)
            ticks = cpu.get(w)
            r[w] = {
                "rps": statistics.median([c["rps"] for c in closed]) if closed else 0,
                "rps_all": [c["rps"] for c in closed],
                "cpu": (ticks / clk_tck) / reqs * 1000 if ticks is not None and reqs else None,
            }
        res[key] = r

    d, o, e = res["direct"], res["ours"], res["envoy"]

    def ms(v):
        return f"{v:.3f}"

    def mb(kb):
        return f"{kb / 1024:.1f}"

    def cpu_s(v):
        return "n/a" if v is None else f"{v:.4f}"

    if busy:
        print("**UNTRUSTED: the machine was busy (see below); figures only, no verdict.**")
        print()
    print("Saturation (closed loop) by workload; proxy CPU is both proxies' "
          "CPU-seconds per 1,000 requests.")
    print()
    print("| workload | path | saturation req/s (median; rounds) | proxy CPU-s per 1k req |")
    print("|---|---|---|---|")
    for w in workloads:
        for key, label in SCENARIOS:
            r = res[key][w]
            rps = f"{r['rps']:.0f} (" + ", ".join(f"{x:.0f}" for x in r["rps_all"]) + ")"
            cpu = "—" if key == "direct" else cpu_s(r["cpu"])
            print(f"| {w}: {WORKLOADS[w][0]} | {label} | {rps} | {cpu} |")
    print()
    print("| path | p50 / p99 / p99.9 (ms) | added p50 | added p99 | added p99.9 "
          "| proxy CPU-s per 1k req @ fixed rate | proxy peak RSS (MB, both) "
          "| idle RSS per proxy (MB) |")
    print("|" + "---|" * 8)
    for key, label in SCENARIOS:
        r = res[key]
        lat = f"{ms(r['p50'])} / {ms(r['p99'])} / {ms(r['p999'])}"
        if key == "direct":
            added, cpu, hwm, idle = ["—", "—", "—"], "—", "—", "—"
        else:
            added = [ms(r[p] - d[p]) for p in ("p50", "p99", "p999")]
            cpu = cpu_s(r["cpu_open"])
            hwm = f"{mb(sum(r['hwm'].values()))} (" + " + ".join(
                mb(v) for v in r["hwm"].values()) + ")"
            idle = " / ".join(f"{name} {mb(v)}" for name, v in r["idle"].items())
        print(f"| {label} | {lat} | {' | '.join(added)} | {cpu} | {hwm} | {idle} |")
    print()
    print(f"Open loop (1 KiB): {d['n']} / {o['n']} / {e['n']} latency samples "
          f"(direct / ours / Envoy); achieved rates {d['open_rate']:.0f} / "
          f"{o['open_rate']:.0f} / {e['open_rate']:.0f} req/s.")
    print()

    added_o, added_e = o["p99"] - d["p99"], e["p99"] - d["p99"]
    rss_o, rss_e = sum(o["hwm"].values()), sum(e["hwm"].values())
    idle_max = max(o["idle"].values()) if o["idle"] else float("inf")
    targets = []
    for w in workloads:
        ow, ew = o[w], e[w]
        targets.append((f"{w}: saturation >= 1.2x Envoy's", ow["rps"] >= 1.2 * ew["rps"],
                        f"{ow['rps']:.0f} vs {ew['rps']:.0f} req/s = "
                        f"{ow['rps'] / max(ew['rps'], 1e-9):.3f}x"))
        if ow["cpu"] is not None and ew["cpu"]:
            targets.append((f"{w}: CPU per 1k requests <= 0.8x Envoy's",
                            ow["cpu"] <= 0.8 * ew["cpu"],
                            f"{cpu_s(ow['cpu'])} vs {cpu_s(ew['cpu'])} CPU-s = "
                            f"{ow['cpu'] / ew['cpu']:.3f}x"))
    targets += [
        ("added p99 at the fixed rate <= 0.5x Envoy's",
         added_e > 0 and added_o <= 0.5 * added_e,
         f"{ms(added_o)} ms vs {ms(added_e)} ms = {added_o / added_e:.3f}x" if added_e else "n/a"),
        ("peak RSS <= 0.25x Envoy's",
         rss_o <= 0.25 * rss_e,
         f"{mb(rss_o)} vs {mb(rss_e)} MB = {rss_o / max(rss_e, 1):.3f}x"),
        ("idle sidecar < 10 MB RSS",
         idle_max < 10 * 1024,
         f"largest idle sidecar {mb(idle_max)} MB"),
    ]
    print("| target | result | met |")
    print("|---|---|---|")
    for name, ok, detail in targets:
        met = "no verdict (busy machine)" if busy else ("**met**" if ok else "**not met**")
        print(f"| {name} | {detail} | {met} |")


def sched(path, requests, label):
    """Rows of `perf sched timehist` output, by process name: wake-ups
    and run time per request and the scheduling delay (wake-up to
    running) percentiles; the five busiest names, idle left out."""
    line_re = re.compile(r"^\s*[\d.]+\s+\[\d+\]\s+(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
    delays, runs = {}, {}
    with open(path) as f:
        for line in f:
            m = line_re.match(line)
            if not m:
                continue
            name = re.sub(r"\[[\d/]+\]$", "", m.group(1))
            if name.startswith("<idle>"):
                continue
            delay, run = float(m.group(3)), float(m.group(4))
            delays.setdefault(name, []).append(delay)
            runs[name] = runs.get(name, 0.0) + run
    busiest = sorted(runs, key=runs.get, reverse=True)[:5]
    for name in busiest:
        d = sorted(delays[name])
        print(
            f"| {label} | {name} | {len(d) / requests:.2f} | "
            f"{percentile(d, 50):.3f} / {percentile(d, 99):.3f} / {d[-1]:.3f} | {runs[name] / requests:.3f} |"
        )


def tail(work, label):
    """How the open loop's slowest requests (at or above the p99) fall in
    time, over every round's log of `label`: a per-request cost spreads
    them out; a stall that holds the path up for some milliseconds makes
    them come in runs of consecutive requests."""
    import glob

    rows = []
    for path in sorted(glob.glob(os.path.join(work, f"{label}.open.*.log"))):
        with open(path) as f:
            rows.extend(sorted((int(a), int(c)) for a, _, c in (line.split() for line in f if line.strip())))
    if not rows:
        return
    rows.sort()
    d = sorted(r[1] for r in rows)
    p99 = percentile(d, 99)
    slow = [i for i, r in enumerate(rows) if r[1] >= p99]
    near = sum(1 for k in range(1, len(slow)) if 0 <= rows[slow[k]][0] - rows[slow[k - 1]][0] < 5000)
    print(
        f"| {label} | {p99 / 1000:.3f} | {d[-1] / 1000:.3f} | {len(slow)} | "
        f"{near} ({100 * near / max(1, len(slow)):.0f} %) |"
    )


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ports":
        ports(int(sys.argv[2]))
    elif cmd == "request":
        request(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1024)
    elif cmd == "check":
        check(sys.argv[2], int(sys.argv[3]))
    elif cmd == "tail":
        tail(sys.argv[2], sys.argv[3])
    elif cmd == "sched":
        sched(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
