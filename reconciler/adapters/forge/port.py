"""Pull requests behind one interface: GitHub, GitLab (merge requests), Gitea and a local mode.

The writer pushes a branch and then needs exactly four things from a forge: open the pull
request for that branch or update the one already open (a rerun must never open a second
one), read a pull request back to follow its life (merged -> Applied, closed -> Rejected),
find the open one for a branch, and comment. Everything else a forge offers stays out.

Each REST adapter sends its requests through one ``_Transport``, which is also the single
place where HTTP outcomes become ``reconciler.errors`` types: 401/403 -> PermanentError
(never echoing the token), 404 -> NotFoundError, 429/5xx/connection errors/timeouts ->
TemporaryError after a bounded number of retries with exponential backoff, full jitter and
``Retry-After``; "already exists" (GitHub 422, GitLab/Gitea 409) is not an error at all but
the signal to reuse the open pull request. Creating is tried first and an existing pull
request is found through that answer, so one code path covers both a fresh branch and a
rerun, and a create that raced with another writer ends in the same reuse.

The token only ever lives in a per-request header: it is not set on a caller's session, not
kept in ``repr``, and every message that leaves this module is scrubbed of it.

``LocalForge`` needs no server: the branch lives in the remote, the pull request is a JSON
record plus the body as Markdown in a state directory, and its state is read from Git
itself (merged once the branch tip is an ancestor of the base branch).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import logging
import os
import random
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import requests

from reconciler.adapters import git as gitadapter
from reconciler.domain import errors, model

log = logging.getLogger(__name__)

OPEN, MERGED, CLOSED = "open", "merged", "closed"
# Status reason for a pull request closed without merge (the recommendation is Rejected and
# not proposed again until a newer one arrives).
REASON_CLOSED = "PullRequestClosed"
KINDS = ("github", "gitlab", "gitea", "local")


@dataclass(frozen=True)
class PullRequest:
    """What the reconciler needs to know about one pull (or merge) request."""

    number: int          # GitHub/Gitea number, GitLab iid, local sequence number
    url: str             # where a human reviews it (html_url / web_url / file URI)
    branch: str          # head (source) branch
    base: str            # base (target) branch
    state: str           # "open" | "merged" | "closed"
    title: str = ""
    merged_at: str = ""  # RFC 3339 UTC ("...Z") when merged, else ""
    head_sha: str = ""


class Forge(Protocol):
    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> PullRequest:
        """Update the open pull request whose head is ``branch``, else create one."""
        ...

    def get(self, number: int) -> PullRequest: ...

    def find_open(self, branch: str) -> PullRequest | None: ...

    def comment(self, number: int, body: str) -> None: ...


def follow(forge: Forge, pr_number: int) -> tuple[str, str]:
    """(phase, appliedAt) for a pull request: merged -> Applied at the merge time, closed
    without merge -> Rejected (reason ``REASON_CLOSED``), open -> still Applying."""
    pr = forge.get(pr_number)
    if pr.state == MERGED:
        return model.APPLIED, pr.merged_at
    if pr.state == CLOSED:
        return model.REJECTED, ""
    return model.APPLYING, ""


def from_settings(kind: str, url: str, repo: str, token: str | None, state_dir: Path,
                  remote_url: str) -> Forge:
    """The forge for the settings / command line (``--forge``, ``--forge-url``, token file).

    ``url`` may be empty for GitHub (api.github.com) and GitLab (gitlab.com); GitLab and
    Gitea URLs may be given with or without their ``/api/v4`` / ``/api/v1`` suffix.
    """
    kind = kind.strip().lower()
    if kind == "local":
        return LocalForge(state_dir, remote_url)
    repo = repo or repo_from_remote(remote_url)
    if not repo:
        raise errors.ConfigError(f"forge {kind}: the repository (owner/name) is required")
    if kind == "github":
        return GitHubForge(url or "https://api.github.com", repo, token)
    if kind == "gitlab":
        return GitLabForge(url or "https://gitlab.com", repo, token)
    if kind == "gitea":
        if not url:
            raise errors.ConfigError("forge gitea: the forge URL is required")
        return GiteaForge(url, repo, token)
    raise errors.ConfigError(f"unknown forge {kind!r} (expected one of {', '.join(KINDS)})")


def repo_from_remote(remote_url: str) -> str:
    """``owner/name`` (GitLab: ``group/sub/name``) from a clone URL, so ``--repo`` is enough:
    ``https://host/acme/app.git``, ``git@host:acme/app.git``, ``ssh://git@host/acme/app``."""
    url = remote_url.strip()
    m = re.match(r"^[\w.-]+@[\w.-]+:(?!//)(?P<path>.+)$", url)
    if m is not None:
        path = m["path"]
    elif "://" in url and not url.startswith("file://"):
        path = urllib.parse.urlparse(url).path
    else:
        return ""
    path = path.strip("/")
    path = path[:-4] if path.endswith(".git") else path
    return path if "/" in path else ""


# -- shared HTTP transport ---------------------------------------------------------------


def _utc(ts: object) -> str:
    """Normalise a forge timestamp (GitHub ``Z``, GitLab milliseconds, Gitea offsets) to
    ``YYYY-MM-DDTHH:MM:SSZ`` so appliedAt looks the same whatever the forge."""
    if not ts or not isinstance(ts, str):
        return ""
    try:
        parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), cap)


def _message(body: Any) -> str:
    """The human part of a forge error body (GitHub ``message`` + ``errors[].message``,
    GitLab ``message`` as a string, list or field map, Gitea ``message``)."""
    if not isinstance(body, dict):
        return str(body)[:300] if body else ""
    parts: list[str] = []
    msg = body.get("message", body.get("error", ""))
    if isinstance(msg, list):
        parts.extend(str(m) for m in msg)
    elif isinstance(msg, dict):
        parts.extend(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in msg.items())
    elif msg:
        parts.append(str(msg))
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            text = err.get("message") or " ".join(
                str(err[k]) for k in ("resource", "field", "code") if err.get(k))
            if text:
                parts.append(str(text))
        elif err:
            parts.append(str(err))
    return "; ".join(parts)


class _Exists(Exception):
    """The forge said a pull request for this branch is already open (reuse it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Transport:
    """One forge's HTTP client: auth headers, retries, and the only error translation."""

    name: str
    base: str
    auth: Mapping[str, str] = field(repr=False)
    token: str | None = field(repr=False)
    session: requests.Session = field(repr=False)
    timeout: float
    retries: int = 4
    backoff: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def scrub(self, text: str) -> str:
        text = gitadapter.redact(text)
        if self.token:
            text = text.replace(self.token, "***")
        return text

    def call(self, method: str, path: str, *, body: Any = None,
             params: Mapping[str, str | int] | None = None,
             exists: Callable[[int, str], bool] | None = None) -> Any:
        """Send one request (retrying temporary failures) and return its decoded JSON.

        ``exists`` recognises the forge's "already exists" answer, raised as ``_Exists``.
        """
        what = f"{self.name} {method} {path}"
        headers = {**self.extra_headers, **self.auth}
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                resp = self.session.request(method, self.base + path, json=body, params=params,
                                            headers=headers, timeout=self.timeout)
            except requests.RequestException as e:
                failure: errors.ReconcilerError = errors.TemporaryError(
                    f"{what}: {type(e).__name__}: {self.scrub(str(e))}")
                cause: BaseException = e
            else:
                with resp:
                    try:
                        payload = resp.json() if resp.content else None
                    except ValueError:
                        payload = resp.text
                    if resp.status_code < 300:
                        return payload
                    msg = self.scrub(_message(payload))
                    if exists is not None and exists(resp.status_code, msg):
                        raise _Exists(msg)
                    failure = self._translate(resp, msg, what)
                    wait = _retry_after(resp.headers.get("Retry-After"), self.max_wait)
                    cause = requests.HTTPError(f"{resp.status_code} {what}")
            if not isinstance(failure, errors.TemporaryError) or attempt >= self.retries:
                if isinstance(failure, errors.TemporaryError):
                    failure = errors.TemporaryError(
                        f"{failure} (gave up after {attempt} attempts)")
                raise failure from cause
            if wait is None:
                # Full jitter: concurrent writers hitting the same outage spread out.
                wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
            log.warning("%s failed (%s); retry %d/%d in %.2fs", what, failure, attempt,
                        self.retries - 1, wait)
            self.sleep(wait)

    def _translate(self, resp: requests.Response, msg: str, what: str) -> errors.ReconcilerError:
        status = resp.status_code
        detail = f"{what}: HTTP {status}" + (f": {msg}" if msg else "")
        if status == 429 or status >= 500:
            return errors.TemporaryError(detail)
        if status == 403 and (resp.headers.get("Retry-After")
                              or resp.headers.get("X-RateLimit-Remaining") == "0"):
            return errors.TemporaryError(f"{detail} (rate limited)")  # GitHub's secondary limit
        if status in (401, 403):
            hint = "no token configured" if not self.token else "check the token and its scopes"
            return errors.PermanentError(
                f"{self.name}: authentication failed ({hint}): {detail}")
        if status == 404:
            return errors.NotFoundError(detail)
        return errors.PermanentError(detail)


def _session(session: requests.Session | None) -> requests.Session:
    return session if session is not None else requests.Session()


class _RestForge:
    """What the three REST forges share: construction, repr, close."""

    kind = ""

    def __init__(self, transport: _Transport) -> None:
        self._http = transport
        self._owns_session = False

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self._http.base!r})"

    def close(self) -> None:
        if self._owns_session:
            self._http.session.close()

    def __enter__(self) -> _RestForge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _transport(name: str, base: str, auth: Mapping[str, str], token: str | None,
               session: requests.Session | None, timeout: float, retries: int,
               backoff: float, extra: Mapping[str, str] | None = None) -> _Transport:
    return _Transport(name=name, base=base.rstrip("/"), auth=auth, token=token,
                      session=_session(session), timeout=timeout, retries=max(1, retries),
                      backoff=backoff, extra_headers=extra or {})


def _split_repo(repo: str, kind: str) -> tuple[str, str]:
    owner, _, name = repo.strip("/").partition("/")
    if not owner or not name or "/" in name:
        raise errors.ConfigError(f"{kind}: repository must be 'owner/name', got {repo!r}")
    return owner, name


# -- GitHub ------------------------------------------------------------------------------


class _PullsForge(_RestForge):
    """What GitHub and Gitea share: the same pulls API, told apart by the status that
    means "a pull request for this head already exists" and by how open ones are listed."""

    kind = ""
    _exists_status = 422
    _prefix = ""

    @staticmethod
    def _pr(d: Mapping[str, Any]) -> PullRequest:
        # The list endpoint has no ``merged`` field: ``merged_at`` is what tells merged apart.
        merged = bool(d.get("merged")) or bool(d.get("merged_at"))
        state = MERGED if merged else (OPEN if d.get("state") == "open" else CLOSED)
        head, base = d.get("head") or {}, d.get("base") or {}
        return PullRequest(number=int(d["number"]), url=str(d.get("html_url") or ""),
                           branch=str(head.get("ref", "")), base=str(base.get("ref", "")),
                           state=state, title=str(d.get("title") or ""),
                           merged_at=_utc(d.get("merged_at")), head_sha=str(head.get("sha", "")))

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> PullRequest:
        try:
            data = self._http.call("POST", f"{self._prefix}/pulls",
                                   body={"title": title, "head": branch, "base": base,
                                         "body": body},
                                   exists=lambda s, m: (s == self._exists_status
                                                        and "already exists" in m))
        except _Exists:
            data = self._find_open_raw(branch, base)
            if data is None:
                raise errors.ConflictError(
                    f"{self.kind}: a pull request for {branch} exists but is not listed yet"
                ) from None
            if data.get("title") != title or (data.get("body") or "") != body:
                data = self._http.call("PATCH", f"{self._prefix}/pulls/{int(data['number'])}",
                                       body={"title": title, "body": body})
        pr = self._pr(data)
        if labels:
            # Gitea before 1.19 takes label ids here, not names.
            self._http.call("POST", f"{self._prefix}/issues/{pr.number}/labels",
                            body={"labels": list(labels)})
        return pr

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        raise NotImplementedError

    def find_open(self, branch: str) -> PullRequest | None:
        d = self._find_open_raw(branch)
        return self._pr(d) if d is not None else None

    def get(self, number: int) -> PullRequest:
        return self._pr(self._http.call("GET", f"{self._prefix}/pulls/{int(number)}"))

    def comment(self, number: int, body: str) -> None:
        self._http.call("POST", f"{self._prefix}/issues/{int(number)}/comments",
                        body={"body": body})


class GitHubForge(_PullsForge):
    """GitHub REST v3 (api.github.com or GitHub Enterprise ``https://host/api/v3``)."""

    kind = "github"

    def __init__(self, api_url: str, repo: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.owner, self.name = _split_repo(repo, "github")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(_transport(
            "github", api_url, auth, token, session, timeout, retries, backoff,
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}))
        self._owns_session = session is None
        self._prefix = f"/repos/{_q(self.owner)}/{_q(self.name)}"

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        params: dict[str, str | int] = {"head": f"{self.owner}:{branch}", "state": "open",
                                        "per_page": 100}
        if base:
            params["base"] = base
        items = self._http.call("GET", f"{self._prefix}/pulls", params=params)
        for d in items or []:
            if (d.get("head") or {}).get("ref") == branch:
                return dict(d)
        return None


# -- GitLab ------------------------------------------------------------------------------


class GitLabForge(_RestForge):
    """GitLab REST v4 merge requests; ``project`` is a numeric id or ``group/name``."""

    kind = "gitlab"
    _STATES: ClassVar[Mapping[str, str]] = {
        "opened": OPEN, "locked": OPEN, "merged": MERGED, "closed": CLOSED}

    def __init__(self, api_url: str, project: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        project = str(project).strip("/")
        if not project:
            raise errors.ConfigError("gitlab: project (id or group/name) is required")
        base = api_url.rstrip("/")
        if not base.endswith("/api/v4"):
            base += "/api/v4"
        auth = {"PRIVATE-TOKEN": token} if token else {}
        super().__init__(_transport("gitlab", base, auth, token, session, timeout, retries,
                                    backoff, {"Accept": "application/json"}))
        self._owns_session = session is None
        # A path goes URL-encoded as one segment: group%2Fsubgroup%2Fname.
        self._prefix = f"/projects/{urllib.parse.quote(project, safe='')}/merge_requests"

    @classmethod
    def _pr(cls, d: Mapping[str, Any]) -> PullRequest:
        return PullRequest(number=int(d["iid"]), url=str(d.get("web_url") or ""),
                           branch=str(d.get("source_branch", "")),
                           base=str(d.get("target_branch", "")),
                           state=cls._STATES.get(str(d.get("state")), CLOSED),
                           title=str(d.get("title") or ""), merged_at=_utc(d.get("merged_at")),
                           head_sha=str(d.get("sha") or ""))

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> PullRequest:
        create: dict[str, Any] = {"source_branch": branch, "target_branch": base,
                                  "title": title, "description": body}
        if labels:
            create["labels"] = ",".join(labels)
        try:
            data = self._http.call("POST", self._prefix, body=create,
                                   exists=lambda s, m: s == 409 and "already exists" in m)
        except _Exists:
            data = self._find_open_raw(branch, base)
            if data is None:
                raise errors.ConflictError(
                    f"gitlab: a merge request for {branch} exists but is not listed yet") from None
            have = set(data.get("labels") or [])
            update: dict[str, Any] = {}
            if data.get("title") != title:
                update["title"] = title
            if (data.get("description") or "") != body:
                update["description"] = body
            if set(labels) - have:
                # add_labels keeps labels a reviewer put on the merge request.
                update["add_labels"] = ",".join(labels)
            if update:
                data = self._http.call("PUT", f"{self._prefix}/{int(data['iid'])}", body=update)
        return self._pr(data)

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        params: dict[str, str | int] = {"source_branch": branch, "state": "opened",
                                        "per_page": 100}
        if base:
            params["target_branch"] = base
        items = self._http.call("GET", self._prefix, params=params)
        for d in items or []:
            if d.get("source_branch") == branch:
                return dict(d)
        return None

    def find_open(self, branch: str) -> PullRequest | None:
        d = self._find_open_raw(branch)
        return self._pr(d) if d is not None else None

    def get(self, number: int) -> PullRequest:
        return self._pr(self._http.call("GET", f"{self._prefix}/{int(number)}"))

    def comment(self, number: int, body: str) -> None:
        self._http.call("POST", f"{self._prefix}/{int(number)}/notes", body={"body": body})


# -- Gitea -------------------------------------------------------------------------------


class GiteaForge(_PullsForge):
    """Gitea (and Forgejo) REST v1."""

    kind = "gitea"
    _exists_status = 409
    _PAGE = 50

    def __init__(self, api_url: str, repo: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.owner, self.name = _split_repo(repo, "gitea")
        base = api_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        auth = {"Authorization": f"token {token}"} if token else {}
        super().__init__(_transport("gitea", base, auth, token, session, timeout, retries,
                                    backoff, {"Accept": "application/json"}))
        self._owns_session = session is None
        self._prefix = f"/repos/{_q(self.owner)}/{_q(self.name)}"

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        # Gitea's list has no head filter: page through the open ones.
        page = 1
        while True:
            params: dict[str, str | int] = {"state": "open", "page": page, "limit": self._PAGE}
            if base:
                params["base_branch"] = base
            items = self._http.call("GET", f"{self._prefix}/pulls", params=params)
            for d in items or []:
                if (d.get("head") or {}).get("ref") == branch:
                    return dict(d)
            if not items or len(items) < self._PAGE or page >= 100:
                return None
            page += 1


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# -- local -------------------------------------------------------------------------------


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
        return _utc(self._git(["--git-dir", str(gd), "log", "-1", "--format=%cI", which],
                              cwd=None, check=False).strip())

    def _observe(self, rec: _Record, gd: Path) -> _Record:
        if rec.state != OPEN:
            return rec  # merged and closed are final
        base_ref = f"refs/heads/{rec.base}"
        if not self._ref(gd, rec.base):
            return rec
        tip = self._ref(gd, rec.branch)
        commit = tip or rec.head_sha
        # A tip equal to the base tip it was opened on holds no change yet: not "merged".
        if commit and commit != rec.base_sha and self._is_ancestor(gd, commit, base_ref):
            return replace(rec, state=MERGED, head_sha=commit,
                           merged_at=self._merge_time(gd, commit, base_ref))
        if not tip:
            return replace(rec, state=CLOSED)
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
    def _pr(rec: _Record) -> PullRequest:
        return PullRequest(number=rec.number, url=rec.url, branch=rec.branch, base=rec.base,
                           state=rec.state, title=rec.title, merged_at=rec.merged_at,
                           head_sha=rec.head_sha)

    def _refresh(self, db: dict[str, Any], gd: Path | None) -> list[_Record]:
        recs = [_Record(**r) for r in db["pullRequests"]]
        if gd is not None:
            recs = [self._observe(r, gd) for r in recs]
            db["pullRequests"] = [asdict(r) for r in recs]
        return recs

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> PullRequest:
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
            rec = next((r for r in recs if r.branch == branch and r.state == OPEN), None)
            if rec is None:
                rec = _Record(number=int(db["next"]), branch=branch, base=base, title=title,
                              state=OPEN, url=md.resolve().as_uri(), head_sha=tip,
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

    def get(self, number: int) -> PullRequest:
        with self._records() as db:
            recs = [_Record(**r) for r in db["pullRequests"]]
            rec = next((r for r in recs if r.number == int(number)), None)
            if rec is None:
                raise errors.NotFoundError(f"local forge: no pull request #{number}")
            if rec.state == OPEN:
                rec = self._observe(rec, self._git_dir())
                db["pullRequests"] = [asdict(rec) if r.number == rec.number else asdict(r)
                                      for r in recs]
        return self._pr(rec)

    def find_open(self, branch: str) -> PullRequest | None:
        with self._records() as db:
            if not any(r["branch"] == branch and r["state"] == OPEN
                       for r in db["pullRequests"]):
                return None
            recs = self._refresh(db, self._git_dir())
        rec = next((r for r in recs if r.branch == branch and r.state == OPEN), None)
        return self._pr(rec) if rec is not None else None

    def comment(self, number: int, body: str) -> None:
        with self._records() as db:
            for r in db["pullRequests"]:
                if r["number"] == int(number):
                    r["comments"].append(body)
                    return
        raise errors.NotFoundError(f"local forge: no pull request #{number}")


# The HTTP-backed forges (each has ``close()`` for the session it created).
RestForge = GitHubForge | GitLabForge | GiteaForge
