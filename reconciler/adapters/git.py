"""Git write-back: a working clone of the GitOps repository, branches, commits, pushes.

GitPython drives the real ``git`` binary. Library errors are translated here, once:
a rejected non-fast-forward push is a ``ConflictError`` (fetch, re-render, retry), an
unreachable remote is temporary, anything else permanent. Remote URLs may carry a token
(``https://x-access-token:TOKEN@host/...``): every message that leaves this module goes
through ``redact`` so a credential never reaches a log, an error or a pull request.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.domain import errors

AUTHOR_NAME = "dakr-reconciler"
AUTHOR_EMAIL = "dakr-reconciler@localhost"
_CRED = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Drop userinfo (user:token@) from any URL in ``text``."""
    return _CRED.sub(r"\g<scheme>***@", text)


def _translate(e: Exception, what: str) -> errors.ReconcilerError:
    # git push --porcelain reports "[rejected]" on stdout and the hints on stderr.
    parts = [str(getattr(e, "stderr", "") or ""), str(getattr(e, "stdout", "") or "")]
    msg = redact(" ".join(p.strip() for p in parts if p.strip()) or str(e)).strip()
    low = msg.lower()
    if "non-fast-forward" in low or "fetch first" in low or "[rejected]" in low:
        return errors.ConflictError(f"{what}: the remote branch moved ({msg})")
    if any(s in low for s in ("could not read from remote", "connection", "timed out",
                              "temporarily", "unable to access")):
        return errors.TemporaryError(f"{what}: {msg}")
    return errors.PermanentError(f"{what}: {msg}")


@contextlib.contextmanager
def repo_lock(clone_dir: str | Path, timeout: float = 120.0) -> Iterator[None]:
    """One writer per working clone at a time, across threads and processes.

    Two batches writing the same repository through one clone would check out branches
    under each other's feet; the lock (an flock next to the clone) serializes them.
    Waiting longer than ``timeout`` is a TemporaryError: try the batch again later.
    """
    path = Path(f"{clone_dir}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise errors.TemporaryError(
                        f"another writer holds {path} (waited {timeout:.0f} s)") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the remote. The secret never goes into a URL, a config file,
    a command line or a message: git asks for it through GIT_ASKPASS, which reads it from
    this process's environment of the git call only."""

    token: str = ""
    username: str = "x-access-token"
    ssh_key: str = ""  # path to a private key for ssh:// or scp-like remotes

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, token={'***' if self.token else ''!r})"


_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\n' "$DAKR_GIT_USERNAME" ;;
  *) printf '%s\n' "$DAKR_GIT_PASSWORD" ;;
