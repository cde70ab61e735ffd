"""The GitOps writer against real git repositories (a bare origin and clones).

Cases:
- a push race with another writer (origin's branch advanced between our fetch and our
  push): the push is rejected as non-fast-forward, we fetch, re-render on top of their
  commit and push again; both changes are on the branch and their commit is an ancestor
  of ours (nobody's commit is lost, nothing is force-pushed);
- a human commit on the branch: the writer leaves that branch alone and proposes its
  change on `<branch>-2`; the human's commit is untouched;
- a rerun on a branch that already holds the change makes no commit and still reports
  the changed lines;
- nothing to change relative to base: no branch is pushed;
- credentials in a remote URL never appear in an error message (clone of an unreachable
  https remote with a token), and `redact` removes userinfo from URLs;
- the repository lock serializes writers: a second holder times out with a
  TemporaryError while the first holds it, and gets it once released;
- `seed_bare` (how the demo, the benchmarks and the tests get an origin): a bare origin
  whose main is one commit by the given author holding the tree's files.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.adapters import git
from reconciler.config import layout
from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import writer as gitops

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "examples" / "microservices-demo"


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def plan_cpu(name: str, container: str, old: str, new: str) -> planner.Plan:
    return planner.Plan(rec_id=f"rec-{name}", kind="Deployment", namespace="default",
                        name=name, resources=(planner.ValueEdit(container, "requests", "cpu",
                                                                old, new),))


def loc(name: str) -> repo_index.Source:
    """Where the demo repository defines Deployment ``name``, as the layout index finds it."""
    key = ("default", "Deployment", name)
    src = repo_index.Index.build(SEED, layout.Layout(), [key]).locate(key)
    return dataclasses.replace(src, path=f"kubernetes-manifests/{src.path}")


def show(origin: Path, ref: str, path: str) -> str:
    return sh("git", "--git-dir", str(origin), "show", f"{ref}:{path}")


class RacingWorkspace(git.Workspace):
    """Before its first push, another writer pushes the same branch from another clone."""

    competitor: Path
    raced = False

    def push(self, branch: str) -> None:
        if not self.raced:
            self.raced = True
            c = self.competitor
            sh("git", "fetch", "-q", "origin", cwd=c)
            sh("git", "checkout", "-q", "-B", branch, "origin/main", cwd=c)
            f = c / "kubernetes-manifests" / "frontend.yaml"
            f.write_text(f.read_text().replace("cpu: 100m", "cpu: 90m", 1))
            sh("git", "-c", f"user.email={git.AUTHOR_EMAIL}", "-c", "user.name=other-replica",
               "commit", "-qam", "other writer", cwd=c)
            sh("git", "push", "-q", "origin", branch, cwd=c)
        super().push(branch)


def test_push_race_keeps_both_commits(origin: Path, tmp_path: Path) -> None:
    competitor = tmp_path / "competitor"
    sh("git", "clone", "-q", str(origin), str(competitor))
    ws = git.Workspace.open(str(origin), tmp_path / "clone", "main")
    racing = RacingWorkspace(ws.repo, ws.remote_url)
    racing.competitor = competitor
    written = gitops.write(racing, "main", "dakr/batch-race",
                           [(loc("cartservice"),
                             plan_cpu("cartservice", "server", "200m", "150m"))],
                           message="dakr: race", retries=3)
    assert racing.raced and written.created_commit
    theirs = sh("git", "--git-dir", str(origin), "log", "--format=%H %s",
                "main..dakr/batch-race").splitlines()
    assert [ln.split(" ", 1)[1] for ln in theirs] == ["dakr: race", "other writer"]
    assert "cpu: 150m" in show(origin, "dakr/batch-race", "kubernetes-manifests/cartservice.yaml")
    assert "cpu: 90m" in show(origin, "dakr/batch-race", "kubernetes-manifests/frontend.yaml")


def test_human_commit_moves_writer_to_a_new_branch(origin: Path, tmp_path: Path) -> None:
    ws = git.Workspace.open(str(origin), tmp_path / "clone", "main")
    edits = [(loc("cartservice"), plan_cpu("cartservice", "server", "200m", "150m"))]
    first = gitops.write(ws, "main", "dakr/batch-h", edits,
                         message="dakr: first")
    human = tmp_path / "human"
    sh("git", "clone", "-q", "-b", "dakr/batch-h", str(origin), str(human))
    f = human / "kubernetes-manifests" / "cartservice.yaml"
    f.write_text(f.read_text().replace("cpu: 150m", "cpu: 175m", 1))
    sh("git", "-c", "user.email=alice@example.com", "-c", "user.name=Alice", "commit", "-qam",
       "reviewer tweak", cwd=human)
    sh("git", "push", "-q", "origin", "dakr/batch-h", cwd=human)
    human_head = sh("git", "--git-dir", str(origin), "rev-parse", "dakr/batch-h").strip()

    ws.fetch()
    second = gitops.write(ws, "main", "dakr/batch-h", edits,
                          message="dakr: again")
    assert first.branch == "dakr/batch-h"
    assert second.branch == "dakr/batch-h-2" and second.created_commit
    assert sh("git", "--git-dir", str(origin), "rev-parse", "dakr/batch-h").strip() == human_head
    assert "cpu: 175m" in show(origin, "dakr/batch-h", "kubernetes-manifests/cartservice.yaml")


def test_rerun_reports_lines_without_commit(origin: Path, tmp_path: Path) -> None:
    ws = git.Workspace.open(str(origin), tmp_path / "clone", "main")
    edits = [(loc("cartservice"), plan_cpu("cartservice", "server", "200m", "150m"))]
    a = gitops.write(ws, "main", "dakr/b", edits, message="m")
    b = gitops.write(ws, "main", "dakr/b", edits, message="m")
    assert a.created_commit and not b.created_commit
    assert a.commit == b.commit
    assert a.lines == b.lines and a.lines["rec-cartservice"][0][1]


def test_nothing_to_change_pushes_nothing(origin: Path, tmp_path: Path) -> None:
    ws = git.Workspace.open(str(origin), tmp_path / "clone", "main")
    edits = [(loc("cartservice"), plan_cpu("cartservice", "server", "200m", "200m"))]
    w = gitops.write(ws, "main", "dakr/none", edits, message="m")
    assert w.branch == "" and not w.created_commit
    assert "dakr/none" not in sh("git", "--git-dir", str(origin), "branch")


def test_credentials_never_in_errors(tmp_path: Path) -> None:
    secret = "ghp_S3cr3tT0k3nValue"
    url = f"https://x-access-token:{secret}@127.0.0.1:9/org/repo.git"
    with pytest.raises(errors.ReconcilerError) as info:
        git.Workspace.open(url, tmp_path / "clone", "main")
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    assert git.redact(f"fatal: unable to access '{url}'") == \
        "fatal: unable to access 'https://***@127.0.0.1:9/org/repo.git'"


def test_repo_lock_serializes_writers(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with git.repo_lock(clone):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    with pytest.raises(errors.TemporaryError, match="another writer"), \
            git.repo_lock(clone, timeout=0.2):
        pass
    release.set()
    t.join()
    with git.repo_lock(clone, timeout=1):
        pass


def test_token_auth_over_http_never_stored_or_printed(origin: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Clone, commit and push over smart HTTP with a token (a real git http-backend behind
    Basic auth): it works, the clone's config holds no token, and a wrong token fails with
    a message that does not contain it."""
    from tests.fakes import gitserver

    secret = "tok_" + "9f8e7d6c5b4a"
    with gitserver.serve(origin.parent, secret) as srv:
        url = srv.url("origin.git", with_token=True)
        ws = git.Workspace.open(url, tmp_path / "clone", "main")
        with ws:
            w = gitops.write(ws, "main", "dakr/http",
                             [(loc("cartservice"),
                               plan_cpu("cartservice", "server", "200m", "150m"))],
                             message="over http")
        assert w.created_commit
        assert "dakr/http" in sh("git", "--git-dir", str(origin), "branch")
        config = (tmp_path / "clone" / ".git" / "config").read_text()
        assert secret not in config and srv.url("origin.git") in config
        for p in (tmp_path / "clone" / ".git").rglob("*"):
            if p.is_file() and p.stat().st_size < 1_000_000:
                assert secret.encode() not in p.read_bytes(), p

        wrong = srv.url("origin.git").replace("http://", "http://x-access-token:badtoken1@")
        with pytest.raises(errors.ReconcilerError) as info:
            git.Workspace.open(wrong, tmp_path / "clone2", "main")
        assert "badtoken1" not in str(info.value)
        assert srv.auth_failures >= 1
    assert secret not in caplog.text


