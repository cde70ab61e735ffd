"""An HTTP server that speaks the subset of the GitHub, GitLab and Gitea REST APIs the
reconciler uses, with their real answer and error shapes, on 127.0.0.1.

The path tells the forges apart, as on the real hosts: GitHub at ``/repos/...`` (as
api.github.com), GitLab at ``/api/v4/projects/{id or url-encoded path}/merge_requests``,
Gitea at ``/api/v1/repos/...``. Pull requests live in memory, per forge and repository.

What it reproduces, because the adapter depends on it:
- auth: GitHub ``Authorization: Bearer|token``, GitLab ``PRIVATE-TOKEN`` (or Bearer), Gitea
  ``Authorization: token|Bearer``; a wrong or missing one is 401 with the forge's body;
- "already exists": GitHub 422 ``Validation Failed`` with ``errors[].message``, GitLab 409
  with ``message`` as a list, Gitea 409 with the ``ErrPullRequestAlreadyExists`` text;
- GitHub's list items carry ``merged_at`` but no ``merged`` (only the single GET has it);
- GitLab's ``state`` ``opened``/``merged``/``closed`` and ``iid``; timestamps in each
  forge's own format (GitHub ``Z``, GitLab milliseconds, Gitea with an offset);
- unknown repository or number: 404 with the forge's body.

Test helpers: ``fail_next`` (the next N requests answer 500/502/503/429, optionally with
``Retry-After``, or are delayed), ``create``/``merge``/``close`` to act as a human on the
forge, ``count`` and ``requests`` to see what the client sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GITHUB, GITLAB, GITEA = "github", "gitlab", "gitea"
DOCS = "https://docs.github.com/rest/pulls/pulls"


@dataclass
class Fault:
    """One scheduled misbehaviour, consumed by one request."""

    status: int | None = None        # answer this status instead of serving the request
    retry_after: str | None = None   # with this Retry-After header
    delay: float = 0.0               # sleep this long first (then serve or fail)


@dataclass
class Seen:
    """One request as received (headers kept so tests can check what was sent)."""

    forge: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _Pull:
    number: int
    owner: str
    head: str
    base: str
    title: str
    body: str
    sha: str
    state: str = "open"             # open | closed (merged is closed + merged_at, as GitHub)
    merged_at: dt.datetime | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class ForgeServer:
    """GitHub, GitLab and Gitea on one loopback port; use as a context manager."""

    def __init__(self, token: str = "forge-test-token", repos: tuple[str, ...] = ("acme/app",),
                 gitlab_ids: dict[str, str] | None = None) -> None:
        self.token = token
        self.repos = set(repos)
        self.gitlab_ids = dict(gitlab_ids or {"42": "acme/app"})
        self.requests: list[Seen] = []
        self._faults: list[Fault] = []
        self._pulls: dict[tuple[str, str], list[_Pull]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # Join handler threads on close (HTTP/1.0: each ends with its one request).
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # The base URL each adapter is given (the adapters add /api/v4 and /api/v1 themselves).
    github_url = gitlab_url = gitea_url = url

    def start(self) -> ForgeServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cut injected delays short
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ForgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ---------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int | None = 503, *,
                  retry_after: float | str | None = None, delay: float = 0.0) -> None:
        """The next ``n`` requests fail with ``status`` (None: only the delay)."""
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.extend(Fault(status, ra, delay) for _ in range(n))

    def count(self, method: str | None = None, path: str | None = None,
              forge: str | None = None) -> int:
        """Requests received, optionally by method, path substring and forge."""
        with self._lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method)
                       and (path is None or path in r.path)
                       and (forge is None or r.forge == forge))

    def create(self, forge: str, branch: str, base: str = "main", *, repo: str = "acme/app",
               title: str = "opened by a human", body: str = "") -> int:
        """Open a pull request as someone else would (not through the API under test)."""
        with self._lock:
            return self._new(forge, repo, branch, base, title, body).number

    def merge(self, forge: str, number: int, *, repo: str = "acme/app",
              at: dt.datetime | None = None) -> None:
        with self._lock:
            pr = self._find(forge, repo, number)
            pr.state, pr.merged_at = "closed", at or dt.datetime.now(dt.UTC)

    def close(self, forge: str, number: int, *, repo: str = "acme/app") -> None:
        with self._lock:
            self._find(forge, repo, number).state = "closed"

    def pulls(self, forge: str, repo: str = "acme/app") -> list[dict[str, Any]]:
        """Every pull request of a repository as the forge's single GET shows it."""
        with self._lock:
            return [self._render(forge, repo, p, single=True)
                    for p in self._pulls.get((forge, repo), [])]

    # -- state (caller holds the lock) ------------------------------------------------------

    def _new(self, forge: str, repo: str, head: str, base: str, title: str,
             body: str) -> _Pull:
        pulls = self._pulls.setdefault((forge, repo), [])
        n = len(pulls) + 1
        sha = hashlib.sha1(f"{forge}{repo}{head}{n}".encode()).hexdigest()
        pr = _Pull(number=n, owner=repo.split("/")[0], head=head, base=base, title=title,
                   body=body, sha=sha)
        pulls.append(pr)
        return pr

    def _find(self, forge: str, repo: str, number: int) -> _Pull:
        for p in self._pulls.get((forge, repo), []):
            if p.number == number:
                return p
        raise _Reply(404, _not_found(forge, "pull"))

    def _render(self, forge: str, repo: str, p: _Pull, single: bool) -> dict[str, Any]:
        if forge == GITLAB:
            state = "merged" if p.merged_at else ("opened" if p.state == "open" else "closed")
            return {
                "id": 1000 + p.number, "iid": p.number, "project_id": 42, "title": p.title,
                "description": p.body, "state": state, "source_branch": p.head,
                "target_branch": p.base, "sha": p.sha, "labels": list(p.labels),
                "merged_at": _ts(GITLAB, p.merged_at), "created_at": _ts(GITLAB, p.created_at),
                "web_url": f"{self.url}/{repo}/-/merge_requests/{p.number}",
            }
        owner, name = repo.split("/")
        pull_path = "pull" if forge == GITHUB else "pulls"
        out: dict[str, Any] = {
            "id": 1000 + p.number, "number": p.number, "state": p.state, "title": p.title,
            "body": p.body, "merged_at": _ts(forge, p.merged_at),
            "created_at": _ts(forge, p.created_at),
            "html_url": f"{self.url}/{owner}/{name}/{pull_path}/{p.number}",
            "head": {"label": f"{p.owner}:{p.head}", "ref": p.head, "sha": p.sha},
            "base": {"label": f"{owner}:{p.base}", "ref": p.base},
            "labels": [{"name": x} for x in p.labels],
        }
        if forge == GITEA or single:
            out["merged"] = p.merged_at is not None  # GitHub's list items have no "merged"
        return out

    # -- request handling -------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               raw: bytes) -> tuple[int, Any, dict[str, str]]:
        path, _, qs = raw_path.partition("?")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()}
        forge = GITLAB if path.startswith("/api/v4/") else (
            GITEA if path.startswith("/api/v1/") else GITHUB)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(Seen(forge, method, path, query, headers, body))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return fault.status, {"message": _reason(fault.status)}, extra
        try:
            self._auth(forge, headers)
            with self._lock:
                if forge == GITLAB:
                    status, out = self._gitlab(method, path, query, body)
                else:
                    status, out = self._github_gitea(forge, method, path, query, body)
            return status, out, {}
        except _Reply as r:
            return r.status, r.body, r.headers

    def _auth(self, forge: str, headers: dict[str, str]) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        auth = h.get("authorization", "")
        good = {f"Bearer {self.token}"}
        if forge == GITHUB:
            good.add(f"token {self.token}")
            if auth in good:
                return
            msg = "Bad credentials" if auth else "Requires authentication"
            raise _Reply(401, {"message": msg, "documentation_url": "https://docs.github.com/rest",
                               "status": "401"})
        if forge == GITLAB:
            if h.get("private-token") == self.token or auth in good:
                return
            raise _Reply(401, {"message": "401 Unauthorized"})
        good.add(f"token {self.token}")
        if auth in good:
            return
        raise _Reply(401, {"message": "token is required" if not auth else
                           "user does not exist [uid: 0, name: ]",
                           "url": f"{self.url}/api/swagger"})

    def _repo(self, forge: str, repo: str) -> str:
        if repo not in self.repos:
            raise _Reply(404, _not_found(forge, "repo"))
        return repo

    def _github_gitea(self, forge: str, method: str, path: str, query: dict[str, str],
                      body: Any) -> tuple[int, Any]:
        prefix = "/api/v1" if forge == GITEA else ""
        m = re.fullmatch(prefix + r"/repos/([^/]+)/([^/]+)/(pulls|issues)(?:/(\d+))?(?:/(\w+))?",
                         path)
        if m is None:
            raise _Reply(404, _not_found(forge, "route"))
        repo = self._repo(forge, f"{urllib.parse.unquote(m[1])}/{urllib.parse.unquote(m[2])}")
        kind, number, sub = m[3], m[4], m[5]
        if kind == "pulls" and number is None and sub is None:
            if method == "GET":
                return 200, self._list(forge, repo, query)
            if method == "POST":
                return self._create(forge, repo, body)
        elif kind == "pulls" and number is not None and sub is None:
            pr = self._find(forge, repo, int(number))
            if method == "GET":
                return 200, self._render(forge, repo, pr, single=True)
            if method == "PATCH":
                data = body if isinstance(body, dict) else {}
                for key in ("title", "body", "base"):
                    if isinstance(data.get(key), str):
                        setattr(pr, key, data[key])
                if data.get("state") in ("open", "closed") and pr.merged_at is None:
                    pr.state = data["state"]
                return 200, self._render(forge, repo, pr, single=True)
        elif kind == "issues" and number is not None and method == "POST":
            pr = self._find(forge, repo, int(number))
            data = body if isinstance(body, dict) else {}
            if sub == "labels":
                for label in data.get("labels") or []:
                    if str(label) not in pr.labels:
                        pr.labels.append(str(label))
                return 200, [{"name": x} for x in pr.labels]
            if sub == "comments":
                pr.comments.append(str(data.get("body", "")))
                return 201, {"id": len(pr.comments), "body": pr.comments[-1]}
        raise _Reply(405 if forge == GITHUB else 404, _not_found(forge, "route"))

    def _list(self, forge: str, repo: str, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        out = []
        for p in self._pulls.get((forge, repo), []):
            if state != "all" and p.state != state:
                continue
            if forge == GITHUB and "head" in query and query["head"] != f"{p.owner}:{p.head}":
                continue
            if forge == GITHUB and "base" in query and query["base"] != p.base:
                continue
            if forge == GITEA and query.get("base_branch") not in (None, p.base):
                continue
            out.append(self._render(forge, repo, p, single=False))
        if forge == GITEA:  # page/limit as Gitea (default limit 30, 1-based pages)
            limit = int(query.get("limit", "30") or 30)
            page = max(1, int(query.get("page", "1") or 1))
            out = out[(page - 1) * limit: page * limit]
        return out

    def _create(self, forge: str, repo: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, dict) else {}
        head, base, title = data.get("head"), data.get("base"), data.get("title")
        missing = [k for k, v in (("head", head), ("base", base), ("title", title)) if not v]
        if missing:
            if forge == GITHUB:
                raise _Reply(422, {"message": "Validation Failed", "documentation_url": DOCS,
                                   "errors": [{"resource": "PullRequest", "code": "missing_field",
                                               "field": k} for k in missing], "status": "422"})
            raise _Reply(422, {"message": f"[{missing[0].title()}]: Required",
                               "url": f"{self.url}/api/swagger"})
        if head == base and forge == GITEA:
            raise _Reply(422, {"message": "Invalid PullRequest: There are no changes between "
                                          "the head and the base",
                               "url": f"{self.url}/api/swagger"})
        for p in self._pulls.get((forge, repo), []):
            if p.state == "open" and p.head == head and p.base == base:
                if forge == GITHUB:
                    raise _Reply(422, {"message": "Validation Failed", "documentation_url": DOCS,
                                       "errors": [{"resource": "PullRequest", "code": "custom",
                                                   "message": "A pull request already exists "
                                                              f"for {p.owner}:{head}."}],
                                       "status": "422"})
                raise _Reply(409, {"message": (
                    f"pull request already exists for these targets [id: {1000 + p.number}, "
                    f"issue_id: {p.number}, head_repo_id: 1, base_repo_id: 1, "
                    f"head_branch: {head}, base_branch: {base}]"),
                    "url": f"{self.url}/api/swagger"})
        pr = self._new(forge, repo, str(head), str(base), str(title), str(data.get("body") or ""))
        return 201, self._render(forge, repo, pr, single=True)

    def _gitlab(self, method: str, path: str, query: dict[str, str],
                body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests(?:/(\d+))?(?:/(\w+))?", path)
        if m is None:
            raise _Reply(404, {"error": "404 Not Found"})
        ident = urllib.parse.unquote(m[1])
        repo = self._repo(GITLAB, self.gitlab_ids.get(ident, ident))
        number, sub = m[2], m[3]
        data = body if isinstance(body, dict) else {}
        if number is None:
            if method == "GET":
                state = query.get("state", "all")
                out = []
                for p in self._pulls.get((GITLAB, repo), []):
                    r = self._render(GITLAB, repo, p, single=False)
                    if state != "all" and r["state"] != state:
                        continue
                    if "source_branch" in query and p.head != query["source_branch"]:
                        continue
                    if "target_branch" in query and p.base != query["target_branch"]:
                        continue
                    out.append(r)
                return 200, out
            if method == "POST":
                src, tgt, title = (data.get("source_branch"), data.get("target_branch"),
                                   data.get("title"))
                missing = [k for k, v in (("source_branch", src), ("target_branch", tgt),
                                          ("title", title)) if not v]
                if missing:
                    raise _Reply(400, {"error": f"{missing[0]} is missing"})
                for p in self._pulls.get((GITLAB, repo), []):
                    if p.state == "open" and p.head == src and p.base == tgt:
                        raise _Reply(409, {"message": [
                            "Another open merge request already exists for this source "
                            f"branch: !{p.number}"]})
                pr = self._new(GITLAB, repo, str(src), str(tgt), str(title),
                               str(data.get("description") or ""))
                pr.labels = _labels(data.get("labels"))
                return 201, self._render(GITLAB, repo, pr, single=True)
        else:
            pr = self._find(GITLAB, repo, int(number))
            if sub is None and method == "GET":
                return 200, self._render(GITLAB, repo, pr, single=True)
            if sub is None and method == "PUT":
                if isinstance(data.get("title"), str):
                    pr.title = data["title"]
                if isinstance(data.get("description"), str):
                    pr.body = data["description"]
                if isinstance(data.get("target_branch"), str):
                    pr.base = data["target_branch"]
                if "labels" in data:
                    pr.labels = _labels(data["labels"])
                for label in _labels(data.get("add_labels")):
                    if label not in pr.labels:
                        pr.labels.append(label)
                if data.get("state_event") == "close" and pr.merged_at is None:
                    pr.state = "closed"
                return 200, self._render(GITLAB, repo, pr, single=True)
            if sub == "notes" and method == "POST":
                pr.comments.append(str(data.get("body", "")))
                return 201, {"id": len(pr.comments), "body": pr.comments[-1]}
        raise _Reply(405, {"message": "405 Method Not Allowed"})


def _labels(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return []


def _ts(forge: str, when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    when = when.astimezone(dt.UTC)
    if forge == GITHUB:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if forge == GITLAB:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    # Gitea answers in the server's zone; use +01:00 so clients must normalise.
    return when.astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat(timespec="seconds")


def _not_found(forge: str, what: str) -> dict[str, Any]:
    if forge == GITHUB:
        return {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
    if forge == GITLAB:
        return {"message": "404 Project Not Found" if what == "repo" else "404 Not found"}
    return {"errors": None, "message": "The target couldn't be found.", "url": ""}


def _reason(status: int) -> str:
    return {429: "API rate limit exceeded", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}.get(status, "error")


def _handler(server: ForgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so every handler thread ends promptly and
        # server_close() can join them all (no thread or socket outlives the server).
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet tests

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body, extra = server.handle(self.command, self.path, dict(self.headers),
                                                raw)
            data = b"" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing left to tell it

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler
