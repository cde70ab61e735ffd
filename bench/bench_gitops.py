"""GitOps writer throughput: one batch of N recommendations against a generated repository.

Why it exists: issue 4 asks for >= 500 recommendations/s end to end (index, locate,
plan, render, write, one commit) on a 10,000-workload repository mixing plain manifests,
a Kustomize overlay and a Helm values file, and for >= 20x the naive method (parse every
file and commit once per recommendation). The naive method is measured on a sample and
extrapolated. Every changed file is checked against the diff-only-changed-values rule.

    .venv/bin/python bench/bench_gitops.py [--workloads 10000] [--naive-sample 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from reconciler.config import layout
from reconciler.domain import decision, errors, model, planner, validation
from reconciler.gitops import index as repo_index
from reconciler.gitops import render
from reconciler.yamledit import workload

ALLOW = decision.Decision(allow=True, mode="gitops")
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LICENSE = "".join(f"# Copyright 2026 Example. Line {i} of a license header.\n" for i in range(8))


def _deployment(name: str, ns: str | None, cpu: int, mem: int, *, quoted: bool,
                indent_seq: bool, replicas: int | None) -> str:
    q = '"' if quoted else ""
    dash = "  " if indent_seq else ""
    ns_line = f"  namespace: {ns}\n" if ns else ""
    rep = f"  replicas: {replicas}\n" if replicas is not None else ""
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{ns_line}"
        f"  labels:\n    app: {name}\nspec:\n{rep}  selector:\n    matchLabels:\n"
        f"      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n"
        f"    spec:\n      containers:\n      {dash}- name: server\n"
        f"      {dash}  image: \"registry.example/{name}:1.0.0\"  # pinned\n"
        f"      {dash}  ports:\n      {dash}  - containerPort: 8080\n"
        f"      {dash}  resources:\n      {dash}    requests:\n"
        f"      {dash}      cpu: {q}{cpu}m{q}\n      {dash}      memory: {q}{mem}Mi{q}\n"
        f"      {dash}    limits:\n      {dash}      memory: {q}{mem * 2}Mi{q}\n"
    )


def _service(name: str) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n"
            f"  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n")


@dataclasses.dataclass
class Repo:
    root: Path
    plain: list[tuple[str, str, str]]
    kustomize: list[tuple[str, str, str]]
    helm: list[tuple[str, str, str]]
    files: int


def generate(root: Path, n: int) -> Repo:
    """40% plain (two workloads per multi-document file), 40% Kustomize (one base file
    each; a quarter with an overlay patch, a tenth with a replicas entry), 20% Helm."""
    n_plain, n_kust = n * 2 // 5, n * 2 // 5
    n_helm = n - n_plain - n_kust
    plain: list[tuple[str, str, str]] = []
    files = 0
    for i in range(0, n_plain, 2):
        ns = f"team-{i % 50}"
        docs = [LICENSE.rstrip("\n")]
        for j in (i, i + 1):
            if j >= n_plain:
                break
            name = f"plain-{j}"
            docs.append(_deployment(name, ns, 100 + j % 400, 64 + j % 512, quoted=j % 3 == 0,
                                    indent_seq=j % 2 == 0, replicas=2 if j % 5 else None))
            docs.append(_service(name))
            plain.append((ns, "Deployment", name))
        path = root / "plain" / f"team-{i % 50}" / f"app-{i}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(docs[0] + "\n---\n" + "---\n".join(docs[1:]))
        files += 1
    base, overlay = root / "kustomize" / "base", root / "kustomize" / "overlays" / "prod"
    base.mkdir(parents=True)
    overlay.mkdir(parents=True)
    kust: list[tuple[str, str, str]] = []
    resources, patches, replicas = [], [], []
    for i in range(n_kust):
        name = f"kust-{i}"
        (base / f"{name}.yaml").write_text(
            LICENSE + _deployment(name, None, 200 + i % 300, 128 + i % 256, quoted=False,
                                  indent_seq=False, replicas=1))
        resources.append(f"- {name}.yaml\n")
        if i % 4 == 0:
            (overlay / f"{name}-resources.yaml").write_text(
                f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n"
                f"  template:\n    spec:\n      containers:\n        - name: server\n"
                f"          resources:\n            requests:\n              cpu: 250m\n")
            patches.append(f"  - path: {name}-resources.yaml\n")
            files += 1
        if i % 10 == 0:
            replicas.append(f"  - name: {name}\n    count: 3\n")
        kust.append(("prod", "Deployment", name))
    files += n_kust + 2
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(resources))
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: prod\n"
        "resources:\n  - ../../base\npatches:\n" + "".join(patches)
        + "replicas:\n" + "".join(replicas))
    helm: list[tuple[str, str, str]] = []
    values = ["# Values for the generated chart.\nglobal:\n  image: registry.example\n"]
    for i in range(n_helm):
        values.append(f"svc{i}:\n  enabled: true\n  resources:\n    requests:\n"
                      f"      cpu: {50 + i % 200}m\n      memory: {32 + i % 128}Mi\n\n")
        helm.append(("shop", "Deployment", f"svc-{i}"))
    (root / "helm").mkdir()
    (root / "helm" / "values.yaml").write_text("".join(values))
    files += 1
    docs_dir = root / "docs"
    docs_dir.mkdir()
    for i in range(n // 10):  # unrelated files: read, never parsed
        (docs_dir / f"note-{i}.yaml").write_text(f"title: note {i}\nbody: nothing to see\n")
        files += 1
    return Repo(root, plain, kust, helm, files)


def _layouts(repo: Repo) -> list[tuple[layout.Layout, list[tuple[str, str, str]]]]:
    helm = layout.parse_layout({
        "kind": "helm", "valuesFile": "helm/values.yaml",
        "valuesPaths": {t[2]: f"svc{t[2].split('-')[1]}" for t in repo.helm}})
    return [
        (layout.parse_layout({"kind": "plain"}), repo.plain),  # searches the whole repo
        (layout.parse_layout({"kind": "kustomize", "overlay": "kustomize/overlays/prod"}),
         repo.kustomize),
        (helm, repo.helm),
    ]


def _recommendation(i: int, target: tuple[str, str, str]) -> model.Recommendation:
    ns, kind, name = target
    spec: dict[str, Any] = {
        "recommendationId": f"rec-{i:05d}", "action": "Rightsizing",
        "targetRef": {"kind": kind, "name": name},
        "containers": [{"name": "server", "resources": {
            "requests": {"cpu": f"{60 + i % 90}m", "memory": f"{40 + i % 60}Mi"},
            "limits": {"memory": f"{300 + i % 100}Mi"}}}],
    }
    return validation.parse({"apiVersion": "dakr.devzero.io/v1alpha1",
                             "kind": "WorkloadRecommendation", "metadata": {"namespace": ns},
                             "spec": spec})


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def _git_init(root: Path) -> None:
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "bench@localhost")
    _git(root, "config", "user.name", "bench")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "generated")


def run_batch(repo: Repo, recs: dict[tuple[str, str, str], model.Recommendation]
              ) -> tuple[dict[str, str], repo_index.Stats, int]:
    """The measured path: index, locate, observe, plan, render, write, one commit."""
    stats = repo_index.Stats()
    texts: dict[str, str] = {}
    failures = 0

    def base_text(rel: str) -> str:
        try:
            return (repo.root / rel).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise errors.NotFoundError(rel) from e

    for lay, targets in _layouts(repo):
        index = repo_index.Index.build(repo.root, lay, targets)
        items = []
        for t in targets:
            plan = planner.plan(recs[t], ALLOW, index.observed(t))
            items.append((index.locate(t), plan))
        out = render.render_many(repo.root, items, base_text=base_text)
        stats.files_seen += index.stats.files_seen  # patch files are read lazily: count last
        stats.files_parsed += index.stats.files_parsed
        failures += len(out.errors)
        texts.update(out.texts)
    for rel, text in texts.items():
        path = repo.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    _git(repo.root, "checkout", "-q", "-b", "dakr/batch")
    _git(repo.root, "add", "-A", "--", *sorted({str(Path(r).parts[0]) for r in texts}))
    _git(repo.root, "commit", "-q", "-m", f"dakr: apply {len(recs)} recommendations")
    return texts, stats, failures


_NEW = re.compile(r"^\s*(?:- )?[A-Za-z][\w-]*:\s*(?:#.*)?$|^\s*(?:- )?(?:name|kind|path): \S+$")


def check_diffs(repo: Repo, texts: dict[str, str]) -> int:
    """In the batch commit's diff (what a reviewer sees), every changed line of an existing
    file holds a value (cpu/memory/count/replicas) or opens an inserted key; new files are
    patches that must parse."""
    diff = _git(repo.root, "diff", "-U0", "--no-color", "--patience", "main", "dakr/batch")
    files: dict[str, list[str]] = {}
    current = ""
    new_files: set[str] = set()
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            current = line.split(" b/", 1)[1]
            files[current] = []
        elif line.startswith("new file mode"):
            new_files.add(current)
        elif line.startswith(("---", "+++", "@@", "index ")):
            continue
        elif line[:1] in "+-":
            files[current].append(line)
    assert set(files) == set(texts), set(files) ^ set(texts)
    for rel, lines in files.items():
        if rel in new_files:
            assert yaml.load(texts[rel], Loader=_LOADER)["kind"] == "Deployment", rel
            continue
        for line in lines:
            body = line[1:]
            is_value = re.search(r"(?:cpu|memory|count|replicas): [\"']?[0-9]+(?:m|Mi)?[\"']?"
                                 r"\s*(?:#.*)?$", body)
            if not (is_value or (line[0] == "+" and _NEW.match(body))):
                raise AssertionError(f"{rel}: unexpected diff line {line!r}")
    return len(files)


def naive(repo: Repo, recs: list[tuple[tuple[str, str, str], model.Recommendation]]) -> float:
    """Seconds per recommendation the naive way: parse every YAML file to find the target,
    edit it, commit. Measured on the plain workloads (the naive method knows no overlays)."""
    start = time.perf_counter()
    for t, rec in recs:
        found: tuple[Path, dict[str, Any]] | None = None
        for dirpath, _, filenames in os.walk(repo.root):
            if ".git" in dirpath:
                continue
            for f in filenames:
                if not f.endswith(".yaml"):
                    continue
                path = Path(dirpath) / f
                for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER):
                    if (isinstance(doc, dict) and doc.get("kind") == t[1]
                            and (doc.get("metadata") or {}).get("name") == t[2]):
                        found = (path, doc)
        assert found is not None, t
        plan = planner.plan(rec, ALLOW, found[1])
        text = found[0].read_text(encoding="utf-8")
        new = workload.edit_workload(text, render.change_of(plan, t[0])).text
        found[0].write_text(new)
        _git(repo.root, "add", "--", str(found[0].relative_to(repo.root)))
        _git(repo.root, "commit", "-q", "-m", rec.id)
    return (time.perf_counter() - start) / len(recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=10_000)
    ap.add_argument("--naive-sample", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gitops-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        t0 = time.perf_counter()
        repo = generate(root, args.workloads)
        _git_init(root)
        print(f"generated {args.workloads} workloads in {repo.files} files "
              f"({time.perf_counter() - t0:.1f}s, not measured)")
        targets = repo.plain + repo.kustomize + repo.helm
        recs = {t: _recommendation(i, t) for i, t in enumerate(targets)}

        start = time.perf_counter()
        texts, stats, failures = run_batch(repo, recs)
        elapsed = time.perf_counter() - start
        rate = len(recs) / elapsed
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        commits = _git(root, "rev-list", "--count", "dakr/batch").strip()
        print(f"batch: {len(recs)} recommendations in {elapsed:.2f}s = {rate:,.0f} recs/s "
              f"(index + locate + plan + render + write + 1 commit); failures: {failures}")
        print(f"files: {stats.files_seen} seen, {stats.files_parsed} parsed, "
              f"{repo.files} in the repository, {len(texts)} changed; commits on branch: "
              f"{commits} (1 generated + 1 batch)")
        print(f"peak RSS: {rss:.0f} MiB")
        print(f"diff-only-changed-values: {check_diffs(repo, texts)} changed files checked, ok")

        _git(root, "checkout", "-q", "main")
        sample = [(t, recs[t]) for t in repo.plain[: args.naive_sample]]
        per_rec = naive(repo, sample)
        naive_total = per_rec * len(recs)
        print(f"naive: {per_rec * 1000:.0f} ms per recommendation (sample of {len(sample)}), "
              f"~{naive_total:,.0f}s for {len(recs)} -> ratio {naive_total / elapsed:,.0f}x")
        ok = rate >= 500 and naive_total / elapsed >= 20 and failures == 0
        print("goal (>= 500 recs/s, >= 20x naive, no failures):", "met" if ok else "NOT met")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
