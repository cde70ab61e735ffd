"""LocalForge against a real bare Git repository (``git init --bare`` origin + a clone).

Cases:
- open: a record numbered 1, state open, the body written to ``pull-request-<slug>.md`` and
  ``pull-request.md``, the URL pointing at the file, the branch tip as head_sha;
- update: a second open_or_update for the same branch keeps the number and rewrites the
  files; another branch gets the next number and becomes ``pull-request.md``;
- an unchanged rerun leaves the files' bytes and mtimes alone;
- lifecycle through follow(): open -> Applying; merged with a merge commit and pushed ->
  Applied at the merge commit's time; fast-forwarded then branch deleted -> Applied;
  branch deleted without merge -> Rejected, and the same branch pushed again opens a new
  record; merged/closed are final even if the branch comes back;
- find_open, comment, get of an unknown number (NotFoundError), a branch missing from
  the remote (NotFoundError);
- a remote that is not a local directory is read through a fetched cache;
- the remote URL's credentials never appear in repr or errors.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from reconciler.adapters.forge import local
from reconciler.adapters.forge import port as forge
from reconciler.domain import errors, model

GIT = ["git", "-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com",
       "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """(bare origin, working clone) with ``main`` holding one commit."""
    origin, clone = tmp_path / "origin.git", tmp_path / "clone"
    subprocess.run([*GIT, "init", "--bare", "--quiet", "-b", "main", str(origin)], check=True)
    subprocess.run([*GIT, "clone", "--quiet", str(origin), str(clone)], check=True,
                   capture_output=True)
    (clone / "app.yaml").write_text("replicas: 3\n")
    git(clone, "add", "app.yaml")
    git(clone, "commit", "--quiet", "-m", "base")
    git(clone, "push", "--quiet", "origin", "HEAD:main")
    return origin, clone


def push_branch(clone: Path, branch: str, content: str, *, on_top: bool = False) -> str:
    git(clone, "fetch", "--quiet", "origin")
    git(clone, "checkout", "--quiet", "-B", branch, f"origin/{branch}" if on_top else "origin/main")
    (clone / "app.yaml").write_text(content)
    git(clone, "commit", "--quiet", "-am", f"change on {branch}")
    git(clone, "push", "--quiet", "origin", branch)
    return git(clone, "rev-parse", "HEAD")


def merge(clone: Path, branch: str, *, ff: bool = False) -> str:
    git(clone, "fetch", "--quiet", "origin")
    git(clone, "checkout", "--quiet", "-B", "main", "origin/main")
    git(clone, "merge", "--quiet", "--ff-only" if ff else "--no-ff", "-m", f"Merge {branch}",
        f"origin/{branch}")
    git(clone, "push", "--quiet", "origin", "main")
    return git(clone, "log", "-1", "--format=%cI", "HEAD")


def utc(ts: str) -> str:
    return dt.datetime.fromisoformat(ts).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open(f: local.LocalForge, branch: str = "dakr/batch-1", title: str = "dakr: 1 change",
          body: str = "| w | cpu |\n") -> forge.PullRequest:
    return f.open_or_update(branch=branch, base="main", title=title, body=body,
                            labels=("dakr",))


def test_open_writes_the_record_and_the_body(repo: tuple[Path, Path], tmp_path: Path) -> None:
    origin, clone = repo
    tip = push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    state = tmp_path / "state"
    pr = _open(local.LocalForge(state, str(origin)))
    assert (pr.number, pr.state, pr.branch, pr.base, pr.head_sha) == (
        1, "open", "dakr/batch-1", "main", tip)
    md = state / "pull-request-dakr-batch-1.md"
    assert md.read_text() == "# dakr: 1 change\n\n| w | cpu |\n"
    assert (state / "pull-request.md").read_text() == md.read_text()
    assert pr.url == md.resolve().as_uri()
    [rec] = json.loads((state / "pull-requests.json").read_text())["pullRequests"]
    assert rec["number"] == 1 and rec["labels"] == ["dakr"] and rec["state"] == "open"


def test_update_keeps_the_number_and_next_branch_gets_the_next(
        repo: tuple[Path, Path], tmp_path: Path) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    first = _open(f)
    tip2 = push_branch(clone, "dakr/batch-1", "replicas: 1\n", on_top=True)  # pushed again
    again = _open(f, title="dakr: 2 changes", body="new\n")
    assert again.number == first.number == 1 and again.head_sha == tip2
    assert (tmp_path / "state/pull-request-dakr-batch-1.md").read_text() == \
        "# dakr: 2 changes\n\nnew\n"
    push_branch(clone, "dakr/batch-2", "replicas: 5\n")
    other = _open(f, branch="dakr/batch-2", title="other")
    assert other.number == 2
    assert (tmp_path / "state/pull-request.md").read_text().startswith("# other\n")
    found = f.find_open("dakr/batch-1")
    assert found is not None and found.number == 1 and found.title == "dakr: 2 changes"
    assert f.find_open("dakr/none") is None


def test_unchanged_rerun_leaves_files_alone(repo: tuple[Path, Path], tmp_path: Path) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    _open(f)
    files = sorted((tmp_path / "state").glob("*"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    _open(f)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before


def test_merged_with_a_merge_commit_is_applied(repo: tuple[Path, Path], tmp_path: Path) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    pr = _open(f)
    assert forge.follow(f, pr.number) == (model.APPLYING, "")
    when = merge(clone, "dakr/batch-1")
    assert forge.follow(f, pr.number) == (model.APPLIED, utc(when))
    assert f.find_open("dakr/batch-1") is None


def test_fast_forward_then_branch_deleted_is_applied(repo: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    pr = _open(f)
    merge(clone, "dakr/batch-1", ff=True)
    git(clone, "push", "--quiet", "origin", "--delete", "dakr/batch-1")
    phase, applied_at = forge.follow(f, pr.number)
    assert phase == model.APPLIED
    assert applied_at == utc(git(clone, "log", "-1", "--format=%cI", "origin/main"))


def test_deleted_without_merge_is_rejected_and_final(repo: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    pr = _open(f)
    git(clone, "push", "--quiet", "origin", "--delete", "dakr/batch-1")
    assert forge.follow(f, pr.number) == (model.REJECTED, "")
    # The same branch pushed again is a new proposal with a new number; #1 stays closed.
    push_branch(clone, "dakr/batch-1", "replicas: 1\n")
    new = _open(f)
    assert new.number == 2 and new.state == "open"
    assert f.get(pr.number).state == "closed"
    merge(clone, "dakr/batch-1")
    assert f.get(pr.number).state == "closed" and f.get(new.number).state == "merged"


def test_errors(repo: tuple[Path, Path], tmp_path: Path) -> None:
    origin, clone = repo
    f = local.LocalForge(tmp_path / "state", str(origin))
    with pytest.raises(errors.NotFoundError):
        _open(f, branch="dakr/never-pushed")
    with pytest.raises(errors.NotFoundError):
        f.get(7)
    with pytest.raises(errors.NotFoundError):
        f.comment(7, "x")
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    pr = _open(f)
    f.comment(pr.number, "superseded")
    rec = json.loads((tmp_path / "state/pull-requests.json").read_text())["pullRequests"][0]
    assert rec["comments"] == ["superseded"]


def test_non_local_remote_goes_through_a_cache(repo: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    origin, clone = repo
    push_branch(clone, "dakr/batch-1", "replicas: 2\n")
    f = local.LocalForge(tmp_path / "state", str(origin))
    monkeypatch.setattr(f, "_local_remote", lambda: None)  # as if it were https://...
    pr = _open(f)
    assert (tmp_path / "state/.remote-cache.git/HEAD").exists()
    when = merge(clone, "dakr/batch-1")
    assert forge.follow(f, pr.number) == (model.APPLIED, utc(when))


def test_credentials_in_the_remote_url_stay_hidden(tmp_path: Path) -> None:
    url = "https://x-access-token:ghp_s3cr3tT0ken@127.0.0.1:9/acme/app.git"
    f = local.LocalForge(tmp_path / "state", url)
    assert "ghp_s3cr3tT0ken" not in repr(f)
    with pytest.raises(errors.ReconcilerError) as info:
        _open(f)
    assert "ghp_s3cr3tT0ken" not in str(info.value)
