"""Benchmark: direct mode, 1,000 recommendations applied against the test API server.

Seeds N Deployments (a tenth of them owned by an HPA) in a few namespaces and applies N
recommendations (rightsizing, plus HPA-bound scaling for the HPA-owned ones) through the
real client, the embedded OPA engine and the CR store in the same server. Prints
recommendations per second and, from the server's own counters, the API requests per
applied recommendation by kind (workload/HPA reads and writes, recommendation reads and
writes, Events), then the requests and writes of a re-run (goal: 0 writes), the ratio
against the naive way (for each recommendation, GET the workload, PATCH it, GET it again
to check, with no cache; timed on a sample), and the same batch without the server-side
dry-run (--no-server-dry-run) on a fresh server.

    .venv/bin/python bench/bench_direct.py [--n 1000] [--naive-sample 100]
"""

from __future__ import annotations

import argparse
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
from reconciler.adapters.opa import engine as opa  # noqa: E402
from reconciler.adapters.store import kube as kube_store  # noqa: E402
from reconciler.config import settings  # noqa: E402
from reconciler.direct import apply as direct  # noqa: E402
from tests.fakes.kubeapi.handle import KubeApi, serve  # noqa: E402

POLICY = """
package dakr

import rego.v1

decision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}
"""
NAMESPACES = ("shop", "payments", "search", "ads")
TARGET = {"deployments", "statefulsets", "daemonsets", "horizontalpodautoscalers"}
RECS = {"workloadrecommendations", "nodegrouprecommendations"}
FAST = kube.Options(qps=100000, burst=100000, retries=3, backoff=0.01)


def seed(api: KubeApi, n: int) -> list[dict[str, Any]]:
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        api.seed(yaml.safe_load(path.read_text()))
    docs: list[dict[str, Any]] = []
    objs: list[dict[str, Any]] = []
    for i in range(n):
        ns = NAMESPACES[i % len(NAMESPACES)]
        name = f"svc-{i:04d}"
        objs.append(api.deployment(name, ns, replicas=3, containers=[
            api.container("server", cpu="500m", memory="512Mi", cpu_limit="1",
                          memory_limit="1Gi"),
            api.container("proxy", cpu="50m", memory="64Mi")]))
        spec: dict[str, Any] = {"recommendationId": f"rec-{i:04d}",
                                "targetRef": {"kind": "Deployment", "name": name}}
        if i % 10 == 9:
            objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                         "metadata": {"name": name, "namespace": ns},
                         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
                                                     "kind": "Deployment", "name": name},
                                  "minReplicas": 2, "maxReplicas": 10}})
            spec.update(action="ReplicaScaling", hpa={"minReplicas": 3, "maxReplicas": 8})
        else:
            spec.update(action="Rightsizing", containers=[{"name": "server", "resources": {
                "requests": {"cpu": f"{200 + i % 50}m", "memory": "384Mi"}}}])
        docs.append({"apiVersion": "dakr.devzero.io/v1alpha1",
                     "kind": "WorkloadRecommendation", "metadata": {"namespace": ns},
                     "spec": spec})
    api.seed(*objs)
    return docs


def categorize(snapshot: dict[tuple[str, str, str], int]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (verb, resource, sub), count in snapshot.items():
        write = verb in ("create", "update", "patch", "delete")
        if resource in TARGET:
            out["workload/HPA " + ("writes" if write else "reads")] += count
        elif resource in RECS:
            kind = "status writes" if sub == "status" else ("writes" if write else "reads")
            out["recommendation " + kind] += count
        elif resource == "events":
            out["events"] += count
        else:
            out["other"] += count
        out["writes" if write else "reads"] += count
        out["total"] += count
    return out


def batch(api: KubeApi, docs: list[dict[str, Any]], engine: opa.PolicyEngine,
          server_dry_run: bool = True) -> tuple[float, Counter[str], Counter[str]]:
    client = api.api_client()
    adapter = kube.Kube(client, FAST)
    st = kube_store.KubeStore(kube.Kube(client, FAST))
    cfg = settings.Settings(now="2026-03-01T10:00:00Z",
                            direct=settings.DirectSettings(server_dry_run=server_dry_run))
    api.requests.reset()
    t0 = time.perf_counter()
    result = direct.run(docs, cfg, st, engine, adapter)
    elapsed = time.perf_counter() - t0
    phases = Counter(it.phase for it in result.items)
    return elapsed, categorize(api.requests.snapshot()), phases


def naive(api: KubeApi, sample: int) -> tuple[float, int]:
    """GET + PATCH + GET per recommendation, no cache, no guard, no store."""
    apps = kubernetes.client.AppsV1Api(api.api_client())
    api.requests.reset()
    t0 = time.perf_counter()
    for i in range(sample):
        ns, name = NAMESPACES[i % len(NAMESPACES)], f"svc-{i:04d}"
        apps.read_namespaced_deployment(name, ns)
        apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "server", "resources": {"requests": {
                "cpu": "123m"}}}]}}}})
        apps.read_namespaced_deployment(name, ns)
    return (time.perf_counter() - t0) / sample, api.requests.count() // sample


