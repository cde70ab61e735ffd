"""Benchmark: live migration, 200 pods across 20 workloads resized in place.

Seeds W Deployments of P pods each (ReplicaSets and pods with owner references) in the test
API server, whose simulated kubelet actuates each resize after --kubelet-delay seconds, and
applies W LiveMigration recommendations in direct mode through the real client, the
embedded OPA engine (the default library, every namespace opted in) and the CR store in
the same server. Prints:

- the time until every pod reports the new values, and pods resized per second;
- the API requests per resized pod, from the server's own counters, by kind (the resize
  patches, the pod and ReplicaSet lists, the recommendation's status writes, Events, the
  rest), with the watches counted apart (goal: at most 3 per pod plus the watch);
- peak memory of this process (client, engine and test server together);
- the naive way for comparison: for each pod, PATCH pods/resize, then GET the pod every
  --naive-poll seconds until its status reports the values (no watch), timed on a sample.

The admission webhook's latency over 10,000 AdmissionReviews is measured by
``bench/bench_webhook.py``.

    .venv/bin/python bench/bench_live.py [--workloads 20] [--pods 10] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
import yaml  # noqa: E402

from reconciler.adapters import kube  # noqa: E402
from reconciler.adapters.opa import embedded  # noqa: E402
from reconciler.adapters.store import kube as kube_store  # noqa: E402
from reconciler.config import settings  # noqa: E402
from reconciler.direct import apply as direct  # noqa: E402
from tests import samples  # noqa: E402
from tests.fakes.kubeapi.handle import KubeApi, serve  # noqa: E402

FAST = kube.Options(qps=100000, burst=100000, retries=3, backoff=0.01)
NS = "shop"


def seed(api: KubeApi, workloads: int, pods: int) -> list[dict[str, Any]]:
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        api.seed(yaml.safe_load(path.read_text()))
    docs = []
    for i in range(workloads):
        name = f"svc-{i:02d}"
        api.seed_workload(name, pods, namespace=NS, containers=[api.container(
            "server", cpu="500m", memory="512Mi", cpu_limit="2", memory_limit="1Gi")])
        docs.append({"apiVersion": "dakr.devzero.io/v1alpha1",
                     "kind": "WorkloadRecommendation", "metadata": {"namespace": NS},
                     "spec": {"recommendationId": f"lm-{i:02d}", "action": "LiveMigration",
                              "targetRef": {"kind": "Deployment", "name": name},
                              "containers": [{"name": "server", "resources": {
                                  "requests": {"cpu": "400m", "memory": "384Mi"}}}],
                              "confidence": 0.9}})
    return docs


def kind_of(r: Any) -> str:
    if r.verb == "watch":
        return "watch"
    if r.resource == "pods" and r.subresource == "resize":
        return "resize"
    if r.resource in ("pods", "replicasets") and r.verb == "list":
        return "list pods/replicasets"
    if r.resource == "workloadrecommendations":
        return f"recommendation {r.verb}{'/' + r.subresource if r.subresource else ''}"
    if r.resource == "events":
        return "events"
    return f"{r.verb} {r.resource}"


def run_live(workloads: int, pods: int, delay: float) -> dict[str, Any]:
    with serve() as api, tempfile.TemporaryDirectory() as tmp:
        api.kubelet.delay = delay
        docs = seed(api, workloads, pods)
        client = api.api_client()
        cfg = settings.Settings(now="2026-03-01T10:00:00Z", mode="direct",
                                state_dir=Path(tmp), live=settings.LiveSettings(webhook=True))
        engine = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
        adapter = kube.Kube(client, FAST, limiter=kube.RateLimiter(100000, 100000))
        store = kube_store.KubeStore(kube.Kube(client, FAST,
                                               limiter=kube.RateLimiter(100000, 100000)))
        engine.decide(samples.sample("live_migration"))  # warm the engine
        api.requests.reset()
        t0 = time.perf_counter()
        batch = direct.run(docs, cfg, store, engine, adapter)
        elapsed = time.perf_counter() - t0
        engine.close()
        phases = Counter(i.phase for i in batch.items)
        resized = sum(1 for p in api.items("v1", "Pod", NS)
                      if (p["status"]["containerStatuses"][0].get("resources") or {}).get(
                          "requests", {}).get("cpu") == "400m")
        kinds = Counter(kind_of(r) for r in api.requests.log)
        return {"elapsed": elapsed, "phases": phases, "resized": resized, "kinds": kinds}


def run_naive(pods: int, delay: float, poll: float) -> float:
    """Per pod: PATCH pods/resize, then GET it every ``poll`` s until the status says so."""
    with serve() as api:
        api.kubelet.delay = delay
        api.seed_workload("naive", pods, namespace=NS, containers=[api.container(
            "server", cpu="500m", memory="512Mi", cpu_limit="2", memory_limit="1Gi")])
        core = kubernetes.client.CoreV1Api(api.api_client())
        names = [p["metadata"]["name"] for p in api.items("v1", "Pod", NS)]
        t0 = time.perf_counter()
        for name in names:
            core.patch_namespaced_pod_resize(name, NS, {"spec": {"containers": [
                {"name": "server", "resources": {"requests": {"cpu": "400m"}}}]}})
            while True:
                pod = core.read_namespaced_pod(name, NS)
                res = pod.status.container_statuses[0].resources
                if res is not None and res.requests.get("cpu") == "400m":
                    break
                time.sleep(poll)
        return (time.perf_counter() - t0) / len(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=20)
    ap.add_argument("--pods", type=int, default=10, help="pods per workload")
    ap.add_argument("--kubelet-delay", type=float, default=0.05,
                    help="seconds the simulated kubelet takes to actuate a resize")
    ap.add_argument("--naive-sample", type=int, default=20)
    ap.add_argument("--naive-poll", type=float, default=0.5,
                    help="the naive poll interval (kubectl wait-like loops poll 0.5-2 s)")
    ap.add_argument("--quick", action="store_true", help="5 workloads of 4 pods")
    args = ap.parse_args()
    if args.quick:
        args.workloads, args.pods, args.naive_sample = 5, 4, 4
    total = args.workloads * args.pods
    got = run_live(args.workloads, args.pods, args.kubelet_delay)
    kinds = got["kinds"]
    watches = kinds.pop("watch", 0)
    requests = sum(kinds.values())
    print(f"live migration: {args.workloads} workloads x {args.pods} pods = {total} pods, "
          f"kubelet actuation {args.kubelet_delay * 1000:.0f} ms per resize, "
          "1 pod at a time per workload (maxPodsResizing 1)")
    print(f"  phases: {dict(got['phases'])}; pods reporting the new values: "
          f"{got['resized']}/{total}")
    print(f"  time to done: {got['elapsed']:.2f} s ({total / got['elapsed']:.0f} pods/s)")
    print(f"  API requests per resized pod: {requests / total:.2f} (goal <= 3) plus "
          f"{watches / total:.2f} watch requests per pod ({watches} watches)")
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:36s} {n:5d}  {n / total:.2f}/pod")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory (client + engine + test server): {peak:.0f} MB")
    naive = run_naive(args.naive_sample, args.kubelet_delay, args.naive_poll)
    per_pod = got["elapsed"] / total
    print(f"  naive (resize, then GET every {args.naive_poll:g} s until done), "
          f"{args.naive_sample} pods: {naive * 1000:.0f} ms/pod vs {per_pod * 1000:.0f} "
          f"ms/pod here: {naive / per_pod:.1f}x")
    return 0 if got["resized"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
