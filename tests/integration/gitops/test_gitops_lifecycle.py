"""The pull-request lifecycle through `reconciler apply` with a forge API (the fake GitHub,
GitLab and Gitea server on loopback), real git repositories and the embedded OPA engine.

Cases:
- apply opens one pull request for the batch; a rerun reuses it (no second PR, no new
  commit) and the status records its number and URL;
- the pull request is merged: the next apply marks the recommendation Applied, with
  appliedAt = the merge time;
- the pull request is closed unmerged: Rejected with reason PullRequestClosed, and a
  rerun does not propose it again; a newer recommendation for the same workload is
  proposed;
- a newer recommendation for a workload whose older one is still in review supersedes it;
- scope `workload`: two batches for the same workload land on the same branch and update
  the same pull request;
- labels and the forge token from --token-file reach the forge; the token is in no output;
- the same run against GitLab and Gitea.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.domain import model
from tests.fakes.forgeserver import GITEA, GITHUB, GITLAB, ForgeServer

TOKEN = "tok-lifecycle-77aa"
NOW = "2026-11-24T10:00:00Z"


def rec(rec_id: str, name: str, container: str, cpu: str) -> str:
    return (f"---\napiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
            f"metadata: {{namespace: default}}\nspec:\n  recommendationId: {rec_id}\n"
            f"  action: Rightsizing\n  targetRef: {{kind: Deployment, name: {name}}}\n"
            f"  containers: [{{name: {container}, resources: {{requests: {{cpu: {cpu}}}}}}}]\n"
            f"  confidence: 0.9\n  projectedSavings: {{monthly: 5, currency: USD}}\n")


@pytest.fixture()
def server() -> Iterator[ForgeServer]:
    with ForgeServer(token=TOKEN, repos=("acme/app",), gitlab_ids={"42": "acme/app"}) as s:
        yield s


class Runner:
    def __init__(self, tmp: Path, origin: Path, server: ForgeServer, kind: str,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.origin, self.server, self.kind, self.capsys = (
            tmp, origin, server, kind, capsys)
        (tmp / "token").write_text(TOKEN + "\n")
        self.n = 0

    def apply(self, text: str, *extra: str) -> dict[str, object]:
        self.n += 1
        f = self.tmp / f"recs-{self.n}.yaml"
        f.write_text(text)
        rc = cli.main(["apply", "-f", str(f), "--repo", str(self.origin), "--state-dir",
                       str(self.tmp / "state"), "--forge", self.kind, "--forge-url",
                       self.server.url, "--forge-repo", "acme/app", "--token-file",
                       str(self.tmp / "token"), "--label", "cost", "--now", NOW,
                       "--output", "json", *extra])
        out = self.capsys.readouterr()
        assert rc == 0, out.err
        assert TOKEN not in out.out + out.err
        doc: dict[str, object] = json.loads(out.out)
        return doc

    def record(self, rec_id: str) -> sqlite_store.store.Record:
        st = sqlite_store.SqliteStore(self.tmp / "state" / "reconciler.db")
        try:
            r = st.get(model.WORKLOAD, rec_id)
            assert r is not None
            return r
        finally:
            st.close()


@pytest.mark.parametrize("kind", [GITHUB, GITLAB, GITEA])
def test_merge_and_rerun(kind: str, server: ForgeServer, origin: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    r = Runner(tmp_path, origin, server, kind, capsys)
    recs = rec("rec-a", "cartservice", "server", "150m") + rec("rec-b", "adservice", "server",
                                                                "160m")
    first = r.apply(recs)
    (pr,) = first["pullRequests"]  # type: ignore[misc]
    assert len(server.pulls(kind)) == 1
    status = r.record("rec-a").status
    assert status["phase"] == model.APPLYING
    assert status["pullRequest"]["number"] == pr["number"]

    again = r.apply(recs)
    assert again["createdCommit"] is False
    assert [p["number"] for p in again["pullRequests"]] == [pr["number"]]  # type: ignore[union-attr]
    assert len(server.pulls(kind)) == 1
    (labels,) = [p.get("labels") for p in server.pulls(kind)]
    assert "cost" in json.dumps(labels)

    server.merge(kind, pr["number"], at=dt.datetime(2026, 11, 24, 11, 30, tzinfo=dt.UTC))
    r.apply(rec("rec-c", "frontend", "server", "90m"))
    merged = r.record("rec-a").status
    assert merged["phase"] == model.APPLIED
    assert merged["appliedAt"] == "2026-11-24T11:30:00Z"
    assert r.record("rec-b").phase == model.APPLIED


def test_closed_pull_request_is_not_proposed_again(server: ForgeServer, origin: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    r = Runner(tmp_path, origin, server, GITHUB, capsys)
    first = r.apply(rec("rec-a", "cartservice", "server", "150m"))
    (pr,) = first["pullRequests"]  # type: ignore[misc]
    server.close(GITHUB, pr["number"])
    second = r.apply(rec("rec-a", "cartservice", "server", "150m"))
    (item,) = second["results"]  # type: ignore[misc]
    assert item["phase"] == model.REJECTED and "closed" in item["message"]
    assert second["pullRequests"] == []
    conds = r.record("rec-a").status["conditions"]
    assert any(c["reason"] == "PullRequestClosed" for c in conds)
    assert len(server.pulls(GITHUB)) == 1
    third = r.apply(rec("rec-a2", "cartservice", "server", "140m"))
    (item,) = third["results"]  # type: ignore[misc]
    assert item["phase"] == model.APPLYING
    assert len(server.pulls(GITHUB)) == 2


def test_newer_recommendation_supersedes_and_workload_scope_updates_pr(
        server: ForgeServer, origin: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    r = Runner(tmp_path, origin, server, GITHUB, capsys)
    first = r.apply(rec("rec-a", "cartservice", "server", "150m"), "--scope", "workload")
    (pr1,) = first["pullRequests"]  # type: ignore[misc]
    second = r.apply(rec("rec-b", "cartservice", "server", "140m"), "--scope", "workload")
    (pr2,) = second["pullRequests"]  # type: ignore[misc]
    assert pr1["number"] == pr2["number"] and pr1["branch"] == pr2["branch"]
    assert second["createdCommit"] is True
    assert len(server.pulls(GITHUB)) == 1
    assert r.record("rec-a").phase == model.SUPERSEDED
    assert r.record("rec-b").phase == model.APPLYING


def rollback(r: Runner, rec_id: str) -> tuple[int, str]:
    rc = cli.main(["rollback", rec_id, "--repo", str(r.origin), "--state-dir",
                   str(r.tmp / "state"), "--forge", r.kind, "--forge-url", r.server.url,
                   "--forge-repo", "acme/app", "--token-file", str(r.tmp / "token")])
    out = r.capsys.readouterr()
    return rc, out.out + out.err


def test_rollback_opens_a_revert_pull_request(server: ForgeServer, origin: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    r = Runner(tmp_path, origin, server, GITHUB, capsys)
    rc, out = rollback(r, "rec-a")
    assert rc == 1 and "not in the store" in out
    first = r.apply(rec("rec-a", "cartservice", "server", "150m"))
    (pr,) = first["pullRequests"]  # type: ignore[misc]
    rc, out = rollback(r, "rec-a")
    assert rc == 1 and "close its pull request" in out  # still in review: nothing applied
    server.merge(GITHUB, pr["number"], at=dt.datetime(2026, 11, 24, 11, 0, tzinfo=dt.UTC))
    subprocess_merge(origin, str(pr["branch"]))
    rc, out = rollback(r, "rec-a")
    assert rc == 0, out
    assert "revert pull request" in out
    status = r.record("rec-a").status
    assert status["phase"] == model.APPLIED
    revert_pr = status["pullRequest"]
    assert revert_pr["number"] != pr["number"] and revert_pr["state"] == "open"
    diff = show_diff(origin, str(revert_pr["branch"]))
    assert [ln for ln in diff if ln.startswith(("+ ", "- ", "+\t", "-\t")) or
            ln.strip(" +-").startswith("cpu")] == ["-            cpu: 150m",
                                                    "+            cpu: 200m"]
    server.merge(GITHUB, revert_pr["number"])
    r.apply(rec("rec-z", "frontend", "server", "90m"))  # any batch follows open PRs first
    assert r.record("rec-a").phase == model.ROLLED_BACK


def test_rollback_refused_after_a_foreign_change(server: ForgeServer, origin: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    r = Runner(tmp_path, origin, server, GITHUB, capsys)
    first = r.apply(rec("rec-a", "cartservice", "server", "150m"))
    (pr,) = first["pullRequests"]  # type: ignore[misc]
    server.merge(GITHUB, pr["number"])
    subprocess_merge(origin, str(pr["branch"]))
    r.apply(rec("rec-z", "frontend", "server", "90m"))
    assert r.record("rec-a").phase == model.APPLIED
    subprocess_edit(origin, "kubernetes-manifests/cartservice.yaml", "cpu: 150m", "cpu: 170m")
    rc, out = rollback(r, "rec-a")
    assert rc == 1
    assert "changed since" in out and "170m" in out
    assert r.record("rec-a").phase == model.APPLIED


def _clone(origin: Path) -> Path:
    import subprocess
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="dakr-test-clone-"))
    subprocess.run(["git", "clone", "-q", str(origin), str(d)], check=True)
    return d


def subprocess_merge(origin: Path, branch: str) -> None:
    """Merge the pull request's branch into main in the origin, as the forge would."""
    import subprocess

    d = _clone(origin)
    for cmd in (["git", "merge", "-q", "--no-ff", "-m", "merge", f"origin/{branch}"],
                ["git", "push", "-q", "origin", "main"]):
        subprocess.run(["git", "-c", "user.name=r", "-c", "user.email=r@r", *cmd[1:]],
                       cwd=d, check=True)


def subprocess_edit(origin: Path, path: str, old: str, new: str) -> None:
    import subprocess

    d = _clone(origin)
    f = d / path
    f.write_text(f.read_text().replace(old, new, 1))
    subprocess.run(["git", "-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qam",
                    "hand edit"], cwd=d, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=d, check=True)


def show_diff(origin: Path, branch: str) -> list[str]:
    import subprocess

    out = subprocess.run(["git", "--git-dir", str(origin), "diff", "-U0", "main", branch],
                         check=True, capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines()
            if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
