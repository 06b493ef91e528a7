#!/usr/bin/env python3
"""Self and inclusive instruction counts per function of a callgrind dump,
for scripts/callgrind-mesh (callgrind_annotate 3.19 mis-attributes the
costs of these Rust binaries to __libc_start_main).

Usage: cgself.py DUMP [N_REQUESTS] [TOP]
"""
import collections
import re
import sys


def parse(path):
    names = {}
    self_cost = collections.Counter()
    incl_calls = collections.Counter()
    fn = None
    after_calls = False
    total = 0
    ref = re.compile(r"^(fn|cfn|cfi|cfl|fl|fi|fe|ob|cob)=\((\d+)\)(?: (.*))?$")
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = ref.match(line)
            if m:
                kind, ident, name = m.groups()
                if kind in ("fn", "cfn"):
                    key = ("fn", ident)
                    if name:
                        names[key] = name
                    if kind == "fn":
                        fn = names.get(key, ident)
                    else:
                        callee = names.get(key, ident)
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if line.startswith("summary:"):
                total = int(line.split()[1])
                continue
            if line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                if len(parts) < 2:
                    continue
                cost = int(parts[1])
                if after_calls:
                    if callee != fn:
                        incl_calls[(fn, callee)] += cost
                    after_calls = False
                else:
                    self_cost[fn] += cost
    return total, self_cost


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    total, self_cost = parse(path)
    print(f"total {total:,} instructions, {total / n:,.0f} per request")
    print("self instr/request  share  function")
    for name, cost in self_cost.most_common(top):
        print(f"{cost / n:>18,.0f}  {100 * cost / max(total, 1):5.1f}%  {name[:150]}")


if __name__ == "__main__":
    main()
