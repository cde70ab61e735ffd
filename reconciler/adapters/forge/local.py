"""Pull requests without a forge: the branch in the remote, the review in files.

For the demo, for tests, and for a team without a forge API at hand: ``LocalForge`` needs
no server. The branch lives in the remote, the pull request is a JSON record plus the body
as Markdown in a state directory, and its state is read from Git itself (merged once the
branch tip is an ancestor of the base branch).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.adapters import git as gitadapter
from reconciler.adapters.forge import port
from reconciler.domain import errors


def branch_slug(branch: str) -> str:
    """A file-name-safe form of a branch name (``dakr/batch-1a2b`` -> ``dakr-batch-1a2b``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", branch).strip("-.") or "branch"


@dataclass
class _Record:
    number: int
    branch: str
    base: str
    title: str
    state: str
    url: str
    head_sha: str = ""
    base_sha: str = ""      # base tip when the record was last opened/updated
    merged_at: str = ""
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


class LocalForge:
    """Pull requests without a forge: the branch in the remote, the review in files.

    ``state_dir/pull-requests.json`` holds the records; each body is written to
    ``pull-request-<branch-slug>.md`` (and the latest to ``pull-request.md``) for a human to
    read. The state comes from Git: merged once the branch tip is an ancestor of the base
    branch in the remote, closed when the branch was deleted without that.
    """

    kind = "local"
    _lock = threading.Lock()

    def __init__(self, state_dir: Path, remote_url: str) -> None:
        self.state_dir = Path(state_dir)
        self.remote_url = remote_url
        self._db = self.state_dir / "pull-requests.json"

    def __repr__(self) -> str:
        return f"LocalForge({str(self.state_dir)!r}, {gitadapter.redact(self.remote_url)!r})"

    # -- git on the remote --

    def _local_remote(self) -> Path | None:
        url = self.remote_url
        if url.startswith("file://"):
            url = urllib.parse.unquote(urllib.parse.urlparse(url).path)
        elif "://" in url or re.match(r"^[^/]+@[^:]+:", url):
            return None
        path = Path(url)
        return path if path.is_dir() else None

    def _git_dir(self) -> Path:
        """A repository holding the remote's objects: the remote itself when local, else a
        bare cache in the state directory fetched from it."""
        local = self._local_remote()
        if local is not None:
            return local
        cache = self.state_dir / ".remote-cache.git"
        if not (cache / "HEAD").exists():
            self._git(["init", "--bare", "--quiet", str(cache)], cwd=None)
        self._git(["--git-dir", str(cache), "fetch", "--quiet", "--prune", self.remote_url,
                   "+refs/heads/*:refs/heads/*"], cwd=None)
        return cache

    def _git(self, args: list[str], cwd: Path | None, check: bool = True) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                 timeout=60, check=False,
                                 env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise errors.TemporaryError(f"local forge: git {args[0]}: "
                                        f"{gitadapter.redact(str(e))}") from e
        if check and out.returncode != 0:
            msg = gitadapter.redact(out.stderr.strip() or out.stdout.strip())
            cmd = gitadapter.redact(" ".join(args[:3]))
            raise errors.PermanentError(f"local forge: git {cmd}: {msg}")
        return out.stdout if out.returncode == 0 else ""

    def _ref(self, gd: Path, branch: str) -> str:
        return self._git(["--git-dir", str(gd), "rev-parse", "--verify", "--quiet",
                          f"refs/heads/{branch}^{{commit}}"], cwd=None, check=False).strip()

    def _is_ancestor(self, gd: Path, commit: str, ref: str) -> bool:
        out = subprocess.run(["git", "--git-dir", str(gd), "merge-base", "--is-ancestor", commit,
                              ref], capture_output=True, timeout=60, check=False)
        return out.returncode == 0

    def _merge_time(self, gd: Path, commit: str, base_ref: str) -> str:
        """When ``commit`` reached the base: the committer date of the first base commit that
        descends from it (the merge commit), or its own date after a fast-forward."""
        later = self._git(["--git-dir", str(gd), "rev-list", "--ancestry-path", "--reverse",
                           f"{commit}..{base_ref}"], cwd=None, check=False).split()
        which = later[0] if later else commit
        return port.utc(self._git(["--git-dir", str(gd), "log", "-1", "--format=%cI", which],
                                  cwd=None, check=False).strip())

    def _observe(self, rec: _Record, gd: Path) -> _Record:
        if rec.state != port.OPEN:
            return rec  # merged and closed are final
        base_ref = f"refs/heads/{rec.base}"
        if not self._ref(gd, rec.base):
            return rec
        tip = self._ref(gd, rec.branch)
        commit = tip or rec.head_sha
        # A tip equal to the base tip it was opened on holds no change yet: not "merged".
        if commit and commit != rec.base_sha and self._is_ancestor(gd, commit, base_ref):
            return replace(rec, state=port.MERGED, head_sha=commit,
                           merged_at=self._merge_time(gd, commit, base_ref))
        if not tip:
            return replace(rec, state=port.CLOSED)
        return replace(rec, head_sha=tip)

    # -- the records --

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the record file under a lock (atomic replace on write)."""
        with self._lock:
            try:
                db: dict[str, Any] = json.loads(self._db.read_text("utf-8"))
            except FileNotFoundError:
                db = {"next": 1, "pullRequests": []}
            except ValueError as e:
                raise errors.PermanentError(f"local forge: {self._db} is corrupt: {e}") from e
            before = json.dumps(db, sort_keys=True)
            yield db
            if json.dumps(db, sort_keys=True) != before:
                self._write(self._db, json.dumps(db, indent=2, sort_keys=True) + "\n")

    def _write(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as e:
            raise errors.PermanentError(f"local forge: cannot write {path}: {e}") from e

    @staticmethod
    def _pr(rec: _Record) -> port.PullRequest:
        return port.PullRequest(number=rec.number, url=rec.url, branch=rec.branch,
                                base=rec.base, state=rec.state, title=rec.title,
                                merged_at=rec.merged_at, head_sha=rec.head_sha)

    def _refresh(self, db: dict[str, Any], gd: Path | None) -> list[_Record]:
        recs = [_Record(**r) for r in db["pullRequests"]]
        if gd is not None:
            recs = [self._observe(r, gd) for r in recs]
            db["pullRequests"] = [asdict(r) for r in recs]
        return recs

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> port.PullRequest:
        gd = self._git_dir()
        tip, base_tip = self._ref(gd, branch), self._ref(gd, base)
        if not tip:
            raise errors.NotFoundError(f"local forge: branch {branch} is not in the remote")
        if not base_tip:
            raise errors.NotFoundError(f"local forge: base branch {base} is not in the remote")
        md = self.state_dir / f"pull-request-{branch_slug(branch)}.md"
        text = f"# {title}\n\n{body}" + ("" if body.endswith("\n") else "\n")
        with self._records() as db:
            recs = self._refresh(db, gd)
            rec = next((r for r in recs if r.branch == branch and r.state == port.OPEN), None)
            if rec is None:
                rec = _Record(number=int(db["next"]), branch=branch, base=base, title=title,
                              state=port.OPEN, url=md.resolve().as_uri(), head_sha=tip,
                              base_sha=base_tip, labels=list(labels))
                db["next"] = rec.number + 1
                recs.append(rec)
            else:
                merged_labels = rec.labels + [x for x in labels if x not in rec.labels]
                rec = replace(rec, title=title, base=base, head_sha=tip, labels=merged_labels)
                recs = [rec if r.number == rec.number else r for r in recs]
            db["pullRequests"] = [asdict(r) for r in recs]
            for path in (md, self.state_dir / "pull-request.md"):
                if not path.exists() or path.read_text("utf-8") != text:
                    self._write(path, text)
        return self._pr(rec)

    def get(self, number: int) -> port.PullRequest:
        with self._records() as db:
            recs = [_Record(**r) for r in db["pullRequests"]]
            rec = next((r for r in recs if r.number == int(number)), None)
            if rec is None:
                raise errors.NotFoundError(f"local forge: no pull request #{number}")
            if rec.state == port.OPEN:
                rec = self._observe(rec, self._git_dir())
                db["pullRequests"] = [asdict(rec) if r.number == rec.number else asdict(r)
                                      for r in recs]
        return self._pr(rec)

    def find_open(self, branch: str) -> port.PullRequest | None:
        with self._records() as db:
            if not any(r["branch"] == branch and r["state"] == port.OPEN
                       for r in db["pullRequests"]):
                return None
            recs = self._refresh(db, self._git_dir())
        rec = next((r for r in recs if r.branch == branch and r.state == port.OPEN), None)
        return self._pr(rec) if rec is not None else None

    def comment(self, number: int, body: str) -> None:
        with self._records() as db:
            for r in db["pullRequests"]:
                if r["number"] == int(number):
                    r["comments"].append(body)
                    return
        raise errors.NotFoundError(f"local forge: no pull request #{number}")
