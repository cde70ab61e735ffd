"""Benchmark: the demo pipeline (validate, store, locate, decide, plan, edit, commit, push)
over a generated repository of 1,000 workloads with 1,000 recommendations.

Prints recommendations per second, peak memory, the number of YAML files parsed out of the
files in the repository (the goal: parse only files that hold targets), and the ratio
against the naive way: for each recommendation, parse every YAML file to find its target,
round-trip it through ruamel.yaml, and commit, one recommendation at a time. The naive
way is timed on a sample and extrapolated per recommendation.

    .venv/bin/python bench/bench_pipeline.py [--workloads 1000] [--naive-sample 5]
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler import wiring  # noqa: E402
from reconciler.adapters import git  # noqa: E402
from reconciler.config import settings  # noqa: E402
from reconciler.domain import errors, validation  # noqa: E402
from reconciler.gitops import pipeline  # noqa: E402
from tests import samples  # noqa: E402

DEPLOYMENT = """\
# Copyright 2026 Example Corp. Licensed under the Apache License, Version 2.0.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{i:04d}
  labels:
    app: svc-{i:04d}
spec:
  selector:
    matchLabels:
      app: svc-{i:04d}
  template:
    metadata:
      labels:
        app: svc-{i:04d}
    spec:
      containers:
      - name: server
        image: "registry.example/svc-{i:04d}:1.0.0"
        env:
        - name: PORT
          value: "8080"
        resources:
          requests:
            cpu: 200m
            memory: 128Mi
          limits:
            cpu: 400m
            memory: 256Mi
---
apiVersion: v1
kind: Service
metadata:
  name: svc-{i:04d}
spec:
  selector:
    app: svc-{i:04d}
  ports:
  - port: 80
    targetPort: 8080
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-{i:04d}
data:
  LOG_LEVEL: info
"""

REC = """\
---
apiVersion: dakr.devzero.io/v1alpha1
kind: WorkloadRecommendation
metadata: {{namespace: default}}
spec:
  recommendationId: rec-{i:05d}
  action: Rightsizing
  targetRef: {{kind: Deployment, name: svc-{i:04d}}}
  containers:
  - name: server
    resources:
      requests: {{cpu: 160m, memory: 112Mi}}
  confidence: 0.9
  projectedSavings: {{monthly: 3.5, currency: USD}}
"""


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.y*ml") if ".git" not in p.parts)


def make_repo(base: Path, n: int) -> Path:
    origin = base / "origin.git"
    seed = base / "seed"
    for i in range(n):
        d = seed / "apps" / f"team-{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"svc-{i:04d}.yaml").write_text(DEPLOYMENT.format(i=i))
        (d / f"settings-{i:04d}.yaml").write_text(CONFIGMAP.format(i=i))
    git.seed_bare(origin, seed, "seed", author=("b", "b@b"))
    return origin


def naive(origin: Path, base: Path, docs: list[object], sample: int) -> float:
    """Per recommendation: parse every file to find the target, ruamel round trip, commit."""
    from ruamel.yaml import YAML

    ws = git.Workspace.open(str(origin), base / "naive-clone", "main")
    ws.checkout_branch("naive", "main")
    y = YAML()
    y.preserve_quotes = True
    recs = [r.recommendation for r in validation.parse_many(docs[:sample]) if r.recommendation]
    t0 = time.perf_counter()
    for rec in recs:
        name = rec.targetRef.name  # type: ignore[union-attr]
        for path in yaml_files(ws.root):
            found = None
            parsed = list(y.load_all(path.read_text()))
            for d in parsed:
                if d and d.get("kind") == "Deployment" and d["metadata"]["name"] == name:
                    found = d
            if found is None:
                continue
            c = found["spec"]["template"]["spec"]["containers"][0]
            for k, v in rec.containers[0].requests.items():  # type: ignore[union-attr]
                c["resources"]["requests"][k] = str(v)
            buf = io.StringIO()
            y.dump_all(parsed, buf)
            path.write_text(buf.getvalue())
            ws.commit([str(path.relative_to(ws.root))], f"naive {rec.id}")
    return (time.perf_counter() - t0) / max(len(recs), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--naive-sample", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dakr-bench-") as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        origin = make_repo(base, args.workloads)
        setup = time.perf_counter() - t
        recs_text = "".join(REC.format(i=i) for i in range(args.workloads))
        from reconciler.adapters import files

        docs = files.parse_documents(recs_text)
        cfg = settings.Settings(
            # Coverage is opt-in: the suite's opt-in covers every namespace.
            policy=settings.PolicySettings(policy_dir=ROOT / "policies",
                                           data_files=samples.DATA_FILES),
            git=settings.GitSettings(repo=str(origin), clone_dir=base / "clone"),
            store=settings.StoreSettings(uri=f"sqlite:{base / 'state.db'}"),
            forge=settings.ForgeSettings(kind="local", state_dir=base),
            now="2026-11-24T10:00:00Z",
        )
        st = wiring.open_store(cfg.store.uri)
        engine = wiring.policy_engine(cfg.policy)
        prs = wiring.pull_requests(cfg)
        t0 = time.perf_counter()
        try:
            batch = pipeline.run(docs, cfg, st, engine, prs)
        except errors.ReconcilerError as e:
            print(f"pipeline failed: {e}")
            return 1
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        pipeline.run(docs, cfg, st, engine, prs)
        rerun = time.perf_counter() - t1
        engine.close()
        st.close()
        phases: dict[str, int] = {}
        for it in batch.items:
            phases[it.phase] = phases.get(it.phase, 0) + 1
        files_total = len(list(yaml_files(base / "clone")))
        per_rec_naive = naive(origin, base, docs, args.naive_sample)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = len(docs)
        rate = n / elapsed
        naive_rate = 1 / per_rec_naive
        print(f"bench_pipeline: {args.workloads} workloads, {n} recommendations "
              f"(repo set-up {setup:.1f} s)")
        print(f"  phases:               {phases}")
        print(f"  batch time:           {elapsed:.2f} s  ({rate:,.0f} recommendations/s)")
        print(f"  rerun (no commit):    {rerun:.2f} s")
        print(f"  YAML files parsed:    {batch.files_parsed} of {files_total} "
              f"(files holding targets: {args.workloads})")
        print(f"  commit:               {batch.commit[:12]} on {batch.branch}")
        print(f"  peak RSS:             {peak_mb:,.0f} MiB")
        print(f"  naive (parse every file + ruamel round trip + commit per recommendation, "
              f"sample {args.naive_sample}): {per_rec_naive * 1000:,.0f} ms/recommendation "
              f"({naive_rate:,.1f}/s)")
        print(f"  ratio vs naive:       {rate / naive_rate:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