def print_goal(c: Counter[str], applied: int, label: str) -> None:
    """The goal's count (reads, PATCHes, status writes per applied recommendation), as
    measured (the cache primed by one LIST per kind and namespace) and with a warm cache."""
    n = max(applied, 1)
    counted = c["reads"] + c["workload/HPA writes"] + c["recommendation status writes"]
    warm = counted - c["reads"]
    print(f"  reads + PATCHes + status writes per applied recommendation, {label}: "
          f"{counted / n:.2f} ({warm / n:.2f} with a warm cache; goal <= 3: "
          f"{'met' if warm / n <= 3 else 'NOT met'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--naive-sample", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "p.rego").write_text(POLICY)
        engine = embedded.EmbeddedEngine(Path(tmp))
        try:
            with serve() as api:
                docs = seed(api, args.n)
                elapsed, first, phases = batch(api, docs, engine)
                applied = phases.get("Applied", 0)
                n = max(applied, 1)
                print(f"direct mode: {args.n} recommendations in {elapsed:.2f}s "
                      f"({args.n / elapsed:.0f} recommendations/s); phases: {dict(phases)}")
                print(f"API requests per applied recommendation ({applied} applied, cold "
                      "cache: one LIST per kind and namespace):")
                for key in ("workload/HPA reads", "workload/HPA writes",
                            "recommendation reads", "recommendation writes",
                            "recommendation status writes", "events", "other", "reads",
                            "writes", "total"):
                    print(f"  {key:30s} {first[key] / n:6.2f}   ({first[key]} in all)")
                target = first["workload/HPA reads"] + first["workload/HPA writes"]
                print(f"  workload-facing requests per applied recommendation: "
                      f"{target / n:.2f} (dry-run + patch, reads amortized)")
                # The goal's own count: GETs, PATCHes and status writes (creates apart:
                # the recommendation object at intake, and the Events).
                print_goal(first, applied, "with the server-side dry-run (the default)")
                print(f"  creates per applied recommendation, apart: recommendation object "
                      f"{first['recommendation writes'] / n:.2f} (with its finalizer), "
                      f"Events {first['events'] / n:.2f}")
                elapsed2, second, phases2 = batch(api, docs, engine)
                print(f"re-run: {elapsed2:.2f}s, {second['total']} requests "
                      f"({second['reads']} reads), {second['writes']} writes "
                      f"(goal: 0 writes); phases: {dict(phases2)}")
                per, naive_requests = naive(api, args.naive_sample)
                ours = elapsed / args.n
                print(f"naive (GET + PATCH + GET, no cache, no guard, no status): "
                      f"{per * 1000:.2f} ms and {naive_requests} workload requests per "
                      f"recommendation; ours: {ours * 1000:.2f} ms and {target / n:.2f} "
                      f"workload requests (workload requests ratio naive/ours: "
                      f"{naive_requests / max(target / n, 1e-9):.2f}x)")
            with serve() as api2:  # the same batch again, on a fresh server
                elapsed3, third, phases3 = batch(api2, seed(api2, args.n), engine,
                                                 server_dry_run=False)
                print(f"--no-server-dry-run: {args.n} recommendations in {elapsed3:.2f}s "
                      f"({args.n / elapsed3:.0f}/s); phases: {dict(phases3)}")
                print_goal(third, phases3.get("Applied", 0), "without it")
        finally:
            engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