def test_shallow_clone_writes_and_reruns(origin: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`apply --depth 1`: a shallow working clone proposes the same change (and a rerun
    makes no commit)."""
    import json

    from reconciler.cli import main as cli

    for i in range(3):  # some history, so that depth 1 really cuts it
        tree = sh("git", "--git-dir", str(origin), "rev-parse", "main^{tree}").strip()
        new = sh("git", "--git-dir", str(origin), "-c", "user.name=t", "-c", "user.email=t@t",
                 "commit-tree", "-m", f"c{i}", "-p", "main", tree).strip()
        sh("git", "--git-dir", str(origin), "update-ref", "refs/heads/main", new)
    recs = tmp_path / "r.yaml"
    recs.write_text(
        "apiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
        "metadata: {namespace: default}\nspec:\n  recommendationId: rec-s\n"
        "  action: Rightsizing\n  targetRef: {kind: Deployment, name: cartservice}\n"
        "  containers: [{name: server, resources: {requests: {cpu: 150m}}}]\n"
        "  confidence: 0.9\n")
    # A plain path clones locally (git ignores --depth there); file:// is a real transfer.
    args = ["apply", "-f", str(recs), "--repo", origin.as_uri(), "--state-dir",
            str(tmp_path / "state"), "--depth", "1", "--output", "json"]
    assert cli.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["createdCommit"] is True
    (clone,) = [p for p in (tmp_path / "state" / "clones").iterdir() if p.is_dir()]
    assert (clone / ".git" / "shallow").exists()
    assert "cpu: 150m" in show(origin, first["branch"], "kubernetes-manifests/cartservice.yaml")
    assert cli.main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["createdCommit"] is False and again["commit"] == first["commit"]


def test_seed_bare(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "apps").mkdir(parents=True)
    (tree / "apps" / "web.yaml").write_text("kind: Deployment\n")
    origin = tmp_path / "origin.git"
    git.seed_bare(origin, tree, "first", author=("Ann", "ann@example.com"))
    assert sh("git", "--git-dir", str(origin), "log", "--format=%an <%ae> %s",
              "main").splitlines() == ["Ann <ann@example.com> first"]
    assert show(origin, "main", "apps/web.yaml") == "kind: Deployment\n"
