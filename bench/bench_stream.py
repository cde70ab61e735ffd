"""Benchmark: recommendations from the reference platform into the SQLite store, with acks.

The platform runs in its own process (as in production it is another machine), the
operator's stream client in this one: every recommendation is decoded, validated, stored
durably (one SQLite commit per batch) and acked. Prints recommendations per second, the
p50/p99 ack latency the platform measured (from handing a message to gRPC to receiving its
ack), this process's peak RSS, and its RSS after 10 % of the run against the end: the goal
is >= 3,000 recommendations/s and flat memory (a bounded queue, nothing kept per message).

    .venv/bin/python bench/bench_stream.py [--count 100000] [--batch 64] [--window 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.adapters.store import sqlite as sqlite_store  # noqa: E402
from reconciler.stream import client  # noqa: E402
from reconciler.stream import state as stream_state  # noqa: E402

GOAL_RATE = 3000.0


def _doc(i: int) -> dict[str, object]:
    return {
        "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "WorkloadRecommendation",
        "metadata": {"namespace": f"team-{i % 50}"},
        "spec": {"recommendationId": f"rec-{i:07d}", "action": "Rightsizing",
                 "targetRef": {"kind": "Deployment", "name": f"svc-{i}"},
                 "containers": [{"name": "app", "resources": {
                     "requests": {"cpu": f"{50 + i % 400}m", "memory": f"{64 + i % 512}Mi"},
                     "limits": {"memory": f"{128 + i % 512}Mi"}}}],
                 "confidence": 0.9, "projectedSavings": {"monthly": round(i % 97 * 1.3, 2),
                                                         "currency": "USD"}},
    }


def _rss_kb() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=64, help="recommendations per platform message")
    ap.add_argument("--window", type=int, default=1000, help="unacked messages in flight")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        src, acks = d / "recs.json", d / "acks.jsonl"
        with src.open("w") as f:
            f.write("[")
            for i in range(args.count):
                f.write(("," if i else "") + json.dumps(_doc(i)))
            f.write("]")
        server = subprocess.Popen(
            [sys.executable, "-m", "reconciler.devtools.platform", "--from", str(src),
             "--port", "0", "--acks-out", str(acks), "--batch", str(args.batch),
             "--window", str(args.window), "--heartbeat", "0.5"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith("listening on "):
                print(f"platform did not start: {line!r}", file=sys.stderr)
                return 1
            address = line.split()[-1]
            st = sqlite_store.SqliteStore(d / "store.db")
            state = stream_state.StreamState(d / "stream.db")
            cfg = client.ClientConfig(target=address, heartbeat_interval=1.0,
                                      heartbeat_timeout=10.0, backoff_initial=0.1)
            c = client.StreamClient(cfg, st, state)
            samples: dict[str, int] = {}
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    if "early" not in samples and c.stats.stored >= args.count // 10:
                        samples["early"] = _rss_kb()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.monotonic()
            stats = c.run(until_idle=1.5)
            elapsed = c.last_delivery - start
            done.set()
            samples["end"] = _rss_kb()
            state.close()
            st.close()
            # Counted in SQL: list() would load every record and own the peak RSS figure.
            with contextlib.closing(sqlite3.connect(d / "store.db")) as db:
                stored = int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        finally:
            server.terminate()
            server.wait(timeout=30)
            if server.stdout is not None:
                server.stdout.close()
        latencies = []
        with acks.open() as f:  # line by line: the file is not this process's memory use
            for raw in f:
                entry = json.loads(raw)
                if entry.get("latency_ms") is not None:
                    latencies.append(float(entry["latency_ms"]))

    rate = stats.stored / elapsed if elapsed > 0 else float("nan")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"recommendations:     {stats.stored} stored ({stored} in the store), "
          f"{stats.duplicates} duplicates, {stats.nacked} refused, "
          f"{stats.connections} connection(s)")
    print(f"throughput:          {rate:,.0f} recommendations/s over {elapsed:.1f} s "
          f"(goal >= {GOAL_RATE:,.0f}: {'met' if rate >= GOAL_RATE else 'NOT met'})")
    print(f"ack latency:         p50 {_percentile(latencies, 50):.1f} ms, "
          f"p99 {_percentile(latencies, 99):.1f} ms ({len(latencies)} acks)")
    early = samples.get("early", 0) / 1024
    end = samples["end"] / 1024
    print(f"memory:              peak RSS {peak_mb:.0f} MiB; RSS {early:.0f} MiB after 10 %, "
          f"{end:.0f} MiB at the end (growth {end - early:+.0f} MiB)")
    return 0 if stored == args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
