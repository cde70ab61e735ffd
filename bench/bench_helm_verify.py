"""Helm edits verified by a render: what verification costs a batch.

Why it exists: issue 15 asks that every Helm values edit be verified by rendering the
chart with the real Helm library (helm-python-sdk) before it is committed, at a cost
under 2x the same batch without verification, by rendering each chart once per edited
values-file set (before and after), not once per recommendation, and once per chart for
discovery (the values paths found by a probe render, no `valuesPaths`). This indexes
(with discovery) and writes one batch (render, verify, one commit, one push) over a
repository of C copies of a `helm create` chart with a subchart
(tests/golden/layout/helm_create_chart), R recommendations spread over them (each sets
one value: requests/limits cpu/memory or the replica count of the chart's Deployment or
of its subchart's), with verification on and off, as the process's first batch on the
base (nothing known: discovery and the render before the edit happen) and as a later
one (both kept by digest), and prints recommendations/s, renders per batch, and the
ratio; the naive way (two renders per recommendation) is extrapolated from the measured
time of one render. Exit status 1 when verification costs 2x or more.

    .venv/bin/python bench/bench_helm_verify.py [--charts 100] [--recs 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def make_repo(tmp: Path, charts: int) -> Path:
    """A bare origin holding charts/app-<i>/ for each chart (renamed copies)."""
    seed = tmp / "seed"
    for i in range(charts):
        dest = seed / "charts" / f"app-{i}"
        shutil.copytree(CHART, dest)
        chart_yaml = dest / "Chart.yaml"
        chart_yaml.write_text(chart_yaml.read_text().replace("name: myapp", f"name: app-{i}"))
    origin = tmp / "origin.git"
    git.seed_bare(origin, seed, "seed", author=("b", "b@b"))
    return origin


def batch(root: Path, charts: int, recs: int,
          salt: int = 0) -> tuple[list[tuple[repo_index.Source, planner.Plan]], int]:
    """R recommendations over the charts, each setting one value no other one sets, and
    the renders discovery made to find the values paths; the values depend on ``salt``,
    so that no two batches write the same texts (nothing of the render after an edit is
    known from an earlier batch)."""
    discoveries = 0
    per = -(-recs // charts)
    if per > len(FIELDS):
        raise SystemExit(f"at most {len(FIELDS)} recommendations per chart")
    items: list[tuple[repo_index.Source, planner.Plan]] = []
    for i in range(charts):
        name = f"app-{i}"
        # No valuesPaths: which key feeds which container is found by rendering the chart.
        lay = layout.parse_layout({"kind": "helm", "valuesFile": f"charts/{name}/values.yaml"})
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
        discoveries += index.stats.discovery_renders
    return items, discoveries


def run_once(tmp: Path, origin: Path, charts: int, recs: int, verify_on: bool,
             n: int) -> tuple[float, float, int, int]:
    """(seconds to index and locate, with discovery; seconds to write; discovery renders;
    verification renders) for one batch."""
    with git.Workspace.open(str(origin), tmp / f"clone-{n}", "main") as ws:
        start = time.perf_counter()
        items, discoveries = batch(ws.root, charts, recs, salt=n)
        located = time.perf_counter()
        written = writer.write(ws, "main", f"dakr/bench-{n}", items, message="bench",
                               verify_renders=verify_on)
        done = time.perf_counter()
    if written.failed:
        raise SystemExit(f"{len(written.failed)} failed, e.g. "
                         f"{next(iter(written.failed.values()))}")
    return located - start, done - located, discoveries, written.renders


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
        print(f"{args.charts} charts (helm create + a subchart, no valuesPaths: discovery "
              f"finds them), {args.recs} recommendations in one batch, {args.runs} runs per "
              "mode; each time is index and locate (with discovery) + write (render, "
              "verify, commit, push)")
        # (verification on, first batch on this base) -> times; renders of the last run
        times: dict[tuple[bool, bool], list[float]] = {}
        renders: dict[tuple[bool, bool], tuple[int, int]] = {}
        n = 0
        for _ in range(args.runs):
            for cold in (True, False):
                for on in (False, True):
                    if cold:  # the process's first batch on this base: nothing known
                        verify.forget_renders()
                        repo_index.forget_discoveries()
                    else:
                        run_once(tmp, origin, args.charts, args.recs, on, n)  # warm up
                        n += 1
                    located, elapsed, found, checked = run_once(tmp, origin, args.charts,
                                                                args.recs, on, n)
                    n += 1
                    times.setdefault((on, cold), []).append(located + elapsed)
                    renders[(on, cold)] = (found, checked)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = {}
        for cold, what in ((True, "first batch on this base (discovery renders each chart)"),
                           (False, "later batch (discovery and the render before the edit "
                                   "known)")):
            off, on = med[(False, cold)], med[(True, cold)]
            (f_off, _), (f_on, checked) = renders[(False, cold)], renders[(True, cold)]
            ratios[cold] = on / off
            print(f"{what}:")
            print(f"  without verification: {off:.2f}s = {args.recs / off:,.0f} recs/s, "
                  f"{f_off} renders (discovery)")
            print(f"  with verification:    {on:.2f}s = {args.recs / on:,.0f} recs/s, "
                  f"{f_on + checked} renders ({f_on} discovery + {checked} verification; "
                  f"{(f_on + checked) / args.charts:.1f} per chart, "
                  f"{(f_on + checked) / args.recs:.2f} per recommendation)")
            print(f"  verification costs {on / off:.2f}x the same batch without it")
        one = render_time()
        off, cold_on = med[(False, True)], med[(True, True)]
        naive = off + 2 * args.recs * one
        print(f"one render: {one * 1000:.1f} ms; naive (two renders per recommendation): "
              f"~{naive:.1f}s = {naive / cold_on:.1f}x the batched verification")
        verdict = {c: "met" if r < 2.0 else "NOT met" for c, r in ratios.items()}
        print(f"goal (verification under 2x): first batch {verdict[True]} "
              f"({ratios[True]:.2f}x), later batch {verdict[False]} ({ratios[False]:.2f}x)")
        sys.exit(0 if all(r < 2.0 for r in ratios.values()) else 1)


if __name__ == "__main__":
    main()