esac
"""


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """Move ``user:token@`` out of an https URL, so that it is never stored or printed."""
    m = re.match(r"^(?P<scheme>https?://)(?P<user>[^/@:\s]*)(?::(?P<pw>[^/@\s]*))?@(?P<rest>.*)$",
                 url)
    if not m or not m["pw"]:
        return url, None
    user = m["user"] or "x-access-token"
    return m["scheme"] + m["rest"], Credentials(token=m["pw"], username=user)


def _git_env(creds: Credentials | None, askpass_dir: Path) -> dict[str, str]:
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if creds is None:
        return env
    if creds.token:
        askpass_dir.mkdir(parents=True, exist_ok=True)
        script = askpass_dir / "dakr-askpass.sh"
        if not script.exists() or script.read_text() != _ASKPASS:
            script.write_text(_ASKPASS)
        script.chmod(0o700)
        env.update(GIT_ASKPASS=str(script), DAKR_GIT_USERNAME=creds.username,
                   DAKR_GIT_PASSWORD=creds.token)
    if creds.ssh_key:
        env["GIT_SSH_COMMAND"] = (f"ssh -i {creds.ssh_key} -o IdentitiesOnly=yes "
                                  "-o BatchMode=yes")
    return env


def init_bare(path: str | Path) -> None:
    """A bare repository to act as ``origin`` (the demo and the tests use one)."""
    try:
        git.Repo.init(str(path), bare=True, initial_branch="main")
    except git.GitError as e:
        raise _translate(e, f"git init {path}") from e


def seed_bare(origin: str | Path, tree: str | Path, message: str, *,
              author: tuple[str, str] = (AUTHOR_NAME, AUTHOR_EMAIL)) -> None:
    """A bare repository at ``origin`` whose ``main`` holds the files under ``tree`` in one
    commit (``tree`` becomes its first clone): how the demo, the benchmarks and the tests
    get a repository to write to."""
    init_bare(origin)
    name, email = author
    try:
        repo = git.Repo.init(str(tree), initial_branch="main")
        repo.git.add("-A")
        with repo.git.custom_environment(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email,
                                         GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email):
            repo.git.commit("-q", "-m", message)
        repo.git.push("-q", str(Path(origin).resolve()), "main")
    except git.GitError as e:
        raise _translate(e, f"seeding {origin} from {tree}") from e


class Workspace:
    """A working clone used by one writer at a time (the caller holds the repository lock)."""

    def __init__(self, repo: git.Repo, remote_url: str, depth: int = 0,
                 author_email: str = AUTHOR_EMAIL) -> None:
        self.repo = repo
        self.remote_url = remote_url
        self.depth = depth
        self.author_email = author_email  # commits by anyone else are someone else's
        # ref -> {path: blob sha}, valid until the next fetch: one ls-tree per ref per batch.
        self._trees: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        """Stop GitPython's long-lived cat-file processes."""
        self.repo.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        return Path(str(self.repo.working_tree_dir))

    @classmethod
    def open(cls, remote_url: str, dest: str | Path, base: str,
             credentials: Credentials | None = None, depth: int = 0,
             author: tuple[str, str] = (AUTHOR_NAME, AUTHOR_EMAIL)) -> Workspace:
        """Clone ``remote_url`` into ``dest`` (or reuse and fetch an existing clone) at ``base``.

        A token embedded in ``remote_url`` is taken out of it and handled like
        ``credentials``: the clone's config only ever holds the bare URL. ``depth`` > 0
        keeps a shallow clone of that many commits per branch (a big repository's history
        is not needed to edit its tip). ``author``: (name, email) of the writer's commits.
        """
        dest = Path(dest)
        url, embedded = split_credentials(remote_url)
        env = _git_env(credentials or embedded, dest.parent)
        try:
            if (dest / ".git").is_dir():
                repo = git.Repo(str(dest))
                repo.git.update_environment(**env)
                repo.remote("origin").set_url(url)
            else:
                shallow = [f"--depth={depth}", "--no-single-branch"] if depth > 0 else []
                repo = git.Repo.clone_from(url, str(dest), no_checkout=True, env=env,
                                           multi_options=shallow)
                repo.git.update_environment(**env)
            with repo.config_writer() as cw:
                cw.set_value("user", "name", author[0])
                cw.set_value("user", "email", author[1])
                cw.set_value("core", "autocrlf", "false")
                cw.set_value("credential", "helper", "")
            ws = cls(repo, url, depth, author_email=author[1])
            ws.fetch()
            if f"origin/{base}" not in [r.name for r in repo.remote("origin").refs]:
                raise errors.ConfigError(f"base branch {base!r} does not exist in the repository")
            repo.git.checkout("--force", "-B", base, f"origin/{base}")
            repo.git.clean("-fdx")
            return ws
        except git.GitError as e:
            raise _translate(e, f"clone {url}") from e

    def fetch(self) -> None:
        self._trees.clear()
        try:
            args = ["--prune", "origin"]
            if self.depth > 0:
                args.insert(0, f"--depth={self.depth}")
            self.repo.git.fetch(*args)
        except git.GitError as e:
            raise _translate(e, "git fetch") from e

    def remote_branch_exists(self, branch: str) -> bool:
        return f"origin/{branch}" in [r.name for r in self.repo.remote("origin").refs]

    def foreign_commits(self, base: str, branch: str) -> list[str]:
        """Commits on ``origin/branch`` (not on base) that this writer did not author."""
        try:
            out = self.repo.git.log("--format=%H %ae", f"origin/{base}..origin/{branch}")
        except git.GitError as e:
            raise _translate(e, f"git log {branch}") from e
        return [ln.split()[0] for ln in out.splitlines()
                if ln.strip() and ln.split()[-1] != self.author_email]

    def head(self) -> str:
        return str(self.repo.head.commit.hexsha)

    def checkout_branch(self, branch: str, base: str) -> bool:
        """Check out ``branch``: the remote one if it exists (a rerun continues it), else new
        from ``origin/base``. Returns True when the branch already existed on the remote."""
        try:
            exists = self.remote_branch_exists(branch)
            start = f"origin/{branch}" if exists else f"origin/{base}"
            self.repo.git.checkout("--force", "-B", branch, start)
            self.repo.git.clean("-fdx")
            return exists
        except git.GitError as e:
            raise _translate(e, f"checkout {branch}") from e

    def commit(self, paths: list[str], message: str) -> str | None:
        """Commit the given paths; None when they hold no change (never an empty commit)."""
        try:
            if paths:
                self.repo.git.add("--", *paths)
            if not self.repo.index.diff("HEAD"):
                return None
            self.repo.git.commit("-m", message, "--no-verify")
            return self.head()
        except git.GitError as e:
            raise _translate(e, "git commit") from e

    def push(self, branch: str) -> None:
        """Push ``branch`` without force: a moved remote branch is a ConflictError."""
        try:
            self.repo.git.push("--porcelain", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
        except git.GitError as e:
            raise _translate(e, f"git push {branch}") from e

    def read_at(self, ref: str, path: str) -> bytes:
        """A file's exact bytes at ``ref`` (no newline stripping, no decoding)."""
        try:
            # Through the object database (one long-lived cat-file process), not a
            # subprocess per file: a batch reads hundreds of files.
            tree = self._trees.get(ref)
            if tree is None:
                listing = self.repo.git.ls_tree("-r", "-z", "--full-tree", ref)
                tree = {}
                for entry in listing.split("\0"):
                    if entry:
                        meta, _, name = entry.partition("\t")
                        tree[name] = meta.split()[2]
                self._trees[ref] = tree
            data: bytes = self.repo.odb.stream(bytes.fromhex(tree[path])).read()
            return data
        except KeyError as e:
            raise errors.NotFoundError(f"{path} does not exist at {ref}") from e
        except (git.GitError, ValueError) as e:
            raise _translate(e, f"read {ref}:{path}") from e
