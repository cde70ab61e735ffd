"""Benchmark: the live-migration admission webhook answering 10,000 AdmissionReviews.

Seeds the test API server with 1,000 workloads' Applied live migrations (persisted by the
webhook) and as many other recommendations, in 20 namespaces; starts `reconciler webhook
--store kube` as its own process (as the chart runs it), waits for /readyz, then sends N
reviews (default 10,000) one after the other over one keep-alive TLS connection, the
client verifying the certificate (a trustme CA), as the API server does. The mix: half
are pods of indexed workloads with other values (patched), a quarter already have them
(unchanged), a quarter belong to no indexed workload (ignored). Every answer is checked.

Prints throughput, latency p50/p99/max as the client sees it (goal: p99 under 5 ms), the
webhook process's peak memory (VmHWM), then the ratio against the naive way, timed on a
sample with both servers in this process (same conditions): the naive server looks the
workload up on every review by listing the pod's namespace's WorkloadRecommendations
from the API server and scanning them, which is what a webhook without an informer does
(and why ours answers from memory: an API call on the pod-creation path).

    .venv/bin/python bench/bench_webhook.py [--n 10000] [--workloads 1000] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
import trustme  # noqa: E402

from reconciler.config import settings  # noqa: E402
from reconciler.domain import admission, model  # noqa: E402
from reconciler.runtime import webhook  # noqa: E402
from tests import crds  # noqa: E402
from tests.fakes.kubeapi.handle import KubeApi, serve  # noqa: E402
from tests.integration.run_support import free_port  # noqa: E402

NAMESPACES = [f"team-{k:02d}" for k in range(20)]
HASH = "5d8f7c9b4"


def ns_of(i: int) -> str:
    return NAMESPACES[i % len(NAMESPACES)]


def cpu_of(i: int) -> str:
    return f"{100 + i % 400}m"


def recommendation(i: int, live: bool) -> dict[str, Any]:
    ns, name = ns_of(i), f"svc-{i:04d}" if live else f"other-{i:04d}"
    rid = f"{'live' if live else 'rs'}-{i:04d}"
    values = {"app": {"requests": {"cpu": cpu_of(i), "memory": "256Mi"}}}
    status: dict[str, Any] = {"phase": "Applied", "observedGeneration": 1, "previous": {
        "containers": {"app": {"requests": {"cpu": "900m", "memory": "512Mi"}}},
        "set": {"containers": values},
        "target": {"kind": "Deployment", "namespace": ns, "name": name}}}
    if live:
        status["liveMigration"] = {"persist": "webhook", "fallback": "none"}
    return {"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
            "metadata": {"name": rid, "namespace": ns},
            "spec": {"recommendationId": rid,
                     "action": "LiveMigration" if live else "Rightsizing",
                     "confidence": 0.9, "targetRef": {"kind": "Deployment", "name": name},
                     "containers": [{"name": "app", "resources": {
                         "requests": {"cpu": cpu_of(i), "memory": "256Mi"}}}]},
            "status": status}


def review(k: int, workloads: int) -> tuple[bytes, str]:
    """Review ``k`` of the mix, and the result it must get."""
    i = k % workloads
    kind = ("patched", "patched", "unchanged", "ignored")[k % 4]
    name = f"other-{i:04d}" if kind == "ignored" else f"svc-{i:04d}"
    cpu = cpu_of(i) if kind == "unchanged" else "900m"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "generateName": f"{name}-{HASH}-", "namespace": ns_of(i),
        "labels": {"app": name, "pod-template-hash": HASH},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": f"{name}-{HASH}", "uid": f"u-{i}", "controller": True}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                 "resources": {"requests": {"cpu": cpu, "memory": "256Mi"},
                                               "limits": {"memory": "1Gi"}}}]}}
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    doc = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"uid-{k}", "kind": gvk, "resource": gvr, "requestKind": gvk,
        "requestResource": gvr, "name": "", "namespace": ns_of(i), "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod, "oldObject": None, "dryRun": False}}
    return json.dumps(doc).encode(), kind


def send(port: int, ctx: ssl.SSLContext, bodies: list[tuple[bytes, str]]) -> list[float]:
    """Each review over one keep-alive connection; the latencies (s). Checks every answer."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    out: list[float] = []
    try:
        for k, (body, want) in enumerate(bodies):
            t0 = time.perf_counter()
            conn.request("POST", "/mutate?timeout=2s", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            out.append(time.perf_counter() - t0)
            answer = json.loads(data)["response"]
            assert resp.status == 200 and answer["uid"] == f"uid-{k}", data[:200]
            assert ("patch" in answer) == (want == "patched"), (k, want, answer)
    finally:
        conn.close()
    return out


def ms(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


def rss_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class NaiveIndex(Mapping[admission.Target, admission.Values]):
    """The naive lookup: every review lists the pod's namespace's recommendations from
    the API server and scans them for its workload."""

    def __init__(self, api: KubeApi) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api.api_client())

    def get(self, key: admission.Target, default: Any = None) -> Any:
        ns = key[0]
        answer: Any = self.custom.list_namespaced_custom_object(
            model.GROUP, model.VERSION, ns, "workloadrecommendations")
        items = answer["items"]
        found = [c for o in items if (c := admission.contribution(
            model.WORKLOAD, o["spec"]["recommendationId"], o["spec"], o.get("status") or {},
            created_at=o["metadata"].get("creationTimestamp", ""))) is not None
            and c.target == key]
        return admission.merge(found) if found else default

    def __getitem__(self, key: admission.Target) -> admission.Values:
        got = self.get(key)
        if got is None:
            raise KeyError(key)
        return got  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[admission.Target]:
        return iter(())

    def __len__(self) -> int:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="reviews sent")
    ap.add_argument("--workloads", type=int, default=1_000,
                    help="workloads with an Applied live migration (as many others)")
    ap.add_argument("--naive-n", type=int, default=1_000,
                    help="reviews timed for the in-process comparison")
    ap.add_argument("--quick", action="store_true", help="n=1000, naive-n=200")
    args = ap.parse_args()
    n = 1_000 if args.quick else args.n
    naive_n = 200 if args.quick else args.naive_n
    w = args.workloads

    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmpdir, \
            serve(bookmark_interval=5.0) as api:
        tmp = Path(tmpdir)
        crds.install_crds(api)
        t0 = time.monotonic()
        api.seed(*(recommendation(i, live) for i in range(w) for live in (True, False)))
        print(f"bench_webhook: {w} workloads with an Applied live migration and {w} other "
              f"recommendations in {len(NAMESPACES)} namespaces (seeded in "
              f"{time.monotonic() - t0:.1f} s, not measured)")
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        cert, key = tmp / "tls.crt", tmp / "tls.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        bodies = [review(k, w) for k in range(n)]

        # -- the real thing: `reconciler webhook` as its own process ------------------------
        port = free_port()
        log_path = tmp / "webhook.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DAKR_LOG_LEVEL": "warning"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "webhook", "--store", "kube",
                 "--kubeconfig", api.kubeconfig_path, "--port", str(port),
                 "--address", "127.0.0.1", "--tls-cert", str(cert), "--tls-key", str(key)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            t0 = time.monotonic()
            while not ready(port, ctx):
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise SystemExit(f"the webhook did not get ready:\n{log_path.read_text()}")
                time.sleep(0.05)
            print(f"  ready (first list of {2 * w} recommendations) in "
                  f"{time.monotonic() - t0:.2f} s after start; RSS "
                  f"{rss_mb(proc.pid, 'VmRSS'):.0f} MB")
            send(port, ctx, bodies[:200])  # warm-up, not counted
            t0 = time.perf_counter()
            lat = send(port, ctx, bodies)
            wall = time.perf_counter() - t0
            peak = rss_mb(proc.pid, "VmHWM")
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
        print(f"  {n} reviews over one keep-alive TLS connection: {n / wall:,.0f} reviews/s; "
              f"latency p50 {ms(lat, 0.5):.2f} ms, p99 {ms(lat, 0.99):.2f} ms, "
              f"max {max(lat) * 1000:.1f} ms (goal: p99 < 5 ms)")
        print(f"  webhook process: peak memory (VmHWM) {peak:.0f} MB; exit {rc} on SIGTERM")

        # -- naive vs ours, same process, same conditions -----------------------------------
        sample = bodies[:naive_n]
        results: dict[str, list[float]] = {}
        for label, index in (("ours (informer, dict read)", None),
                             ("naive (LIST the namespace per review)", NaiveIndex(api))):
            hook = None
            if index is None:
                cfg = settings.WebhookSettings(
                    tls_cert=str(cert), tls_key=str(key), port=0, address="127.0.0.1",
                    store="kube", kube=settings.KubeSettings(kubeconfig=api.kubeconfig_path))
                hook = webhook.Webhook(cfg).start()
                assert hook.informer is not None and hook.informer.synced.wait(120)
                server_port = hook.port
                server = None
            else:
                server = webhook.WebhookServer(
                    "127.0.0.1", 0, webhook.TlsFiles(str(cert), str(key)),
                    constant(index), webhook.WebhookMetrics())
                server_port = server.port
            try:
                send(server_port, ctx, sample[:20])
                results[label] = send(server_port, ctx, sample)
            finally:
                if hook is not None:
                    hook.close()
                if server is not None:
                    server.close()
        print(f"  in this process, {naive_n} reviews each:")
        for label, xs in results.items():
            print(f"    {label:40s} mean {statistics.fmean(xs) * 1000:7.2f} ms, "
                  f"p99 {ms(xs, 0.99):7.2f} ms")
        fast, slow = results.values()
        print(f"  naive / ours: {statistics.fmean(slow) / statistics.fmean(fast):.0f}x "
              f"the mean latency (and {naive_n} API LISTs against none)")
    return 0


def constant(index: admission.Index) -> Callable[[], admission.Index]:
    return lambda: index


def ready(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
