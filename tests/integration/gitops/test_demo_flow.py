"""End to end: the demo flow and `reconciler apply` on real git repositories and the real
embedded OPA engine.

Cases:
- `reconciler demo --workdir DIR` (recommendations served by the reference gRPC platform on
  loopback and ingested over the stream: 14 acked, the malformed one nacked): a bare origin
  at DIR/origin.git gets one branch dakr/batch-<hash> with exactly one commit; every line
  of its diff is a resource value or a replicas line (nothing else moves); the PR body at
  DIR/pull-request.md has the per-workload tables and the refused items with their
  reasons; the store records phases, decisions and previous values;
- running the demo again with the same DIR makes no second commit and changes no byte (the
  stream redelivers everything; the store sees 14 duplicates);
- `--source file` reads the file directly and gives the same branch;
- `reconciler apply --output json`: one object {"results": [...]}, per item id, phase,
  decision (allowed, mode, reasons), errors naming fields for the malformed one, and
  branch/commit for the applied ones; exit code 0 although some are refused;
- `--dry-run`: decides and plans, pushes nothing, stores nothing;
- a recommendation whose manifest is defined twice fails with both places named and
  nothing written for it;
- unusable input exits 2 with a message naming the problem (missing file, invalid YAML,
  unknown store URI, missing policy directory), and writes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.domain import model

ROOT = Path(__file__).resolve().parents[3]
NOW = "2026-11-24T10:00:00Z"
VALUE_LINE = re.compile(r"^[+-]\s*(cpu|memory|replicas):\s*\S+\s*$")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def branches(origin: Path) -> list[str]:
    out = git("--git-dir", str(origin), "for-each-ref", "--format=%(refname:short)",
              "refs/heads/dakr/")
    return out.split()


def test_demo_end_to_end_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["demo", "--workdir", str(tmp_path), "--now", NOW])
    out = capsys.readouterr().out
    assert rc == 0, out
    origin = tmp_path / "origin.git"
    (branch,) = branches(origin)
    assert re.fullmatch(r"dakr/batch-[0-9a-f]{10}", branch)
    assert branch in out and "new commit" in out
    assert "received over gRPC from the reference platform" in out
    assert "14 stored and acked, 0 duplicates, 1 nacked" in out
    commits = git("--git-dir", str(origin), "rev-list", f"main..{branch}").split()
    assert len(commits) == 1
    message = git("--git-dir", str(origin), "log", "-1", "--format=%B", branch)
    assert "rec-0001" in message and "rec-0009" not in message

    diff = git("--git-dir", str(origin), "diff", "-U0", "main", branch)
    changed = [ln for ln in diff.splitlines()
               if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
    assert changed, "the demo must change something"
    bad = [ln for ln in changed if not VALUE_LINE.match(ln)]
    assert bad == [], f"diff lines that are not resource values: {bad}"
    files = git("--git-dir", str(origin), "diff", "--name-only", "main", branch).split()
    assert "kubernetes-manifests/cartservice.yaml" in files
    # Refused workloads are not touched.
    for refused in ("paymentservice", "recommendationservice", "loadgenerator"):
        assert f"kubernetes-manifests/{refused}.yaml" not in files
    # Every untouched file on the branch is byte-identical to the seed.
    for f in (ROOT / "examples" / "microservices-demo").glob("*.yaml"):
        shown = subprocess.run(
            ["git", "--git-dir", str(origin), "show", f"{branch}:kubernetes-manifests/{f.name}"],
            check=True, capture_output=True).stdout
        if f"kubernetes-manifests/{f.name}" not in files:
            assert shown == f.read_bytes(), f.name

    body = (tmp_path / "pull-request.md").read_text()
    assert "`default/Deployment/cartservice`" in body
    assert "| `server` | `requests.cpu` | `200m` | `150m` |" in body
    assert "MinimumConfidence" in body or "confidence" in body.lower()
    assert "rec-0015" in body and "spec.targetRef.name" in body
    assert "### Rollback" in body

    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        rec1 = st.get(model.WORKLOAD, "rec-0001")
        assert rec1 is not None and rec1.phase == model.APPLYING
        assert rec1.status["previous"]["containers"]["server"]["requests"]["cpu"] == "200m"
        assert rec1.status["pullRequest"]["branch"] == branch
        rec9 = st.get(model.WORKLOAD, "rec-0009")
        assert rec9 is not None and rec9.phase == model.REJECTED
        assert rec9.status["decision"]["allowed"] is False
        assert st.get(model.WORKLOAD, "rec-0015") is None  # invalid input is never stored
        version = st.list_records(model.WORKLOAD)[1]
    finally:
        st.close()

    head = git("--git-dir", str(origin), "rev-parse", branch)
    body_before = (tmp_path / "pull-request.md").read_bytes()
    rc = cli.main(["demo", "--workdir", str(tmp_path), "--now", NOW])
    out = capsys.readouterr().out
    assert rc == 0
    assert "no new commit" in out
    assert "0 stored and acked, 14 duplicates, 1 nacked" in out
    assert git("--git-dir", str(origin), "rev-parse", branch) == head
    assert branches(origin) == [branch]
    assert (tmp_path / "pull-request.md").read_bytes() == body_before
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        assert st.list_records(model.WORKLOAD)[1] == version, (
            "a rerun must not rewrite any record")
    finally:
        st.close()


def apply_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = cli.main(["apply", *args, "--now", NOW, "--output", "json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def test_apply_json_contract(origin: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = apply_json(capsys, "-f", str(ROOT / "examples" / "recommendations.yaml"),
                         "--repo", str(origin), "--state-dir", str(tmp_path / "state"))
    assert rc == 0
    results = {r["id"]: r for r in doc["results"]}  # type: ignore[union-attr, index]
    assert len(doc["results"]) == 15  # type: ignore[arg-type]
    ok = results["rec-0001"]
    assert ok["phase"] == "Applying"
    assert ok["decision"]["allowed"] is True and ok["decision"]["mode"] in ("gitops", "direct")
    assert ok["branch"].startswith("dakr/batch-") and len(ok["commit"]) == 40
    assert ok["file"] == "kubernetes-manifests/cartservice.yaml" and ok["lines"]
    refused = results["rec-0009"]
    assert refused["phase"] == "Rejected" and refused["decision"]["allowed"] is False
    assert refused["decision"]["reasons"]
    bad = results["rec-0015"]
    assert bad["phase"] == "Rejected" and bad["decision"] is None
    fields = {e["field"] for e in bad["errors"]}
    assert {"spec.targetRef.name", "spec.containers[0].resources.requests.cpu"} <= fields
    missing = results["rec-0014"]
    assert missing["phase"] == "Failed" and "not defined in the repository" in missing["message"]


def test_dry_run_writes_nothing(origin: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = apply_json(capsys, "-f", str(ROOT / "examples" / "recommendations.yaml"),
                         "--repo", str(origin), "--state-dir", str(tmp_path / "state"),
                         "--dry-run")
    assert rc == 0
    results = {r["id"]: r for r in doc["results"]}  # type: ignore[union-attr, index]
    assert results["rec-0001"]["phase"] == "Approved"
    assert "would change" in results["rec-0001"]["message"]
    assert branches(origin) == []
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        assert st.list() == []
    finally:
        st.close()


def test_ambiguous_target_names_both_places(origin: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "c"
    git("clone", "-q", str(origin), str(clone))
    shutil.copy(clone / "kubernetes-manifests" / "adservice.yaml", clone / "copy-of-ad.yaml")
    git("add", "-A", cwd=clone)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dup", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    recs = tmp_path / "r.yaml"
    recs.write_text(
        "apiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
        "metadata: {namespace: default}\nspec:\n  recommendationId: rec-a\n"
        "  action: Rightsizing\n  targetRef: {kind: Deployment, name: adservice}\n"
        "  containers: [{name: server, resources: {requests: {cpu: 180m}}}]\n"
        "  confidence: 0.9\n")
    rc, doc = apply_json(capsys, "-f", str(recs), "--repo", str(origin),
                         "--state-dir", str(tmp_path / "state"))
    assert rc == 0
    (item,) = doc["results"]  # type: ignore[misc]
    assert item["phase"] == "Failed"
    assert "copy-of-ad.yaml" in item["message"]
    assert "kubernetes-manifests/adservice.yaml" in item["message"]
    assert branches(origin) == []


@pytest.mark.parametrize(("setup", "extra", "needle"), [
    ("missing", [], "cannot read"),
    ("badyaml", [], "invalid YAML"),
    ("ok", ["--store", "postgres://x"], "unknown store"),
    ("ok", ["--policies", "/nonexistent/policies"], "does not exist"),
])
def test_unusable_input_exits_2(origin: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str], setup: str,
                                extra: list[str], needle: str) -> None:
    recs = tmp_path / "recs.yaml"
    if setup == "badyaml":
        recs.write_text("kind: [unclosed\n")
    elif setup == "ok":
        shutil.copy(ROOT / "examples" / "recommendations.yaml", recs)
    rc = cli.main(["apply", "-f", str(recs), "--repo", str(origin),
                   "--state-dir", str(tmp_path / "state"), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    assert branches(origin) == []


def test_demo_from_file_gives_the_same_branch(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--workdir", str(tmp_path / "a"), "--now", NOW]) == 0
    assert cli.main(["demo", "--workdir", str(tmp_path / "b"), "--now", NOW,
                     "--source", "file"]) == 0
    out = capsys.readouterr().out
    assert "received over gRPC" in out.split("dakr reconciler demo in")[1]
    assert "received over gRPC" not in out.split("dakr reconciler demo in")[2]
    assert branches(tmp_path / "a" / "origin.git") == branches(tmp_path / "b" / "origin.git")
