"""GitHub pull requests (REST v3), and the pulls API that Gitea copied from it.

Gitea (and Forgejo) speak GitHub's pulls API: the same endpoints, the same pull-request
JSON, the same labels and comments through the issues API. The code for that API lives
here once, in ``PullsForge``; ``GitHubForge`` and ``gitea.GiteaForge`` add only what
differs: authentication, the status that means "already exists", and how open pull requests
are listed. (It is not in ``transport``: that module knows HTTP, not any forge's API.)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from reconciler.adapters.forge import port, transport
from reconciler.domain import errors


def split_repo(repo: str, kind: str) -> tuple[str, str]:
    """``owner`` and ``name`` of ``owner/name``, or ConfigError naming the forge."""
    owner, _, name = repo.strip("/").partition("/")
    if not owner or not name or "/" in name:
        raise errors.ConfigError(f"{kind}: repository must be 'owner/name', got {repo!r}")
    return owner, name


def quote(segment: str) -> str:
    """One URL path segment, ``/`` included."""
    return urllib.parse.quote(segment, safe="")


class PullsForge(transport.RestForgeBase):
    """What GitHub and Gitea share: the same pulls API, told apart by the status that
    means "a pull request for this head already exists" and by how open ones are listed."""

    kind = ""
    _exists_status = 422
    _prefix = ""

    @staticmethod
    def _pr(d: Mapping[str, Any]) -> port.PullRequest:
        # The list endpoint has no ``merged`` field: ``merged_at`` is what tells merged apart.
        merged = bool(d.get("merged")) or bool(d.get("merged_at"))
        state = port.MERGED if merged else (
            port.OPEN if d.get("state") == "open" else port.CLOSED)
        head, base = d.get("head") or {}, d.get("base") or {}
        return port.PullRequest(number=int(d["number"]), url=str(d.get("html_url") or ""),
                                branch=str(head.get("ref", "")), base=str(base.get("ref", "")),
                                state=state, title=str(d.get("title") or ""),
                                merged_at=port.utc(d.get("merged_at")),
                                head_sha=str(head.get("sha", "")))

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> port.PullRequest:
        try:
            data = self._http.call("POST", f"{self._prefix}/pulls",
                                   body={"title": title, "head": branch, "base": base,
                                         "body": body},
                                   exists=lambda s, m: (s == self._exists_status
                                                        and "already exists" in m))
        except transport.Exists:
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

    @staticmethod
    def _with_head(items: Any, branch: str) -> dict[str, Any] | None:
        """The first pull request of a listed page whose head is ``branch``."""
        return next((dict(d) for d in items or [] if (d.get("head") or {}).get("ref") == branch),
                    None)

    def get(self, number: int) -> port.PullRequest:
        return self._pr(self._http.call("GET", f"{self._prefix}/pulls/{int(number)}"))

    def comment(self, number: int, body: str) -> None:
        self._http.call("POST", f"{self._prefix}/issues/{int(number)}/comments",
                        body={"body": body})


class GitHubForge(PullsForge):
    """GitHub REST v3 (api.github.com or GitHub Enterprise ``https://host/api/v3``)."""

    kind = "github"

    def __init__(self, api_url: str, repo: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.owner, self.name = split_repo(repo, "github")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(transport.build(
            "github", api_url, auth, token, session, timeout, retries, backoff,
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}))
        self._owns_session = session is None
        self._prefix = f"/repos/{quote(self.owner)}/{quote(self.name)}"

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        params: dict[str, str | int] = {"head": f"{self.owner}:{branch}", "state": "open",
                                        "per_page": 100}
        if base:
            params["base"] = base
        return self._with_head(self._http.call("GET", f"{self._prefix}/pulls", params=params),
                               branch)
