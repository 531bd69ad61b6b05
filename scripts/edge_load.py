#!/usr/bin/env python3
"""Fixed-rate HTTP clients for scripts/accept-edge: a person panning over cached tiles
and a scraper walking distinct uncached tiles, each from its own loopback address, at a
steady request rate, recording status codes and latencies.

    edge_load.py HOST:PORT SECONDS person:SRC:RATE:PATHS [scraper:SRC:RATE:PATHS:spoof]

prints one JSON object per client: statuses, p50/p99 latency (ms), time of the first
429, requests sent.

Each client runs in its own process, as two people's browsers would: in one Python
process the scraper's threads would hold the GIL while the person's response waits to
be read, and the person's latency would measure the load generator, not the server.
"""
import http.client
import json
import multiprocessing
import os
import random
import sys
import threading
import time


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Client:
    def __init__(self, name, host, port, src, rate, paths, spoof, seconds, threads):
        self.name, self.host, self.port, self.src = name, host, port, src
        self.rate, self.paths, self.spoof, self.seconds = rate, paths, spoof, seconds
        self.threads = threads
        self.lock = threading.Lock()
        self.statuses, self.latencies, self.when = {}, [], []
        self.first_429 = None
        self.next_path = 0
        self.sent = 0
        self.start = None

    def path(self):
        with self.lock:
            p = self.paths[self.next_path % len(self.paths)]
            self.next_path += 1
            return p

    def worker(self, index, start):
        conn = None
        period = self.threads / self.rate
        i = 0
        rng = random.Random(index)
        while True:
            due = start + (index / self.rate) + i * period
            if due - start >= self.seconds:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            i += 1
            headers = {}
            if self.spoof:
                headers["X-Forwarded-For"] = "198.51.%d.%d" % (rng.randrange(256), rng.randrange(256))
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=(self.src, 0))
                conn.request("GET", self.path(), headers=headers)
                res = conn.getresponse()
                res.read()
                status = res.status
                if res.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception:
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            took = (time.monotonic() - t0) * 1000
            with self.lock:
                self.sent += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(took)
                self.when.append(round(t0 - start, 2))
                if status == 429 and self.first_429 is None:
                    self.first_429 = round(time.monotonic() - start, 2)

    def run(self, start):
        self.start = start
        ts = [threading.Thread(target=self.worker, args=(i, start)) for i in range(self.threads)]
        for t in ts:
            t.start()
        return ts

    def report(self):
        return {
            "client": self.name,
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": round(percentile(self.latencies, 0.50) or 0, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) or 0, 2),
            "first_429_s": self.first_429,
            # For matching the run with a `perf sched` trace (scripts/sched_waits.py).
            "start_monotonic": self.start,
            "pid": os.getpid(),
            # The slowest 1% (what p99 is made of): seconds into the run, milliseconds.
            "slowest": sorted(zip(self.when, (round(l, 2) for l in self.latencies)),
                              key=lambda w: -w[1])[: max(1, len(self.latencies) // 100)],
        }


def run_client(client, start, results):
    for t in client.run(start):
        t.join()
    results.put((client.name, client.report()))


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    seconds = float(sys.argv[2])
    clients = []
    for spec in sys.argv[3:]:
        parts = spec.split(":")
        name, src, rate, paths_file = parts[0], parts[1], float(parts[2]), parts[3]
        spoof = len(parts) > 4 and parts[4] == "spoof"
        paths = [l.strip() for l in open(paths_file) if l.strip()]
        # The scraper's renders hold its connections for a second or more: more of them.
        threads = 16 if name == "scraper" else 4
        clients.append(Client(name, host, int(port), src, rate, paths, spoof, seconds, threads))
    # time.monotonic is CLOCK_MONOTONIC: one clock for every process, so one start.
    start = time.monotonic() + 0.5
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=run_client, args=(c, start, results)) for c in clients]
    for p in procs:
        p.start()
    reports = dict(results.get() for _ in procs)
    for p in procs:
        p.join()
    for c in clients:
        print(json.dumps(reports[c.name]))


if __name__ == "__main__":
    main()
