#!/usr/bin/env python3
"""Helpers for scripts/bench-mesh: free ports, the gRPC request file, h2load
output checks, latency percentiles and the final markdown table.

Usage:
  mesh.py ports N                 print N free loopback TCP ports
  mesh.py request FILE            write a gRPC frame: 5-byte prefix + 1 KiB protobuf
  mesh.py check H2LOAD_OUT SIZE   fail unless every request succeeded and every
                                  response carried SIZE bytes of echoed body
  mesh.py report WORKDIR CLK_TCK  print the results table and target verdicts
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


def request(path):
    # message Echo { bytes payload = 1; } with 1021 payload bytes: tag 0x0a,
    # varint 1021 (0xfd 0x07), payload -> exactly 1024 bytes of protobuf.
    payload = bytes((i * 31 + 7) % 256 for i in range(1021))
    message = b"\x0a\xfd\x07" + payload
    assert len(message) == 1024
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


def report(work, clk_tck):
    clk_tck = float(clk_tck)
    files = sorted(os.listdir(work))
    res = {}
    for key, _ in SCENARIOS:
        open_logs = [os.path.join(work, f) for f in files
                     if re.fullmatch(rf"{key}\.open\.\d+\.log", f)]
        lat = latencies(open_logs)
        closed = [parse_h2load(open(os.path.join(work, f)).read())
                  for f in files if re.fullmatch(rf"{key}\.closed\.\d+\.out", f)]
        opened = [parse_h2load(open(os.path.join(work, f)).read())
                  for f in files if re.fullmatch(rf"{key}\.open\.\d+\.out", f)]
        cpu = read_kv(os.path.join(work, f"{key}.cpu"))
        r = {
            "n": len(lat),
            "p50": percentile(lat, 50) / 1000,
            "p99": percentile(lat, 99) / 1000,
            "p999": percentile(lat, 99.9) / 1000,
            "rps": statistics.median([c["rps"] for c in closed]) if closed else 0,
            "rps_all": [c["rps"] for c in closed],
            "open_rate": sum(o["done"] for o in opened)
            / max(1e-9, sum(o["done"] / o["rps"] for o in opened if o["rps"])),
            "idle": read_kv(os.path.join(work, f"{key}.idle")),
            "hwm": read_kv(os.path.join(work, f"{key}.hwm")),
        }
        for phase in ("open", "closed"):
            reqs = sum(c["succeeded"] for c in (opened if phase == "open" else closed))
            ticks = cpu.get(phase)
            r[f"cpu_{phase}"] = (ticks / clk_tck) / reqs * 1000 if ticks is not None and reqs else None
        res[key] = r

    d = res["direct"]

    def ms(v):
        return f"{v:.3f}"

    def mb(kb):
        return f"{kb / 1024:.1f}"

    rows = []
    header = ("| path | p50 / p99 / p99.9 (ms) | added p50 | added p99 | added p99.9 "
              "| saturation (req/s) | proxy CPU-s per 1k req @ fixed rate / @ saturation "
              "| proxy peak RSS (MB, both) | idle RSS per proxy (MB) |")
    rows.append(header)
    rows.append("|" + "---|" * 9)
    for key, label in SCENARIOS:
        r = res[key]
        lat = f"{ms(r['p50'])} / {ms(r['p99'])} / {ms(r['p999'])}"
        if key == "direct":
            added = ["—", "—", "—"]
            cpu = "—"
            hwm = "—"
            idle = "—"
        else:
            added = [ms(r[p] - d[p]) for p in ("p50", "p99", "p999")]
            cpu = " / ".join("n/a" if r[f"cpu_{p}"] is None else f"{r[f'cpu_{p}']:.3f}"
                             for p in ("open", "closed"))
            hwm = f"{mb(sum(r['hwm'].values()))} (" + " + ".join(
                mb(v) for v in r["hwm"].values()) + ")"
            idle = " / ".join(f"{name} {mb(v)}" for name, v in r["idle"].items())
        rps = f"{r['rps']:.0f} (" + ", ".join(f"{x:.0f}" for x in r["rps_all"]) + ")"
        rows.append(f"| {label} | {lat} | {' | '.join(added)} | {rps} | {cpu} | {hwm} | {idle} |")
    print("\n".join(rows))
    print()
    print(f"Open loop: {d['n']} / {res['ours']['n']} / {res['envoy']['n']} latency samples "
          f"(direct / ours / Envoy); achieved rates {d['open_rate']:.0f} / "
          f"{res['ours']['open_rate']:.0f} / {res['envoy']['open_rate']:.0f} req/s. "
          "Saturation is the median of the rounds (each round in brackets).")
    print()

    o, e = res["ours"], res["envoy"]
    added_o, added_e = o["p99"] - d["p99"], e["p99"] - d["p99"]
    rss_o, rss_e = sum(o["hwm"].values()), sum(e["hwm"].values())
    idle_max = max(o["idle"].values()) if o["idle"] else float("inf")
    targets = [
        ("added p99 <= 0.5x Envoy's",
         added_e > 0 and added_o <= 0.5 * added_e,
         f"{ms(added_o)} ms vs {ms(added_e)} ms = {added_o / added_e:.3f}x" if added_e else "n/a"),
        ("saturation throughput >= 1.2x Envoy's",
         o["rps"] >= 1.2 * e["rps"],
         f"{o['rps']:.0f} vs {e['rps']:.0f} req/s = {o['rps'] / max(e['rps'], 1e-9):.3f}x"),
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
        print(f"| {name} | {detail} | {'**met**' if ok else '**not met**'} |")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ports":
        ports(int(sys.argv[2]))
    elif cmd == "request":
        request(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2], int(sys.argv[3]))
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
