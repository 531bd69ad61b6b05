#!/usr/bin/env python3
"""Who kept the person's request waiting for a CPU: reads a `perf sched record -k
CLOCK_MONOTONIC` file and, over [START, START + SECONDS], measures every runnable wait
of the server's HTTP workers and of the person's client threads (woken or preempted,
until switched in). Waits over 1 ms are counted by what held the CPU when the wait
ended: the server's render threads, its other threads, PostgreSQL, the load
generators, the kernel, or an idle CPU (the virtual machine's host).

    sched_waits.py PERF_DATA START SECONDS SERVER_PID PERSON_PID

prints one JSON object.
"""
import json
import re
import subprocess
import sys

EVENT = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")
WAKING = re.compile(r"comm=(.+?) pid=(\d+)")
SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")


def main():
    path, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    server, person = int(sys.argv[4]), int(sys.argv[5])
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,pid,tid,cpu,time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    process = {}  # tid -> pid, learned from the events each thread emits
    ready = {}    # tid -> since when it has been runnable
    waits, held_by = [], {}

    def holder(comm, tid):
        pid = process.get(tid)
        if tid == 0:
            return "idle CPU"
        if pid == server:
            return "render threads" if comm.startswith("render-") else "server, other threads"
        if pid == person:
            return "person client"
        if comm.startswith("postgres"):
            return "PostgreSQL"
        if comm.startswith("python3"):
            return "scraper client"
        return "kernel and others"

    for line in out.splitlines():
        m = EVENT.match(line)
        if not m:
            continue
        comm, pid, tid, _cpu, t, event, rest = m.groups()
        process[int(tid)] = int(pid)
        t = float(t)
        if event == "sched_waking":
            w = WAKING.search(rest)
            ready.setdefault(int(w.group(2)), t)
        elif event == "sched_switch":
            s = SWITCH.search(rest)
            prev, prev_state, nxt = int(s.group(2)), s.group(3), int(s.group(5))
            if prev_state.startswith("R"):
                ready[prev] = t
            else:
                ready.pop(prev, None)
            since = ready.pop(nxt, None)
            if since is None or not (start <= t <= start + seconds):
                continue
            if process.get(nxt) not in (server, person) or (process.get(nxt) == server and not s.group(4).startswith("actix")):
                continue
            waited = (t - since) * 1000
            waits.append(waited)
            if waited > 1:
                h = holder(s.group(1), prev)
                held_by[h] = held_by.get(h, 0) + 1
    waits.sort()
    n = len(waits)
    print(json.dumps({
        "waits": n,
        "p99_ms": round(waits[int(0.99 * n)], 3) if n else None,
        "over_1ms": sum(w > 1 for w in waits),
        "over_1ms_total_ms": round(sum(w for w in waits if w > 1)),
        "over_1ms_ended_by": dict(sorted(held_by.items(), key=lambda kv: -kv[1])),
    }))


if __name__ == "__main__":
    main()
