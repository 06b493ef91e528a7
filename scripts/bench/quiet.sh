# Is the machine quiet enough to trust a timed benchmark? (sourced by
# scripts/bench-mesh and scripts/bench-gateway; issue 21)
#
# A loaded machine slows a single-threaded Envoy more than a multi-task
# tokio process, so ratios from a busy machine mislead. These functions
# record, before and during the run:
#   - the load average (/proc/loadavg), sampled every 2 s;
#   - CPU steal (/proc/stat), the hypervisor taking our cores;
#   - the CPU time used by processes that are not the benchmark's: the
#     machine's busy time (/proc/stat) minus the benchmark's servers
#     (/proc/PID/stat) and the script's finished children (bash `times`:
#     h2load, curl, the helpers). Short-lived processes such as compilers
#     are caught too, since they add to the machine's total.
# and call the run busy when the load average before it was QUIET_MAX_LOAD
# (2) or more, steal exceeded QUIET_MAX_STEAL_PCT (2 % of the machine), or
# the other processes used more than QUIET_MAX_OTHER_PCT (5 %) of the
# machine. The load average during the run is recorded but not judged: at
# saturation the benchmark's own processes keep every core busy, so it
# says more about the benchmark than about the others; their CPU time is
# the measure that excludes ours.
#
# quiet_start WORKDIR            before anything starts
# quiet_stop WORKDIR PID...      after the last measurement; PIDs are the
#                                benchmark's long-running servers. Writes
#                                WORKDIR/quiet.txt (one line per measure) and
#                                WORKDIR/quiet.verdict (`quiet` or `busy`).

QUIET_MAX_LOAD=${QUIET_MAX_LOAD:-2}
QUIET_MAX_STEAL_PCT=${QUIET_MAX_STEAL_PCT:-2}
QUIET_MAX_OTHER_PCT=${QUIET_MAX_OTHER_PCT:-5}

# busy steal total, in clock ticks, of the whole machine
quiet_cpu() {
    awk '/^cpu / {
        busy = $2 + $3 + $4 + $7 + $8; steal = $9
        total = busy + $5 + $6 + steal
        print busy, steal, total
    }' /proc/stat
}

# utime + stime of the given processes and all their threads, in ticks
quiet_ticks() {
    local total=0 pid f
    for pid in "$@"; do
        if read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null); then
            total=$((total + f[11] + f[12]))
        fi
    done
    echo "$total"
}

# CPU seconds (user + system) of the shell's finished children, from the
# output of `times` in FILE. `times` must run in the script's own shell
# (not in $(...), a fork whose children's usage starts at zero).
quiet_children_seconds() {
    sed -n 2p "$1" | awk '{
        s = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
        printf "%.3f\n", s
    }'
}

quiet_start() {
    local work=$1
    cut -d' ' -f1-3 /proc/loadavg >"$work/quiet.load_before"
    quiet_cpu >"$work/quiet.cpu_before"
    times >"$work/quiet.times_before"
    (
        while :; do
            cut -d' ' -f1 /proc/loadavg
            sleep 2
        done
    ) >"$work/quiet.load_samples" 2>/dev/null &
    QUIET_SAMPLER=$!
}

quiet_stop() {
    local work=$1
    shift
    kill "$QUIET_SAMPLER" 2>/dev/null || true
    wait "$QUIET_SAMPLER" 2>/dev/null || true
    local busy0 steal0 total0 busy1 steal1 total1
    read -r busy0 steal0 total0 <"$work/quiet.cpu_before"
    read -r busy1 steal1 total1 < <(quiet_cpu)
    # Our servers' ticks are cumulative since they started: the scripts
    # start them after quiet_start, so all of them count as ours.
    local ours_ticks children0 children1
    ours_ticks=$(quiet_ticks "$@")
    times >"$work/quiet.times_after"
    children0=$(quiet_children_seconds "$work/quiet.times_before")
    children1=$(quiet_children_seconds "$work/quiet.times_after")
    python3 - "$work" "$(getconf CLK_TCK)" "$(nproc)" "$busy0" "$steal0" "$total0" \
        "$busy1" "$steal1" "$total1" "$ours_ticks" "$children0" "$children1" \
        "$QUIET_MAX_LOAD" "$QUIET_MAX_STEAL_PCT" "$QUIET_MAX_OTHER_PCT" <<'PY'
import sys
(work, clk, ncpu, b0, s0, t0, b1, s1, t1, ours, c0, c1,
 max_load, max_steal, max_other) = sys.argv[1:]
clk, ncpu = float(clk), int(ncpu)
busy = (int(b1) - int(b0)) / clk
steal = (int(s1) - int(s0)) / clk
capacity = (int(t1) - int(t0)) / clk  # CPU-seconds the machine had, all cores
ours = int(ours) / clk + (float(c1) - float(c0))
other = max(0.0, busy - ours)
before = open(f"{work}/quiet.load_before").read().split()
samples = [float(x) for x in open(f"{work}/quiet.load_samples").read().split()] or [float(before[0])]
load_before = float(before[0])
steal_pct = 100 * steal / capacity if capacity else 0.0
other_pct = 100 * other / capacity if capacity else 0.0
reasons = []
if load_before >= float(max_load):
    reasons.append(f"load average before the run {load_before:.2f} (limit {max_load})")
if steal_pct > float(max_steal):
    reasons.append(f"CPU steal {steal_pct:.1f}% (limit {max_steal}%)")
if other_pct > float(max_other):
    reasons.append(f"other processes used {other_pct:.1f}% of the machine (limit {max_other}%)")
verdict = "busy" if reasons else "quiet"
with open(f"{work}/quiet.txt", "w") as f:
    f.write(f"load average before: {' / '.join(before)} (1, 5, 15 min)\n")
    f.write(f"load average during (1 min, every 2 s): min {min(samples):.2f}, "
            f"max {max(samples):.2f}, {len(samples)} samples\n")
    f.write(f"CPU steal during: {steal:.1f} CPU-s = {steal_pct:.2f}% of {capacity:.0f} CPU-s ({ncpu} cores)\n")
    f.write(f"CPU of other processes during: {other:.1f} CPU-s = {other_pct:.1f}% "
            f"(machine busy {busy:.1f}, benchmark {ours:.1f})\n")
    f.write(f"machine: {verdict}" + (": " + "; ".join(reasons) if reasons else "") + "\n")
with open(f"{work}/quiet.verdict", "w") as f:
    f.write(verdict + "\n")
PY
}
