"""Benchmark: `reconciler run` as an operator, direct mode, against the test API server.

The operator runs as its own process (as in a pod) with the default policy library and
the custom-resource store; the test API server and the reference platform run in this
process. It measures:

- single recommendations on an idle operator: the time from the platform's send to the
  Applied status coming back up the stream, and from a `kubectl create`-style API create
  of a WorkloadRecommendation to its Applied phase (p50, p99; goal p99 under 2 s);
- a burst of N recommendations (10,000 by default) sent over the stream at once: the time
  to all Applied, throughput, send-to-Applied p50 and p99, the work queue's depth and the
  operator's memory over time (goal: peak RSS under 200 MB and flat), CPU seconds per
  recommendation, and API requests per applied recommendation;
- a restart with all of them in the cluster: the time to ready (the informers list every
  recommendation, in pages), the new process's peak RSS, and the API writes it makes
  afterwards (none: everything is done);
- the naive way for comparison: a one-shot `reconciler apply --mode direct` started for
  each recommendation as it comes (what a cron job or a hook would do), timed on a sample.

    .venv/bin/python bench/bench_operator.py [--n 10000] [--singles 20] [--namespaces 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from reconciler.devtools import platform  # noqa: E402
from reconciler.domain import model  # noqa: E402
from tests import crds, samples  # noqa: E402
from tests.fakes.kubeapi.handle import KubeApi, serve  # noqa: E402
from tests.integration.run_support import value  # noqa: E402
from tests.integration.runtime import operator_support as op  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rec(i: int, ns: str, cpu: str = "80m") -> dict[str, Any]:
    return op.wrec(f"rec-{i:05d}", f"svc-{i:05d}", cpu=cpu, namespace=ns)


def applied_at(server: platform.PlatformServer) -> dict[str, float]:
    """recommendation id -> when its Applied status reached the platform (monotonic)."""
    with server.state._cond:
        ups = list(server.state.upstream)
    return {u["recommendation_id"]: u["received_at"] for u in ups
            if u.get("phase") == model.APPLIED}


def sent_at(server: platform.PlatformServer) -> dict[str, float]:
    with server.state._cond:
        acks = list(server.state.acks)
    return {a["id"]: a["sent_at"] for a in acks if a.get("sent_at") is not None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="recommendations in the burst")
    ap.add_argument("--singles", type=int, default=20, help="single recommendations timed")
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--naive-sample", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--resync", type=float, default=60.0,
                    help="the operator's resync period: each one scans every recommendation")
    ap.add_argument("--qps", type=float, default=500.0,
                    help="the operator's client-side rate limit (its default, 50, would be "
                         "what limits a burst)")
    args = ap.parse_args()
    total = args.n + 2 * args.singles + args.naive_sample
    namespaces = [f"team-{k:02d}" for k in range(args.namespaces)]

    def ns_of(i: int) -> str:
        return namespaces[i % len(namespaces)]

    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmpdir, \
            serve(bookmark_interval=5.0) as api:
        tmp = Path(tmpdir)
        crds.install_crds(api)
        t0 = time.monotonic()
        api.seed(*(api.deployment(f"svc-{i:05d}", ns_of(i)) for i in range(total)))
        print(f"bench_operator: {total} Deployments in {len(namespaces)} namespaces "
              f"(seeded in {time.monotonic() - t0:.1f} s, not measured); "
              f"{args.workers} workers, --qps {args.qps:g}")
        server = platform.PlatformServer([]).start()
        argv = ["--mode", "direct", "--store", "kube", "--kubeconfig", api.kubeconfig_path,
                "--state-dir", str(tmp / "state"), "--policies", str(ROOT / "policies"),
                "--policy-data", str(samples.OPT_IN),  # coverage is opt-in: every namespace
                "--source", f"platform:{server.address}", "--workers", str(args.workers),
                "--resync", f"{args.resync:g}", "--qps", str(args.qps),
                "--burst", str(int(args.qps * 2))]
        running = op.start(argv, tmp, env={"DAKR_LOG_LEVEL": "warning"}, name="operator")
        try:
            report(api, server, running, running.proc.pid, args, ns_of)
        finally:
            rc = running.stop(60)
        print(f"  stopped on SIGTERM: exit {rc}")
        try:
            restart(api, argv, tmp)
        finally:
            server.stop(grace=0)
        naive(api, tmp, args, ns_of)
    return 0


def report(api: KubeApi, server: platform.PlatformServer, running: op.Running, pid: int,
           args: argparse.Namespace, ns_of: Any) -> None:
    n, singles = args.n, args.singles
    # -- single recommendations on an idle operator ---------------------------------------
    stream_lat: list[float] = []
    for k in range(singles):
        i = n + k
        server.add(platform.build_feed([rec(i, ns_of(i))]))
        rid = f"rec-{i:05d}"
        op.wait_for(lambda rid=rid: rid in applied_at(server), timeout=30, interval=0.01)
        stream_lat.append(applied_at(server)[rid] - sent_at(server)[rid])
        time.sleep(0.3)  # idle again
    create_lat: list[float] = []
    for k in range(singles):
        i = n + singles + k
        ns = ns_of(i)
        t = time.monotonic()
        op.create(api, rec(i, ns))
        rid = f"rec-{i:05d}"
        op.wait_for(lambda rid=rid, ns=ns: op.phase_of(api, rid, ns) == model.APPLIED,
                    timeout=30, interval=0.005)
        create_lat.append(time.monotonic() - t)
        time.sleep(0.3)
    print(f"single recommendations, idle operator ({singles} each):")
    print(f"  platform send -> Applied reported up: p50 {pct(stream_lat, 50) * 1000:.0f} ms, "
          f"p99 {pct(stream_lat, 99) * 1000:.0f} ms")
    print(f"  API create -> Applied:                p50 {pct(create_lat, 50) * 1000:.0f} ms, "
          f"p99 {pct(create_lat, 99) * 1000:.0f} ms")
    worst = max(pct(stream_lat, 99), pct(create_lat, 99))
    print(f"  goal (p99 < 2 s): {'met' if worst < 2 else 'NOT met'}")
    args.single_p99 = worst

    # -- the burst ----------------------------------------------------------------------
    api.requests.reset()
    cpu0, rss0 = cpu_seconds(pid), rss_mb(pid)
    t0 = time.monotonic()
    server.add(platform.build_feed([rec(i, ns_of(i)) for i in range(n)]))
    samples: list[tuple[float, float, float, float]] = []  # t, applied, depth, rss
    burst_ids = {f"rec-{i:05d}" for i in range(n)}
    while True:
        time.sleep(1.0)
        done = len(burst_ids & applied_at(server).keys())
        m = running.metrics()
        samples.append((time.monotonic() - t0, done, value(m, "dakr_workqueue_depth"),
                        rss_mb(pid)))
        if done >= n or time.monotonic() - t0 > 3600:
            break
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    ups, sends = applied_at(server), sent_at(server)
    lat = [ups[r] - sends[r] for r in burst_ids if r in ups and r in sends]
    writes = len(api.requests.writes())
    reqs = sum(api.requests.snapshot().values())
    print(f"burst: {n} recommendations over the stream at once")
    print(f"  all Applied in {elapsed:.1f} s ({n / elapsed:.0f} recommendations/s)")
    print(f"  send -> Applied: p50 {pct(lat, 50):.1f} s, p99 {pct(lat, 99):.1f} s "
          "(a burst queues: the latency is the queue's)")
    step = max(1, len(samples) // 12)
    series = ", ".join(f"{t:.0f}s:{int(d)}" for t, _, d, _ in samples[::step])
    print(f"  work queue depth over time: {series}")
    rss = [r for *_, r in samples]
    print("  RSS over time: " + ", ".join(f"{t:.0f}s:{r:.0f}MB" for t, *_, r in samples[::step]))
    peak = rss_mb(pid, "VmHWM")
    print(f"  RSS: {rss0:.0f} MB idle, {rss[len(rss) // 2]:.0f} MB mid-burst, {rss[-1]:.0f} MB "
          f"at the end; peak {peak:.0f} MB (goal < 200 MB: {'met' if peak < 200 else 'NOT met'})")
    print(f"  CPU: {cpu:.1f} s in all, {cpu / n * 1000:.2f} ms per recommendation")
    print(f"  API requests per applied recommendation: {reqs / n:.2f} "
          f"({writes / n:.2f} writes)")
    args.burst_per_rec = elapsed / n


def restart(api: KubeApi, argv: list[str], tmp: Path) -> None:
    """A new operator process over every recommendation the burst left in the cluster."""
    held = sum(len(api.items(model.API_VERSION, kind)) for kind in model.KINDS)
    api.requests.reset()
    t = time.monotonic()
    running = op.start(argv, tmp, env={"DAKR_LOG_LEVEL": "warning"}, name="restarted",
                       timeout=300)
    ready = time.monotonic() - t
    try:
        time.sleep(10)  # anything it would redo, it starts at once
        peak = rss_mb(running.proc.pid, "VmHWM")
        now = rss_mb(running.proc.pid)
        writes = len(api.requests.writes())
    finally:
        running.stop(60)
    print(f"restart with {held} recommendations in the cluster:")
    print(f"  ready in {ready:.1f} s; RSS {now:.0f} MB, peak {peak:.0f} MB "
          f"(goal < 200 MB: {'met' if peak < 200 else 'NOT met'}); "
          f"{writes} API writes in the 10 s after ready (0 expected: all done)")


def naive(api: KubeApi, tmp: Path, args: argparse.Namespace, ns_of: Any) -> None:
    """A one-shot `apply --mode direct` started for each recommendation as it comes."""
    lat: list[float] = []
    base = args.n + 2 * args.singles
    for k in range(args.naive_sample):
        i = base + k
        f = tmp / f"naive-{k}.yaml"
        f.write_text(yaml.safe_dump(rec(i, ns_of(i))))
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "reconciler", "apply", "-f", str(f), "--mode",
                        "direct", "--kubeconfig", api.kubeconfig_path, "--policies",
                        str(ROOT / "policies"), "--policy-data", str(samples.OPT_IN)],
                       check=True, capture_output=True)
        lat.append(time.monotonic() - t)
    p50 = statistics.median(lat)
    print(f"naive: a one-shot `reconciler apply --mode direct` per recommendation "
          f"(sample of {len(lat)}): {p50:.2f} s each (p50)")
    print(f"  ratio naive/operator: {p50 / args.single_p99:.1f}x slower per single "
          f"recommendation than the operator's p99, {p50 / args.burst_per_rec:.0f}x per "
          "recommendation in a burst")


if __name__ == "__main__":
    sys.exit(main())
