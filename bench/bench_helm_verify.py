"""Helm edits verified by a render: what verification costs a batch.

Why it exists: issue 15 asks that every Helm values edit be verified by rendering the
chart with the real Helm library (helm-python-sdk) before it is committed, at a cost
under 2x the same batch without verification, by rendering each chart once per edited
values-file set (before and after), not once per recommendation. This writes one batch
(render, verify, one commit, one push) over a repository of C copies of a `helm create`
chart with a subchart (tests/golden/layout/helm_create_chart), R recommendations spread
over them (each sets one value: requests/limits cpu/memory or the replica count of the
chart's Deployment or of its subchart's), with verification on and off, and prints
recommendations/s, renders per batch, and the ratio; the naive way (two renders per
recommendation) is extrapolated from the measured time of one render.

    .venv/bin/python bench/bench_helm_verify.py [--charts 100] [--recs 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler.adapters import git, helm
from reconciler.config import layout
from reconciler.domain import planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import verify, writer

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "tests" / "golden" / "layout" / "helm_create_chart" / "myapp"
# (workload suffix, container, section, resource, new value); "" section: replicas.
FIELDS = [(w, c, s, r) for w, c in (("", None), ("-cache", "cache"))
          for s, r in (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"),
                       ("limits", "memory"), ("", "replicas"))]


def _sh(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True)


def make_repo(tmp: Path, charts: int) -> Path:
    """A bare origin holding charts/app-<i>/ for each chart (renamed copies)."""
    seed = tmp / "seed"
    for i in range(charts):
        dest = seed / "charts" / f"app-{i}"
        shutil.copytree(CHART, dest)
        chart_yaml = dest / "Chart.yaml"
        chart_yaml.write_text(chart_yaml.read_text().replace("name: myapp", f"name: app-{i}"))
    origin = tmp / "origin.git"
    git.init_bare(origin)
    _sh("git", "init", "-q", "-b", "main", cwd=seed)
    _sh("git", "add", "-A", cwd=seed)
    _sh("git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "seed", cwd=seed)
    _sh("git", "push", "-q", str(origin), "main", cwd=seed)
    return origin


def batch(root: Path, charts: int, recs: int,
          salt: int = 0) -> list[tuple[repo_index.Source, planner.Plan]]:
    """R recommendations over the charts, each setting one value no other one sets; the
    values depend on ``salt``, so that no two batches write the same texts (nothing of the
    render after an edit is known from an earlier batch)."""
    per = -(-recs // charts)
    if per > len(FIELDS):
        raise SystemExit(f"at most {len(FIELDS)} recommendations per chart")
    items: list[tuple[repo_index.Source, planner.Plan]] = []
    for i in range(charts):
        name = f"app-{i}"
        lay = layout.parse_layout({
            "kind": "helm", "valuesFile": f"charts/{name}/values.yaml",
            "defaultContainer": name,
            "valuesPaths": {name: ".", f"{name}-cache": {"prefix": "cache",
                                                         "container": "cache"}}})
        targets = [("default", "Deployment", name), ("default", "Deployment", f"{name}-cache")]
        index = repo_index.Index.build(root, lay, targets)
        for n, (suffix, container, section, res) in enumerate(FIELDS[:per]):
            if len(items) == recs:
                break
            target = ("default", "Deployment", name + suffix)
            rec = f"rec-{i}-{n}"
            if section:
                value = f"{10 + n + salt}m" if res == "cpu" else f"{32 + n + salt}Mi"
                edit = planner.ValueEdit(container or name, section, res, None, value)
                plan = planner.Plan(rec, "Deployment", "default", target[2], resources=(edit,))
            else:
                plan = planner.Plan(rec, "Deployment", "default", target[2],
                                    replicas=(1, 2 + (n + salt) % 5))
            items.append((index.locate(target), plan))
    return items


def run_once(tmp: Path, origin: Path, charts: int, recs: int, verify: bool,
             n: int) -> tuple[float, float, writer.Written]:
    """(seconds to index and locate, seconds to write, what was written) for one batch."""
    with git.Workspace.open(str(origin), tmp / f"clone-{n}", "main") as ws:
        start = time.perf_counter()
        items = batch(ws.root, charts, recs, salt=n)
        located = time.perf_counter()
        written = writer.write(ws, "main", f"dakr/bench-{n}", items, message="bench",
                               verify_renders=verify)
        done = time.perf_counter()
    if written.failed:
        raise SystemExit(f"{len(written.failed)} failed, e.g. "
                         f"{next(iter(written.failed.values()))}")
    return located - start, done - located, written


def render_time(samples: int = 20) -> float:
    """Seconds for one render of the chart, as verification does it (edited values.yaml
    in place of the file on disk)."""
    text = (CHART / "values.yaml").read_text()
    helm.render(CHART, values={}, release="myapp", namespace="default",
                overrides={"values.yaml": text})
    start = time.perf_counter()
    for _ in range(samples):
        helm.render(CHART, values={}, release="myapp", namespace="default",
                    overrides={"values.yaml": text})
    return (time.perf_counter() - start) / samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--charts", type=int, default=100)
    ap.add_argument("--recs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="batches per mode; the median counts")
    args = ap.parse_args()
    if helm.available() is not None:
        print(f"skipped: {helm.available()}")
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        origin = make_repo(tmp, args.charts)
        print(f"{args.charts} charts (helm create + a subchart), {args.recs} recommendations "
              f"in one batch, {args.runs} runs per mode")
        times: dict[str, list[float]] = {"off": [], "cold": [], "warm": []}
        renders: dict[str, int] = {}
        indexing: list[float] = []
        n = 0
        for _ in range(args.runs):
            for mode in ("off", "cold", "warm"):
                if mode == "cold":
                    verify.forget_renders()  # the process's first batch on this base
                located, elapsed, written = run_once(tmp, origin, args.charts, args.recs,
                                                     mode != "off", n)
                n += 1
                times[mode].append(elapsed)
                indexing.append(located)
                renders[mode] = written.renders
        off, cold, warm = (statistics.median(times[m]) for m in ("off", "cold", "warm"))
        idx = statistics.median(indexing)
        one = render_time()
        naive = off + 2 * args.recs * one
        print(f"index and locate: {idx:.2f}s; write (render, commit, push) without "
              f"verification: {off:.2f}s = {args.recs / off:,.0f} recs/s")
        for mode, on, what in (("cold", cold, "first batch on this base"),
                               ("warm", warm, "the render before the edit known")):
            print(f"with verification, {what}: {on:.2f}s = {args.recs / on:,.0f} recs/s, "
                  f"{renders[mode]} renders per batch ({renders[mode] / args.charts:.1f} per "
                  f"chart, {renders[mode] / args.recs:.2f} per recommendation); ratio "
                  f"{on / off:.2f}x the write, {(idx + on) / (idx + off):.2f}x index + write")
        print(f"one render: {one * 1000:.1f} ms; naive (two renders per recommendation): "
              f"~{naive:.1f}s = {naive / cold:.1f}x the batched verification")
        ok = (idx + warm) / (idx + off) < 2.0
        print("goal (verification under 2x of the batch, steady state):",
              "met" if ok else "NOT met")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
